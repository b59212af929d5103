// Tokenizer unit tests that need no reference package: UTF-8 repair, the BPE merge loop, added-token rules,
// streaming decoding, stop strings, loading errors, model folders. Exactness against HF tokenizers and tiktoken
// is tests/py/test_tokenizer_exact.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/check.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/split_regex.h"
#include "tokenizer/stream_decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using hyrax::Tokenizer;

// A small byte-level tokenizer.json: the 256 byte tokens, a few merges, cl100k's Split + ByteLevel.
json tiny_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    hyrax::unicode::append_utf8(s, hyrax::tok::byte_level::byte_to_char(uint8_t(b)));
    vocab[s] = b;
  }
  // merges: "h e", "he l", "hel l", "hell o", "Ġ w", "Ġw o", "Ġwo r", "Ġwor l", "Ġworl d", "ä ¸" (a CJK lead)
  std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"he", "l"}, {"hel", "l"}, {"hell", "o"}, {"Ġ", "w"}, {"Ġw", "o"}, {"Ġwo", "r"}, {"Ġwor", "l"},
      {"Ġworl", "d"}, {"l", "l"}};
  json mj = json::array();
  int id = 256;
  for (auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = id++;
    mj.push_back(a + " " + b);
  }
  json added = json::array();
  added.push_back({{"id", id}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false},
                   {"lstrip", false}, {"rstrip", false}, {"single_word", false}});
  added.push_back({{"id", id + 1}, {"content", "<mask>"}, {"special", true}, {"normalized", false},
                   {"lstrip", true}, {"rstrip", false}, {"single_word", false}});
  added.push_back({{"id", id + 2}, {"content", "word"}, {"special", false}, {"normalized", true},
                   {"lstrip", false}, {"rstrip", true}, {"single_word", true}});
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "Sequence"},
            {"pretokenizers",
             json::array({{{"type", "Split"},
                           {"pattern", {{"Regex", hyrax::tok::kCl100kPattern}}},
                           {"behavior", "Removed"},
                           {"invert", true}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", mj}}}};
}

Tokenizer tiny() { return Tokenizer::from_json_text(tiny_tokenizer_json().dump()); }

TEST(Unicode, RepairsLikePythonAndRust) {
  using hyrax::unicode::to_valid_utf8;
  const std::string R = "\xEF\xBF\xBD";
  EXPECT_EQ(to_valid_utf8("ok"), "ok");
  EXPECT_EQ(to_valid_utf8("\xFF"), R);
  EXPECT_EQ(to_valid_utf8("\xC0\xAF"), R + R);              // overlong: two maximal subparts
  EXPECT_EQ(to_valid_utf8("\xE2\x82"), R);                  // truncated: one
  EXPECT_EQ(to_valid_utf8("\xED\xA0\x80"), R + R + R);      // surrogate
  EXPECT_EQ(to_valid_utf8("\xF0\x9F\x98" "a"), R + "a");     // truncated 4-byte then ASCII
  EXPECT_EQ(to_valid_utf8("\xF4\x90\x80\x80"), R + R + R + R);
  EXPECT_EQ(to_valid_utf8("\xE2\x28\xA1"), R + "(" + R);
}

TEST(Unicode, IncompleteTail) {
  using hyrax::unicode::incomplete_utf8_tail;
  EXPECT_EQ(incomplete_utf8_tail("abc"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE4"), 1u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE4\xB8"), 2u);
  EXPECT_EQ(incomplete_utf8_tail("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(incomplete_utf8_tail("\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incomplete_utf8_tail("\xE4\x41"), 0u);  // already invalid: nothing to wait for
  EXPECT_EQ(incomplete_utf8_tail("\xED\xA0"), 0u);  // a surrogate can never complete
}

TEST(Unicode, ClassesProbedFromHf) {
  using namespace hyrax::unicode;
  EXPECT_TRUE(flags('a') & kLl);
  EXPECT_TRUE(flags(0x01C5) & kLt);       // ǅ
  EXPECT_TRUE(flags(0x0301) & kMark);
  EXPECT_TRUE(flags(0x0663) & kNumber);   // Arabic-Indic three
  EXPECT_TRUE(flags(0x0085) & kSpace);    // NEL is \s for Oniguruma
  EXPECT_FALSE(flags(0x200B) & kSpace);   // ZWSP is not
  EXPECT_TRUE(flags('_') & kWord);
  EXPECT_TRUE(matches_letter_ci(0x017F, 's'));  // ſ
}

TEST(Normalizer, Nfc) {
  using hyrax::tok::nfc;
  EXPECT_EQ(nfc("plain ascii"), "plain ascii");
  EXPECT_EQ(nfc("e\u0301"), "\u00e9");                      // compose
  EXPECT_EQ(nfc("\u212b"), "\u00c5");                       // singleton: ANGSTROM SIGN -> A with ring
  EXPECT_EQ(nfc("q\u0307\u0323"), "q\u0323\u0307");          // reorder by combining class, nothing composes
  EXPECT_EQ(nfc("\u1e0a\u0323"), "\u1e0c\u0307");            // D-dot-above + dot-below -> D-dot-below + dot-above
  EXPECT_EQ(nfc("\u1100\u1161\u11a8"), "\uac01");            // Hangul L V T
  EXPECT_EQ(nfc("\u0958"), "\u0915\u093c");                  // composition exclusion stays decomposed
  EXPECT_TRUE(hyrax::tok::nfc_quick_check("hello world"));
  EXPECT_FALSE(hyrax::tok::nfc_quick_check("e\u0301"));
}

TEST(Bpe, MergesAndSpecialTokens) {
  Tokenizer t = tiny();
  std::vector<int32_t> ids = t.encode("hello world");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(t.id_to_token(ids[0]).value(), "hello");
  EXPECT_EQ(t.id_to_token(ids[1]).value(), "Ġworld");
  EXPECT_EQ(t.decode(ids), "hello world");
  int32_t eot = t.token_to_id("<|endoftext|>");
  ASSERT_GE(eot, 0);
  EXPECT_EQ(t.encode("hello<|endoftext|>")[1], eot);
  // Disallowed: the special string is plain text.
  std::vector<int32_t> plain = t.encode("<|endoftext|>", false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(t.decode(plain), "<|endoftext|>");
  EXPECT_TRUE(t.is_special(eot));
  EXPECT_EQ(t.decode(std::vector<int32_t>{ids[0], eot}, true), "hello");
  EXPECT_EQ(t.vocab_size(), size_t(eot + 3));
}

TEST(Bpe, AddedTokenFlags) {
  Tokenizer t = tiny();
  int32_t mask = t.token_to_id("<mask>"), word = t.token_to_id("word");
  // lstrip: the spaces before <mask> belong to it.
  std::vector<int32_t> a = t.encode("x  <mask>");
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1], mask);
  // single_word: not inside a word; rstrip: swallows the space after.
  std::vector<int32_t> b = t.encode("a word b");
  EXPECT_NE(std::find(b.begin(), b.end(), word), b.end());
  std::vector<int32_t> c = t.encode("swordfish");
  EXPECT_EQ(std::find(c.begin(), c.end(), word), c.end());
}

TEST(Bpe, HeapAndScanMergeAgree) {
  // Random merges over a 6-symbol alphabet; both merge loops must pick the same (lowest rank, leftmost) pairs.
  std::mt19937 rng(3);
  std::vector<std::string> tokens = {"a", "b", "c", "d", "e", "f"};
  std::vector<hyrax::tok::BpeModel::Merge> merges;
  for (int k = 0; k < 60; ++k) {
    int32_t l = int32_t(rng() % tokens.size()), r = int32_t(rng() % tokens.size());
    tokens.push_back(tokens[l] + tokens[r]);
    merges.push_back({l, r, int32_t(tokens.size() - 1)});
  }
  int32_t byte_ids[256];
  std::fill(byte_ids, byte_ids + 256, -1);
  for (int k = 0; k < 6; ++k) byte_ids['a' + k] = k;
  auto model = hyrax::tok::BpeModel::from_merges(tokens, merges, byte_ids, false, -1, false);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int32_t> ids;
    int n = 2 + int(rng() % 150);
    for (int k = 0; k < n; ++k) ids.push_back(int32_t(rng() % 6));
    std::vector<int32_t> scan = ids, heap = ids;
    model.merge(scan, false);
    model.merge(heap, true);
    ASSERT_EQ(scan, heap) << "trial " << trial;
  }
}

TEST(Bpe, LongPiecesRoundTrip) {
  Tokenizer t = tiny();
  std::mt19937 rng(5);
  const std::string alphabet = "helowrd ";
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    int n = int(rng() % 200);
    for (int k = 0; k < n; ++k) s += alphabet[rng() % alphabet.size()];
    // Long pieces take the heap path, short ones the scan; both must equal the decode round trip.
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
  std::string spaces(5000, ' ');
  EXPECT_EQ(t.decode(t.encode(spaces)), spaces);
}

TEST(Bpe, InvalidUtf8IsRepairedFirst) {
  Tokenizer t = tiny();
  EXPECT_EQ(t.encode("a\xFF" "b"), t.encode("a\xEF\xBF\xBD" "b"));
}

TEST(Bpe, ConcurrentEncodesAgree) {
  // One tokenizer, several threads (each with its own piece cache): the same ids as one thread.
  Tokenizer t = tiny();
  std::vector<std::string> texts;
  std::mt19937 rng(9);
  for (int k = 0; k < 200; ++k) {
    std::string s;
    for (int c = 0; c < 60; ++c) s += "helo wrd,\n"[rng() % 10];
    texts.push_back(s);
  }
  std::vector<std::vector<int32_t>> expected;
  for (const auto& s : texts) expected.push_back(t.encode(s));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (int rep = 0; rep < 5; ++rep)
        for (size_t k = 0; k < texts.size(); ++k) mismatches[w] += t.encode(texts[k]) != expected[k];
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(StreamDecoder, NeverBreaksACharacter) {
  Tokenizer t = tiny();
  std::string text = "héllo wörld 中文 👍🏽 done";
  std::vector<int32_t> ids;
  for (unsigned char c : text) ids.push_back(t.token_to_id(hyrax::tok::byte_level::encode_bytes(std::string(1, char(c)))));
  hyrax::StreamDecoder dec(t);
  std::string joined;
  for (int32_t id : ids) {
    std::string piece = dec.push(id);
    EXPECT_TRUE(hyrax::unicode::is_valid_utf8(piece));
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos);
    joined += piece;
  }
  joined += dec.flush();
  EXPECT_EQ(joined, text);
}

TEST(StreamDecoder, MatchesDecodeOnRandomIds) {
  Tokenizer t = tiny();
  std::mt19937 rng(11);
  for (int trial = 0; trial < 500; ++trial) {
    std::vector<int32_t> ids;
    int n = int(rng() % 20);
    for (int k = 0; k < n; ++k) ids.push_back(int32_t(rng() % t.vocab_size()));
    for (bool skip : {false, true}) {
      hyrax::StreamDecoder dec(t, skip);
      std::string joined;
      for (int32_t id : ids) {
        std::string piece = dec.push(id);
        EXPECT_TRUE(hyrax::unicode::is_valid_utf8(piece));
        joined += piece;
      }
      joined += dec.flush();
      EXPECT_EQ(joined, t.decode(ids, skip));
    }
  }
}

TEST(StopStrings, EarliestAndHoldBack) {
  std::vector<std::string> stops = {"<|im_end|>", "\n\nUser:", "END"};
  hyrax::StopMatch m = hyrax::find_stop("hello END world <|im_end|>", stops);
  EXPECT_EQ(m.pos, 6u);
  EXPECT_EQ(m.stop_index, 2u);
  m = hyrax::find_stop("partial <|im_", stops);
  EXPECT_EQ(m.pos, std::string::npos);
  EXPECT_EQ(m.hold_back, 5u);
  m = hyrax::find_stop("text\n\n", stops);
  EXPECT_EQ(m.hold_back, 2u);
  m = hyrax::find_stop("nothing here", stops);
  EXPECT_EQ(m.hold_back, 0u);
}

std::string error_of(const json& j) {
  try {
    Tokenizer::from_json_text(j.dump(), "t.json");
  } catch (const hyrax::Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Loading, ErrorsNameTheField) {
  json j = tiny_tokenizer_json();
  j["model"]["merges"].push_back("nothere x");
  EXPECT_NE(error_of(j).find("model.merges[10]"), std::string::npos) << error_of(j);
  j = tiny_tokenizer_json();
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_NE(error_of(j).find("normalizer \"NFKC\""), std::string::npos);
  j = tiny_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_NE(error_of(j).find("pre_tokenizer type \"Whitespace\""), std::string::npos);
  j = tiny_tokenizer_json();
  j["model"]["type"] = "Unigram";
  EXPECT_NE(error_of(j).find("Unigram"), std::string::npos);
  EXPECT_NE(error_of(json::parse("{}")).find("no \"model\""), std::string::npos);
}

TEST(Loading, MergesAsPairs) {
  json j = tiny_tokenizer_json();
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    std::string s = m.get<std::string>();
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  Tokenizer a = tiny(), b = Tokenizer::from_json_text(j.dump());
  EXPECT_EQ(a.encode("hello world, hello"), b.encode("hello world, hello"));
}

TEST(Loading, TiktokenRankFile) {
  fs::path dir = fs::temp_directory_path() / "hyrax_tiktoken_test";
  fs::create_directories(dir);
  // ranks: 256 bytes, then "he", "ll", "hell", "hello".
  std::ofstream f(dir / "t.tiktoken");
  static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  auto enc = [&](const std::string& s) {
    std::string out;
    size_t i = 0;
    for (; i + 2 < s.size(); i += 3) {
      uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8) | uint8_t(s[i + 2]);
      for (int k = 3; k >= 0; --k) out += b64[(v >> (6 * k)) & 63];
    }
    if (i + 1 == s.size()) {
      uint32_t v = uint8_t(s[i]) << 16;
      out += b64[(v >> 18) & 63];
      out += b64[(v >> 12) & 63];
      out += "==";
    } else if (i + 2 == s.size()) {
      uint32_t v = (uint8_t(s[i]) << 16) | (uint8_t(s[i + 1]) << 8);
      out += b64[(v >> 18) & 63];
      out += b64[(v >> 12) & 63];
      out += b64[(v >> 6) & 63];
      out += '=';
    }
    return out;
  };
  for (int b = 0; b < 256; ++b) f << enc(std::string(1, char(b))) << " " << b << "\n";
  f << enc("he") << " 256\n" << enc("ll") << " 257\n" << enc("hell") << " 258\n" << enc("hello") << " 259\n";
  f.close();
  Tokenizer t = Tokenizer::from_tiktoken((dir / "t.tiktoken").string(), hyrax::tok::kCl100kPattern,
                                         {{"<|endoftext|>", 300}});
  EXPECT_EQ(t.encode("hello"), std::vector<int32_t>({259}));
  EXPECT_EQ(t.encode("hell<|endoftext|>"), std::vector<int32_t>({258, 300}));
  EXPECT_EQ(t.decode(std::vector<int32_t>{258, 'o', 300}), "hello<|endoftext|>");
  fs::remove_all(dir);
}

TEST(Loading, ModelFolder) {
  fs::path dir = fs::temp_directory_path() / "hyrax_model_dir_test";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tiny_tokenizer_json().dump();
  json cfg = {{"bos_token", {{"content", "<|endoftext|>"}, {"special", true}}},
              {"eos_token", "<|endoftext|>"},
              {"pad_token", nullptr},
              {"add_bos_token", true},
              {"chat_template", json::array({{{"name", "default"}, {"template", "{{ bos_token }}{{ messages[0].content }}"}},
                                             {{"name", "tool_use"}, {"template", "tools!"}}})}};
  std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  Tokenizer t = Tokenizer::from_model_dir(dir.string());
  EXPECT_EQ(t.bos_id(), t.token_to_id("<|endoftext|>"));
  EXPECT_EQ(t.eos_id(), t.bos_id());
  EXPECT_EQ(t.pad_id(), -1);
  EXPECT_TRUE(t.config().add_bos_token);
  hyrax::ChatTemplate tmpl = hyrax::ChatTemplate::from_config(t.config());
  EXPECT_EQ(tmpl.render(nlohmann::ordered_json::parse(R"([{"role": "user", "content": "hi"}])"), false),
            "<|endoftext|>hi");
  EXPECT_EQ(hyrax::ChatTemplate::from_config(t.config(), "tool_use").source(), "tools!");
  // chat_template.jinja beside the config takes precedence.
  std::ofstream(dir / "chat_template.jinja") << "jinja file";
  EXPECT_EQ(Tokenizer::from_model_dir(dir.string()).config().chat_templates.at("default"), "jinja file");
  fs::remove_all(dir);
}

TEST(Dolma2, KnownIds) {
  fs::path p = fs::path(HYRAX_SOURCE_DIR) / ".." / "shared" / "tokenizers" / "dolma2" / "tokenizer.json";
  if (!fs::exists(p)) GTEST_SKIP() << p << " is absent";
  Tokenizer t = Tokenizer::from_file(p.string());
  EXPECT_EQ(t.encode("Hello world! It's 12345 <|endoftext|> don't"),
            std::vector<int32_t>({9906, 1917, 0, 1102, 596, 220, 4513, 1774, 220, 100257, 1541, 956}));
  EXPECT_EQ(t.vocab_size(), 100278u);
  EXPECT_EQ(t.describe_pre_tokenizer(), "Split(native cl100k, Removed, invert) + ByteLevel(no regex)");
}

}  // namespace
