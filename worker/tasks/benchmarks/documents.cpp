// Each builder restates one harness task YAML (lm_eval/tasks/<task>/...yaml, zero-shot): doc_to_text is the
// context, target_delimiter (" ") + each doc_to_choice entry a continuation, doc_to_target the gold. The parity
// test runs the installed harness's own YAMLs on the same files, so a drift here fails there.
#include "worker/tasks/benchmarks/documents.h"

#include <fstream>

#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/tasks/benchmarks/python_text.h"

namespace memsweep {
namespace {

const nlohmann::json& field(const nlohmann::json& document, const std::string& name, const std::string& where) {
  const nlohmann::json* value = field_at(document, name);
  if (!value) throw Error(where + ": missing field '" + name + "'");
  return *value;
}

std::string string_field(const nlohmann::json& document, const std::string& name, const std::string& where) {
  const auto& value = field(document, name, where);
  if (!value.is_string()) throw Error(where + ": field '" + name + "' must be a string, found " + value.dump());
  return value.get<std::string>();
}

std::vector<std::string> string_list_field(const nlohmann::json& document, const std::string& name, const std::string& where) {
  const auto& value = field(document, name, where);
  if (!value.is_array() || value.empty()) throw Error(where + ": field '" + name + "' must be a non-empty list of strings, found " + value.dump());
  std::vector<std::string> items;
  for (const auto& item : value) {
    if (!item.is_string()) throw Error(where + ": field '" + name + "' must hold strings, found " + item.dump());
    items.push_back(item.get<std::string>());
  }
  return items;
}

// An index into `count` choices from an integer or a string of digits (the harness turns a digit string into an
// int); anything else, or out of range, is an invalid label.
int64_t index_label(const nlohmann::json& document, const std::string& name, size_t count, const std::string& where) {
  const auto& value = field(document, name, where);
  int64_t index = -1;
  if (value.is_number_integer()) index = value.get<int64_t>();
  else if (value.is_string() && !value.get<std::string>().empty() && value.get<std::string>().size() < 10 &&
           value.get<std::string>().find_first_not_of("0123456789") == std::string::npos)
    index = std::stoll(value.get<std::string>());
  if (index < 0 || index >= int64_t(count))
    throw Error(where + ": invalid label: field '" + name + "' must be a choice index from 0 to " + std::to_string(count - 1) +
                ", found " + value.dump());
  return index;
}

// The position of `key` in `keys` (ARC's and OpenBookQA's answerKey among choices.label).
int64_t key_label(const std::string& key, const std::vector<std::string>& keys, const std::string& name, const std::string& where) {
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i] == key) return int64_t(i);
  std::string known;
  for (const auto& k : keys) known += (known.empty() ? "" : ", ") + k;
  throw Error(where + ": invalid label: field '" + name + "' is '" + key + "', not one of the choice labels (" + known + ")");
}

BenchmarkDocument choices_document(const std::string& context, std::vector<std::string> choices, int64_t gold,
                                   const std::string& delimiter = " ") {
  BenchmarkDocument d;
  for (const auto& choice : choices) d.contexts.push_back(context), d.continuations.push_back(delimiter + choice);
  d.choices = std::move(choices);
  d.gold = gold;
  return d;
}

// piqa.yaml
BenchmarkDocument piqa(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  std::vector<std::string> choices = {string_field(doc, "sol1", where), string_field(doc, "sol2", where)};
  return choices_document("Question: " + string_field(doc, "goal", where) + "\nAnswer:", choices, index_label(doc, "label", 2, where));
}

// arc_easy.yaml (arc_challenge.yaml includes it)
BenchmarkDocument arc(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  auto texts = string_list_field(doc, "choices.text", where);
  auto labels = string_list_field(doc, "choices.label", where);
  if (labels.size() != texts.size())
    throw Error(where + ": choices.label has " + std::to_string(labels.size()) + " entries, choices.text " + std::to_string(texts.size()));
  const int64_t gold = key_label(string_field(doc, "answerKey", where), labels, "answerKey", where);
  return choices_document("Question: " + string_field(doc, "question", where) + "\nAnswer:", texts, gold);
}

