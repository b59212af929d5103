// Plain references for paged attention and the cache write: float64 softmax and sums, one thread. Also the checks
// shared with the fast versions.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/attention/attention.h"

namespace hyrax::kernels {

namespace detail {
/// Checks the pool and that positions [start_pos[s], start_pos[s] + n_new) of every sequence map to valid blocks.
void check_paged_kv(const PagedKv& kv, int64_t n_seqs, const int32_t* cu_seqlens, const int32_t* start_pos) {
  HYRAX_CHECK(kv.k && kv.v && kv.block_tables, "null pointer in the paged KV cache");
  HYRAX_CHECK(kv.n_blocks > 0 && kv.block_size > 0 && kv.Hkv > 0 && kv.D > 0 && kv.max_blocks_per_seq > 0,
              "n_blocks=", kv.n_blocks, " block_size=", kv.block_size, " Hkv=", kv.Hkv, " D=", kv.D,
              " max_blocks_per_seq=", kv.max_blocks_per_seq);
  HYRAX_CHECK(cu_seqlens && start_pos, "null pointer");
  HYRAX_CHECK(cu_seqlens[0] >= 0, "cu_seqlens[0]=", cu_seqlens[0]);
  for (int64_t s = 0; s < n_seqs; ++s) {
    const int64_t n_new = cu_seqlens[s + 1] - cu_seqlens[s];
    HYRAX_CHECK(n_new >= 0, "cu_seqlens decreases at sequence ", s);
    HYRAX_CHECK(start_pos[s] >= 0, "sequence ", s, " starts at position ", start_pos[s]);
    const int64_t end = start_pos[s] + n_new;  // positions [0, end) are read or written
    const int64_t blocks = (end + kv.block_size - 1) / kv.block_size;
    HYRAX_CHECK(blocks <= kv.max_blocks_per_seq, "sequence ", s, " reaches position ", end - 1, ": needs ", blocks,
                " blocks of ", kv.block_size, ", its table holds ", kv.max_blocks_per_seq);
    for (int64_t b = 0; b < blocks; ++b) {
      const int32_t id = kv.block_tables[s * kv.max_blocks_per_seq + b];
      HYRAX_CHECK(id >= 0 && id < kv.n_blocks, "sequence ", s, " logical block ", b, " maps to block ", id,
                  " of ", kv.n_blocks);
    }
  }
}

void check_attention(const AttentionParams& p) {
  HYRAX_CHECK(p.n_seqs >= 0, "n_seqs=", p.n_seqs);
  if (p.n_seqs == 0) return;
  check_paged_kv(p.kv, p.n_seqs, p.cu_seqlens, p.start_pos);
  HYRAX_CHECK(p.q && p.out, "null pointer");
  HYRAX_CHECK(p.Hq > 0 && p.Hq % p.kv.Hkv == 0, "query heads Hq=", p.Hq, " not a multiple of kv heads Hkv=",
              p.kv.Hkv);
  HYRAX_CHECK(p.ldq >= p.Hq * p.kv.D && p.ldo >= p.Hq * p.kv.D, "row strides ldq=", p.ldq, " ldo=", p.ldo,
              " below Hq*D=", p.Hq * p.kv.D);
  HYRAX_CHECK(std::isfinite(p.scale), "scale=", p.scale);
}

/// Key (or value) row of position pos of sequence s, kv head hk.
inline const float* kv_row(const PagedKv& kv, const float* pool, int64_t s, int64_t pos, int64_t hk) {
  const int64_t block = kv.block_tables[s * kv.max_blocks_per_seq + pos / kv.block_size];
  return pool + ((block * kv.block_size + pos % kv.block_size) * kv.Hkv + hk) * kv.D;
}
}  // namespace detail

void attention_ref(const AttentionParams& p) {
  detail::check_attention(p);
  const int64_t D = p.kv.D, group = p.Hq / p.kv.Hkv;
  std::vector<double> score, acc;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    for (int64_t i = 0; i < p.cu_seqlens[s + 1] - p.cu_seqlens[s]; ++i) {
      const int64_t t = p.cu_seqlens[s] + i, pos = p.start_pos[s] + i;
      for (int64_t h = 0; h < p.Hq; ++h) {
        const float* q = p.q + t * p.ldq + h * D;
        score.assign(size_t(pos + 1), 0.0);
        double m = -INFINITY;
        for (int64_t j = 0; j <= pos; ++j) {
          const float* k = detail::kv_row(p.kv, p.kv.k, s, j, h / group);
          double dot = 0.0;
          for (int64_t d = 0; d < D; ++d) dot += double(q[d]) * double(k[d]);
          score[size_t(j)] = dot * double(p.scale);
          m = std::max(m, score[size_t(j)]);
        }
        double sum = 0.0;
        for (double& x : score) sum += (x = std::exp(x - m));
        acc.assign(size_t(D), 0.0);
        for (int64_t j = 0; j <= pos; ++j) {
          const float* v = detail::kv_row(p.kv, p.kv.v, s, j, h / group);
          for (int64_t d = 0; d < D; ++d) acc[size_t(d)] += score[size_t(j)] * double(v[d]);
        }
        float* o = p.out + t * p.ldo + h * D;
        for (int64_t d = 0; d < D; ++d) o[d] = float(acc[size_t(d)] / sum);
      }
    }
  }
}

}  // namespace hyrax::kernels
