// Study files: the grid they expand to, and every error (syntax, unknown key, wrong type, missing path,
// bad intervention, tokenizer mismatch) with its file, line and column.
#define BOOST_TEST_MODULE test_study
#include <boost/test/unit_test.hpp>

#include "orchestrator/study/study.h"
#include "study_fixture.h"
#include "worker/base/error.h"

namespace {

using memsweep::Error;
using memsweep::Study;
using memsweep_test::StudyFolder;

const std::string kModels = R"(
[[models]]
name = "neox"
path = "neox"

[[models]]
name = "neo"
path = "neo"
)";

const std::string kDatasets = R"(
[[datasets]]
name = "memorized"
kind = "memorization"
path = "memorized.jsonl"
models = ["neox"]
options = { prefix = 32, suffix = 32 }

[[datasets]]
name = "piqa"
kind = "piqa"
path = "piqa.jsonl"
)";

struct Fixture {
  StudyFolder folder;
  Fixture() {
    folder.model("neox", 4);
    folder.model("neo", 6);
    folder.write("memorized.jsonl", "{}\n");
    folder.write("piqa.jsonl", "{}\n");
  }
  Study parse(const std::string& text) { return memsweep::parse_study(text, "study.toml", folder.root().string()); }
};

int64_t count_examples(const memsweep::DatasetEntry& d, const memsweep::ModelEntry&) { return d.name == "piqa" ? 10 : 5; }

BOOST_FIXTURE_TEST_CASE(grid_of_a_study, Fixture) {
  const Study study = parse(R"(
[run]
unit_size = 4
interventions_per_unit = 3
[interventions]
baseline = true
single_blocks = true
kinds = ["short_circuit", "zero_attention"]
blocks = ["1-2"]
last = [2]
names = ["sc:0;zero:3"]
)" + kModels + kDatasets);
  const auto& neox = study.model("neox");
  const std::vector<std::string> expected = {
      "baseline", "short_circuit:0", "zero_attention:0", "short_circuit:1", "zero_attention:1", "short_circuit:2",
      "zero_attention:2", "short_circuit:3", "zero_attention:3", "short_circuit:1-2", "zero_attention:1-2",
      "short_circuit:2-3", "zero_attention:2-3", "short_circuit:0;zero_attention:3"};
  BOOST_TEST(study.interventions_for(neox) == expected, boost::test_tools::per_element());
  BOOST_TEST(study.interventions_for(study.model("neo")).size() == 1 + 12 + 2 + 2 + 1);

  const auto units = memsweep::expand_units(study, count_examples);
  // neox: memorized (5 examples -> 2 shards) + piqa (10 -> 3 shards), 14 interventions in groups of 3 (5 groups).
  // neo: piqa only (the memorized set belongs to neox): 3 shards x 18 interventions / 3 = 6 groups.
  BOOST_TEST(units.size() == (2 + 3) * 5 + 3 * 6);
  BOOST_TEST(units[0].key() == "neox|memorized|0+4|baseline short_circuit:0 zero_attention:0");
  BOOST_TEST(units[5].key() == "neox|memorized|4+1|baseline short_circuit:0 zero_attention:0");
  BOOST_TEST(units.back().count == 2);
  BOOST_TEST(study.run.unit_size == 4);
  BOOST_TEST(study.store.path == (folder.root() / "study.sqlite").string());
  BOOST_TEST(study.datasets[0].options.at("prefix") == 32);
}

BOOST_FIXTURE_TEST_CASE(unit_keys_do_not_depend_on_batch_size, Fixture) {
  const std::string rest = "[interventions]\nsingle_blocks = true\n" + kModels + kDatasets;
  const auto a = memsweep::expand_units(parse("[run]\nbatch_size = 2\n" + rest), count_examples);
  const auto b = memsweep::expand_units(parse("[run]\nbatch_size = 64\n" + rest), count_examples);
  BOOST_REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) BOOST_TEST(a[i].key() == b[i].key());
}

