// Named activation buffers of a forward pass, allocated on the backend and reused across steps (they only grow).
// Names make every intermediate addressable (for dumps and diffs against transformers).
#pragma once

#include <map>
#include <string>

#include "kernels/backend.h"

namespace hyrax {

class Workspace {
 public:
  explicit Workspace(Backend& be) : be_(be) {}
  ~Workspace() {
    for (auto& [name, buf] : bufs_) be_.release(buf.data);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  /// A [rows, cols] activation buffer in the backend's activation dtype; contents are whatever was left there.
  Tensor get(const std::string& name, int64_t rows, int64_t cols) {
    const DType dt = be_.act_dtype();
    const size_t bytes = size_t(rows * cols) * dtype_size(dt);
    Buf& b = bufs_[name];
    if (b.bytes < bytes) {
      if (b.data) be_.release(b.data);
      b.data = be_.alloc(bytes);
      b.bytes = bytes;
    }
    return Tensor(b.data, dt, {rows, cols}, be_.device());
  }

 private:
  struct Buf {
    void* data = nullptr;
    size_t bytes = 0;
  };
  Backend& be_;
  std::map<std::string, Buf> bufs_;
};

}  // namespace hyrax
