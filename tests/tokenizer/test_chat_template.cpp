// Chat templates against transformers: every fixture under fixtures/chat/ (recorded by
// tools/tokenizer/record_chat_fixtures.py with apply_chat_template) must render byte for byte, or raise where
// transformers raised; plus the error messages for unsupported constructs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "tokenizer/chat_template.h"

namespace {

using nlohmann::ordered_json;
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

fs::path fixtures() { return fs::path(HYRAX_SOURCE_DIR) / "tests" / "tokenizer" / "fixtures" / "chat"; }

class ChatFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ChatFixture, MatchesTransformers) {
  ordered_json fixture = ordered_json::parse(read(fixtures() / (GetParam() + ".json")));
  ordered_json conversations = ordered_json::parse(read(fixtures() / "conversations.json"));
  std::string source = read(fixtures() / fixture["template"].get<std::string>());
  hyrax::ChatTemplate tmpl(source, fixture["special_tokens"]);
  int n = 0;
  for (const auto& c : fixture["cases"]) {
    const ordered_json* conv = nullptr;
    for (const auto& cv : conversations)
      if (cv["name"] == c["conversation"]) conv = &cv;
    ASSERT_NE(conv, nullptr) << c["conversation"];
    std::string label = GetParam() + " / " + c["conversation"].get<std::string>() +
                        (c["add_generation_prompt"].get<bool>() ? " (generation prompt)" : "");
    bool gen = c["add_generation_prompt"].get<bool>();
    if (c.contains("error")) {
      EXPECT_THROW(tmpl.render((*conv)["messages"], gen, (*conv)["tools"], (*conv)["extra"]), hyrax::Error)
          << label << " should raise like transformers: " << c["error"];
    } else {
      std::string got;
      try {
        got = tmpl.render((*conv)["messages"], gen, (*conv)["tools"], (*conv)["extra"]);
      } catch (const hyrax::Error& e) {
        ADD_FAILURE() << label << ": " << e.what();
        continue;
      }
      EXPECT_EQ(got, c["expected"].get<std::string>()) << label;
    }
    ++n;
  }
  EXPECT_GT(n, 0);
}

INSTANTIATE_TEST_SUITE_P(Templates, ChatFixture,
                         ::testing::Values("olmo3_instruct", "olmo3_think", "qwen3_next", "nemotron_h",
                                           "nemotron_nano_v2", "features"));

std::string render(const std::string& src, ordered_json messages = ordered_json::array(), bool gen = false) {
  return hyrax::ChatTemplate(src).render(messages, gen);
}

std::string error_of(const std::string& src) {
  try {
    render(src);
  } catch (const hyrax::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, UnsupportedConstructsNameThemselvesAndTheirLine) {
  std::string e = error_of("a\nb\n{% include 'other.jinja' %}");
  EXPECT_NE(e.find("line 3"), std::string::npos) << e;
  EXPECT_NE(e.find("include"), std::string::npos) << e;
  e = error_of("{{ x }}\n{{ messages | wordwrap(3) }}");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("filter 'wordwrap'"), std::string::npos) << e;
  e = error_of("\n\n\n{% if messages is prime %}{% endif %}");
  EXPECT_NE(e.find("line 4"), std::string::npos) << e;
  EXPECT_NE(e.find("test 'prime'"), std::string::npos) << e;
  e = error_of("{% for x in y recursive %}{% endfor %}");
  EXPECT_NE(e.find("recursive"), std::string::npos) << e;
  e = error_of("{% extends 'base' %}");
  EXPECT_NE(e.find("extends"), std::string::npos) << e;
  e = error_of("{% set x = [] %}{{ x.append(1) }}");
  EXPECT_NE(e.find("list.append"), std::string::npos) << e;
}

TEST(ChatTemplate, SyntaxErrorsNameTheirLine) {
  EXPECT_NE(error_of("ok\n{% if true %}never closed").find("missing {% endif %}"), std::string::npos);
  EXPECT_NE(error_of("\n{{ 1 + }}").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("{{ 'unterminated }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("{% endfor %}").find("endfor"), std::string::npos);
}

TEST(ChatTemplate, RaiseExceptionCarriesTheMessage) {
  std::string e = error_of("{{ raise_exception('roles must alternate') }}");
  EXPECT_NE(e.find("roles must alternate"), std::string::npos) << e;
}

TEST(ChatTemplate, WhitespaceControl) {
  // trim_blocks drops the newline after a block tag; lstrip_blocks the indentation before it.
  EXPECT_EQ(render("  {% if true %}\n  yes\n  {% endif %}\nend"), "  yes\nend");
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(render("a\n  {%+ if true %}b{% endif +%}\nc"), "a\n  b\nc");
  EXPECT_EQ(render("x {{- ' y ' -}} z"), "x y z");
  EXPECT_EQ(render("a\n{# comment #}\nb"), "a\nb");
  EXPECT_EQ(render("line\r\nnext\r\n"), "line\nnext");  // newlines normalized, the last one dropped
}

TEST(ChatTemplate, ScopesFollowJinja) {
  EXPECT_EQ(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = i %}{{ x }}{% endfor %}{{ x }}"), "121");
  EXPECT_EQ(render("{% set ns = namespace(x=1) %}{% for i in [5] %}{% set ns.x = i %}{% endfor %}{{ ns.x }}"), "5");
  EXPECT_EQ(render("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m('A') }}{{ m('A', b='C') }}"), "ABAC");
}

TEST(ChatTemplate, UndefinedValues) {
  EXPECT_EQ(render("[{{ nothing }}][{{ nothing | length }}][{{ nothing is defined }}]"), "[][0][False]");
  EXPECT_NE(error_of("{{ nothing.attr }}").find("'nothing' is undefined"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' + nothing }}").find("undefined"), std::string::npos);
}

TEST(ChatTemplate, ToolsAndContextVariables) {
  hyrax::ChatTemplate t("{{ bos_token }}{{ tools is none }}{{ add_generation_prompt }}{{ flag }}",
                        ordered_json{{"bos_token", "<s>"}});
  EXPECT_EQ(t.render(ordered_json::array(), true, nullptr, ordered_json{{"flag", 7}}), "<s>TrueTrue7");
  EXPECT_EQ(t.render(ordered_json::array(), false, ordered_json::array(), ordered_json::object()), "<s>FalseFalse");
}

}  // namespace
