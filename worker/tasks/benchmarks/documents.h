#pragma once
// Benchmark documents as the harness's task YAMLs turn them into requests (zero-shot): per kind, how one JSONL
// line in the Hugging Face schema becomes (context, continuation) strings, the choices and the gold index.
// Libtorch-free; errors name the file and line.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace memsweep {

enum class RequestType {
  multiple_choice,  // one loglikelihood request per choice; acc (and acc_norm) over the choices
  loglikelihood,    // one request; its loglikelihood and whether the continuation is the greedy one
  rolling,          // the whole text scored in windows of the model's length; perplexities
};

struct BenchmarkDocument {
  int64_t line = 0;                        // 1-based line of the JSONL file
  std::vector<std::string> contexts;       // one per request
  std::vector<std::string> continuations;  // one per request (target delimiter included)
  std::vector<std::string> choices;        // multiple choice: as doc_to_choice returns them (acc_norm's lengths)
  int64_t gold = -1;                       // multiple choice: the index of the right choice
  int64_t words = 0, bytes = 0;            // rolling: the harness's word and byte counts of the text
};

// The generic multiple-choice task's settings (a study file's dataset options).
struct MultipleChoiceTemplate {
  std::string context;                    // "{{field}}" template, e.g. "Question: {{question}}\nAnswer:"
  std::string choices_field;              // a field holding the list of choices ("choices.text"), or
  std::vector<std::string> choice_templates;  // one template per choice
  std::string label_field;                // integer index, digit string, a key of label_keys_field, or a choice
  std::string label_keys_field;           // optional, e.g. "choices.label" for ARC's answerKey
  std::string delimiter = " ";            // between context and choice
  std::string text_field = "text";        // rolling kind: the field holding the text
};

struct BenchmarkKind {
  const char* kind;
  RequestType type;
  bool acc_norm;            // the harness's YAML reports acc_norm
  const char* default_tag;  // "language" or "reasoning"
  BenchmarkDocument (*build)(const nlohmann::json& document, const std::string& where, const MultipleChoiceTemplate& settings);
};

// The built-in kinds plus "multiple_choice" (generic) and "rolling_loglikelihood"; nullptr for another name.
const BenchmarkKind* find_benchmark_kind(const std::string& kind);
const std::vector<const char*>& benchmark_kind_names();

// Reads every non-blank line of `path` (up to `limit` documents when limit >= 0). Errors: "PATH, line N: ...".
std::vector<BenchmarkDocument> read_benchmark_documents(const std::string& path, const BenchmarkKind& kind,
                                                        const MultipleChoiceTemplate& settings, int64_t limit);

}  // namespace memsweep
