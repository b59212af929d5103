// hyrax tokenize / hyrax detokenize: text <-> token ids with a model's tokenizer, one text or a JSON-lines batch.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/command.h"
#include "core/check.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::cli {
namespace {

using nlohmann::json;

struct TokenizerSource {
  std::string tokenizer_file, model_dir, tiktoken_pattern = "cl100k", special_tokens_json, regex_engine = "auto";

  void add_options(CLI::App& app) {
    auto* t = app.add_option("--tokenizer", tokenizer_file, "tokenizer.json, or a .tiktoken rank file");
    auto* m = app.add_option("--model", model_dir, "model folder (tokenizer.json + tokenizer_config.json)");
    t->excludes(m);
    app.add_option("--tiktoken-pattern", tiktoken_pattern,
                   "pre-tokenizer regex of a .tiktoken file: cl100k, o200k, gpt2 or the regex itself");
    app.add_option("--special-tokens", special_tokens_json,
                   "special tokens of a .tiktoken file, as a JSON object {\"<|endoftext|>\": 100257, ...}");
    app.add_option("--regex-engine", regex_engine, "auto (native matchers where known) or pcre2 (tokenizer.json)")
        ->check(CLI::IsMember({"auto", "pcre2"}));
  }

  Tokenizer load() const {
    HYRAX_REQUIRE(!tokenizer_file.empty() || !model_dir.empty(), "give --tokenizer FILE or --model DIR");
    HYRAX_REQUIRE(regex_engine == "auto" || model_dir.empty(), "--regex-engine pcre2 applies to --tokenizer FILE");
    if (!model_dir.empty()) return Tokenizer::from_model_dir(model_dir);
    if (tokenizer_file.size() >= 9 && tokenizer_file.substr(tokenizer_file.size() - 9) == ".tiktoken") {
      std::string pattern = tiktoken_pattern == "cl100k" ? tok::kCl100kPattern
                            : tiktoken_pattern == "o200k" ? tok::kO200kPattern
                            : tiktoken_pattern == "gpt2"  ? tok::kGpt2Pattern
                                                          : tiktoken_pattern;
      std::map<std::string, int32_t> specials;
      if (!special_tokens_json.empty()) {
        json j;
        try {
          j = json::parse(special_tokens_json);
        } catch (const json::parse_error& e) {
          fail("--special-tokens: invalid JSON: ", e.what());
        }
        HYRAX_REQUIRE(j.is_object(), "--special-tokens must be a JSON object");
        for (auto it = j.begin(); it != j.end(); ++it) specials[it.key()] = it.value().get<int32_t>();
      }
      return Tokenizer::from_tiktoken(tokenizer_file, pattern, specials);
    }
    if (regex_engine == "pcre2") {
      std::ifstream f(tokenizer_file, std::ios::binary);
      HYRAX_REQUIRE(f, "cannot open ", tokenizer_file);
      std::stringstream ss;
      ss << f.rdbuf();
      return Tokenizer::from_json_text_pcre2(ss.str());
    }
    return Tokenizer::from_file(tokenizer_file);
  }
};

std::string read_all(const std::string& path) {
  if (path.empty() || path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream f(path, std::ios::binary);
  HYRAX_REQUIRE(f, "cannot open ", path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string ids_line(const std::vector<int32_t>& ids, bool as_json) {
  std::string s = as_json ? "[" : "";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) s += as_json ? ", " : " ";
    s += std::to_string(ids[i]);
  }
  if (as_json) s += "]";
  return s;
}

// One text of a --jsonl batch: a JSON string, or {"text": "..."} / {"bytes": [104, 105]} for raw bytes.
std::string batch_text(const json& j, size_t line_no) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("text")) return j["text"].get<std::string>();
  if (j.is_object() && j.contains("bytes")) {
    std::string s;
    for (const json& b : j["bytes"]) {
      int v = b.get<int>();
      HYRAX_REQUIRE(v >= 0 && v < 256, "--jsonl line ", line_no, ": byte ", v, " out of range");
      s.push_back(char(v));
    }
    return s;
  }
  fail("--jsonl line ", line_no, ": expected a JSON string, {\"text\": ...} or {\"bytes\": [...]}");
}

template <typename F>
void for_each_jsonl(const std::string& path, F&& f) {
  std::string all = read_all(path);
  std::istringstream in(all);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      fail(path, ":", line_no, ": invalid JSON: ", e.what());
    }
    f(j, line_no);
  }
}

struct TokenizeArgs {
  TokenizerSource src;
  std::string text_file, text, jsonl;
  bool json_out = false, no_special = false, add_special = false;
  int bench = 0;
};

