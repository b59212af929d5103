// Two small open-addressing hash maps for the tokenizer's hot paths: token-id pairs -> merge, and byte strings ->
// id. Insert-only, power-of-two capacity, linear probing; no allocation per lookup.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace hyrax::tok {

/// A fast 64-bit hash of a byte string (8 bytes at a time, multiply-xorshift mixing).
inline uint64_t hash_bytes(std::string_view s) {
  constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
  uint64_t h = 0x243F6A8885A308D3ull ^ (s.size() * kMul);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w ^ (uint64_t(n) << 56)) * kMul;
    h ^= h >> 29;
  }
  h *= kMul;
  return h ^ (h >> 32);
}

/// (left id, right id) -> (rank, merged id).
class PairMap {
 public:
  struct Value {
    int32_t rank = -1, result = -1;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    keys_.assign(cap, kEmpty);
    values_.assign(cap, Value{});
    mask_ = cap - 1;
    size_ = 0;
  }
  /// Inserts or overwrites.
  void put(int32_t a, int32_t b, Value v) {
    if ((size_ + 1) * 2 > keys_.size()) grow();
    uint64_t k = key(a, b);
    size_t i = slot(k);
    while (keys_[i] != kEmpty && keys_[i] != k) i = (i + 1) & mask_;
    if (keys_[i] == kEmpty) ++size_;
    keys_[i] = k;
    values_[i] = v;
  }
  /// The merge of (a, b), or nullptr.
  const Value* find(int32_t a, int32_t b) const {
    if (keys_.empty()) return nullptr;
    uint64_t k = key(a, b);
    for (size_t i = slot(k);; i = (i + 1) & mask_) {
      if (keys_[i] == k) return &values_[i];
      if (keys_[i] == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  size_t slot(uint64_t k) const {
    k *= 0x9E3779B97F4A7C15ull;
    return size_t(k ^ (k >> 31)) & mask_;
  }
  void grow() {
    std::vector<uint64_t> keys = std::move(keys_);
    std::vector<Value> values = std::move(values_);
    reserve(std::max<size_t>(16, keys.size()));
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i] != kEmpty) put(int32_t(keys[i] >> 32), int32_t(uint32_t(keys[i])), values[i]);
  }
  std::vector<uint64_t> keys_;
  std::vector<Value> values_;
  size_t mask_ = 0, size_ = 0;
};

/// Byte string -> int32 id; the strings are copied into one arena.
class StringIdMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  /// Inserts or overwrites.
  void put(std::string_view s, int32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint64_t h = hash_bytes(s);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& sl = slots_[i];
      if (sl.id < 0) {
        sl = Slot{h, uint32_t(arena_.size()), uint32_t(s.size()), id};
        arena_.append(s);
        ++size_;
        return;
      }
      if (sl.hash == h && view(sl) == s) {
        sl.id = id;
        return;
      }
    }
  }
  /// The id of `s`, or -1.
  int32_t find(std::string_view s) const { return find(s, hash_bytes(s)); }
  int32_t find(std::string_view s, uint64_t h) const {
    if (slots_.empty()) return -1;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& sl = slots_[i];
      if (sl.id < 0) return -1;
      if (sl.hash == h && sl.len == s.size() && std::memcmp(arena_.data() + sl.off, s.data(), s.size()) == 0)
        return sl.id;
    }
  }
  size_t size() const { return size_; }
  void clear() {
    slots_.clear();
    arena_.clear();
    size_ = 0;
    mask_ = 0;
  }
  size_t arena_bytes() const { return arena_.size(); }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t off = 0, len = 0;
    int32_t id = -1;
  };
  std::string_view view(const Slot& s) const { return std::string_view(arena_).substr(s.off, s.len); }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    std::string arena = std::move(arena_);
    arena_.clear();
    size_ = 0;
    reserve(std::max<size_t>(16, old.size()));
    for (const Slot& s : old)
      if (s.id >= 0) put(std::string_view(arena).substr(s.off, s.len), s.id);
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t mask_ = 0, size_ = 0;
};

}  // namespace hyrax::tok
