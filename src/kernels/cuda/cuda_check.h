// Error checks for the CUDA runtime and cuBLASLt: every failure throws hyrax::Error naming the call, the error and
// file:line. Host code only (C++ or CUDA).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "core/check.h"

/// Throws hyrax::Error when a CUDA runtime call fails.
#define CUDA_CHECK(expr)                                                                                       \
  do {                                                                                                         \
    const cudaError_t hyrax_err_ = (expr);                                                                     \
    if (hyrax_err_ != cudaSuccess)                                                                             \
      ::hyrax::fail("CUDA error ", cudaGetErrorName(hyrax_err_), " (", cudaGetErrorString(hyrax_err_), ") in ", \
                    #expr, " at ", __FILE__, ":", __LINE__);                                                   \
  } while (0)

/// After a kernel launch: throws when the launch itself failed (bad configuration, too much shared memory).
#define CUDA_CHECK_LAUNCH(what)                                                                                \
  do {                                                                                                         \
    const cudaError_t hyrax_err_ = cudaGetLastError();                                                         \
    if (hyrax_err_ != cudaSuccess)                                                                             \
      ::hyrax::fail("CUDA launch of ", what, " failed: ", cudaGetErrorName(hyrax_err_), " (",                 \
                    cudaGetErrorString(hyrax_err_), ") at ", __FILE__, ":", __LINE__);                         \
  } while (0)

/// Throws hyrax::Error when a cuBLAS(Lt) call fails.
#define CUBLAS_CHECK(expr)                                                                                     \
  do {                                                                                                         \
    const cublasStatus_t hyrax_st_ = (expr);                                                                   \
    if (hyrax_st_ != CUBLAS_STATUS_SUCCESS)                                                                    \
      ::hyrax::fail("cuBLAS error ", int(hyrax_st_), " in ", #expr, " at ", __FILE__, ":", __LINE__);          \
  } while (0)
