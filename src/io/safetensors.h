// Safetensors checkpoints, memory-mapped: a single file or a sharded set (model.safetensors.index.json).
// Every structural problem is reported as hyrax::Error naming the file and the tensor at fault.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace hyrax::io {

/// A read-only memory map of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

/// One stored tensor: where its bytes are and what they mean.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // inside the file's mapping
  size_t nbytes = 0;
  std::string file;  // the file holding it, for error messages

  int64_t numel() const;
  std::string shape_str() const;
};

/// One .safetensors file, validated on open: header bounds, JSON, dtypes, shapes against byte spans, spans inside
/// the file and not overlapping.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& path() const { return file_.path(); }

 private:
  MappedFile file_;
  std::map<std::string, TensorInfo> tensors_;
};

/// All tensors of a checkpoint folder, whatever the sharding.
class TensorStore {
 public:
  /// Opens `dir`/model.safetensors.index.json (sharded) or `dir`/model.safetensors, or a single .safetensors path.
  static TensorStore open(const std::string& path);

  bool has(const std::string& name) const { return index_.count(name) > 0; }
  /// The tensor, or hyrax::Error "missing tensor NAME in FILES".
  const TensorInfo& get(const std::string& name) const;
  /// The tensor, checked to have exactly `shape` (error names expected and found shapes).
  const TensorInfo& get(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<std::string> names() const;
  /// Total bytes of all tensors.
  size_t total_bytes() const;
  /// Where the tensors come from, for messages ("DIR/model.safetensors" or "DIR/model.safetensors.index.json").
  const std::string& source() const { return source_; }

 private:
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> index_;
  std::string source_;
};

/// Writes a single-file checkpoint (tests and tools use it to build models and broken files).
void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors);

}  // namespace hyrax::io
