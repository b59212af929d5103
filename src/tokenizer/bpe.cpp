#include "tokenizer/bpe.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <queue>
#include <unordered_map>

#include "core/check.h"

namespace hyrax::tok {

namespace {

std::atomic<uint64_t> g_next_uid{1};

// Encoded pieces of one model on one thread. Bounded: when full it starts over, so memory stays flat on any input.
struct PieceCache {
  static constexpr size_t kMaxEntries = 1 << 18;
  static constexpr size_t kMaxPieceBytes = 128;
  StringIdMap index;                              // piece -> entry
  std::vector<std::pair<uint32_t, uint32_t>> entries;  // (offset, count) in ids
  std::vector<int32_t> ids;

  void clear() {
    index.clear();
    entries.clear();
    ids.clear();
  }
};

PieceCache& cache_for(uint64_t uid) {
  thread_local std::unordered_map<uint64_t, std::unique_ptr<PieceCache>> caches;
  thread_local uint64_t last_uid = 0;
  thread_local PieceCache* last = nullptr;
  if (uid == last_uid && last) return *last;
  auto& slot = caches[uid];
  if (!slot) {
    if (caches.size() > 16) {  // models come and go (tests); keep the per-thread memory bounded
      caches.clear();
      slot = nullptr;
      auto& fresh = caches[uid];
      fresh = std::make_unique<PieceCache>();
      last_uid = uid;
      last = fresh.get();
      return *last;
    }
    slot = std::make_unique<PieceCache>();
  }
  last_uid = uid;
  last = slot.get();
  return *last;
}

}  // namespace

void BpeModel::build_bytes_index() {
  bytes_to_id_.reserve(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id)
    if (!tokens_[id].empty()) bytes_to_id_.put(tokens_[id], int32_t(id));
  uid_ = g_next_uid.fetch_add(1);
}

BpeModel BpeModel::from_merges(std::vector<std::string> tokens, const std::vector<Merge>& merges,
                               const int32_t byte_ids[256], bool ignore_merges, int32_t unk_id, bool fuse_unk) {
  BpeModel m;
  m.tokens_ = std::move(tokens);
  m.pairs_.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r)
    m.pairs_.put(merges[r].left, merges[r].right, {int32_t(r), merges[r].result});
  std::copy(byte_ids, byte_ids + 256, m.byte_ids_);
  m.whole_piece_lookup_ = ignore_merges;
  m.unk_id_ = unk_id;
  m.fuse_unk_ = fuse_unk;
  m.build_bytes_index();
  return m;
}

BpeModel BpeModel::from_ranks(std::vector<std::string> tokens) {
  BpeModel m;
  m.tokens_ = std::move(tokens);
  m.build_bytes_index();
  for (int b = 0; b < 256; ++b) {
    char c = char(b);
    m.byte_ids_[b] = m.bytes_to_id_.find(std::string_view(&c, 1));
  }
  // tiktoken merges two adjacent parts whenever their concatenation has a rank: enumerate, for every token, the
  // splits whose halves are tokens themselves.
  m.pairs_.reserve(m.tokens_.size() * 4);
  for (size_t id = 0; id < m.tokens_.size(); ++id) {
    std::string_view t = m.tokens_[id];
    for (size_t k = 1; k < t.size(); ++k) {
      int32_t a = m.bytes_to_id_.find(t.substr(0, k));
      if (a < 0) continue;
      int32_t b = m.bytes_to_id_.find(t.substr(k));
      if (b >= 0) m.pairs_.put(a, b, {int32_t(id), int32_t(id)});
    }
  }
  m.whole_piece_lookup_ = true;
  return m;
}

