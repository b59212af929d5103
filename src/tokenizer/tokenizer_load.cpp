// Loading tokenizers: tokenizer.json (HF), .tiktoken rank files, and model folders (tokenizer_config.json).
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "core/check.h"
#include "tokenizer/bpe.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace hyrax {

using nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  HYRAX_REQUIRE(f, "cannot open ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json_or_fail(std::string_view text, const std::string& source) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    fail(source, ": invalid JSON: ", e.what());
  }
}

// The normalizer: none, or NFC (alone or as the only member of a Sequence). Returns true for NFC.
bool parse_normalizer(const json& n, const std::string& source) {
  if (n.is_null()) return false;
  std::string type = n.value("type", "");
  if (type == "NFC") return true;
  if (type == "Sequence") {
    const json& list = n.value("normalizers", json::array());
    if (list.empty()) return false;
    if (list.size() == 1) return parse_normalizer(list[0], source);
  }
  fail(source, ": normalizer \"", type, "\" is not supported (hyrax supports none or NFC)");
}

void require_byte_level_decoder(const json& d, const std::string& source) {
  HYRAX_REQUIRE(!d.is_null(), source, ": decoder is null; hyrax needs the ByteLevel decoder");
  std::string type = d.value("type", "");
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    const json& list = d.value("decoders", json::array());
    HYRAX_REQUIRE(list.size() == 1, source, ": decoder Sequence must hold exactly one ByteLevel decoder");
    require_byte_level_decoder(list[0], source);
    return;
  }
  fail(source, ": decoder \"", type, "\" is not supported (hyrax supports ByteLevel)");
}

// A token string from a JSON value, which may be a plain string or an AddedToken object {"content": ...}.
std::string token_string(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return {};
}

}  // namespace

Tokenizer Tokenizer::from_file(const std::string& path) { return parse_json(read_file(path), path, false); }

Tokenizer Tokenizer::from_json_text(std::string_view json_text, const std::string& source) {
  return parse_json(json_text, source, false);
}

Tokenizer Tokenizer::from_json_text_pcre2(std::string_view json_text) {
  return parse_json(json_text, "tokenizer.json", true);
}

