// Added tokens (tokenizer.json "added_tokens", tiktoken special tokens): found in the text before pre-tokenization,
// leftmost-longest, with HF's single_word / lstrip / rstrip rules; `normalized` tokens are matched in a second pass
// over the pieces the first pass left (hyrax supports no normalizer, so both passes see the same text).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace hyrax::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;      // skipped by decode(skip_special_tokens); not matched when special tokens are disallowed
  bool single_word = false;  // only matches when not inside a word (Rust regex \w on both sides)
  bool lstrip = false;       // swallows the whitespace on its left
  bool rstrip = false;       // swallows the whitespace on its right
  bool normalized = true;    // matched after normalization (second pass)
};

class AddedVocabulary {
 public:
  /// The tokenizer's normalizer (nullptr: none); `normalized` tokens match their normalized content.
  using Normalizer = std::string (*)(std::string_view);

  AddedVocabulary() = default;
  explicit AddedVocabulary(std::vector<AddedToken> tokens, Normalizer normalizer = nullptr);

  /// Splits `text` (well-formed UTF-8) into pieces: on_piece(piece, id) with id >= 0 for an added token, -1 for
  /// plain text to pre-tokenize. Text outside the first pass's tokens is normalized before the second pass, as HF
  /// does, so plain pieces arrive normalized. allow_special=false leaves special tokens in the text (HF's
  /// encode_special_tokens).
  void split(std::string_view text, bool allow_special,
             const std::function<void(std::string_view, int32_t)>& on_piece) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  /// The added token with this content, or nullptr.
  const AddedToken* find(std::string_view content) const;
  /// The added token with this id, or nullptr.
  const AddedToken* by_id(int32_t id) const;
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie over the contents of one pass's tokens.
  struct Trie {
    struct Node {
      std::unordered_map<unsigned char, int32_t> next;
      int32_t token = -1;  // index into tokens_ of the token ending here
    };
    std::vector<Node> nodes{Node{}};
    bool first_byte[256] = {};
    void add(std::string_view s, int32_t token);
    // Longest token starting at text[pos], as (token index, end) or (-1, pos).
    std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
    bool empty() const { return nodes.size() == 1; }
  };
  struct Piece {
    size_t start, end;
    int32_t id;  // -1: text
  };
  void find_matches(std::string_view text, const Trie& trie, bool allow_special, std::vector<Piece>& out) const;

  std::vector<AddedToken> tokens_;
  std::unordered_map<std::string, int32_t> by_content_;  // content -> index
  std::unordered_map<int32_t, int32_t> by_id_;            // id -> index
  Trie raw_, normalized_;
  Normalizer normalizer_ = nullptr;
};

}  // namespace hyrax::tok
