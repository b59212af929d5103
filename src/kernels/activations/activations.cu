// Elementwise ops on the GPU: 16-byte accesses where every row is aligned, one element per thread otherwise.
#include <algorithm>

#include "core/check.h"
#include "kernels/activations/activations_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"

namespace hyrax::kernels::cuda {
namespace {

using hyrax::cuda::bf16;
using hyrax::cuda::silu;
using hyrax::cuda::to_bf;
using hyrax::cuda::to_f;

struct SwigluOp {
  __device__ float operator()(float g, float u) const { return silu(g) * u; }
};
struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};

template <class Op, int V>
__global__ void binary_kernel(View2d a, View2d b, View2d y, int64_t T, int64_t C) {
  hyrax::cuda::begin_after_previous_grids();
  const int64_t cv = C / V, n = T * cv;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cv, c = (i % cv) * V;
    if constexpr (V == 8) {
      const uint4 ra = *reinterpret_cast<const uint4*>(a.p + t * a.ld + c);
      const uint4 rb = *reinterpret_cast<const uint4*>(b.p + t * b.ld + c);
      const bf16* va = reinterpret_cast<const bf16*>(&ra);
      const bf16* vb = reinterpret_cast<const bf16*>(&rb);
      uint4 out;
      bf16* o = reinterpret_cast<bf16*>(&out);
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] = to_bf(Op()(to_f(va[k]), to_f(vb[k])));
      *reinterpret_cast<uint4*>(y.p + t * y.ld + c) = out;
    } else {
      y.p[t * y.ld + c] = to_bf(Op()(to_f(a.p[t * a.ld + c]), to_f(b.p[t * b.ld + c])));
    }
  }
}

bool vec_ok(View2d v) { return (reinterpret_cast<uintptr_t>(v.p) & 15) == 0 && v.ld % 8 == 0; }

template <class Op>
void launch(View2d a, View2d b, View2d y, int64_t T, int64_t C, cudaStream_t stream, const char* what) {
  HYRAX_CHECK(T >= 0 && C > 0, what, ": T=", T, " C=", C);
  if (T == 0) return;
  HYRAX_CHECK(a.p && b.p && y.p, what, ": null pointer");
  HYRAX_CHECK(a.ld >= C && b.ld >= C && y.ld >= C, what, ": row stride below C=", C);
  const bool vec = C % 8 == 0 && vec_ok(a) && vec_ok(b) && vec_ok(y);
  const int64_t n = T * (vec ? C / 8 : C);
  const int threads = 256;
  const unsigned blocks = unsigned(std::min<int64_t>((n + threads - 1) / threads, 132 * 16));
  hyrax::cuda::launch(what, vec ? binary_kernel<Op, 8> : binary_kernel<Op, 1>, dim3(blocks), dim3(threads), 0, stream,
                      a, b, y, T, C);
}

}  // namespace

void swiglu(View2d gate, View2d up, View2d y, int64_t T, int64_t C, cudaStream_t stream) {
  launch<SwigluOp>(gate, up, y, T, C, stream, "swiglu");
}

void add(View2d a, View2d b, View2d y, int64_t T, int64_t C, cudaStream_t stream) {
  launch<AddOp>(a, b, y, T, C, stream, "add");
}

}  // namespace hyrax::kernels::cuda
