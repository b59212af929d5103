// The gated delta rule on all cores: one task per (sequence, value head), cost-balanced over the threads (a task's
// cost is its sequence's length), each running the kernels of gated_delta_rule_cpu.h for the widest ISA this CPU has.
#include <vector>

#include "core/check.h"
#include "core/cpu_features.h"
#include "kernels/cpu_schedule.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"

#define HYRAX_GDN_ISA gdn_baseline
#include "kernels/gated_delta_rule/gated_delta_rule_cpu.h"

namespace hyrax::kernels {

namespace detail {
void check_gated_delta_rule(const GatedDeltaRuleParams& p);
}  // namespace detail

#define HYRAX_GDN_DECLARE(ns)                                                                  \
  namespace ns {                                                                               \
  int64_t recurrent_scratch(const GatedDeltaRuleParams& p);                                    \
  int64_t chunked_scratch(const GatedDeltaRuleParams& p, int chunk);                           \
  void recurrent_task(const GatedDeltaRuleParams& p, int64_t s, int64_t h, float* scratch);    \
  void chunked_task(const GatedDeltaRuleParams& p, int64_t s, int64_t h, int chunk, float* w); \
  }
HYRAX_GDN_DECLARE(gdn_avx2)
HYRAX_GDN_DECLARE(gdn_avx512)
#undef HYRAX_GDN_DECLARE

namespace {

struct GdnKernels {
  int64_t (*recurrent_scratch)(const GatedDeltaRuleParams&);
  int64_t (*chunked_scratch)(const GatedDeltaRuleParams&, int);
  void (*recurrent_task)(const GatedDeltaRuleParams&, int64_t, int64_t, float*);
  void (*chunked_task)(const GatedDeltaRuleParams&, int64_t, int64_t, int, float*);
};

const GdnKernels& kernels_for_this_cpu() {
  static const GdnKernels baseline{gdn_baseline::recurrent_scratch, gdn_baseline::chunked_scratch,
                                   gdn_baseline::recurrent_task, gdn_baseline::chunked_task};
  static const GdnKernels avx2{gdn_avx2::recurrent_scratch, gdn_avx2::chunked_scratch, gdn_avx2::recurrent_task,
                               gdn_avx2::chunked_task};
  static const GdnKernels avx512{gdn_avx512::recurrent_scratch, gdn_avx512::chunked_scratch,
                                 gdn_avx512::recurrent_task, gdn_avx512::chunked_task};
  switch (simd_level()) {
    case SimdLevel::Avx512: return avx512;
    case SimdLevel::Avx2: return avx2;
    case SimdLevel::Scalar: break;
  }
  return baseline;
}

/// This thread's scratch, grown to at least n floats; kept between calls.
float* thread_scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

/// Runs task(s, h, scratch) for every (sequence, value head), balanced by sequence length.
template <class Task>
void for_each_seq_head(const GatedDeltaRuleParams& p, int64_t scratch_floats, const Task& task) {
  parallel_items(
      p.n_seqs * p.Hv, [&](int64_t i) { return int64_t(p.cu_seqlens[i / p.Hv + 1] - p.cu_seqlens[i / p.Hv]); },
      [&](int64_t i) { task(i / p.Hv, i % p.Hv, thread_scratch(scratch_floats)); });
}

}  // namespace

void gated_delta_rule_recurrent(const GatedDeltaRuleParams& p) {
  detail::check_gated_delta_rule(p);
  const GdnKernels& k = kernels_for_this_cpu();
  for_each_seq_head(p, k.recurrent_scratch(p),
                    [&](int64_t s, int64_t h, float* w) { k.recurrent_task(p, s, h, w); });
}

void gated_delta_rule_chunked(const GatedDeltaRuleParams& p, int chunk) {
  detail::check_gated_delta_rule(p);
  HYRAX_CHECK(chunk >= 1, "chunk=", chunk);
  const GdnKernels& k = kernels_for_this_cpu();
  for_each_seq_head(p, k.chunked_scratch(p, chunk),
                    [&](int64_t s, int64_t h, float* w) { k.chunked_task(p, s, h, chunk, w); });
}

}  // namespace hyrax::kernels
