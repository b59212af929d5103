// Kernel launches that may overlap the kernel before them (Hopper's programmatic dependent launch).
//
// A decode step is hundreds of short kernels, each waiting for the one before it. Launched through `launch`, a
// kernel's blocks may be scheduled while the previous kernel on the stream is still running (in a CUDA graph too:
// capture turns the launch attribute into a programmatic edge), so the launch latency and the kernel's own start
// (for the decode GEMM: its first weight loads) hide behind the previous kernel's tail.
//
// The contract every kernel launched this way keeps, so that it is as safe as an ordinary launch:
//   1. Before `wait_for_previous_grids()` a kernel writes nothing and reads only what the kernel launched just
//      before it does not write (weights; a state that kernel does not touch). Every block reaches the wait before
//      it exits.
//   2. `let_next_grid_start()` comes only after the wait. So when a kernel starts, every kernel but the one just
//      before it has completed, and the wait covers that one (it returns once the previous grid has completed and
//      its memory is visible).
// Both instructions are no-ops when the kernel was launched without the attribute, or has nothing before it.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "kernels/cuda/cuda_check.h"

namespace hyrax::cuda {

/// Blocks until the previous kernel on the stream has completed and its writes are visible.
__device__ __forceinline__ void wait_for_previous_grids() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

/// Lets the next kernel on the stream be scheduled (once every block of this one has said so or exited).
__device__ __forceinline__ void let_next_grid_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/// The start of a kernel with no work to do before its inputs are ready: both of the above.
__device__ __forceinline__ void begin_after_previous_grids() {
  wait_for_previous_grids();
  let_next_grid_start();
}

/// Whether launches may overlap: yes unless the environment sets HYRAX_PDL=0 (a diagnostic: every kernel then waits
/// for the one before it to end, as with <<<>>>).
bool overlapped_launches();

enum class Overlap { allowed, none };

/// Launches `kernel` on `stream`, allowed to start before the previous kernel ends unless `overlap` is none (the
/// kernel keeps the contract above either way); throws naming `what` when the launch fails.
template <typename... Params, typename... Args>
void launch(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Overlap overlap, Args&&... args) {
  static const bool enabled = overlapped_launches();
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = enabled && overlap == Overlap::allowed ? 1 : 0;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  const cudaError_t err = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
  if (err != cudaSuccess) {
    cudaGetLastError();  // the failed launch's error is reported here, not left for a later check
    ::hyrax::fail("CUDA launch of ", what, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
  }
}

template <typename... Params, typename... Args>
void launch(const char* what, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
            Args&&... args) {
  launch(what, kernel, grid, block, smem, stream, Overlap::allowed, std::forward<Args>(args)...);
}

}  // namespace hyrax::cuda