Tokenizer Tokenizer::parse_json(std::string_view json_text, const std::string& source, bool force_pcre2) {
  json j = parse_json_or_fail(json_text, source);
  HYRAX_REQUIRE(j.is_object() && j.contains("model"), source, ": no \"model\" object");
  const json& model = j["model"];
  std::string type = model.value("type", "BPE");
  HYRAX_REQUIRE(type == "BPE", source, ": model type \"", type, "\" is not supported (hyrax supports BPE)");
  bool nfc = parse_normalizer(j.value("normalizer", json()), source);
  require_byte_level_decoder(j.value("decoder", json()), source);
  HYRAX_REQUIRE(!model.value("byte_fallback", false), source, ": model.byte_fallback is not supported");
  HYRAX_REQUIRE(model.value("dropout", json()).is_null() || model["dropout"].get<double>() == 0.0, source,
                ": model.dropout is not supported at inference");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json& v = model.value(key, json());
    HYRAX_REQUIRE(v.is_null() || v.get<std::string>().empty(), source, ": model.", key, " is not supported");
  }

  Tokenizer t;
  t.pre_ = std::make_unique<tok::PreTokenizer>(tok::PreTokenizer::from_json(j.value("pre_tokenizer", json()),
                                                                              force_pcre2));
  // Vocabulary: strings in byte-level spelling.
  const json& vocab = model.at("vocab");
  HYRAX_REQUIRE(vocab.is_object(), source, ": model.vocab must be an object");
  std::unordered_map<std::string, int32_t> by_string;
  by_string.reserve(vocab.size() * 2);
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int64_t id = it.value().get<int64_t>();
    HYRAX_REQUIRE(id >= 0 && id < (int64_t(1) << 30), source, ": model.vocab[\"", it.key(), "\"] has bad id ", id);
    by_string[it.key()] = int32_t(id);
    max_id = std::max(max_id, int32_t(id));
  }
  std::vector<tok::AddedToken> added;
  for (const json& a : j.value("added_tokens", json::array())) {
    tok::AddedToken at;
    at.id = a.at("id").get<int32_t>();
    at.content = a.at("content").get<std::string>();
    at.special = a.value("special", false);
    at.single_word = a.value("single_word", false);
    at.lstrip = a.value("lstrip", false);
    at.rstrip = a.value("rstrip", false);
    at.normalized = a.value("normalized", !at.special);
    HYRAX_REQUIRE(at.id >= 0, source, ": added token \"", at.content, "\" has a negative id");
    max_id = std::max(max_id, at.id);
    added.push_back(std::move(at));
  }
  size_t n = size_t(max_id + 1);
  t.vocab_strings_.assign(n, {});
  t.decode_bytes_.assign(n, {});
  t.present_.assign(n, 0);
  t.special_.assign(n, 0);
  std::vector<std::string> bpe_tokens(n);
  for (const auto& [s, id] : by_string) {
    t.vocab_strings_[id] = s;
    t.present_[id] = 1;
    std::optional<std::string> bytes = tok::byte_level::decode_token(s);
    // A string outside the byte map can never be produced by encoding; it decodes to its own UTF-8 (HF does so).
    t.decode_bytes_[id] = bytes ? *bytes : s;
    if (bytes) bpe_tokens[id] = std::move(*bytes);
  }
  int32_t byte_ids[256];
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, tok::byte_level::byte_to_char(uint8_t(b)));
    auto it = by_string.find(ch);
    byte_ids[b] = it == by_string.end() ? -1 : it->second;
  }
  std::vector<tok::BpeModel::Merge> merges;
  const json& merges_json = model.value("merges", json::array());
  merges.reserve(merges_json.size());
  for (size_t r = 0; r < merges_json.size(); ++r) {
    const json& m = merges_json[r];
    std::string left, right;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      HYRAX_REQUIRE(sp != std::string::npos, source, ": model.merges[", r, "] \"", s, "\" is not \"a b\"");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else {
      HYRAX_REQUIRE(m.is_array() && m.size() == 2, source, ": model.merges[", r, "] must be \"a b\" or [a, b]");
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    }
    auto l = by_string.find(left), rr = by_string.find(right), res = by_string.find(left + right);
    HYRAX_REQUIRE(l != by_string.end() && rr != by_string.end(), source, ": model.merges[", r, "] (\"", left, "\", \"",
                  right, "\") uses a token missing from the vocab");
    HYRAX_REQUIRE(res != by_string.end(), source, ": model.merges[", r, "] makes \"", left + right,
                  "\", which is missing from the vocab");
    merges.push_back({l->second, rr->second, res->second});
  }
  int32_t unk = -1;
  std::string unk_token = model.value("unk_token", json()).is_string() ? model["unk_token"].get<std::string>() : "";
  if (!unk_token.empty()) {
    auto it = by_string.find(unk_token);
    HYRAX_REQUIRE(it != by_string.end(), source, ": model.unk_token \"", unk_token, "\" is not in the vocab");
    unk = it->second;
  }
  t.bpe_ = std::make_unique<tok::BpeModel>(tok::BpeModel::from_merges(
      std::move(bpe_tokens), merges, byte_ids, model.value("ignore_merges", false), unk, model.value("fuse_unk", false)));

  // Added tokens decode through the ByteLevel decoder like any token (normalized ones in their normalized form,
  // as HF's decode uses it).
  for (const auto& a : added) {
    t.vocab_strings_[a.id] = a.content;
    t.present_[a.id] = 1;
    std::string shown = nfc && a.normalized ? tok::nfc(a.content) : a.content;
    std::optional<std::string> bytes = tok::byte_level::decode_token(shown);
    t.decode_bytes_[a.id] = bytes ? *bytes : shown;
  }
  t.added_ = tok::AddedVocabulary(std::move(added), nfc ? &tok::nfc : nullptr);

  // Post-processor: only what encode_with_special_tokens needs.
  const json& pp = j.value("post_processor", json());
  std::function<void(const json&)> load_pp = [&](const json& p) {
    if (p.is_null()) return;
    std::string pt = p.value("type", "");
    if (pt == "ByteLevel") return;  // offsets only
    if (pt == "Sequence") {
      for (const json& sub : p.value("processors", json::array())) load_pp(sub);
      return;
    }
    if (pt == "TemplateProcessing") {
      bool seen_sequence = false;
      for (const json& piece : p.value("single", json::array())) {
        if (piece.contains("Sequence")) {
          seen_sequence = true;
          continue;
        }
        std::string name = piece.at("SpecialToken").at("id").get<std::string>();
        const json& st = p.at("special_tokens").at(name);
        for (const json& id : st.at("ids")) (seen_sequence ? t.post_suffix_ : t.post_prefix_).push_back(id.get<int32_t>());
      }
      return;
    }
    t.post_processor_error_ = source + ": post_processor \"" + pt + "\" is not supported";
  };
  load_pp(pp);
  t.finish_loading();
  return t;
}

