// memsweep tokenize: text to token ids and back with a model's tokenizer, one JSON value per line, so
// scripts and the parity tests can drive the C++ tokenizer on many texts in one call.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/cli/commands.h"
#include "orchestrator/cli/options.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace memsweep {
namespace {

namespace po = boost::program_options;

const CommandSpec kSpec{
    "tokenize", "--tokenizer PATH [--text-file FILE] [--whole-file | --json-strings] [--add-special-tokens] [--decode] [--hash]",
    "Encodes text to token ids, or with --decode ids to text, with a byte-level BPE tokenizer (GPT-2,\n"
    "GPT-NeoX, Llama 3, Qwen2, OLMo 2) or a SentencePiece-style one (Llama 2, Mistral). PATH is a tokenizer.json, or a\n"
    "model directory holding tokenizer.json or vocab.json + merges.txt. Input is FILE, or stdin without --text-file.\n\n"
    "Encoding: each input line (split on '\\n', which is not part of the text; a '\\r' before it is kept;\n"
    "a last line without '\\n' counts, an empty one after a final '\\n' does not, as Python's\n"
    "text.split('\\n') without its last empty element) prints one JSON array of ids. Ill-formed UTF-8 is\n"
    "replaced by U+FFFD first, as Python's bytes.decode('utf-8', 'replace').\n"
    "With --whole-file the whole input (newlines included, possibly empty) is one text: one line out.\n"
    "With --json-strings each input line is a JSON string, the text (so texts may hold newlines).\n"
    "--add-special-tokens: with the post-processor's special tokens around each text (Llama 3's\n"
    "<|begin_of_text|>), as `tokenizers`' add_special_tokens=True; without, none (add_special_tokens=False).\n\n"
    "Decoding (--decode): each input line is a JSON array of ids and prints one JSON string (special\n"
    "tokens kept, bytes that are not UTF-8 shown as U+FFFD). With --whole-file the input is one JSON\n"
    "array and the decoded bytes are printed raw, without a newline.\n\n"
    "--hash prints the tokenizer's content hash (SHA-256 of its canonical form) and exits."};

std::string read_input(const po::variables_map& values) {
  if (values.count("text-file")) return read_file(values["text-file"].as<std::string>());
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) throw Error("tokenize: error while reading stdin");
  return text;
}

std::vector<std::string_view> split_lines(std::string_view input) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string_view::npos) end = input.size();
    lines.push_back(input.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string ids_to_json(const std::vector<int32_t>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(ids[i]);
  }
  return out + "]";
}

std::vector<int32_t> json_to_ids(std::string_view text, const std::string& origin) {
  nlohmann::json value = parse_json(std::string(text), origin);
  if (!value.is_array()) throw Error(origin + ": expected a JSON array of token ids, found " + value.type_name());
  std::vector<int32_t> ids;
  for (const auto& id : value) {
    if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX)
      throw Error(origin + ": " + id.dump() + " is not a token id");
    ids.push_back(id.get<int32_t>());
  }
  return ids;
}

}  // namespace

int tokenize_command(const Arguments& args) {
  po::options_description options("options");
  options.add_options()
      ("tokenizer", po::value<std::string>()->required(), "tokenizer.json, or a model directory")
      ("text-file", po::value<std::string>(), "input file (default: stdin)")
      ("whole-file", "the whole input is one text (or one JSON array with --decode)")
      ("json-strings", "each input line is a JSON string holding the text")
      ("decode", "decode JSON arrays of ids instead of encoding text")
      ("add-special-tokens", "put the post-processor's special tokens (e.g. a BOS) around each text")
      ("hash", "print the tokenizer's content hash and exit");
  po::variables_map values;
  if (!parse_command_line(kSpec, options, args, values)) return 0;

  Tokenizer tokenizer = Tokenizer::load(values["tokenizer"].as<std::string>());
  if (values.count("hash")) {
    std::cout << tokenizer.content_hash() << "\n";
    return 0;
  }
  std::string input = read_input(values);
  std::string origin = values.count("text-file") ? values["text-file"].as<std::string>() : "stdin";
  bool whole_file = values.count("whole-file") > 0;
  const bool json_strings = values.count("json-strings") > 0;
  if (json_strings && (whole_file || values.count("decode"))) throw Error("tokenize: --json-strings goes with neither --whole-file nor --decode");
  const bool special = values.count("add-special-tokens") > 0;
  auto encode = [&](std::string_view text) { return special ? tokenizer.encode_with_special_tokens(text) : tokenizer.encode(text); };
  std::string out;
  if (values.count("decode")) {
    if (whole_file) {
      out = tokenizer.decode(json_to_ids(input, origin));
    } else {
      auto lines = split_lines(input);
      for (size_t i = 0; i < lines.size(); ++i) {
        std::string text = tokenizer.decode(json_to_ids(lines[i], origin + ", line " + std::to_string(i + 1)));
        out += nlohmann::json(replace_invalid_utf8(text)).dump() + "\n";
      }
    }
  } else if (whole_file) {
    out = ids_to_json(encode(input)) + "\n";
  } else if (json_strings) {
    auto lines = split_lines(input);
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string where = origin + ", line " + std::to_string(i + 1);
      nlohmann::json text = parse_json(std::string(lines[i]), where);
      if (!text.is_string()) throw Error(where + ": expected a JSON string, found " + text.type_name());
      out += ids_to_json(encode(text.get<std::string>())) + "\n";
    }
  } else {
    for (std::string_view line : split_lines(input)) out += ids_to_json(encode(line)) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  if (std::fflush(stdout) != 0) throw Error("tokenize: cannot write to stdout");
  return 0;
}

}  // namespace memsweep
