// Plain reference for conv1d: float64 sums, one thread, one sequence at a time.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "kernels/conv1d/conv1d.h"

namespace hyrax::kernels {

namespace detail {
void check_conv1d(const Conv1dParams& p) {
  HYRAX_CHECK(p.n_seqs >= 0 && p.C > 0 && p.W >= 1, "n_seqs=", p.n_seqs, " C=", p.C, " W=", p.W);
  if (p.n_seqs == 0) return;
  HYRAX_CHECK(p.cu_seqlens && p.state_slots && p.x && p.y && p.w, "null pointer");
  HYRAX_CHECK(p.W == 1 || p.state, "null state with W=", p.W);
  HYRAX_CHECK(p.ldx >= p.C && p.ldy >= p.C, "row strides ldx=", p.ldx, " ldy=", p.ldy, " below C=", p.C);
  HYRAX_CHECK(p.x != p.y, "y must not alias x");
  HYRAX_CHECK(p.cu_seqlens[0] >= 0, "cu_seqlens[0]=", p.cu_seqlens[0]);
  std::vector<int32_t> slots(p.state_slots, p.state_slots + p.n_seqs);
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    HYRAX_CHECK(p.cu_seqlens[s + 1] >= p.cu_seqlens[s], "cu_seqlens decreases at sequence ", s);
    HYRAX_CHECK(p.state_slots[s] >= 0, "sequence ", s, " has state slot ", p.state_slots[s]);
  }
  std::sort(slots.begin(), slots.end());
  HYRAX_CHECK(std::adjacent_find(slots.begin(), slots.end()) == slots.end(), "two sequences share a state slot");
}
}  // namespace detail

void conv1d_ref(const Conv1dParams& p) {
  detail::check_conv1d(p);
  const int64_t C = p.C, W = p.W, S = W - 1;
  for (int64_t s = 0; s < p.n_seqs; ++s) {
    const int64_t t0 = p.cu_seqlens[s], L = p.cu_seqlens[s + 1] - t0;
    float* state = S > 0 ? p.state + int64_t(p.state_slots[s]) * S * C : nullptr;
    // The sequence's inputs with its history in front: ext[0, S) = state, ext[S, S + L) = x.
    std::vector<float> ext(size_t((S + L) * C));
    for (int64_t r = 0; r < S; ++r)
      for (int64_t c = 0; c < C; ++c) ext[size_t(r * C + c)] = state[r * C + c];
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < C; ++c) ext[size_t((S + t) * C + c)] = p.x[(t0 + t) * p.ldx + c];
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t c = 0; c < C; ++c) {
        double acc = 0.0;
        for (int64_t j = 0; j < W; ++j) acc += double(p.w[c * W + j]) * double(ext[size_t((t + j) * C + c)]);
        if (p.silu) acc = acc / (1.0 + std::exp(-acc));
        p.y[(t0 + t) * p.ldy + c] = float(acc);
      }
    }
    for (int64_t r = 0; r < S; ++r)
      for (int64_t c = 0; c < C; ++c) state[r * C + c] = ext[size_t((L + r) * C + c)];
  }
}

}  // namespace hyrax::kernels