// What a store already holds is not planned again: the examples and interventions no held unit covers are.
BOOST_FIXTURE_TEST_CASE(units_plan_only_what_held_units_do_not_cover, Fixture) {
  const std::string models = "[[models]]\nname = \"neox\"\npath = \"neox\"\n";
  const std::string datasets = "[[datasets]]\nname = \"piqa\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\n";
  const Study before = parse("[run]\nunit_size = 4\n[interventions]\nlast = [1]\n" + models + datasets);  // piqa: 10 examples
  std::vector<memsweep::Unit> held = memsweep::expand_units(before, count_examples);
  BOOST_TEST(held.size() == 3u);
  held.pop_back();  // the store holds examples [0, 8): a run stopped before the last unit was planned (an older memsweep)
  const Study after = parse("[run]\nunit_size = 5\n[interventions]\nlast = [1, 2]\n" + models + datasets);
  const auto added = memsweep::expand_units(after, count_examples, held);
  std::vector<std::string> keys;
  for (const auto& unit : added) keys.push_back(unit.key());
  // baseline and last-1 lack [8, 10); last-2 (blocks 2-3) lacks everything: two groups, each cut by the new unit size.
  const std::vector<std::string> expected = {"neox|piqa|8+2|baseline short_circuit:3", "neox|piqa|0+5|short_circuit:2-3",
                                             "neox|piqa|5+5|short_circuit:2-3"};
  BOOST_TEST(keys == expected, boost::test_tools::per_element());
  held.insert(held.end(), added.begin(), added.end());
  BOOST_TEST(memsweep::expand_units(after, count_examples, held).empty());
  BOOST_TEST(memsweep::doubly_covered(held) == 0);
  held.push_back(held.front());  // a unit recorded twice by an older --extend
  BOOST_TEST(memsweep::doubly_covered(held) == 4 * 2);  // its 4 examples under its 2 interventions
  BOOST_TEST(memsweep::removed_from_study(before, held) ==
             std::vector<std::string>{"intervention 'short_circuit:2-3' of model 'neox'"}, boost::test_tools::per_element());
}

struct ErrorCase {
  std::string text, message;
};

