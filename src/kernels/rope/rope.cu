// RoPE on the GPU: the angle formed in float32 exactly as transformers does (inv_freq = 1 / theta^(2i/D),
// angle = pos · inv_freq), cos/sin and the rotation in float64, one rounding to bf16.
#include <algorithm>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/rope/rope_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using hyrax::cuda::to_bf;
using hyrax::cuda::to_f;

__global__ void rope_kernel(RopeParams p) {
  hyrax::cuda::begin_after_previous_grids();
  const int64_t half = p.D / 2, n = p.T * p.H * half;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e % half, h = (e / half) % p.H, t = e / (half * p.H);
    const float inv_freq = 1.0f / powf(p.theta, float(2 * i) / float(p.D));
    const float angle = float(p.pos[t]) * inv_freq;
    double s, c;
    sincos(double(angle), &s, &c);
    __nv_bfloat16* x = p.x + t * p.ldx + h * p.D;
    const double x1 = to_f(x[i]), x2 = to_f(x[i + half]);
    x[i] = to_bf(float(x1 * c - x2 * s));
    x[i + half] = to_bf(float(x2 * c + x1 * s));
  }
}

}  // namespace

void rope(const RopeParams& p, cudaStream_t stream) {
  HYRAX_CHECK(p.T >= 0 && p.H > 0 && p.D > 0 && p.D % 2 == 0, "T=", p.T, " H=", p.H, " D=", p.D);
  if (p.T == 0) return;
  HYRAX_CHECK(p.x && p.pos, "null pointer");
  HYRAX_CHECK(p.ldx >= p.H * p.D, "row stride ldx=", p.ldx, " below H*D=", p.H * p.D);
  HYRAX_CHECK(p.theta > 0.0f, "theta=", p.theta);
  const int64_t n = p.T * p.H * (p.D / 2);
  const int threads = 256;
  const unsigned blocks = unsigned(std::min<int64_t>((n + threads - 1) / threads, 132 * 16));
  hyrax::cuda::launch("rope", rope_kernel, dim3(blocks), dim3(threads), 0, stream, p);
}

}  // namespace hyrax::kernels::cuda