// hellaswag.yaml with utils.process_docs
BenchmarkDocument hellaswag(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  const std::string context = string_field(doc, "ctx_a", where) + " " + python_capitalize(string_field(doc, "ctx_b", where));
  std::vector<std::string> choices;
  for (const auto& ending : string_list_field(doc, "endings", where)) choices.push_back(hellaswag_preprocess(ending));
  const int64_t gold = index_label(doc, "label", choices.size(), where);
  return choices_document(hellaswag_preprocess(string_field(doc, "activity_label", where) + ": " + context), choices, gold);
}

// winogrande default.yaml: the choices are contexts (the sentence up to "_" with each option), the continuation
// is the rest of the sentence; acc only.
BenchmarkDocument winogrande(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  const std::string sentence = string_field(doc, "sentence", where);
  const size_t blank = sentence.find('_');
  if (blank == std::string::npos) throw Error(where + ": field 'sentence' has no '_' to fill");
  const std::string answer = string_field(doc, "answer", where);
  if (answer != "1" && answer != "2") throw Error(where + ": invalid label: field 'answer' must be \"1\" or \"2\", found \"" + answer + "\"");
  BenchmarkDocument d;
  const std::string target = " " + python_strip(sentence.substr(blank + 1));
  for (const char* option : {"option1", "option2"}) {
    d.choices.push_back(sentence.substr(0, blank) + string_field(doc, option, where));
    d.contexts.push_back(d.choices.back());
    d.continuations.push_back(target);
  }
  d.gold = answer == "1" ? 0 : 1;
  return d;
}

// sciq.yaml: the right answer is the fourth choice.
BenchmarkDocument sciq(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  std::vector<std::string> choices = {string_field(doc, "distractor1", where), string_field(doc, "distractor2", where),
                                      string_field(doc, "distractor3", where), string_field(doc, "correct_answer", where)};
  const std::string context = python_lstrip(string_field(doc, "support", where)) + "\nQuestion: " + string_field(doc, "question", where) + "\nAnswer:";
  return choices_document(context, choices, 3);
}

// openbookqa.yaml
BenchmarkDocument openbookqa(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  auto texts = string_list_field(doc, "choices.text", where);
  auto labels = string_list_field(doc, "choices.label", where);
  if (labels.size() != texts.size())
    throw Error(where + ": choices.label has " + std::to_string(labels.size()) + " entries, choices.text " + std::to_string(texts.size()));
  const int64_t gold = key_label(python_lstrip(string_field(doc, "answerKey", where)), labels, "answerKey", where);
  return choices_document(string_field(doc, "question_stem", where), texts, gold);
}

// super_glue/boolq/default.yaml
BenchmarkDocument boolq(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  const std::string context = string_field(doc, "passage", where) + "\nQuestion: " + string_field(doc, "question", where) + "?\nAnswer:";
  return choices_document(context, {"no", "yes"}, index_label(doc, "label", 2, where));
}

// lambada_openai.yaml: the last word (after the last ' ', with that space) given the rest.
BenchmarkDocument lambada(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate&) {
  const std::string text = string_field(doc, "text", where);
  const size_t space = text.rfind(' ');
  BenchmarkDocument d;
  d.contexts.push_back(space == std::string::npos ? std::string() : text.substr(0, space));
  d.continuations.push_back(" " + (space == std::string::npos ? text : text.substr(space + 1)));
  return d;
}

