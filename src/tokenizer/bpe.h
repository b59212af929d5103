// Byte-level BPE: the merge loop over token ids shared by HF tokenizer.json models (ranked merges) and tiktoken
// rank files (any split of a ranked byte string whose halves are tokens), plus a per-thread cache of encoded pieces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/hash_map.h"

namespace hyrax::tok {

class BpeModel {
 public:
  /// HF BPE. `tokens[id]` are the raw bytes of each vocab token (ids missing from the vocab are empty and
  /// unreachable); `merges` pairs of token ids in rank order; `byte_ids[b]` the id of the single-byte token for
  /// byte b (-1: none: the byte is dropped, as HF does without unk). ignore_merges: a piece that is itself a token
  /// becomes that token without merging. unk_id (>= 0) replaces bytes without a token; fuse_unk merges runs of them.
  struct Merge {
    int32_t left, right, result;
  };
  static BpeModel from_merges(std::vector<std::string> tokens, const std::vector<Merge>& merges,
                              const int32_t byte_ids[256], bool ignore_merges, int32_t unk_id, bool fuse_unk);

  /// tiktoken: `tokens[rank]` are the bytes of each rank; pieces that are a token are emitted whole.
  static BpeModel from_ranks(std::vector<std::string> tokens);

  /// Appends the ids of one pre-tokenized piece (raw bytes).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  /// The merge loop alone, for tests: `ids` are initial symbols, merged in place. heap selects the O(n log n) path.
  void merge(std::vector<int32_t>& ids, bool heap) const;

  /// Id of the token whose bytes are `bytes`, or -1.
  int32_t token_id(std::string_view bytes) const { return bytes_to_id_.find(bytes); }

  size_t size() const { return tokens_.size(); }

 private:
  BpeModel() = default;
  void encode_uncached(std::string_view piece, std::vector<int32_t>& out) const;
  void build_bytes_index();

  std::vector<std::string> tokens_;  // [id] raw bytes
  StringIdMap bytes_to_id_;          // raw bytes -> id
  PairMap pairs_;                    // (left, right) -> (rank, result)
  int32_t byte_ids_[256];
  bool whole_piece_lookup_ = false;  // tiktoken and ignore_merges
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;
  uint64_t uid_ = 0;  // identifies this model's entry in the per-thread piece cache
};

}  // namespace hyrax::tok