BOOST_FIXTURE_TEST_CASE(errors_name_file_line_and_column, Fixture) {
  const std::vector<ErrorCase> cases = {
      {"[run]\nbatch_size = 8\nbatch_sise = 3\n" + kModels + kDatasets, "study.toml:3:1: unknown key 'run.batch_sise'"},
      {kModels + kDatasets + "role = \"control\"\n",
       "study.toml:21:8: 'datasets.role' of a piqa dataset must be \"benchmark\", found \"control\""},
      {"[run]\nbatch_size = \"8\"\n" + kModels + kDatasets, "study.toml:2:14: 'run.batch_size' must be an integer, found a string"},
      {"[run]\nbatch_size = 0\n" + kModels + kDatasets, "study.toml:2:14: 'run.batch_size' must be at least 1, found 0"},
      {"[run]\nunit_timeout_s = -1\n" + kModels + kDatasets, "study.toml:2:18: 'run.unit_timeout_s' must be positive"},
      {"[run]\nunit_timeout_s = inf\n" + kModels + kDatasets, "study.toml:2:18: 'run.unit_timeout_s' must be positive and finite"},
      // found by fuzz_study: 2^32 used to wrap to a batch size of 0
      {"[run]\nbatch_size = 4294967296\n" + kModels + kDatasets, "study.toml:2:14: 'run.batch_size' must be at most 2147483647, found 4294967296"},
      {"[run]\nattempts = 4294967297\n" + kModels + kDatasets, "study.toml:2:12: 'run.attempts' must be at most 2147483647"},
      {"[interventions]\nlast = [4294967297]\n" + kModels + kDatasets, "study.toml:2:9: 'interventions.last': 4294967297 is out of range"},
      {"[run]\nbatch_size = \n", "study.toml:2:14: "},
      {"colour = 1\n" + kModels + kDatasets, "study.toml:1:1: unknown key 'colour'"},
      {"[[models]]\nname = \"x\"\npath = \"absent\"\n" + kDatasets, "study.toml:3:8: 'models.path': "},
      {"[[models]]\nname = \"neox\"\npath = \"neox\"\ndtype = \"fp8\"\n" + kDatasets,
       "study.toml:4:9: 'models.dtype' must be float32, float16 or bfloat16, found \"fp8\""},
      {"[[models]]\npath = \"neox\"\n" + kDatasets, "study.toml:1:1: 'models.name' is required"},
      {kModels + "[[models]]\nname = \"neo\"\npath = \"neo\"\n" + kDatasets, "study.toml:10:8: 'neo' is declared twice"},
      {kModels + "[[datasets]]\nname = \"d\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\nmodels = [\"gpt2\"]\n",
       "study.toml:13:10: 'datasets.models': no model is named 'gpt2'"},
      {kModels + "[[datasets]]\nname = \"d\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\nmodels = [1]\n",
       "study.toml:13:11: 'datasets.models' must be an array of strings, found an element of type an integer"},
      {"[interventions]\nblocks = [\"2-9\"]\n" + kModels + kDatasets, "study.toml:1:1: model 'neox' (4 layers): "},
      {"[interventions]\nkinds = [\"attention_sink\"]\n" + kModels + kDatasets,
       "study.toml:2:9: 'interventions.kinds': unknown kind 'attention_sink'"},
      {"[interventions]\nbaseline = false\n" + kModels + kDatasets, "no intervention is selected"},
      {"[store]\njournal_mode = \"memory\"\n" + kModels + kDatasets,
       "study.toml:2:16: 'store.journal_mode' must be \"delete\" or \"wal\", found \"memory\""},
      {"run = 3\n" + kModels + kDatasets, "study.toml:1:7: 'run' must be a table ([run])"},
      {kModels, "study.toml: the study declares no [[datasets]]"},
  };
  for (const ErrorCase& c : cases) {
    BOOST_TEST_CONTEXT(c.text) {
      try {
        parse(c.text);
        BOOST_ERROR("no error; expected: " + c.message);
      } catch (const Error& e) {
        BOOST_TEST(std::string(e.what()).find(c.message) != std::string::npos, "got: " << e.what() << "\nexpected: " << c.message);
      }
    }
  }
}

BOOST_FIXTURE_TEST_CASE(tokenizers_are_compared_by_content, Fixture) {
  folder.model("other", 4, {"c d"});
  folder.write("tok_same.json", memsweep_test::tiny_tokenizer({"a b"}).dump(2));  // same content, other layout
  const std::string models = kModels + "[[models]]\nname = \"other\"\npath = \"other\"\n";
  // The same tokenizer, written differently: accepted.
  memsweep::check_tokenizers(parse(kModels + "[[datasets]]\nname = \"d\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\ntokenizer = \"tok_same.json\"\n"));
  // A model with another tokenizer: refused at the dataset's tokenizer key.
  try {
    memsweep::check_tokenizers(parse(models + "[[datasets]]\nname = \"d\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\ntokenizer = \"tok_same.json\"\n"));
    BOOST_ERROR("a tokenizer mismatch was accepted");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()).find("study.toml:16:13: tokenizer mismatch: dataset 'd'") == 0, e.what());
    BOOST_TEST(std::string(e.what()).find("model 'other'") != std::string::npos, e.what());
  }
  // Declared as a hash.
  const std::string hash = memsweep::sha256_hex("x");
  BOOST_CHECK_THROW(memsweep::check_tokenizers(parse(kModels + "[[datasets]]\nname = \"d\"\nkind = \"piqa\"\npath = \"piqa.jsonl\"\ntokenizer = \"sha256:" + hash + "\"\n")), Error);
}

BOOST_AUTO_TEST_CASE(sha256_of_known_text) {
  BOOST_TEST(memsweep::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
