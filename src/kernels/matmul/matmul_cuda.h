// Dense projections on the GPU through cuBLASLt: y[R, N] = x[R, K] · w[N, K]ᵀ, bf16 operands, float32
// accumulation, bf16 or float32 output.
//
// Batch invariance: cuBLASLt picks kernels by shape, and kernels of different tilings or split-K counts sum a dot
// product in different orders. So the algorithm is chosen once per shape class — everything about a call except
// its row count R: (N, K, output type, row strides, pointer alignments) — from the library's heuristic at a fixed
// reference row count, with split-K excluded, and then used for every R. Each output element is then one
// uninterrupted K loop of one kernel whatever R is, and a row's bits do not depend on the rows beside it.
// Decode-sized calls (R <= 32) may run on a second, faster algorithm, taken only where it was checked to give
// bitwise the same result as the pinned one (split-K-free cuBLASLt kernels on Hopper sum in the same order; the
// check keeps any that do not out), so the choice, made by timing, changes no bits.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <string>

namespace hyrax::kernels::cuda {

struct GemmArgs {
  const __nv_bfloat16* x = nullptr;  // [R, K], row stride ldx
  int64_t ldx = 0;
  const __nv_bfloat16* w = nullptr;  // [N, K], contiguous
  void* y = nullptr;                 // [R, N], row stride ldy: bf16, or float32 when y_f32
  bool y_f32 = false;
  int64_t ldy = 0;
  int64_t R = 0, N = 0, K = 0;
};

class Gemm {
 public:
  /// rows_ref: the row count at which the heuristic picks each shape class's algorithm; small_rows: also look for
  /// a bitwise-equivalent faster algorithm for R <= 32.
  explicit Gemm(int64_t rows_ref = 256, bool small_rows = true);
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
