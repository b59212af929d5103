#include "runtime/engine.h"

#include <algorithm>

#include "core/check.h"

namespace hyrax {
namespace {

/// The block-row width of a graph step: a power of two (at least 8) holding every sequence's blocks, capped at
/// `cap` (the blocks of max_seq_len) unless a sequence holds more. Few widths, so few graphs per bucket.
int64_t graph_width(int64_t need, int64_t cap) {
  int64_t w = 8;
  while (w < need) w *= 2;
  return need <= cap ? std::min(w, cap) : w;
}

}  // namespace

int64_t Engine::graph_bucket(int64_t n) {
  for (int64_t b : {1, 2, 4, 8, 16, 24, 32, 48, 64})
    if (n <= b) return b;
  return (n + 31) / 32 * 32;
}

Engine::Engine(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, const EngineConfig& cfg)
    : backend_(std::move(backend)), model_(std::move(model)), cfg_(cfg) {
  HYRAX_REQUIRE(cfg.max_seqs > 0 && cfg.max_seq_len > 0 && cfg.block_size > 0 && cfg.max_step_tokens > 0,
                "engine: max_seqs, max_seq_len, block_size and max_step_tokens must be positive");
  StatePoolConfig pc;
  pc.n_slots = cfg.max_seqs;
  pc.block_size = cfg.block_size;
  // Without an explicit total, every sequence can reach max_seq_len at once: blocks are rounded per sequence.
  const int64_t blocks_per_seq = (cfg.max_seq_len + cfg.block_size - 1) / cfg.block_size;
  pc.n_blocks = cfg.max_kv_tokens > 0 ? (cfg.max_kv_tokens + cfg.block_size - 1) / cfg.block_size
                                      : cfg.max_seqs * blocks_per_seq;
  graphs_ = cfg.cuda_graphs && backend_->step_graphs();
  pool_ = std::make_unique<StatePool>(*backend_, model_->state_spec(), pc);
  StepCapacity sc;
  sc.max_seqs = graphs_ ? graph_bucket(cfg.max_seqs) : cfg.max_seqs;
  sc.max_tokens = std::max(cfg.max_step_tokens, sc.max_seqs);
  sc.max_blocks = graphs_ ? graph_width(blocks_per_seq, blocks_per_seq) : blocks_per_seq;
  backend_->reserve_steps(sc);
  if (graphs_) {
    // The logits of the largest bucket, so that the buffer a graph writes does not move as buckets grow.
    logits_bytes_ = size_t(sc.max_seqs) * size_t(vocab_size()) * sizeof(float);
    logits_dev_ = backend_->alloc(logits_bytes_);
  }
}

Engine::~Engine() {
  if (logits_dev_) backend_->release(logits_dev_);
}

bool Engine::open(Sequence& seq) {
  HYRAX_CHECK(seq.slot < 0, "sequence already open");
  seq.slot = pool_->acquire_slot();
  seq.n_cached = 0;
  return seq.slot >= 0;
}

void Engine::close(Sequence& seq) {
  if (seq.slot >= 0) pool_->release_slot(seq.slot);
  pool_->release_blocks(seq.blocks);
  seq.slot = -1;
  seq.n_cached = 0;
}

std::vector<float> Engine::step(const std::vector<StepItem>& items) {
  const std::vector<size_t> order = forward_step(items);
  const int64_t V = vocab_size();
  size_t n_rows = 0;
  for (const auto& it : items) n_rows += it.all_logits ? size_t(it.n_tokens) : 1;
  std::vector<float> packed(n_rows * size_t(V));
  backend_->copy_to_host(packed.data(), logits_dev_, packed.size() * sizeof(float));
  if (std::is_sorted(order.begin(), order.end())) return packed;
  // Back to the caller's order: each item's rows sit where the packed order put them.
  std::vector<size_t> first(items.size());
  size_t at = 0;
  for (size_t i : order) {
    first[i] = at;
    at += items[i].all_logits ? size_t(items[i].n_tokens) : 1;
  }
  std::vector<float> out(packed.size());
  at = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t k = items[i].all_logits ? size_t(items[i].n_tokens) : 1;
    std::copy_n(packed.begin() + int64_t(first[i] * size_t(V)), k * size_t(V), out.begin() + int64_t(at));
    at += k * size_t(V);
  }
  return out;
}