void Tokenizer::finish_loading() {
  std::unordered_set<std::string> special_contents;
  for (const auto& a : added_.tokens())
    if (a.special) special_contents.insert(a.content);
  for (size_t id = 0; id < present_.size(); ++id)
    special_[id] = present_[id] && special_contents.count(vocab_strings_[id]) ? 1 : 0;
}

Tokenizer Tokenizer::from_tiktoken(const std::string& path, const std::string& pattern,
                                   const std::map<std::string, int32_t>& special_tokens) {
  static const std::string kB64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int8_t dec[256];
  std::fill(dec, dec + 256, int8_t(-1));
  for (size_t i = 0; i < kB64.size(); ++i) dec[static_cast<unsigned char>(kB64[i])] = int8_t(i);
  std::string text = read_file(path);
  std::vector<std::string> tokens;
  std::istringstream in(text);
  std::string line;
  size_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    size_t sp = line.find(' ');
    HYRAX_REQUIRE(sp != std::string::npos, path, ":", line_no, ": expected \"<base64> <rank>\"");
    std::string bytes;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < sp; ++i) {
      char c = line[i];
      if (c == '=') break;
      int v = dec[static_cast<unsigned char>(c)];
      HYRAX_REQUIRE(v >= 0, path, ":", line_no, ": bad base64 character '", c, "'");
      acc = (acc << 6) | uint32_t(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes.push_back(char((acc >> bits) & 0xFF));
      }
    }
    long long rank = 0;
    try {
      rank = std::stoll(line.substr(sp + 1));
    } catch (const std::exception&) {
      fail(path, ":", line_no, ": bad rank \"", line.substr(sp + 1), "\"");
    }
    HYRAX_REQUIRE(rank >= 0 && rank < (1LL << 30), path, ":", line_no, ": rank ", rank, " out of range");
    if (size_t(rank) >= tokens.size()) tokens.resize(size_t(rank) + 1);
    HYRAX_REQUIRE(tokens[rank].empty(), path, ":", line_no, ": rank ", rank, " appears twice");
    HYRAX_REQUIRE(!bytes.empty(), path, ":", line_no, ": empty token");
    tokens[rank] = std::move(bytes);
  }
  HYRAX_REQUIRE(!tokens.empty(), path, ": no ranks");

  Tokenizer t;
  t.pre_ = std::make_unique<tok::PreTokenizer>(tok::PreTokenizer::from_pattern(pattern));
  size_t n = tokens.size();
  for (const auto& [content, id] : special_tokens) n = std::max(n, size_t(id) + 1);
  t.vocab_strings_.assign(n, {});
  t.decode_bytes_.assign(n, {});
  t.present_.assign(n, 0);
  t.special_.assign(n, 0);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].empty()) continue;
    t.vocab_strings_[id] = tok::byte_level::encode_bytes(tokens[id]);
    t.decode_bytes_[id] = tokens[id];
    t.present_[id] = 1;
  }
  std::vector<tok::AddedToken> added;
  for (const auto& [content, id] : special_tokens) {
    HYRAX_REQUIRE(id >= 0, "special token \"", content, "\" has a negative id");
    tok::AddedToken a;
    a.id = id;
    a.content = content;
    a.special = true;
    a.normalized = false;
    t.vocab_strings_[id] = content;
    t.decode_bytes_[id] = content;
    t.present_[id] = 1;
    added.push_back(std::move(a));
  }
  t.added_ = tok::AddedVocabulary(std::move(added));
  t.bpe_ = std::make_unique<tok::BpeModel>(tok::BpeModel::from_ranks(std::move(tokens)));
  t.finish_loading();
  return t;
}