void run_tokenize(const TokenizeArgs& a) {
  Tokenizer tok = a.src.load();
  auto encode = [&](std::string_view text) {
    return a.add_special ? tok.encode_with_special_tokens(text) : tok.encode(text, !a.no_special);
  };
  if (!a.jsonl.empty()) {
    std::string out;
    for_each_jsonl(a.jsonl, [&](const json& j, size_t line_no) {
      out += ids_line(encode(batch_text(j, line_no)), true);
      out += '\n';
    });
    std::fwrite(out.data(), 1, out.size(), stdout);
    return;
  }
  std::string text = !a.text.empty() ? a.text : read_all(a.text_file);
  auto t_first = std::chrono::steady_clock::now();
  std::vector<int32_t> ids = encode(text);
  double first_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_first).count();
  if (a.bench > 0) {
    // Single-thread encode throughput. The first pass (reported apart) fills the piece cache, as the first
    // requests of a long-running process do; the timed passes run with it warm.
    std::fprintf(stderr, "first encode (cold piece cache): %.4f s, %.2f MB/s\n", first_s, text.size() / first_s / 1e6);
    auto t0 = std::chrono::steady_clock::now();
    size_t n = 0;
    for (int r = 0; r < a.bench; ++r) n += tok.encode(text, !a.no_special).size();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "encode: %zu bytes -> %zu tokens, %d runs, %.4f s/run, %.2f MB/s, %.2f Mtok/s\n",
                 text.size(), ids.size(), a.bench, s / a.bench, text.size() * a.bench / s / 1e6, n / s / 1e6);
    return;
  }
  std::string line = ids_line(ids, a.json_out);
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stdout);
}

// Ids as whitespace / comma separated integers, optionally inside a JSON array's brackets.
std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    char c = s[i];
    if (c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']') {
      ++i;
      continue;
    }
    size_t end = i;
    if (s[end] == '-') ++end;
    while (end < s.size() && s[end] >= '0' && s[end] <= '9') ++end;
    HYRAX_REQUIRE(end > i && (s[i] != '-' || end > i + 1), "bad token id at \"", s.substr(i, 20), "\"");
    long long v = std::stoll(s.substr(i, end - i));
    HYRAX_REQUIRE(v >= INT32_MIN && v <= INT32_MAX, "token id ", s.substr(i, end - i), " out of range");
    ids.push_back(int32_t(v));
    i = end;
  }
  return ids;
}

struct DetokenizeArgs {
  TokenizerSource src;
  std::string ids, ids_file, jsonl;
  bool skip_special = false, stream = false;
};

void run_detokenize(const DetokenizeArgs& a) {
  Tokenizer tok = a.src.load();
  auto stream_chunks = [&](const std::vector<int32_t>& ids) {
    StreamDecoder dec(tok, a.skip_special);
    json chunks = json::array();
    for (int32_t id : ids) chunks.push_back(dec.push(id));
    chunks.push_back(dec.flush());
    return chunks;
  };
  if (!a.jsonl.empty()) {
    std::string out;
    for_each_jsonl(a.jsonl, [&](const json& j, size_t line_no) {
      HYRAX_REQUIRE(j.is_array(), a.jsonl, ":", line_no, ": expected a JSON array of ids");
      std::vector<int32_t> ids = j.get<std::vector<int32_t>>();
      out += a.stream ? stream_chunks(ids).dump() : json(tok.decode(ids, a.skip_special)).dump();
      out += '\n';
    });
    std::fwrite(out.data(), 1, out.size(), stdout);
    return;
  }
  std::vector<int32_t> ids = parse_ids(!a.ids.empty() ? a.ids : read_all(a.ids_file));
  if (a.stream) {
    StreamDecoder dec(tok, a.skip_special);
    for (int32_t id : ids) {
      std::string piece = dec.push(id);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    std::string rest = dec.flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    return;
  }
  std::string text = tok.decode(ids, a.skip_special);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

RegisterCommand reg_tokenize{{"tokenize", "print the token ids of a text (no special tokens added)",
                              [](CLI::App& app) {
                                auto a = std::make_shared<TokenizeArgs>();
                                a->src.add_options(app);
                                app.add_option("--text-file", a->text_file, "UTF-8 text to tokenize (default: stdin)");
                                app.add_option("--text", a->text, "the text itself");
                                app.add_flag("--json", a->json_out, "print a JSON array");
                                app.add_option("--jsonl", a->jsonl,
                                               "batch: one JSON string (or {\"bytes\": [...]}) per line in, one "
                                               "JSON array of ids per line out");
                                app.add_flag("--no-special", a->no_special,
                                             "treat special-token strings in the text as plain text");
                                app.add_flag("--add-special-tokens", a->add_special,
                                             "apply the tokenizer's post-processor (e.g. a BOS)");
                                app.add_option("--bench", a->bench,
                                               "encode the text N more times and report throughput on stderr");
                                app.callback([a] { run_tokenize(*a); });
                              },
                              40}};

RegisterCommand reg_detokenize{{"detokenize", "print the text of token ids (the inverse of tokenize)",
                                [](CLI::App& app) {
                                  auto a = std::make_shared<DetokenizeArgs>();
                                  a->src.add_options(app);
                                  app.add_option("--ids", a->ids, "ids separated by spaces or commas");
                                  app.add_option("--ids-file", a->ids_file, "file of ids (default: stdin)");
                                  app.add_option("--jsonl", a->jsonl,
                                                 "batch: one JSON array of ids per line in, one JSON string per "
                                                 "line out");
                                  app.add_flag("--skip-special", a->skip_special, "leave out special tokens");
                                  app.add_flag("--stream", a->stream,
                                               "decode token by token as a stream (with --jsonl: print the "
                                               "chunks as a JSON array)");
                                  app.callback([a] { run_detokenize(*a); });
                                },
                                41}};

}  // namespace
}  // namespace hyrax::cli
