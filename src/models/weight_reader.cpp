#include "models/weight_reader.h"

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
  owned_.emplace_back(size_t(rows * cols) * 2);
  fill_bf16_normalish(owned_.back().as<uint16_t>(), rows * cols, rng_(), 0.02f);
  io::TensorInfo t;
  t.name = name;
  t.dtype = DType::BF16;
  t.shape = {rows, cols};
  t.data = owned_.back().data();
  t.nbytes = size_t(rows * cols) * 2;
  bytes_ += t.nbytes;
  return be_.load_matrix(t);
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
