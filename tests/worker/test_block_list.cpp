#define BOOST_TEST_MODULE block_list
#include <boost/test/unit_test.hpp>

#include "worker/base/block_list.h"
#include "worker/base/error.h"
#include "worker/base/json_file.h"

using memsweep::parse_block_list;

BOOST_AUTO_TEST_CASE(lists_and_ranges) {
  struct Case {
    std::string text;
    std::vector<int> blocks;
  };
  const Case cases[] = {
      {"", {}}, {"  ", {}}, {"3", {3}}, {"3,7-9", {3, 7, 8, 9}}, {"9, 3 ,3", {3, 9}}, {"0-2,1-3", {0, 1, 2, 3}}, {"5-5", {5}},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("'" << c.text << "'") { BOOST_TEST(parse_block_list(c.text, 12) == c.blocks); }
  }
}

BOOST_AUTO_TEST_CASE(errors_name_the_item) {
  struct Case {
    std::string text;
    std::string message;
  };
  const Case cases[] = {
      {"7-x", "'7-x'"}, {"9-3", "'9-3' ends before it starts"}, {"-1", "'-1'"}, {"1,,2", "''"},
      {"12", "block 12 does not exist: the model has 12 blocks"}, {"a", "'a'"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT("'" << c.text << "'") {
      try {
        parse_block_list(c.text, 12);
        BOOST_ERROR("no error");
      } catch (const memsweep::Error& e) {
        BOOST_TEST(std::string(e.what()).find(c.message) != std::string::npos, e.what());
      }
    }
  }
}

// A number too large for a double is nlohmann's out_of_range, not a parse_error: it must still be an Error that
// names the file (found by fuzz_token_rows; the input is kept in its corpus).
BOOST_AUTO_TEST_CASE(json_numbers_out_of_range_are_errors) {
  try {
    memsweep::parse_json("{\"tokens\": [1, 3e999999]}", "rows.jsonl");
    BOOST_ERROR("accepted");
  } catch (const memsweep::Error& e) {
    BOOST_TEST(std::string(e.what()).find("rows.jsonl: not valid JSON") == 0, e.what());
  }
}
