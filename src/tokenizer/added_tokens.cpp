#include "tokenizer/added_tokens.h"

#include "core/check.h"
#include "tokenizer/unicode.h"

namespace hyrax::tok {

namespace {

// The code point that ends at text[end) (text well-formed, end > 0).
uint32_t last_cp(std::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
  uint32_t cp;
  unicode::decode_valid(reinterpret_cast<const unsigned char*>(text.data() + start), &cp);
  return cp;
}

uint32_t first_cp(std::string_view text, size_t start, int* len) {
  uint32_t cp;
  *len = unicode::decode_valid(reinterpret_cast<const unsigned char*>(text.data() + start), &cp);
  return cp;
}

bool is_space(uint32_t cp) { return unicode::flags(cp) & unicode::kSpace; }
bool is_word(uint32_t cp) { return unicode::flags(cp) & unicode::kWord; }

}  // namespace

void AddedVocabulary::Trie::add(std::string_view s, int32_t token) {
  int32_t node = 0;
  for (unsigned char c : s) {
    auto it = nodes[node].next.find(c);
    if (it == nodes[node].next.end()) {
      nodes.push_back(Node{});
      int32_t child = int32_t(nodes.size() - 1);
      nodes[node].next.emplace(c, child);
      node = child;
    } else {
      node = it->second;
    }
  }
  nodes[node].token = token;
  first_byte[static_cast<unsigned char>(s[0])] = true;
}

std::pair<int32_t, size_t> AddedVocabulary::Trie::longest_at(std::string_view text, size_t pos) const {
  int32_t node = 0, best = -1;
  size_t best_end = pos;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = nodes[node].next.find(static_cast<unsigned char>(text[i]));
    if (it == nodes[node].next.end()) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      best_end = i + 1;
    }
  }
  return {best, best_end};
}

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens, Normalizer normalizer)
    : tokens_(std::move(tokens)), normalizer_(normalizer) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    if (t.content.empty()) continue;  // HF ignores empty added tokens
    // A later token with the same content replaces the earlier one, as in HF's map.
    by_content_[t.content] = int32_t(i);
    by_id_[t.id] = int32_t(i);
  }
  for (auto& [content, index] : by_content_) {
    if (!tokens_[index].normalized) {
      raw_.add(content, index);
    } else {
      std::string matched = normalizer_ ? normalizer_(content) : content;
      if (!matched.empty()) normalized_.add(matched, index);
    }
  }
}

const AddedToken* AddedVocabulary::find(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

// HF's AddedVocabulary::find_matches: leftmost-longest matches, each checked for single_word and widened by
// lstrip / rstrip; a rejected match still consumes its span.
void AddedVocabulary::find_matches(std::string_view text, const Trie& trie, bool allow_special,
                                   std::vector<Piece>& out) const {
  out.clear();
  if (trie.empty() || text.empty()) {
    out.push_back({0, text.size(), -1});
    return;
  }
  size_t start_offset = 0, pos = 0;
  while (pos < text.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    auto [index, stop] = trie.longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;
    const AddedToken& t = tokens_[index];
    if (!allow_special && t.special) continue;
    if (t.single_word) {
      bool start_space = start == 0 || !is_word(last_cp(text, start));
      int len;
      bool stop_space = stop == text.size() || !is_word(first_cp(text, stop, &len));
      if (!start_space || !stop_space) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0 && is_space(last_cp(text, s))) {
        size_t prev = s - 1;
        while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
        s = prev;
      }
      start = std::max(s, start_offset);
    }
    if (t.rstrip) {
      int len;
      while (stop < text.size() && is_space(first_cp(text, stop, &len))) stop += len;
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, t.id});
    start_offset = stop;
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
}

void AddedVocabulary::split(std::string_view text, bool allow_special,
                            const std::function<void(std::string_view, int32_t)>& on_piece) const {
  std::vector<Piece> first, second;
  find_matches(text, raw_, allow_special, first);
  std::string normalized;
  for (const Piece& p : first) {
    std::string_view piece = text.substr(p.start, p.end - p.start);
    if (p.id >= 0) {
      on_piece(piece, p.id);
      continue;
    }
    if (normalizer_) {
      normalized = normalizer_(piece);
      piece = normalized;
    }
    find_matches(piece, normalized_, allow_special, second);
    for (const Piece& q : second) {
      if (q.end > q.start || q.id >= 0) on_piece(piece.substr(q.start, q.end - q.start), q.id);
    }
  }
}

}  // namespace hyrax::tok
