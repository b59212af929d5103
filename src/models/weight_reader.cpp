#include "models/weight_reader.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/check.h"
#include "core/thread_pool.h"

namespace hyrax {

WeightReader::WeightReader(io::TensorStore store, Backend& be) : store_(std::move(store)), be_(be) {}
WeightReader::WeightReader(uint64_t seed, Backend& be) : be_(be), rng_(seed) {}

bool WeightReader::has(const std::string& name) const { return store_ && store_->has(name); }

std::string WeightReader::first_present(const std::vector<std::string>& names) const {
  if (!store_) return names.front();
  for (const auto& n : names)
    if (store_->has(n)) return n;
  std::string all;
  for (const auto& n : names) all += (all.empty() ? "" : " or ") + n;
  fail(store_->source(), ": missing tensor ", all);
}

const io::TensorInfo& WeightReader::info(const std::string& name) const {
  HYRAX_CHECK(store_.has_value(), "no checkpoint behind dummy weights");
  return store_->get(name);
}

// Counter-based bf16 noise: fast, parallel and reproducible whatever the thread count.
static void fill_bf16_normalish(uint16_t* dst, int64_t n, uint64_t seed, float stddev) {
  parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = seed + uint64_t(i) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      // Sum of four uniforms: roughly normal, variance 4/12.
      float s = 0;
      for (int k = 0; k < 4; ++k) s += float((z >> (16 * k)) & 0xffff) * (1.0f / 65536.0f);
      dst[i] = f32_to_bf16((s - 2.0f) * stddev * 1.7320508f);
    }
  });
}

Tensor WeightReader::matrix(const std::string& name, int64_t rows, int64_t cols) {
  n_params_ += rows * cols;
  if (store_) {
    const io::TensorInfo& t = store_->get(name, {rows, cols});
    bytes_ += t.nbytes;
    return be_.load_matrix(t);
  }
  HostBuffer buf(size_t(rows * cols) * 2);
  fill_bf16_normalish(buf.as<uint16_t>(), rows * cols, rng_(), 0.02f);
  io::TensorInfo t;
  t.name = name;
  t.dtype = DType::BF16;
  t.shape = {rows, cols};
  t.data = buf.data();
  t.nbytes = size_t(rows * cols) * 2;
  bytes_ += t.nbytes;
  return load(t, std::move(buf));
}

Tensor WeightReader::load(const io::TensorInfo& t, HostBuffer&& buf) {
  Tensor m = be_.load_matrix(t);
  if (m.data == buf.data()) owned_.push_back(std::move(buf));
  return m;
}

Tensor WeightReader::stacked(const std::vector<std::pair<std::string, int64_t>>& parts, int64_t cols) {
  HYRAX_CHECK(!parts.empty(), "stacked: no parts");
  int64_t rows = 0;
  for (const auto& [name, r] : parts) rows += r;
  const int64_t padded = (rows + 7) / 8 * 8;
  // The sources: checkpoint tensors (shape-checked) or dummy bf16 noise, one draw per part.
  std::vector<const void*> src;
  std::vector<DType> dtypes;
  std::vector<HostBuffer> noise;
  for (const auto& [name, r] : parts) {
    n_params_ += r * cols;
    if (store_) {
      const io::TensorInfo& t = store_->get(name, {r, cols});
      bytes_ += t.nbytes;
      src.push_back(t.data);
      dtypes.push_back(t.dtype);
    } else {
      noise.emplace_back(size_t(r * cols) * 2);
      fill_bf16_normalish(noise.back().as<uint16_t>(), r * cols, rng_(), 0.02f);
      bytes_ += size_t(r * cols) * 2;
      src.push_back(noise.back().data());
      dtypes.push_back(DType::BF16);
    }
  }
  const bool same = std::all_of(dtypes.begin(), dtypes.end(), [&](DType d) { return d == dtypes[0]; });
  const DType dt = same ? dtypes[0] : DType::F32;
  const size_t esz = dtype_size(dt), row_bytes = size_t(cols) * esz;
  HostBuffer buf(size_t(padded) * row_bytes);
  char* at = static_cast<char*>(buf.data());
  for (size_t i = 0; i < parts.size(); ++i) {
    const size_t n = size_t(parts[i].second * cols);
    if (same) std::memcpy(at, src[i], n * esz);
    else to_f32(dtypes[i], src[i], reinterpret_cast<float*>(at), n);
    at += n * esz;
  }
  std::memset(at, 0, size_t(padded - rows) * row_bytes);
  io::TensorInfo t;
  t.name = parts.front().first + " (stacked with " + std::to_string(parts.size() - 1) + " more)";
  t.dtype = dt;
  t.shape = {padded, cols};
  t.data = buf.data();
  t.nbytes = size_t(padded) * row_bytes;
  return load(t, std::move(buf));
}

std::vector<float> WeightReader::host_f32(const std::string& name, const std::vector<int64_t>& shape, Init kind) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  n_params_ += n;
  std::vector<float> out(static_cast<size_t>(n));
  if (store_) {
    const io::TensorInfo& t = store_->get(name, shape);
    bytes_ += t.nbytes;
    to_f32(t.dtype, t.data, out.data(), size_t(n));
    return out;
  }
  bytes_ += size_t(n) * 2;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (auto& v : out) {
    switch (kind) {
      case Init::Ones: v = 1.0f; break;
      case Init::Normal: v = 0.02f * nd(rng_); break;
      case Init::ALog: v = std::log(1.0f + 15.0f * u(rng_)); break;
      case Init::DtBias: v = std::log(std::expm1(0.001f + 0.099f * u(rng_))); break;
      case Init::Conv: v = 0.5f * nd(rng_); break;
    }
  }
  return out;
}

}  // namespace hyrax
