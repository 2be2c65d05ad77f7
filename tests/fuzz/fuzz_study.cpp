// libFuzzer target: the study TOML loader (parse_study) on arbitrary text, against a fixed folder holding a
// 4-layer model "m" (config.json, tokenizer.json) and a data file "d.jsonl", so path checks pass or fail as
// the text decides. Every input is a Study whose expansion into units is well formed, or a memsweep::Error.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "orchestrator/study/study.h"
#include "worker/base/error.h"

namespace fs = std::filesystem;

namespace {
const std::string& study_folder() {
  static const std::string folder = [] {
    const fs::path root = fs::temp_directory_path() / ("memsweep_fuzz_study_" + std::to_string(::getpid()));
    fs::create_directories(root / "m");
    std::ofstream(root / "m" / "config.json") << R"({"model_type": "gpt_neox", "num_hidden_layers": 4})";
    std::ofstream(root / "m" / "tokenizer.json") << "{}";
    std::ofstream(root / "d.jsonl") << "{\"tokens\": [1, 2, 3]}\n";
    std::atexit([] {
      std::error_code ignored;
      fs::remove_all(fs::temp_directory_path() / ("memsweep_fuzz_study_" + std::to_string(::getpid())), ignored);
    });
    return root.string();
  }();
  return folder;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const memsweep::Study study = memsweep::parse_study(text, "fuzz.toml", study_folder());
    // What the coordinator relies on: sane settings, and units with distinct keys inside their datasets.
    if (study.run.batch_size < 1 || study.run.unit_size < 1 || study.run.attempts < 1 ||
        study.run.interventions_per_unit < 0 || !(study.run.unit_timeout_s > 0) || !(study.run.drain_grace_s > 0))
      __builtin_trap();
    const auto units = memsweep::expand_units(study, [](const memsweep::DatasetEntry&, const memsweep::ModelEntry&) { return int64_t(50); });
    std::set<std::string> keys;
    for (const memsweep::Unit& unit : units) {
      if (unit.count < 1 || unit.count > study.run.unit_size || unit.first < 0 || unit.first + unit.count > 50 ||
          unit.interventions.empty() || !keys.insert(unit.key()).second)
        __builtin_trap();
    }
  } catch (const memsweep::Error&) {
  }
  return 0;
}
