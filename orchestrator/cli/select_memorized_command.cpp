// memsweep select-memorized: mines a memorization set. Cuts a token corpus into windows of prefix + suffix
// tokens and keeps those whose suffix the model (baseline, greedy, EOS masked as in the paper) reproduces
// exactly, with where each came from.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/model_options.h"
#include "orchestrator/cli/options.h"
#include "worker/base/error.h"
#include "worker/base/log.h"
#include "worker/tasks/kinds.h"
#include "worker/tasks/token_rows.h"
#include "worker/tokenizer/tokenizer.h"

namespace po = boost::program_options;

namespace memsweep {

int select_memorized_command(const Arguments& args) {
  const CommandSpec spec{
      "select-memorized", "--model DIR --input TOKENS --out FILE.jsonl [options]",
      "Keeps the windows of a token corpus whose suffix the model reproduces exactly (greedy, EOS masked unless\n"
      "--allow-eos; any --short-circuit/--zero-attention applies). TOKENS: .npy (2-D), .jsonl rows\n"
      "{\"tokens\": [...]} or {\"text\": ...} (with the model's tokenizer), or a raw stream of little-endian\n"
      "uint16/uint32 ids (.u16/.u32, or --format) as Pythia's Pile shards are distributed. Each row (or the\n"
      "stream) is cut into windows of prefix + suffix tokens every --stride tokens. Output: one JSON line per kept\n"
      "window, {\"tokens\": [...], \"row\": R, \"offset\": O} (row: the input line / npy row, -1 for a stream;\n"
      "offset: the window's first token within it) — the format `memsweep eval --task memorization:FILE` reads."};
  po::options_description options("options");
  ModelOptions model_options;
  add_model_options(options, model_options);
  std::string input, out_path, format;
  int64_t prefix = 32, suffix = 32, stride = 0, limit = -1;
  int batch_size = 16;
  options.add_options()
      ("input", po::value(&input)->required(), "token corpus (.npy, .jsonl, .u16, .u32)")
      ("out", po::value(&out_path)->required(), "JSONL file of the kept windows")
      ("prefix", po::value(&prefix)->default_value(32), "prefix tokens")
      ("suffix", po::value(&suffix)->default_value(32), "suffix tokens that must be reproduced")
      ("stride", po::value(&stride), "tokens between window starts (default: prefix + suffix, no overlap)")
      ("limit", po::value(&limit), "examine at most this many windows")
      ("format", po::value(&format), "raw stream element type: uint16 or uint32")
      ("allow-eos", "let greedy decoding choose the end-of-sequence token")
      ("batch-size", po::value(&batch_size)->default_value(16), "windows per forward pass");
  po::variables_map values;
  if (!parse_command_line(spec, options, args, values)) return 0;
  if (prefix < 1 || suffix < 1 || batch_size < 1) throw Error("--prefix, --suffix and --batch-size must be at least 1");
  if (!values.count("stride")) stride = prefix + suffix;
  if (stride < 1) throw Error("--stride must be at least 1");

  auto model = load_model_with_interventions(model_options);
  std::vector<std::vector<int64_t>> sources;
  std::vector<int64_t> source_rows;
  const std::string extension = std::filesystem::path(input).extension().string();
  const bool stream = !format.empty() || extension == ".u16" || extension == ".u32";
  if (stream) {
    sources.push_back(read_token_stream(input, format, model->vocab_size()));
    source_rows.push_back(-1);
  } else {
    const std::string tokenizer_path = model_tokenizer_path(model_options.model_dir, "");
    std::optional<Tokenizer> tokenizer;
    if (!tokenizer_path.empty()) tokenizer = Tokenizer::load(tokenizer_path);
    TokenRows rows = read_token_rows_file(input, model->vocab_size(), text_encoder(tokenizer ? &*tokenizer : nullptr), false);
    sources = std::move(rows.rows);
    source_rows = std::move(rows.source);
  }
  // Windows: (source index, offset).
  std::vector<std::vector<int64_t>> windows;
  std::vector<std::pair<int64_t, int64_t>> origin;
  for (size_t s = 0; s < sources.size(); ++s) {
    for (int64_t offset = 0; offset + prefix + suffix <= int64_t(sources[s].size()); offset += stride) {
      if (limit >= 0 && int64_t(windows.size()) >= limit) break;
      windows.emplace_back(sources[s].begin() + offset, sources[s].begin() + offset + prefix + suffix);
      origin.emplace_back(source_rows[s], offset);
    }
  }
  log_info("examining " + std::to_string(windows.size()) + " windows of " + std::to_string(prefix) + " + " +
           std::to_string(suffix) + " tokens from " + input);

  MemorizationOptions memorization;
  memorization.prefix = prefix;
  memorization.suffix = suffix;
  memorization.mask_eos = !values.count("allow-eos");
  std::vector<int64_t> index(windows.size());
  for (size_t i = 0; i < index.size(); ++i) index[i] = int64_t(i);
  std::ofstream out(out_path + ".partial");
  if (!out) throw Error("cannot open " + out_path + ".partial for writing");
  int64_t kept = 0;
  for (int64_t start = 0; start < int64_t(windows.size()); start += batch_size) {
    ShardResult result;
    evaluate_memorization(*model, windows, index, start, std::min<int64_t>(batch_size, int64_t(windows.size()) - start),
                          memorization, result);
    for (const auto& record : result.examples) {
      if (record.values.at("exact_match") != 1.0) continue;
      const auto& [row, offset] = origin[size_t(record.index)];
      out << nlohmann::json{{"tokens", windows[size_t(record.index)]}, {"row", row}, {"offset", offset}}.dump() << "\n";
      ++kept;
    }
  }
  out.close();
  if (!out) throw Error("error while writing " + out_path + ".partial (disk full?)");
  std::filesystem::rename(out_path + ".partial", out_path);
  log_info("kept " + std::to_string(kept) + " of " + std::to_string(windows.size()) + " windows in " + out_path);
  std::cout << nlohmann::json{{"windows", windows.size()}, {"kept", kept}, {"out", out_path}}.dump() << "\n";
  return 0;
}

}  // namespace memsweep
