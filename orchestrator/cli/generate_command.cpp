// memsweep generate: greedy continuation of token-id prompts with a KV cache, any blocks short-circuited or
// zeroed; prints the new ids as JSON.
#include <iostream>
#include <nlohmann/json.hpp>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/model_options.h"
#include "orchestrator/cli/options.h"
#include "worker/base/error.h"
#include "worker/model/generate.h"

namespace po = boost::program_options;

namespace memsweep {

int generate_command(const Arguments& args) {
  const CommandSpec spec{
      "generate", "--model DIR --tokens FILE.json --new-tokens N [options]",
      "Greedy decoding (ties to the lowest id, as torch.argmax) of exactly N new tokens after each prompt of\n"
      "FILE.json (a JSON array of token-id arrays), with a KV cache; prompts are batched with left padding.\n"
      "Prints a JSON array with one array of N new ids per prompt; with --gaps, an array of objects\n"
      "{\"tokens\": [...], \"top2_gap\": [...]} giving at each step the top-1 minus top-2 logit (float32) the\n"
      "choice was made with: a gap near 0 is a near-tie that another implementation may break differently.\n"
      "--no-eos masks the end-of-sequence token(s) of config.json at every step, as transformers'\n"
      "generate(min_new_tokens=N) does; without it decoding goes on past an EOS for the full N tokens."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string tokens_path;
  int new_tokens = 0, batch_size = 8;
  options.add_options()
      ("tokens", po::value(&tokens_path)->required(), "JSON array of token-id arrays (the prompts)")
      ("new-tokens", po::value(&new_tokens)->required(), "tokens to generate after each prompt")
      ("no-eos", "never generate the end-of-sequence token")
      ("gaps", "print the top-two logit gap of every step with the tokens")
      ("batch-size", po::value(&batch_size)->default_value(8), "prompts per batch");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (batch_size < 1) throw Error("--batch-size must be at least 1");

  auto model = load_model_with_interventions(model_options);
  const auto prompts = read_token_rows(tokens_path, model->vocab_size());
  GreedyOptions greedy;
  greedy.new_tokens = new_tokens;
  greedy.mask_eos = values.count("no-eos") > 0;
  greedy.batch_size = batch_size;
  const auto rows = greedy_generate(*model, prompts, greedy);

  nlohmann::json out = nlohmann::json::array();
  for (const auto& row : rows) {
    if (values.count("gaps"))
      out.push_back({{"tokens", row.tokens}, {"top2_gap", row.top2_gap}});
    else
      out.push_back(row.tokens);
  }
  std::cout << out.dump() << "\n";
  return 0;
}

}  // namespace memsweep