std::vector<size_t> Engine::forward_step(const std::vector<StepItem>& items) {
  std::vector<int32_t> tokens, positions, cu{0}, start, slots, rows;
  int64_t max_blocks = 0;
  for (const auto& it : items) {
    HYRAX_CHECK(it.seq && it.seq->slot >= 0 && it.n_tokens > 0, "step item without an open sequence or tokens");
    const int64_t end = it.seq->n_cached + it.n_tokens;
    HYRAX_REQUIRE(end <= model_->info().max_positions || model_->info().max_positions <= 0, "sequence of ", end,
                  " positions exceeds the model's max_position_embeddings (", model_->info().max_positions, ")");
    max_blocks = std::max(max_blocks, pool_->blocks_for(end));
  }
  // Reserve KV blocks for everything first, so that a failure leaves every sequence as it was.
  std::vector<size_t> before;
  for (const auto& it : items) before.push_back(it.seq->blocks.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (!pool_->reserve_blocks(items[i].seq->blocks, items[i].seq->n_cached + items[i].n_tokens)) {
      for (size_t j = 0; j <= i; ++j) {
        auto& b = items[j].seq->blocks;
        std::vector<int32_t> extra(b.begin() + int64_t(before[j]), b.end());
        b.resize(before[j]);
        pool_->release_blocks(extra);
      }
      fail("out of KV cache blocks: the step needs more than the ", pool_->free_blocks(), " free blocks of ",
           pool_->config().block_size, " positions");
    }
  }
  // A decode step (every item brings one token) runs as the step graph of its bucket, with block rows of a fixed
  // width class. Rows padding it up to the bucket's size decode token 0 at position 0 in a free slot and a free
  // block (the pool's spares: no sequence's state); with none free the step runs eagerly, unpadded.
  const int64_t n = int64_t(items.size());
  bool decode = n > 0;
  for (const auto& it : items) decode = decode && it.n_tokens == 1;
  int64_t key = -1, n_rows = n, width = std::max<int64_t>(max_blocks, 1);
  const int32_t pad_slot = pool_->spare_slot(), pad_block = pool_->spare_block();
  if (graphs_ && decode && (graph_bucket(n) == n || (pad_slot >= 0 && pad_block >= 0))) {
    const int64_t bucket = graph_bucket(n);
    const int64_t w = graph_width(max_blocks, pool_->blocks_for(cfg_.max_seq_len));
    const int64_t k = (bucket << 32) | w;
    if (std::find(failed_keys_.begin(), failed_keys_.end(), k) == failed_keys_.end()) {
      key = k;
      n_rows = bucket;
      width = w;
    }
  }
  // Pack the sequences bringing one token (decoding) first, in their given order, then the others: a device
  // backend runs each sequence's work by its own length, and keeping the one-token rows a leading block lets it
  // give them their own row-invariant kernels (docs/CUDA.md). The logits come back in the caller's order.
  std::vector<size_t> order;
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].n_tokens == 1) order.push_back(i);
  for (size_t i = 0; i < items.size(); ++i)
    if (items[i].n_tokens != 1) order.push_back(i);
  std::vector<int32_t> tables(size_t(n_rows * width), 0);
  for (size_t oi = 0; oi < order.size(); ++oi) {
    const StepItem& it = items[order[oi]];
    const int32_t row0 = int32_t(tokens.size());
    for (int64_t t = 0; t < it.n_tokens; ++t) {
      tokens.push_back(it.tokens[t]);
      positions.push_back(int32_t(it.seq->n_cached + t));
    }
    cu.push_back(int32_t(tokens.size()));
    start.push_back(int32_t(it.seq->n_cached));
    slots.push_back(it.seq->slot);
    std::copy(it.seq->blocks.begin(), it.seq->blocks.end(), tables.begin() + int64_t(oi) * width);
    if (it.all_logits) {
      for (int64_t t = 0; t < it.n_tokens; ++t) rows.push_back(row0 + int32_t(t));
    } else {
      rows.push_back(row0 + int32_t(it.n_tokens - 1));
    }
  }
  HYRAX_REQUIRE(int64_t(tokens.size()) <= cfg_.max_step_tokens, "step of ", tokens.size(),
                " tokens exceeds max_step_tokens ", cfg_.max_step_tokens);
  for (int32_t id : tokens)
    HYRAX_REQUIRE(id >= 0 && id < vocab_size(), "token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")");
  for (int64_t r = n; r < n_rows; ++r) {  // padding: token 0 at position 0 of the spare slot and block
    rows.push_back(int32_t(tokens.size()));
    tokens.push_back(0);
    positions.push_back(0);
    cu.push_back(int32_t(tokens.size()));
    start.push_back(0);
    slots.push_back(pad_slot);
    tables[size_t(r * width)] = pad_block;
  }

  StepMeta m;
  m.n_seqs = n_rows;
  m.n_tokens = int64_t(tokens.size());
  m.tokens = tokens.data();
  m.positions = positions.data();
  m.cu_seqlens = cu.data();
  m.start_pos = start.data();
  m.state_slots = slots.data();
  m.block_tables = tables.data();
  m.max_blocks = width;

  // Logits are float32 on every backend (the lm_head product writes them straight from its float32 accumulators).
  reserve_logits(rows.size());
  run_forward(m, rows, key);
  for (const auto& it : items) it.seq->n_cached += it.n_tokens;
  return order;
}

