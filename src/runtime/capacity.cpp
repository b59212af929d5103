#include "runtime/capacity.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "core/check.h"

namespace hyrax {

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

size_t parse_bytes(const std::string& text) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  HYRAX_REQUIRE(i > 0, "\"", text, "\" is not a size (e.g. 4G, 512M, 1073741824)");
  double v = 0;
  try {
    v = std::stod(text.substr(0, i));
  } catch (const std::exception&) {
    fail("\"", text, "\" is not a size (e.g. 4G, 512M, 1073741824)");
  }
  std::string unit = text.substr(i);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() > 1 && unit.back() == 'B') unit.pop_back();
  if (unit.size() > 1 && unit.back() == 'I') unit.pop_back();
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else fail("\"", text, "\": unknown size unit (use K, M, G or T)");
  const double bytes = std::floor(v * mult);
  HYRAX_REQUIRE(std::isfinite(bytes) && bytes > 0 && bytes < 1e18, "\"", text, "\" is not a positive size");
  return size_t(bytes);
}

Capacity plan_capacity(const StateSpec& spec, DType kv_dtype, int64_t model_max_positions, const CapacityRequest& r) {
  HYRAX_REQUIRE(r.block_size > 0, "block size must be positive, got ", r.block_size);
  HYRAX_REQUIRE(r.max_seqs >= 0 && r.max_seq_len >= 0, "max_seqs and max_seq_len must not be negative");
  Capacity c;
  c.block_size = r.block_size;
  c.slot_bytes = spec.recurrent_bytes_per_seq();
  c.token_bytes = spec.kv_bytes_per_token(kv_dtype);
  c.has_kv = c.token_bytes > 0;
  c.max_seq_len = r.max_seq_len > 0 ? r.max_seq_len : (model_max_positions > 0 ? model_max_positions : 4096);
  HYRAX_REQUIRE(model_max_positions <= 0 || c.max_seq_len <= model_max_positions, "--max-seq-len ", c.max_seq_len,
                " exceeds the model's max_position_embeddings (", model_max_positions, ")");
  const size_t block_bytes = size_t(c.block_size) * c.token_bytes;
  const int64_t blocks_per_seq = (c.max_seq_len + c.block_size - 1) / c.block_size;

  if (r.max_memory == 0) {
    // No budget: exactly what max_seqs sequences of max_seq_len positions need.
    c.max_seqs = r.max_seqs > 0 ? r.max_seqs : r.default_max_seqs;
    c.n_blocks = blocks_per_seq * c.max_seqs;
  } else {
    const size_t one_seq = c.slot_bytes + size_t(blocks_per_seq) * block_bytes;
    HYRAX_REQUIRE(r.max_memory >= one_seq, "--max-memory ", format_bytes(double(r.max_memory)),
                  " cannot hold one sequence of ", c.max_seq_len, " positions (", format_bytes(double(one_seq)),
                  ": ", format_bytes(double(c.slot_bytes)), " of recurrent state + ",
                  format_bytes(double(c.token_bytes)), " of KV per position); raise it or lower --max-seq-len");
    if (r.max_seqs > 0) {
      c.max_seqs = r.max_seqs;
    } else {
      // As many sequences as fit beside the KV of one full-length sequence, up to the default.
      const size_t spare = r.max_memory - size_t(blocks_per_seq) * block_bytes;
      c.max_seqs = std::min<int64_t>(r.default_max_seqs, int64_t(spare / std::max<size_t>(c.slot_bytes, 1)));
    }
    const size_t slots_bytes = size_t(c.max_seqs) * c.slot_bytes;
    HYRAX_REQUIRE(slots_bytes + size_t(blocks_per_seq) * block_bytes <= r.max_memory, "--max-memory ",
                  format_bytes(double(r.max_memory)), " cannot hold ", c.max_seqs, " sequences' recurrent state (",
                  format_bytes(double(slots_bytes)), ") plus one sequence of ", c.max_seq_len,
                  " positions; lower --max-seqs or --max-seq-len, or raise --max-memory");
    // Every byte left buys KV blocks, up to what max_seqs full-length sequences could use.
    const int64_t useful = blocks_per_seq * c.max_seqs;
    c.n_blocks = c.has_kv ? std::min<int64_t>(useful, int64_t((r.max_memory - slots_bytes) / block_bytes)) : useful;
  }
  c.kv_tokens = c.n_blocks * c.block_size;
  c.pool_bytes = size_t(c.max_seqs) * c.slot_bytes + size_t(c.kv_tokens) * c.token_bytes;
  return c;
}

std::string Capacity::describe() const {
  std::string kv = has_kv ? str_cat(kv_tokens, " KV tokens (", n_blocks, " blocks of ", block_size, ", ",
                                    format_bytes(double(token_bytes)), " per token)")
                          : std::string("no KV cache (no attention layers)");
  const int64_t full = has_kv ? std::min<int64_t>(max_seqs, kv_tokens / std::max<int64_t>(max_seq_len, 1)) : max_seqs;
  return str_cat("capacity: ", max_seqs, " sequences (", format_bytes(double(slot_bytes)), " of recurrent state each), ",
                 kv, " = ", format_bytes(double(pool_bytes)), " state pool; context ", max_seq_len, " positions, ",
                 full, " full-context sequences at once");
}

EngineConfig Capacity::engine_config(int64_t max_step_tokens) const {
  EngineConfig e;
  e.max_seqs = max_seqs;
  e.max_seq_len = max_seq_len;
  e.max_kv_tokens = kv_tokens;
  e.block_size = block_size;
  e.max_step_tokens = max_step_tokens;
  return e;
}

}  // namespace hyrax
