// Paged attention on all cores: tasks are (sequence, query head, run of up to max_rows() new tokens), cost-balanced
// over the threads (cost ≈ rows × keys), each running the kernel of attention_cpu.h for the widest ISA this CPU has.
// kv_cache_write is here too.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "kernels/attention/attention.h"
#include "kernels/cpu_schedule.h"

#define HYRAX_ATTN_ISA attn_baseline
#include "kernels/attention/attention_cpu.h"

namespace hyrax::kernels {

namespace detail {
void check_paged_kv(const PagedKv& kv, int64_t n_seqs, const int32_t* cu_seqlens, const int32_t* start_pos);
void check_attention(const AttentionParams& p);
}  // namespace detail

#define HYRAX_ATTN_DECLARE(ns)                                                                      \
  namespace ns {                                                                                    \
  int64_t max_rows();                                                                               \
  int64_t scratch(const AttentionParams& p, int64_t max_keys);                                      \
  void rows(const AttentionParams& p, int64_t s, int64_t h, int64_t i0, int64_t i1, int64_t max_keys, \
            float* scratch);                                                                        \
  }
HYRAX_ATTN_DECLARE(attn_avx2)
HYRAX_ATTN_DECLARE(attn_avx512)
#undef HYRAX_ATTN_DECLARE

namespace {

struct AttnKernels {
  int64_t (*max_rows)();
  int64_t (*scratch)(const AttentionParams&, int64_t);
  void (*rows)(const AttentionParams&, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
};

const AttnKernels& kernels_for_this_cpu() {
  static const AttnKernels baseline{attn_baseline::max_rows, attn_baseline::scratch, attn_baseline::rows};
  static const AttnKernels avx2{attn_avx2::max_rows, attn_avx2::scratch, attn_avx2::rows};
  static const AttnKernels avx512{attn_avx512::max_rows, attn_avx512::scratch, attn_avx512::rows};
  switch (simd_level()) {
    case SimdLevel::Avx512: return avx512;
    case SimdLevel::Avx2: return avx2;
    case SimdLevel::Scalar: break;
  }
  return baseline;
}

float* thread_scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

struct Task {
  int32_t s, h, i0, i1;
};

}  // namespace

void attention(const AttentionParams& p) {
  detail::check_attention(p);
  const AttnKernels& k = kernels_for_this_cpu();
  const int64_t run = k.max_rows();
  std::vector<Task> tasks;
  int64_t max_keys = 1;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    const int64_t n_new = p.cu_seqlens[s + 1] - p.cu_seqlens[s];
    max_keys = std::max<int64_t>(max_keys, p.start_pos[s] + n_new);
    for (int64_t h = 0; h < p.Hq; ++h)
      for (int64_t i = 0; i < n_new; i += run)
        tasks.push_back({int32_t(s), int32_t(h), int32_t(i), int32_t(std::min(n_new, i + run))});
  }
  const int64_t scratch = k.scratch(p, max_keys);
  parallel_items(
      int64_t(tasks.size()),
      [&](int64_t i) {
        const Task& t = tasks[size_t(i)];
        return int64_t(t.i1 - t.i0) * (p.start_pos[t.s] + t.i1);
      },
      [&](int64_t i) {
        const Task& t = tasks[size_t(i)];
        k.rows(p, t.s, t.h, t.i0, t.i1, max_keys, thread_scratch(scratch));
      });
}

void kv_cache_write(const KvWriteParams& p) {
  HYRAX_CHECK(p.n_seqs >= 0, "n_seqs=", p.n_seqs);
  if (p.n_seqs == 0) return;
  detail::check_paged_kv(p.kv, p.n_seqs, p.cu_seqlens, p.start_pos);
  const PagedKv& kv = p.kv;
  const int64_t row = kv.Hkv * kv.D;
  HYRAX_CHECK(p.k && p.v, "null pointer");
  HYRAX_CHECK(p.ldk >= row && p.ldv >= row, "row strides ldk=", p.ldk, " ldv=", p.ldv, " below Hkv*D=", row);
  const int64_t t_begin = p.cu_seqlens[0], T = p.cu_seqlens[p.n_seqs] - t_begin;
  parallel_for(T, 64, [&](int64_t i0, int64_t i1) {
    // The sequence of packed token t_begin + i0, then walk forward.
    int64_t s = std::upper_bound(p.cu_seqlens, p.cu_seqlens + p.n_seqs + 1, int32_t(t_begin + i0)) - p.cu_seqlens - 1;
    for (int64_t t = t_begin + i0; t < t_begin + i1; ++t) {
      while (t >= p.cu_seqlens[s + 1]) ++s;
      const int64_t pos = p.start_pos[s] + (t - p.cu_seqlens[s]);
      const int64_t block = kv.block_tables[s * kv.max_blocks_per_seq + pos / kv.block_size];
      const int64_t at = (block * kv.block_size + pos % kv.block_size) * row;
      std::memcpy(kv.k + at, p.k + t * p.ldk, size_t(row) * sizeof(float));
      std::memcpy(kv.v + at, p.v + t * p.ldv, size_t(row) * sizeof(float));
    }
  });
}

}  // namespace hyrax::kernels
