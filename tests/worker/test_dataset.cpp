// Opening datasets without libtorch (worker/tasks/dataset.h): the tokenizer rule, the task context read from a model
// folder, example counts, the largest batch plan sizes memory with, and errors that name the dataset and the model
// once each.
#define BOOST_TEST_MODULE test_dataset
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/base/error.h"
#include "worker/base/human_bytes.h"
#include "worker/tasks/dataset.h"

namespace {

namespace fs = std::filesystem;
using memsweep::DatasetSpec;
using memsweep::Error;
using memsweep::TaskContext;

const fs::path kDemo = fs::path(MEMSWEEP_TEST_DATA_DIR).parent_path().parent_path() / "jobs" / "demo";

// A temporary folder holding a GPT-Neo model folder (config.json with 64 positions; vocab.json + merges.txt made from
// the demo's tokenizer.json, the GPT-2 layout) and data files.
struct Folder {
  fs::path root = fs::temp_directory_path() / ("memsweep_dataset_" + std::to_string(::getpid()));
  Folder() {
    fs::create_directories(root / "neo");
    write("neo/config.json", nlohmann::json{{"model_type", "gpt_neo"}, {"vocab_size", 768}, {"hidden_size", 16}, {"num_layers", 2},
                                            {"num_heads", 2}, {"max_position_embeddings", 64},
                                            {"attention_types", {{{"global", "local"}, 1}}}, {"eos_token_id", 0}}
                                 .dump());
    std::ifstream in(kDemo / "tokenizer.json");
    const nlohmann::json tokenizer = nlohmann::json::parse(in);
    write("neo/vocab.json", tokenizer["model"]["vocab"].dump());
    std::string merges = "#version: 0.2\n";
    for (const auto& merge : tokenizer["model"]["merges"])
      merges += merge.is_string() ? merge.get<std::string>() + "\n" : merge[0].get<std::string>() + " " + merge[1].get<std::string>() + "\n";
    write("neo/merges.txt", merges);
  }
  ~Folder() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
  std::string write(const std::string& relative, const std::string& text) const {
    std::ofstream(root / relative) << text;
    return (root / relative).string();
  }
  std::string rows(const std::string& name, const std::vector<int>& lengths) const {
    std::string text;
    for (int length : lengths) text += nlohmann::json{{"tokens", std::vector<int>(size_t(length), 5)}}.dump() + "\n";
    return write(name, text);
  }
};

BOOST_AUTO_TEST_CASE(the_tokenizer_rule_finds_vocab_and_merges_and_the_context_reads_the_config) {
  Folder folder;
  const std::string neo = (folder.root / "neo").string();
  BOOST_TEST(memsweep::model_tokenizer_path(neo, "") == neo);
  BOOST_TEST(memsweep::model_tokenizer_path(neo, "/given") == "/given");
  BOOST_TEST(memsweep::model_tokenizer_path(folder.root.string(), "") == "");
  const TaskContext context = memsweep::read_task_context(neo, "", "neo");
  BOOST_TEST(context.tokenizer.has_value());
  BOOST_TEST(context.max_length == 64);
  BOOST_TEST(context.vocab_size == 768);
  BOOST_TEST(context.eos_token_ids == std::vector<int64_t>{0});
}

BOOST_AUTO_TEST_CASE(errors_name_the_dataset_and_the_model_once_each) {
  Folder folder;
  TaskContext context = memsweep::read_task_context((folder.root / "neo").string(), "", "gpt-neo-tiny");
  context.tokenizer.reset();  // a model folder without tokenizer files
  const DatasetSpec piqa{"piqa-val", "piqa", folder.write("piqa.jsonl", R"({"goal": "a", "sol1": "b", "sol2": "c", "label": 0})" "\n"), {}};
  try {
    memsweep::count_examples(piqa, context);
    BOOST_FAIL("a benchmark without a tokenizer was accepted");
  } catch (const Error& e) {
    const std::string message = e.what();
    BOOST_TEST_MESSAGE(message);
    BOOST_TEST(message.rfind("dataset 'piqa-val' (piqa) on model 'gpt-neo-tiny': ", 0) == 0);
    BOOST_TEST(message.find("piqa-val", 10) == std::string::npos);
    BOOST_TEST(message.find("gpt-neo-tiny", message.find("gpt-neo-tiny") + 1) == std::string::npos);
    BOOST_TEST(message.find("vocab.json + merges.txt") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(rows_longer_than_the_model_are_errors_or_skipped) {
  Folder folder;
  const TaskContext context = memsweep::read_task_context((folder.root / "neo").string(), "", "neo");
  DatasetSpec set{"set", "memorization", folder.rows("set.jsonl", {64, 50, 65, 64}), {{"prefix", 32}}};
  BOOST_CHECK_EXCEPTION(memsweep::count_examples(set, context), Error, [](const Error& e) {
    return std::string(e.what()).find("set.jsonl, line 3: 65 tokens, more than the model's 64 positions") != std::string::npos;
  });
  set.options["skip_bad"] = true;
  BOOST_TEST(memsweep::count_examples(set, context) == 3);
  set.options["suffix"] = 16;  // rows cut to prefix + suffix = 48 tokens: all fit
  BOOST_TEST(memsweep::count_examples(set, context) == 4);
  DatasetSpec divergence{"div", "divergence", folder.rows("div.jsonl", {10, 70}), {}};
  BOOST_CHECK_THROW(memsweep::count_examples(divergence, context), Error);
  divergence.options["skip_bad"] = true;
  BOOST_TEST(memsweep::count_examples(divergence, context) == 1);
}

BOOST_AUTO_TEST_CASE(the_largest_batch_is_read_off_the_dataset) {
  Folder folder;
  const TaskContext context = memsweep::read_task_context((folder.root / "neo").string(), "", "neo");
  const DatasetSpec set{"set", "memorization", folder.rows("set.jsonl", {64, 64, 64, 50, 64}), {{"prefix", 32}}};
  // 64-token rows: 63 fed (the suffix's last token never is), the longest suffix 32; the token budget binds at 2 rows.
  const memsweep::BatchShape shape = memsweep::largest_batch(set, context, 16, 130);
  BOOST_TEST(int(shape.kind) == int(memsweep::BatchShape::Kind::memorization));
  BOOST_TEST(shape.rows == 2);
  BOOST_TEST(shape.tokens == 63);
  BOOST_TEST(shape.scored == 32);
  BOOST_TEST(memsweep::largest_batch(set, context, 16, 0).rows == 5);  // no more rows than the set has
  // A benchmark: tokenized and batched as the loglikelihood engine plans it (one context, two continuations).
  const DatasetSpec piqa{"piqa", "piqa",
                         folder.write("piqa.jsonl", R"({"goal": "The canary", "sol1": "sings", "sol2": "flies far", "label": 0})" "\n"), {}};
  const memsweep::BatchShape benchmark = memsweep::largest_batch(piqa, context, 8, 0);
  BOOST_TEST(int(benchmark.kind) == int(memsweep::BatchShape::Kind::loglikelihood));
  BOOST_TEST(benchmark.rows == 1);
  BOOST_TEST(benchmark.tokens > 0);
  BOOST_TEST(benchmark.predicted > 2);
}

BOOST_AUTO_TEST_CASE(sizes_read_as_people_write_them) {
  const std::pair<double, const char*> cases[] = {{0, "0 B"},         {999, "999 B"},    {1000, "1 kB"},      {16e9, "16 GB"},
                                                  {1.5e9, "1.5 GB"},  {217.4e9, "217 GB"}, {12.34e6, "12.3 MB"}, {999.6e6, "1 GB"},
                                                  {1.234e12, "1.23 TB"}};
  for (const auto& [bytes, text] : cases) BOOST_TEST(memsweep::human_bytes(bytes) == text);
}

}  // namespace
