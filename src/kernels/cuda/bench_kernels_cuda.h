// Kernel benchmarks on the GPU (`hyrax bench-kernels --device cuda`): the Olmo Hybrid 7B shapes of the gated delta
// rule (prefill and decode), attention (prefill and paged decode), the model's GEMMs and sampling (beside the host
// path it replaced), each printed beside the
// hardware limit measured in the same run (device-to-device copy bandwidth, a large cuBLAS bf16 GEMM).
#pragma once

#include <string>

namespace hyrax::kernels::cuda {

struct KernelBenchOptions {
  bool gdn = true, attention = true, gemm = true, sampling = true;
  bool quick = false;  // fewer sizes and repetitions (a smoke run)
};

/// Runs the selected benchmarks on GPU 0 and prints one line per figure to stdout.
void run_kernel_benchmarks(const KernelBenchOptions& o);

/// GPU 0's limits as measured now: device-to-device copy (bytes read + written per second, 1 GiB) and a cuBLAS bf16
/// 8192³ product (FLOP/s); the card's name.
struct DeviceLimits {
  double copy_Bps = 0, gemm_flops = 0;
  std::string name;
};
DeviceLimits measure_device_limits();

}  // namespace hyrax::kernels::cuda
