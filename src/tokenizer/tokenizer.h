// hyrax::Tokenizer: byte-level BPE exactly as Hugging Face `tokenizers` runs it (tokenizer.json) or as `tiktoken`
// runs it (.tiktoken rank files), with the model folder's tokenizer_config.json (special tokens, chat templates).
//
//   auto tok = hyrax::Tokenizer::from_model_dir("/models/Olmo-3-7B-Instruct");
//   std::vector<int32_t> ids = tok.encode("Hello world");   // no BOS/EOS added
//   std::string text = tok.decode(ids);
//
// Text input is UTF-8; ill-formed bytes are replaced by U+FFFD first (as Python's decode(errors="replace") and
// Rust's from_utf8_lossy do), so invalid input tokenizes like its repaired text does under HF.
// A Tokenizer is immutable after loading; encode/decode are safe to call from many threads at once (each thread
// keeps its own cache of encoded pieces).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/added_tokens.h"

namespace hyrax {

namespace tok {
class BpeModel;
class PreTokenizer;
}  // namespace tok

/// What tokenizer_config.json (and special_tokens_map.json, chat_template.jinja) say about a model's tokens.
struct TokenizerConfig {
  std::string bos_token, eos_token, pad_token, unk_token;  // empty when not set
  bool add_bos_token = false;  // prepend bos to a prompt (tokenizer_config's add_bos_token)
  bool add_eos_token = false;
  bool clean_up_tokenization_spaces = false;
  /// Chat templates by name; the one named "default" is the model's template.
  std::map<std::string, std::string> chat_templates;
  /// Every special-token string of the config by attribute (bos_token, eos_token, ...): the variables transformers
  /// passes to chat templates.
  std::map<std::string, std::string> special_token_strings;
};

class Tokenizer {
 public:
  /// Loads a tokenizer.json file. Errors name the file and the field at fault.
  static Tokenizer from_file(const std::string& path);
  /// Parses tokenizer.json text; `source` names it in errors.
  static Tokenizer from_json_text(std::string_view json_text, const std::string& source = "tokenizer.json");
  /// Loads a tiktoken rank file ("<base64 token> <rank>" lines), its pre-tokenizer regex and its special tokens.
  static Tokenizer from_tiktoken(const std::string& path, const std::string& pattern,
                                 const std::map<std::string, int32_t>& special_tokens);
  /// Loads a model folder: tokenizer.json plus tokenizer_config.json (and special_tokens_map.json,
  /// chat_template.jinja / chat_template.json when present).
  static Tokenizer from_model_dir(const std::string& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// Token ids of `text`; adds no BOS/EOS. allow_special=false treats special-token strings in the text as plain
  /// text (use it for untrusted user input); non-special added tokens still match.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  /// As encode(), appending to `out`.
  void encode_into(std::string_view text, std::vector<int32_t>& out, bool allow_special = true) const;
  /// As HF encode(add_special_tokens=True): the post-processor's template (e.g. a BOS) around the ids.
  std::vector<int32_t> encode_with_special_tokens(std::string_view text) const;

  /// Text of `ids` (HF decode): unknown ids are skipped, special tokens too when skip_special_tokens; bytes that
  /// do not form valid UTF-8 become U+FFFD.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  /// The raw bytes token `id` decodes to ("" for ids without a token).
  std::string_view token_bytes(int32_t id) const;
  /// The token's string as written in the vocabulary ("Ġthe"), or nullopt for an unknown id.
  std::optional<std::string> id_to_token(int32_t id) const;
  /// The id of a vocabulary string ("Ġthe", "<|im_end|>"), or -1.
  int32_t token_to_id(std::string_view token) const;
  /// One past the largest id (HF get_vocab_size(with_added_tokens=True)).
  size_t vocab_size() const;
  /// True if `id` is a special added token (skipped by decode(skip_special_tokens)).
  bool is_special(int32_t id) const;

  /// Special-token ids from the config (-1 when not set or not in the vocabulary).
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  const TokenizerConfig& config() const { return config_; }
  const std::vector<tok::AddedToken>& added_tokens() const { return added_.tokens(); }

  /// How the text is split ("Split(native cl100k, Removed, invert) + ByteLevel(no regex)"), for logs and tests.
  std::string describe_pre_tokenizer() const;

  /// Test hook: reload with every regex on PCRE2 instead of the native matchers.
  static Tokenizer from_json_text_pcre2(std::string_view json_text);

 private:
  Tokenizer();
  static Tokenizer parse_json(std::string_view json_text, const std::string& source, bool force_pcre2);
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  void finish_loading();
  void apply_config(TokenizerConfig config);

  std::unique_ptr<tok::BpeModel> bpe_;
  std::unique_ptr<tok::PreTokenizer> pre_;
  tok::AddedVocabulary added_;
  std::vector<std::string> vocab_strings_;  // [id] string as in the vocabulary / added token content
  std::vector<std::string> decode_bytes_;   // [id] bytes the decoder produces
  std::vector<uint8_t> special_;            // [id] 1 if skipped by skip_special_tokens
  std::vector<uint8_t> present_;            // [id] 1 if the id has a token
  std::vector<int32_t> post_prefix_, post_suffix_;  // encode_with_special_tokens
  std::string post_processor_error_;                // set when the post-processor is not supported
  TokenizerConfig config_;
  int32_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1, unk_id_ = -1;
};

}  // namespace hyrax
