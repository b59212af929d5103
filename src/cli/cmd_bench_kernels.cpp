// hyrax bench-kernels: GPU kernel benchmarks at Olmo Hybrid 7B shapes (gated delta rule prefill and decode,
// attention prefill and paged decode, the model's GEMMs), each beside the hardware limit measured in the same run.
// The peers (flash-linear-attention's kernels, torch SDPA) are measured by bench/peers/peer_bench.py.
#include <set>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/check.h"
#ifdef HYRAX_HAS_CUDA
#include "kernels/cuda/bench_kernels_cuda.h"
#endif

namespace hyrax::cli {
namespace {

struct Options {
  std::string device = "cuda";
  std::vector<std::string> only;
  bool quick = false;
};

void run(const Options& o) {
  HYRAX_REQUIRE(o.device == "cuda", "bench-kernels measures GPU kernels: use --device cuda (whole-model CPU figures: "
                                    "hyrax bench)");
#ifdef HYRAX_HAS_CUDA
  kernels::cuda::KernelBenchOptions k;
  if (!o.only.empty()) {
    const std::set<std::string> s(o.only.begin(), o.only.end());
    k.gdn = s.count("gdn") > 0;
    k.attention = s.count("attention") > 0;
    k.gemm = s.count("gemm") > 0;
    k.sampling = s.count("sampling") > 0;
  }
  k.quick = o.quick;
  kernels::cuda::run_kernel_benchmarks(k);
#else
  fail("bench-kernels: this build of hyrax has no CUDA backend");
#endif
}

const RegisterCommand reg{{"bench-kernels", "Measure the GPU kernels against the hardware limits",
                           [](CLI::App& app) {
                             auto o = std::make_shared<Options>();
                             app.add_option("--device", o->device, "cuda")->check(CLI::IsMember({"cpu", "cuda"}));
                             app.add_option("--only", o->only, "gdn, attention, gemm and/or sampling (default: all)")
                                 ->check(CLI::IsMember({"gdn", "attention", "gemm", "sampling"}));
                             app.add_flag("--quick", o->quick, "fewer sizes and repetitions");
                             app.callback([o] { run(*o); });
                           },
                           65}};

}  // namespace
}  // namespace hyrax::cli