void Tokenizer::apply_config(TokenizerConfig config) {
  config_ = std::move(config);
  auto id_of = [&](const std::string& s) { return s.empty() ? -1 : token_to_id(s); };
  bos_id_ = id_of(config_.bos_token);
  eos_id_ = id_of(config_.eos_token);
  pad_id_ = id_of(config_.pad_token);
  unk_id_ = id_of(config_.unk_token);
}

Tokenizer Tokenizer::from_model_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path root(dir);
  HYRAX_REQUIRE(fs::is_directory(root), dir, " is not a directory");
  fs::path tj = root / "tokenizer.json";
  HYRAX_REQUIRE(fs::exists(tj), dir, ": no tokenizer.json (hyrax loads byte-level BPE tokenizer.json files)");
  Tokenizer t = from_file(tj.string());

  TokenizerConfig cfg;
  auto take_specials = [&](const json& j) {
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
      if (!j.contains(key)) continue;
      std::string s = token_string(j[key]);
      if (j[key].is_null()) {
        cfg.special_token_strings.erase(key);
      } else if (!s.empty()) {
        cfg.special_token_strings[key] = s;
      }
    }
  };
  fs::path stm = root / "special_tokens_map.json";
  if (fs::exists(stm)) take_specials(parse_json_or_fail(read_file(stm.string()), stm.string()));
  fs::path tc = root / "tokenizer_config.json";
  if (fs::exists(tc)) {
    json c = parse_json_or_fail(read_file(tc.string()), tc.string());
    take_specials(c);
    cfg.add_bos_token = c.value("add_bos_token", false);
    cfg.add_eos_token = c.value("add_eos_token", false);
    const json& cu = c.value("clean_up_tokenization_spaces", json());
    cfg.clean_up_tokenization_spaces = cu.is_boolean() && cu.get<bool>();
    if (c.contains("chat_template")) {
      const json& ct = c["chat_template"];
      if (ct.is_string()) {
        cfg.chat_templates["default"] = ct.get<std::string>();
      } else if (ct.is_array()) {
        for (const json& e : ct) {
          HYRAX_REQUIRE(e.contains("name") && e.contains("template"), tc.string(),
                        ": chat_template list entries need \"name\" and \"template\"");
          cfg.chat_templates[e["name"].get<std::string>()] = e["template"].get<std::string>();
        }
      } else if (!ct.is_null()) {
        fail(tc.string(), ": chat_template must be a string or a list of {name, template}");
      }
    }
  }
  // transformers saves templates beside the config since 4.43; these take precedence.
  fs::path ctj = root / "chat_template.json";
  if (fs::exists(ctj)) {
    json c = parse_json_or_fail(read_file(ctj.string()), ctj.string());
    if (c.contains("chat_template") && c["chat_template"].is_string())
      cfg.chat_templates["default"] = c["chat_template"].get<std::string>();
  }
  fs::path ctf = root / "chat_template.jinja";
  if (fs::exists(ctf)) cfg.chat_templates["default"] = read_file(ctf.string());
  fs::path extra = root / "additional_chat_templates";
  if (fs::is_directory(extra)) {
    for (const auto& e : fs::directory_iterator(extra))
      if (e.path().extension() == ".jinja") cfg.chat_templates[e.path().stem().string()] = read_file(e.path().string());
  }
  auto get = [&](const char* k) {
    auto it = cfg.special_token_strings.find(k);
    return it == cfg.special_token_strings.end() ? std::string() : it->second;
  };
  cfg.bos_token = get("bos_token");
  cfg.eos_token = get("eos_token");
  cfg.pad_token = get("pad_token");
  cfg.unk_token = get("unk_token");
  for (const auto& [key, s] : cfg.special_token_strings)
    HYRAX_REQUIRE(t.token_to_id(s) >= 0, (fs::exists(tc) ? tc.string() : dir), ": ", key, " \"", s,
                  "\" is not in the vocabulary");
  t.apply_config(std::move(cfg));
  return t;
}

}  // namespace hyrax