void Engine::reserve_logits(size_t rows) {
  const size_t bytes = rows * size_t(vocab_size()) * sizeof(float);
  if (bytes <= logits_bytes_) return;
  if (logits_dev_) backend_->release(logits_dev_);
  logits_dev_ = backend_->alloc(bytes);
  logits_bytes_ = bytes;
}

void Engine::run_forward(const StepMeta& m, const std::vector<int32_t>& rows, int64_t key) {
  Tensor logits(logits_dev_, DType::F32, {int64_t(rows.size()), vocab_size()}, backend_->device());
  if (key < 0) {
    model_->forward(m, *pool_, rows, logits);
    return;
  }
  if (backend_->has_graph(key)) {  // upload this step's metadata, then replay the recorded launches
    backend_->begin_step(m);
    if (backend_->has_graph(key)) {  // (still: the upload could have had to move the metadata buffer)
      backend_->replay(key);
      ++graph_replays_;
      return;
    }
  }
  // The first step of this key (or the first since its graph was dropped) runs eagerly, which settles every lazy
  // choice and buffer size; then the same step is recorded (recording runs nothing) for the next ones.
  model_->forward(m, *pool_, rows, logits);
  backend_->begin_capture(key);
  try {
    model_->forward(m, *pool_, rows, logits);
  } catch (...) {
    backend_->end_capture();
    throw;
  }
  if (backend_->end_capture()) ++graph_captures_;
  else failed_keys_.push_back(key);
}

std::vector<SampledToken> Engine::step_sample(const std::vector<StepItem>& items,
                                             const std::vector<SampleRow>& rows) {
  HYRAX_CHECK(rows.size() == items.size(), "step_sample: ", rows.size(), " sampling rows for ", items.size(), " items");
  for (const auto& it : items) HYRAX_CHECK(!it.all_logits, "step_sample: an item asks for all its logits");
  // The logits rows stay on the device in the packed order: sample them there, hand the tokens back in the
  // caller's order.
  const std::vector<size_t> order = forward_step(items);
  std::vector<SampleRow> packed(rows.size());
  for (size_t oi = 0; oi < order.size(); ++oi) packed[oi] = rows[order[oi]];
  const auto got = sample_device_rows(int64_t(items.size()), packed);
  std::vector<SampledToken> out(items.size());
  for (size_t oi = 0; oi < order.size(); ++oi) out[order[oi]] = got[oi];
  return out;
}

std::vector<SampledToken> Engine::sample_rows(const float* logits, const std::vector<SampleRow>& rows) {
  if (rows.empty()) return {};
  reserve_logits(rows.size());
  backend_->copy_to_device(logits_dev_, logits, rows.size() * size_t(vocab_size()) * sizeof(float));
  return sample_device_rows(int64_t(rows.size()), rows);
}

std::vector<SampledToken> Engine::sample_device_rows(int64_t n, const std::vector<SampleRow>& rows) {
  std::vector<int32_t> tokens(size_t(n), -1);
  std::vector<float> logprobs(size_t(n), 0.0f);
  Tensor logits(logits_dev_, DType::F32, {n, vocab_size()}, backend_->device());
  backend_->sample(logits, rows, tokens.data(), logprobs.data());
  std::vector<SampledToken> out(static_cast<size_t>(n));
  for (size_t i = 0; i < out.size(); ++i) out[i] = {tokens[i], logprobs[i]};
  return out;
}

std::vector<float> Engine::logits_all(const std::vector<int32_t>& ids) {
  HYRAX_REQUIRE(!ids.empty(), "no input ids");
  Sequence seq;
  HYRAX_REQUIRE(open(seq), "no free sequence slot");
  std::vector<float> all;
  try {
    for (size_t i = 0; i < ids.size(); i += size_t(cfg_.max_step_tokens)) {
      const int64_t n = std::min<int64_t>(cfg_.max_step_tokens, int64_t(ids.size() - i));
      auto part = step({StepItem{&seq, ids.data() + i, n, true}});
      all.insert(all.end(), part.begin(), part.end());
    }
  } catch (...) {
    close(seq);
    throw;
  }
  close(seq);
  return all;
}

}  // namespace hyrax