void BpeModel::merge(std::vector<int32_t>& ids, bool heap) const {
  size_t n = ids.size();
  if (n < 2) return;
  if (!heap) {
    // Small pieces: rank of every adjacent pair in an array; merge the lowest (leftmost on ties), update neighbours.
    thread_local std::vector<PairMap::Value> ranks;
    ranks.resize(n - 1);
    auto look = [&](size_t i) {
      const PairMap::Value* v = pairs_.find(ids[i], ids[i + 1]);
      return v ? *v : PairMap::Value{INT_MAX, -1};
    };
    for (size_t i = 0; i + 1 < n; ++i) ranks[i] = look(i);
    while (n > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < n; ++i)
        if (ranks[i].rank < ranks[best].rank) best = i;
      if (ranks[best].rank == INT_MAX) break;
      ids[best] = ranks[best].result;
      ids.erase(ids.begin() + best + 1);
      ranks.erase(ranks.begin() + best);
      --n;
      if (best + 1 < n) ranks[best] = look(best);
      if (best > 0) ranks[best - 1] = look(best - 1);
    }
    return;
  }
  // Long pieces: a doubly linked list of symbols and a min-heap of (rank, position); stale entries are skipped.
  struct Sym {
    int32_t id, prev, next;
  };
  std::vector<Sym> sym(n);
  for (size_t i = 0; i < n; ++i) sym[i] = {ids[i], int32_t(i) - 1, i + 1 < n ? int32_t(i + 1) : -1};
  struct Cand {
    int32_t rank, pos, result;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto push = [&](int32_t pos) {
    if (pos < 0 || sym[pos].next < 0) return;
    if (const PairMap::Value* v = pairs_.find(sym[pos].id, sym[sym[pos].next].id)) queue.push({v->rank, pos, v->result});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!queue.empty()) {
    Cand c = queue.top();
    queue.pop();
    Sym& s = sym[c.pos];
    if (s.id < 0 || s.next < 0) continue;
    const PairMap::Value* v = pairs_.find(s.id, sym[s.next].id);
    if (!v || v->result != c.result || v->rank != c.rank) continue;  // stale
    int32_t right = s.next;
    s.id = c.result;
    s.next = sym[right].next;
    if (s.next >= 0) sym[s.next].prev = c.pos;
    sym[right].id = -1;
    push(s.prev);
    push(c.pos);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0; i = sym[i].next) ids.push_back(sym[i].id);
}

void BpeModel::encode_uncached(std::string_view piece, std::vector<int32_t>& out) const {
  if (whole_piece_lookup_) {
    int32_t id = bytes_to_id_.find(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  ids.clear();
  bool pending_unk = false;
  for (unsigned char b : piece) {
    int32_t id = byte_ids_[b];
    if (id >= 0) {
      if (pending_unk) ids.push_back(unk_id_);
      pending_unk = false;
      ids.push_back(id);
    } else if (unk_id_ >= 0) {
      // HF looks up characters, not bytes; only byte-level vocabularies reach here, where every byte is a char.
      if (pending_unk && !fuse_unk_) ids.push_back(unk_id_);
      pending_unk = true;
    }
  }
  if (pending_unk) ids.push_back(unk_id_);
  merge(ids, ids.size() > 64);
  out.insert(out.end(), ids.begin(), ids.end());
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > PieceCache::kMaxPieceBytes) {
    encode_uncached(piece, out);
    return;
  }
  PieceCache& cache = cache_for(uid_);
  uint64_t h = hash_bytes(piece);
  int32_t e = cache.index.find(piece, h);
  if (e >= 0) {
    auto [off, cnt] = cache.entries[e];
    out.insert(out.end(), cache.ids.begin() + off, cache.ids.begin() + off + cnt);
    return;
  }
  size_t before = out.size();
  encode_uncached(piece, out);
  if (cache.entries.size() >= PieceCache::kMaxEntries) cache.clear();
  cache.index.put(piece, int32_t(cache.entries.size()));
  cache.entries.emplace_back(uint32_t(cache.ids.size()), uint32_t(out.size() - before));
  cache.ids.insert(cache.ids.end(), out.begin() + before, out.end());
}

}  // namespace hyrax::tok
