// A non-owning view of a dense row-major tensor (up to 4 dims) on some device, and an owning CPU buffer.
#pragma once

#include <array>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>

#include "core/check.h"
#include "core/dtype.h"

namespace hyrax {

enum class Device : uint8_t { CPU, CUDA };

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int ndim = 0;
  std::array<int64_t, 4> shape{};  // shape[0] is the outermost dimension
  int64_t ld = 0;                  // elements between consecutive rows of the 2-D view; 0 = contiguous (dim(-1))

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims, Device dev = Device::CPU)
      : data(d), dtype(t), device(dev), ndim(int(dims.size())) {
    HYRAX_CHECK(dims.size() <= 4, "at most 4 dims");
    int i = 0;
    for (int64_t s : dims) shape[i++] = s;
  }

  int64_t dim(int i) const {
    const int k = i < 0 ? ndim + i : i;
    HYRAX_CHECK(k >= 0 && k < ndim, "dim ", i, " of a ", ndim, "-d tensor");
    return shape[size_t(k)];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  /// Rows of the 2-D view [numel / dim(-1), dim(-1)].
  int64_t rows() const { return ndim == 0 ? 1 : numel() / shape[ndim - 1]; }
  /// Row stride of the 2-D view [rows(), dim(-1)].
  int64_t row_stride() const { return ld ? ld : (ndim ? shape[size_t(ndim - 1)] : 1); }
  bool contiguous() const { return ld == 0 || ld == row_stride_unpadded(); }
  int64_t row_stride_unpadded() const { return ndim ? shape[size_t(ndim - 1)] : 1; }
  template <typename T>
  T* ptr() const { return static_cast<T*>(data); }
  /// Columns [c0, c1) of the 2-D view: same rows, the row stride of this tensor.
  Tensor cols(int64_t c0, int64_t c1) const {
    HYRAX_CHECK(0 <= c0 && c0 <= c1 && c1 <= dim(-1), "columns [", c0, ", ", c1, ") of ", shape_str());
    Tensor t;
    t.data = static_cast<char*>(data) + c0 * int64_t(dtype_size(dtype));
    t.dtype = dtype;
    t.device = device;
    t.ndim = 2;
    t.shape = {rows(), c1 - c0, 0, 0};
    t.ld = row_stride();
    return t;
  }
  /// Rows [r0, r1) of the 2-D view.
  Tensor row_range(int64_t r0, int64_t r1) const {
    HYRAX_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows(), "rows [", r0, ", ", r1, ") of ", shape_str());
    Tensor t = *this;
    t.data = static_cast<char*>(data) + r0 * row_stride() * int64_t(dtype_size(dtype));
    t.ndim = 2;
    t.shape = {r1 - r0, dim(-1), 0, 0};
    t.ld = row_stride();
    return t;
  }
  std::string shape_str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
  }
};

/// 64-byte aligned host memory, freed on destruction.
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(size_t bytes) { resize(bytes); }
  void resize(size_t bytes) {
    if (bytes <= bytes_) return;
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    HYRAX_CHECK(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    mem_.reset(p);
    bytes_ = bytes;
  }
  void* data() const { return mem_.get(); }
  size_t size() const { return bytes_; }
  template <typename T>
  T* as() const { return static_cast<T*>(mem_.get()); }

 private:
  struct Free {
    void operator()(void* p) const { std::free(p); }
  };
  std::unique_ptr<void, Free> mem_;
  size_t bytes_ = 0;
};

}  // namespace hyrax
