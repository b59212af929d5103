// Reads a model's weights by name, checked against the shapes its config implies, from safetensors files or, for
// benchmarks at any shape, as random values. Keeps what it hands out alive for the model's lifetime.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "kernels/backend.h"

namespace hyrax {

class WeightReader {
 public:
  /// Weights from a checkpoint.
  WeightReader(io::TensorStore store, Backend& be);
  /// Random weights (bf16 matrices), reproducible from `seed`.
  WeightReader(uint64_t seed, Backend& be);

  bool dummy() const { return !store_.has_value(); }
  /// The first of `names` that exists (checkpoints differ in spelling).
  bool has(const std::string& name) const;
  std::string first_present(const std::vector<std::string>& names) const;

  /// A weight matrix [rows, cols] as stored (dummy: bf16 ~ N(0, 0.02)).
  Tensor matrix(const std::string& name, int64_t rows, int64_t cols);
  /// Matrices [rows_i, cols] stacked along their rows into one (a fused projection: one product instead of
  /// several), followed by zero rows up to a multiple of 8 so that the product's rows stay 16-byte aligned. Parts of
  /// different dtypes are stacked in float32.
  Tensor stacked(const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols);
  /// A parameter of `numel` values converted to float32 on the host; `shape` is the stored shape to check.
  /// Dummy values are drawn as `kind` says.
  enum class Init { Ones, Normal, ALog, DtBias, Conv };
  std::vector<float> host_f32(const std::string& name, const std::vector<int64_t>& shape, Init kind);
  /// Raw access for layouts that need assembly (e.g. split conv weights).
  const io::TensorInfo& info(const std::string& name) const;

  int64_t n_params() const { return n_params_; }
  size_t bytes() const { return bytes_; }
  Backend& backend() { return be_; }

 private:
  std::optional<io::TensorStore> store_;
  Backend& be_;
  std::mt19937_64 rng_;
  /// Hands `t` (host bytes in `buf`) to the backend; keeps `buf` only if the backend reads it in place.
  Tensor load(const io::TensorInfo& t, HostBuffer&& buf);

  std::vector<HostBuffer> owned_;
  int64_t n_params_ = 0;
  size_t bytes_ = 0;
};

}  // namespace hyrax
