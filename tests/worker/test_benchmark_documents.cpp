// The Python str semantics the harness's prompts rely on, and document building errors (libtorch-free).
// Expected values are what CPython 3.11 gives (comments show the Python expression).
#define BOOST_TEST_MODULE benchmark_documents
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>

#include "worker/base/error.h"
#include "worker/tasks/benchmarks/documents.h"
#include "worker/tasks/benchmarks/python_text.h"

using namespace memsweep;

BOOST_AUTO_TEST_CASE(strip_uses_unicode_whitespace) {
  struct Case { std::string text, strip, lstrip, rstrip; };
  const Case cases[] = {
      {"  a b \n", "a b", "a b \n", "  a b"},
      {"\u00a0\u2003x\u3000", "x", "x\u3000", "\u00a0\u2003x"},  // no-break, em and ideographic spaces
      {"\x1c" "a\x1f", "a", "a\x1f", "\x1c" "a"},                  // file/unit separators are str.isspace()
      {"\u200bx", "\u200bx", "\u200bx", "\u200bx"},              // zero-width space is not
      {"", "", "", ""},
      {" \t ", "", "", ""},
  };
  for (const auto& c : cases) {
    BOOST_TEST(python_strip(c.text) == c.strip);
    BOOST_TEST(python_lstrip(c.text) == c.lstrip);
    BOOST_TEST(python_rstrip(c.text) == c.rstrip);
  }
}

BOOST_AUTO_TEST_CASE(lengths_capitalize_and_hellaswag) {
  BOOST_TEST(code_point_length("café — ü") == 8);  // len("café — ü")
  BOOST_TEST(python_capitalize("hELLO wORLD") == "Hello world");
  BOOST_TEST(python_capitalize("ÉLAN she") == "Élan she");
  BOOST_TEST(python_capitalize("") == "");
  // preprocess(" [header] How to x [title] Step one. [step] Do  it. [open")
  BOOST_TEST(hellaswag_preprocess(" [header] How to x [title] Step one. [step] Do  it. [open") == " How to x. Step one. Do it. [open");  // strip runs first
  BOOST_TEST(hellaswag_preprocess("a [b\n] c") == "a [b\n] c");  // '.' does not cross a newline
  BOOST_TEST(hellaswag_preprocess("a   b") == "a  b");          // one pass of "  " -> " "
}

BOOST_AUTO_TEST_CASE(templates_render_fields_only) {
  const nlohmann::json doc = {{"q", "Why?"}, {"n", 3}, {"c", {{"text", {"a"}}}}};
  BOOST_TEST(render_template("Q: {{q}} ({{ n }})\nA:", doc, "here") == "Q: Why? (3)\nA:");
  BOOST_CHECK_EXCEPTION(render_template("{{missing}}", doc, "f.jsonl, line 2"), Error, [](const Error& e) {
    return std::string(e.what()) == "f.jsonl, line 2: missing field 'missing' (used by the template)";
  });
  BOOST_CHECK_THROW(render_template("{{q.upper()}}", doc, "here"), Error);
  BOOST_CHECK_THROW(render_template("{{c.text}}", doc, "here"), Error);  // a list is not a string
}

namespace {
std::string read_error(const std::string& kind, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("memsweep-bad-" + kind + ".jsonl");
  std::ofstream(path) << text;
  try {
    read_benchmark_documents(path.string(), *find_benchmark_kind(kind), {}, -1);
  } catch (const Error& e) {
    std::string message = e.what();
    return message.substr(0, path.string().size()) == path.string() ? message.substr(path.string().size()) : message;
  }
  return "no error";
}
}  // namespace

BOOST_AUTO_TEST_CASE(bad_data_names_the_line) {
  struct Case { const char* kind; const char* text; const char* message_start; };
  const Case cases[] = {
      {"piqa", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n{oops\n", ", line 2: "},
      {"piqa", "\n\n{\"goal\": \"g\", \"sol1\": \"a\", \"label\": 0}\n", ", line 3: missing field 'sol2'"},
      {"piqa", "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": -1}\n", ", line 1: invalid label"},
      {"boolq", "{\"passage\": \"p\", \"question\": \"q\", \"label\": \"yes\"}\n", ", line 1: invalid label"},
      {"winogrande", "{\"sentence\": \"a _ b\", \"option1\": \"x\", \"option2\": \"y\", \"answer\": \"3\"}\n", ", line 1: invalid label"},
      {"openbookqa", "{\"question_stem\": \"q\", \"choices\": {\"text\": [\"a\"], \"label\": [\"A\", \"B\"]}, \"answerKey\": \"A\"}\n", ", line 1: choices.label has 2"},
      {"lambada_openai", "\"just a string\"\n", ", line 1: expected a JSON object"},
  };
  for (const auto& c : cases) {
    const std::string message = read_error(c.kind, c.text);
    BOOST_TEST_INFO(c.kind << ": " << message);
    BOOST_TEST(message.rfind(c.message_start, 0) == 0);
  }
}

BOOST_AUTO_TEST_CASE(documents_are_the_harness_requests) {
  const auto path = std::filesystem::temp_directory_path() / "memsweep-good-winogrande.jsonl";
  std::ofstream(path) << "{\"sentence\": \"Anna beat Zoë so _ won. \", \"option1\": \"Anna\", \"option2\": \"Zoë\", \"answer\": \"2\"}\n";
  auto docs = read_benchmark_documents(path.string(), *find_benchmark_kind("winogrande"), {}, -1);
  BOOST_TEST_REQUIRE(docs.size() == 1u);
  BOOST_TEST(docs[0].contexts == (std::vector<std::string>{"Anna beat Zoë so Anna", "Anna beat Zoë so Zoë"}),
             boost::test_tools::per_element());
  BOOST_TEST(docs[0].continuations == (std::vector<std::string>{" won.", " won."}), boost::test_tools::per_element());
  BOOST_TEST(docs[0].gold == 1);
}
