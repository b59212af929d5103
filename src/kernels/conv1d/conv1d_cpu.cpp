// conv1d on all cores: work items are (sequence, block of kChannels channels), cost-balanced over the threads; each
// item walks its tokens in order, vectorized over channels, with the taps transposed to [W, C] once per call.
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/check.h"
#include "kernels/conv1d/conv1d.h"
#include "kernels/cpu_schedule.h"
#include "kernels/cpu_simd.h"

namespace hyrax::kernels {

namespace detail {
void check_conv1d(const Conv1dParams& p);
}  // namespace detail

namespace {

using simd::kLanes;
using simd::vf;

constexpr int64_t kChannels = 256;  // channels per work item (a multiple of kLanes)

/// Outputs of one sequence for channels [c0, c0 + n); wt is [W, C].
void conv_block(const Conv1dParams& p, const float* wt, int64_t s, int64_t c0, int64_t n) {
  const int64_t C = p.C, W = p.W, S = W - 1;
  const int64_t t0 = p.cu_seqlens[s], L = p.cu_seqlens[s + 1] - t0;
  float* state = S > 0 ? p.state + int64_t(p.state_slots[s]) * S * C + c0 : nullptr;
  // Input row e of the sequence with its history in front: e < S is a state row, else token e - S.
  auto row = [&](int64_t e) -> const float* {
    return e < S ? state + e * C : p.x + (t0 + e - S) * p.ldx + c0;
  };
  const int64_t nv = n / kLanes * kLanes;
  for (int64_t t = 0; t < L; ++t) {
    float* y = p.y + (t0 + t) * p.ldy + c0;
    for (int64_t c = 0; c < nv; c += kLanes) {
      vf acc{};
      for (int64_t j = 0; j < W; ++j) acc += simd::load(wt + j * C + c0 + c) * simd::load(row(t + j) + c);
      simd::store(y + c, p.silu ? simd::silu(acc) : acc);
    }
    if (nv < n) {  // channel tail: a zero-padded vector, so it goes through the same arithmetic
      vf acc{};
      for (int64_t j = 0; j < W; ++j) {
        vf wv{}, xv{};
        for (int64_t c = nv; c < n; ++c) wv[c - nv] = wt[j * C + c0 + c], xv[c - nv] = row(t + j)[c];
        acc += wv * xv;
      }
      if (p.silu) acc = simd::silu(acc);
      for (int64_t c = nv; c < n; ++c) y[c] = acc[c - nv];
    }
  }
  // New state: the last S rows of [state; x]. Rows move toward the front, so copying in increasing order reads each
  // old state row before it is overwritten.
  for (int64_t r = 0; r < S; ++r) std::memmove(state + r * C, row(L + r), size_t(n) * sizeof(float));
}

}  // namespace

void conv1d(const Conv1dParams& p) {
  detail::check_conv1d(p);
  const int64_t C = p.C, W = p.W;
  std::vector<float> wt(size_t(W * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t j = 0; j < W; ++j) wt[size_t(j * C + c)] = p.w[c * W + j];
  const int64_t n_blocks = (C + kChannels - 1) / kChannels;
  parallel_items(
      p.n_seqs * n_blocks,
      [&](int64_t i) {
        const int64_t s = i / n_blocks;
        return int64_t(p.cu_seqlens[s + 1] - p.cu_seqlens[s]) + 1;
      },
      [&](int64_t i) {
        const int64_t s = i / n_blocks, c0 = (i % n_blocks) * kChannels;
        conv_block(p, wt.data(), s, c0, std::min(kChannels, C - c0));
      });
}

}  // namespace hyrax::kernels