// A study file's multiple-choice task.
BenchmarkDocument generic_choice(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate& t) {
  std::vector<std::string> choices;
  if (!t.choices_field.empty()) choices = string_list_field(doc, t.choices_field, where);
  for (const auto& choice : t.choice_templates) choices.push_back(render_template(choice, doc, where));
  int64_t gold = -1;
  const auto& label = field(doc, t.label_field, where);
  if (!t.label_keys_field.empty()) {
    if (!label.is_string()) throw Error(where + ": invalid label: field '" + t.label_field + "' must be a string key, found " + label.dump());
    gold = key_label(label.get<std::string>(), string_list_field(doc, t.label_keys_field, where), t.label_field, where);
  } else if (label.is_string() && label.get<std::string>().find_first_not_of("0123456789") != std::string::npos) {
    for (size_t i = 0; i < choices.size() && gold < 0; ++i)
      if (choices[i] == label.get<std::string>()) gold = int64_t(i);
    if (gold < 0) throw Error(where + ": invalid label: field '" + t.label_field + "' is " + label.dump() + ", not one of the choices");
  } else {
    gold = index_label(doc, t.label_field, choices.size(), where);
  }
  return choices_document(render_template(t.context, doc, where), choices, gold, t.delimiter);
}

// Rolling loglikelihood of a whole text (wikitext-style perplexity, without wikitext's detokenizer).
BenchmarkDocument rolling_text(const nlohmann::json& doc, const std::string& where, const MultipleChoiceTemplate& t) {
  BenchmarkDocument d;
  const std::string text = string_field(doc, t.text_field, where);
  if (text.empty()) throw Error(where + ": field '" + t.text_field + "' is empty: nothing to score");
  d.continuations.push_back(text);
  d.contexts.emplace_back();
  d.bytes = int64_t(text.size());
  // len(re.split(r"\s+", text)): one more than the number of whitespace runs.
  d.words = 1;
  bool in_space = false;
  for (size_t at = 0; at < text.size();) {
    const std::string rest = python_lstrip(std::string_view(text).substr(at));
    if (rest.size() != text.size() - at) {
      if (!in_space) ++d.words;
      in_space = true;
      at = text.size() - rest.size();
    } else {
      in_space = false;
      ++at;
      while (at < text.size() && (static_cast<unsigned char>(text[at]) & 0xC0) == 0x80) ++at;
    }
  }
  return d;
}

const BenchmarkKind kBenchmarkKinds[] = {
    {"piqa", RequestType::multiple_choice, true, "reasoning", piqa},
    {"arc_easy", RequestType::multiple_choice, true, "reasoning", arc},
    {"arc_challenge", RequestType::multiple_choice, true, "reasoning", arc},
    {"hellaswag", RequestType::multiple_choice, true, "language", hellaswag},
    {"winogrande", RequestType::multiple_choice, false, "language", winogrande},
    {"sciq", RequestType::multiple_choice, true, "reasoning", sciq},
    {"openbookqa", RequestType::multiple_choice, true, "reasoning", openbookqa},
    {"boolq", RequestType::multiple_choice, false, "reasoning", boolq},
    {"lambada_openai", RequestType::loglikelihood, false, "language", lambada},
    {"multiple_choice", RequestType::multiple_choice, true, "reasoning", generic_choice},
    {"rolling_loglikelihood", RequestType::rolling, false, "language", rolling_text},
};

}  // namespace

const BenchmarkKind* find_benchmark_kind(const std::string& kind) {
  for (const auto& k : kBenchmarkKinds)
    if (kind == k.kind) return &k;
  return nullptr;
}

const std::vector<const char*>& benchmark_kind_names() {
  static const std::vector<const char*> names = [] {
    std::vector<const char*> n;
    for (const auto& k : kBenchmarkKinds) n.push_back(k.kind);
    return n;
  }();
  return names;
}

std::vector<BenchmarkDocument> read_benchmark_documents(const std::string& path, const BenchmarkKind& kind,
                                                        const MultipleChoiceTemplate& settings, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path);
  std::vector<BenchmarkDocument> documents;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (limit >= 0 && int64_t(documents.size()) >= limit) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ", line " + std::to_string(number);
    const nlohmann::json json = parse_json(line, where);
    if (!json.is_object()) throw Error(where + ": expected a JSON object (one document per line), found " + std::string(json.type_name()));
    BenchmarkDocument document = kind.build(json, where, settings);
    document.line = number;
    documents.push_back(std::move(document));
  }
  if (in.bad()) throw Error("error while reading " + path);  // not !eof(): `limit` stops before the end
  return documents;
}

}  // namespace memsweep
