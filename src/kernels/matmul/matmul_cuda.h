// Dense projections on the GPU through cuBLASLt: y[R, N] = x[R, K] · w[N, K]ᵀ, bf16 operands, float32
// accumulation, bf16 or float32 output.
//
// Batch invariance: cuBLASLt picks kernels by shape, and kernels of different tilings or split-K counts sum a dot
// product in different orders. So the algorithm is chosen once per shape class — everything about a call except
// its row count R: (N, K, output type, row strides, pointer alignments) — from the library's heuristic at a fixed
// reference row count, with split-K excluded, and then used for every R. Each output element is then one
// uninterrupted K loop of one kernel whatever R is, and a row's bits do not depend on the rows beside it.
// Small calls (R <= 32) and large ones (R >= 1024) may run on another, faster algorithm, taken only where it was
// checked to give bitwise the same result as the pinned one (split-K-free cuBLASLt kernels on Hopper sum in the same
// order; the check keeps any that do not out), so the choice, made by timing, changes no bits.
//
// The decode GEMM (decode_gemm, matmul.cu) is hyrax's own kernel for the rows of decoding sequences: weight-
// streaming at R = 1…8, tensor cores up to R = 64, correct for any R. Its reduction order is fixed by (N, K) alone,
// so its rows are as invariant as cuBLASLt's — but it sums in a different order than cuBLASLt, so a given row must
// always take the same one of the two. The CUDA backend's rule: the rows of the step's leading one-token
// sequences (the engine packs them first) take decode_gemm, all other rows the pinned cuBLASLt algorithm; outside
// a step every row takes cuBLASLt; and only in engines whose steps hold at most 32 sequences (beyond that the
// decode GEMM loses to cuBLASLt, and a row may not change kernels with its batch: docs/CUDA.md).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace hyrax::kernels::cuda {

/// The most rows and taps decode_gemm's conv1d epilogue (GemmArgs::conv) takes.
constexpr int64_t kDecodeGemmConvRows = 8, kDecodeGemmConvTaps = 4;

struct GemmArgs {
  const __nv_bfloat16* x = nullptr;  // [R, K], row stride ldx
  int64_t ldx = 0;
  const __nv_bfloat16* w = nullptr;  // [N, K], contiguous
  void* y = nullptr;                 // [R, N], row stride ldy: bf16, or float32 when y_f32
  bool y_f32 = false;
  int64_t ldy = 0;
  int64_t R = 0, N = 0, K = 0;
  // decode_gemm only: > 0 fuses the gated MLP's activation: w is [gate; up] (N = 2·glu_half rows) and y[R,
  // glu_half] (bf16) = silu(x·gateᵀ)·(x·upᵀ), with the bits of the GEMM into [gate | up] followed by swiglu.
  int64_t glu_half = 0;
  // decode_gemm only (R <= kDecodeGemmConvRows, bf16 y, no glu_half, W <= kDecodeGemmConvTaps): row r is the one
  // token of sequence r, and columns
  // [0, conv.C) of y also pass through the causal conv1d + SiLU of kernels/conv1d, continuing from and updating each
  // sequence's conv state, with conv1d's bits: conv.out[r, n] = bf16(silu(Σ_j w[n, j]·[state; y][j])), then the
  // state shifted.
  struct Conv {
    int64_t C = 0, W = 0;
    const float* w = nullptr;        // [C, W]
    float* state = nullptr;          // [n_slots, W-1, C]
    const int32_t* slots = nullptr;  // [R] device: row r's state slot
    __nv_bfloat16* out = nullptr;    // [R, C], row stride ld_out
    int64_t ld_out = 0;
  };
  Conv conv = {};
};

/// y = x · wᵀ for decode-sized R on hyrax's own kernel (mma.sync, no split across blocks, no atomics, no scratch,
/// no host synchronization: capturable in a CUDA graph). y[r, n] is one fixed sum determined by (N, K): bitwise the
/// same for any R and any rows beside r. Any strides and alignments (unaligned operands take slower loads, same sums).
void decode_gemm(const GemmArgs& a, cudaStream_t stream);
/// The warps that split K within a block of decode_gemm for a shape (N, K) (for benchmarks and logs).
int decode_gemm_k_warps(int64_t N, int64_t K);
/// decode_gemm with another K split (1, 2, 4 or 8 warps; other sums) and, from 17 rows, another layout of the work
/// (0 … kDecodeGemmLayouts-1, -1: the default; the same sums and bits whatever the layout). For benchmarks tuning
/// the rules and for tests.
constexpr int kDecodeGemmLayouts = 3;
void decode_gemm(const GemmArgs& a, cudaStream_t stream, int k_warps, int layout = -1);

class Gemm {
 public:
  /// rows_ref: the row count at which the heuristic picks each shape class's algorithm; other_rows: also look for
  /// bitwise-equivalent faster algorithms for R <= 32 and R >= 1024.
  explicit Gemm(int64_t rows_ref = 256, bool other_rows = true);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  /// y = x · wᵀ with the shape class's pinned algorithm.
  void run(const GemmArgs& a, cudaStream_t stream);
  /// y = x · wᵀ with the heuristic's first choice for this exact shape (the library at its best; not invariant).
  void run_unpinned(const GemmArgs& a, cudaStream_t stream);
  /// A short description of the algorithm pinned for a's shape class (for logs and benchmarks).
  std::string pinned_algo(const GemmArgs& a);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hyrax::kernels::cuda
