#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"

namespace hyrax::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

MappedFile::MappedFile(const std::string& path) : path_(path) {
  HYRAX_REQUIRE(fs::exists(path), path, ": no such file");
  HYRAX_REQUIRE(!fs::is_directory(path), path, ": is a directory, expected a file");
  const int fd = ::open(path.c_str(), O_RDONLY);
  HYRAX_REQUIRE(fd >= 0, path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(errno));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(path, ": cannot mmap: ", std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

static std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorInfo::shape_str() const { return shape_to_string(shape); }

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const size_t size = file_.size();
  HYRAX_REQUIRE(size >= 8, path, ": truncated file: ", size, " bytes, a safetensors file starts with an 8-byte header length");
  uint64_t header_len = 0;
  std::memcpy(&header_len, file_.data(), 8);
  HYRAX_REQUIRE(header_len <= size - 8, path, ": header length ", header_len, " runs past the end of the file (",
                size, " bytes): truncated or not a safetensors file");
  const char* hdr = reinterpret_cast<const char*>(file_.data() + 8);
  json j;
  try {
    j = json::parse(hdr, hdr + header_len);
  } catch (const json::exception& e) {
    fail(path, ": malformed header JSON: ", e.what());
  }
  HYRAX_REQUIRE(j.is_object(), path, ": header JSON is not an object");
  const uint8_t* data_start = file_.data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> spans;
  std::vector<std::string> span_names;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const json& e = it.value();
    HYRAX_REQUIRE(e.is_object() && e.contains("dtype") && e.contains("shape") && e.contains("data_offsets"), path,
                  ": tensor ", name, ": header entry needs dtype, shape and data_offsets");
    HYRAX_REQUIRE(e["dtype"].is_string(), path, ": tensor ", name, ": dtype is not a string");
    TensorInfo t;
    t.name = name;
    t.file = path;
    const std::string dt = e["dtype"].get<std::string>();
    HYRAX_REQUIRE(parse_dtype(dt, &t.dtype), path, ": tensor ", name, ": unsupported dtype ", dt,
                  " (hyrax reads F32, BF16, F16)");
    HYRAX_REQUIRE(e["shape"].is_array(), path, ": tensor ", name, ": shape is not an array");
    for (const auto& d : e["shape"]) {
      HYRAX_REQUIRE(d.is_number_integer() && d.get<int64_t>() >= 0, path, ": tensor ", name,
                    ": shape entries must be non-negative integers");
      t.shape.push_back(d.get<int64_t>());
    }
    const json& off = e["data_offsets"];
    HYRAX_REQUIRE(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                  path, ": tensor ", name, ": data_offsets must be two non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    HYRAX_REQUIRE(b <= en, path, ": tensor ", name, ": data_offsets [", b, ", ", en, ") are reversed");
    HYRAX_REQUIRE(en <= data_size, path, ": tensor ", name, ": data_offsets [", b, ", ", en,
                  ") run past the end of the data (", data_size, " bytes): truncated file or offsets out of range");
    const uint64_t need = uint64_t(t.numel()) * dtype_size(t.dtype);
    HYRAX_REQUIRE(en - b == need, path, ": tensor ", name, ": data_offsets span ", en - b, " bytes but ", dt, " ",
                  t.shape_str(), " needs ", need);
    t.data = data_start + b;
    t.nbytes = need;
    spans.emplace_back(b, en);
    span_names.push_back(name);
    tensors_.emplace(name, std::move(t));
  }
  std::vector<size_t> order(spans.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return spans[a] < spans[b]; });
  for (size_t i = 1; i < order.size(); ++i) {
    const auto& prev = spans[order[i - 1]];
    const auto& cur = spans[order[i]];
    HYRAX_REQUIRE(cur.first >= prev.second || cur.first == cur.second || prev.first == prev.second, path,
                  ": tensors ", span_names[order[i - 1]], " and ", span_names[order[i]], " overlap (bytes [",
                  prev.first, ", ", prev.second, ") and [", cur.first, ", ", cur.second, "))");
  }
}

TensorStore TensorStore::open(const std::string& path) {
  TensorStore store;
  HYRAX_REQUIRE(fs::exists(path), path, ": no such file or folder");
  std::vector<std::string> shard_files;
  std::map<std::string, std::string> weight_map;
  if (fs::is_directory(path)) {
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    const fs::path single = fs::path(path) / "model.safetensors";
    if (fs::exists(index)) {
      store.source_ = index.string();
      std::ifstream in(index);
      HYRAX_REQUIRE(in.good(), index.string(), ": cannot read");
      json j;
      try {
        j = json::parse(in);
      } catch (const json::exception& e) {
        fail(index.string(), ": malformed JSON: ", e.what());
      }
      HYRAX_REQUIRE(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), index.string(),
                    ": field weight_map missing or not an object");
      for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        HYRAX_REQUIRE(it.value().is_string(), index.string(), ": weight_map entry ", it.key(), " is not a file name");
        weight_map[it.key()] = it.value().get<std::string>();
        const std::string f = it.value().get<std::string>();
        if (std::find(shard_files.begin(), shard_files.end(), f) == shard_files.end()) shard_files.push_back(f);
      }
      for (auto& f : shard_files) f = (fs::path(path) / f).string();
    } else if (fs::exists(single)) {
      store.source_ = single.string();
      shard_files.push_back(single.string());
    } else {
      fail(path, ": no model.safetensors or model.safetensors.index.json in this folder");
    }
  } else {
    store.source_ = path;
    shard_files.push_back(path);
  }
  for (const auto& f : shard_files) store.files_.push_back(std::make_shared<SafetensorsFile>(f));
  for (const auto& file : store.files_) {
    for (const auto& [name, info] : file->tensors()) {
      auto [it, fresh] = store.index_.emplace(name, &info);
      HYRAX_REQUIRE(fresh, "tensor ", name, " is stored twice: in ", it->second->file, " and in ", info.file);
    }
  }
  for (const auto& [name, file] : weight_map) {
    auto it = store.index_.find(name);
    HYRAX_REQUIRE(it != store.index_.end(), store.source_, ": weight_map puts tensor ", name, " in ", file,
                  " but that file does not hold it");
  }
  return store;
}

const TensorInfo& TensorStore::get(const std::string& name) const {
  auto it = index_.find(name);
  HYRAX_REQUIRE(it != index_.end(), source_, ": missing tensor ", name);
  return *it->second;
}

const TensorInfo& TensorStore::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo& t = get(name);
  HYRAX_REQUIRE(t.shape == shape, t.file, ": tensor ", name, " has shape ", t.shape_str(), ", expected ",
                shape_to_string(shape));
  return t;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const auto& kv : index_) out.push_back(kv.first);
  return out;
}

size_t TensorStore::total_bytes() const {
  size_t n = 0;
  for (const auto& kv : index_) n += kv.second->nbytes;
  return n;
}

void write_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors) {
  json hdr = json::object();
  uint64_t off = 0;
  for (const auto& t : tensors) {
    hdr[t.name] = {{"dtype", std::string(dtype_name(t.dtype))}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes}}};
    off += t.nbytes;
  }
  std::string h = hdr.dump();
  while (h.size() % 8) h += ' ';
  std::ofstream out(path, std::ios::binary);
  HYRAX_REQUIRE(out.good(), path, ": cannot write");
  const uint64_t len = h.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (const auto& t : tensors) out.write(static_cast<const char*>(t.data), std::streamsize(t.nbytes));
  HYRAX_REQUIRE(out.good(), path, ": write failed");
}

}  // namespace hyrax::io
