// CPU matmul: checks the parameters, splits y's columns over the thread pool and runs each share with the widest SIMD
// build simd_level() allows. The scalar build (this file) is the portable fallback.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/check.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "kernels/matmul/matmul.h"
#include "kernels/matmul/matmul_cpu.h"

namespace hyrax::kernels {

using namespace matmul_detail;

namespace {

// Eight lanes, multiply then add (two roundings: the build has no FMA, and ISO C++ mode does not contract).
struct VScalar {
  struct R {
    float v[8];
  };
  static constexpr int L = 8;
  static constexpr bool kHsum4 = false;

  static R zero() { return R{}; }
  static R load(const float* p) {
    R r;
    for (int l = 0; l < L; ++l) r.v[l] = p[l];
    return r;
  }
  static void store(float* p, const R& r) {
    for (int l = 0; l < L; ++l) p[l] = r.v[l];
  }
  static R fma(const R& a, const R& b, const R& c) {
    R r;
    for (int l = 0; l < L; ++l) r.v[l] = a.v[l] * b.v[l] + c.v[l];
    return r;
  }
  static void prefetch(const char*) {}

  static float widen(float f) { return f; }
  static float widen(Bf16 h) { return bf16_to_f32(h.bits); }
  static float widen(F16 h) { return f16_to_f32(h.bits); }
  template <class W>
  static R loadw(const W* p) {
    R r;
    for (int l = 0; l < L; ++l) r.v[l] = widen(p[l]);
    return r;
  }
  template <class W>
  static R load_part(const W* p, int n) {
    R r{};
    for (int l = 0; l < n; ++l) r.v[l] = widen(p[l]);
    return r;
  }

  // Fixed tree: lanes l and l+4, then l and l+2, then 0 and 1.
  static float hsum(const R& r) {
    float s4[4], s2[2];
    for (int l = 0; l < 4; ++l) s4[l] = r.v[l] + r.v[l + 4];
    for (int l = 0; l < 2; ++l) s2[l] = s4[l] + s4[l + 2];
    return s2[0] + s2[1];
  }
};

// Below this many multiply-adds per thread, waking another thread costs more than it saves.
constexpr int64_t kMinMacsPerThread = int64_t(1) << 17;

struct Isa {
  void (*block)(const Block&);
  const Blocking* blocking;
};

Isa pick_isa() {
  switch (simd_level()) {
    case SimdLevel::Avx512: return {matmul_block_avx512, &kAvx512};
    case SimdLevel::Avx2: return {matmul_block_avx2, &kAvx2};
    case SimdLevel::Scalar: break;
  }
  return {matmul_block_scalar, &kScalar};
}

// Per-thread scratch for the packed path, grown on demand and kept for the thread's lifetime.
float* thread_scratch(int64_t floats) {
  struct Buffer {
    float* p = nullptr;
    int64_t n = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer buf;
  if (floats > buf.n) {
    std::free(buf.p);
    buf.p = static_cast<float*>(std::aligned_alloc(64, size_t((floats * 4 + 63) / 64 * 64)));
    HYRAX_CHECK(buf.p != nullptr, "matmul scratch of ", floats, " floats");
    buf.n = floats;
  }
  return buf.p;
}

}  // namespace

namespace matmul_detail {
void matmul_block_scalar(const Block& b) { run_block<VScalar, kScalar>(b); }
}  // namespace matmul_detail

void matmul(const MatmulParams& p) {
  HYRAX_CHECK(p.T >= 0 && p.N >= 0 && p.K >= 0, "T=", p.T, " N=", p.N, " K=", p.K);
  if (p.T == 0 || p.N == 0) return;
  HYRAX_CHECK(p.y != nullptr && p.ldy >= p.N, "y=", p.y, " ldy=", p.ldy, " N=", p.N);
  if (p.K == 0) {  // empty sums
    for (int64_t t = 0; t < p.T; ++t) std::memset(p.y + t * p.ldy, 0, size_t(p.N) * 4);
    return;
  }
  HYRAX_CHECK(p.x != nullptr && p.w != nullptr && p.ldx >= p.K, "x=", p.x, " w=", p.w, " ldx=", p.ldx, " K=", p.K);
  HYRAX_CHECK(p.w_dtype == DType::F32 || p.w_dtype == DType::BF16 || p.w_dtype == DType::F16,
              "unsupported weight dtype ", int(p.w_dtype));

  const Isa isa = pick_isa();
  const Blocking& bl = *isa.blocking;
  // Work items: `unit` columns × `rows` x rows, column-major so that a thread's items share W rows. Prefill splits T
  // too, which only matters when N is too narrow to feed every thread.
  const bool direct = p.T <= bl.direct_max_t[f32_index(p.w_dtype)];
  const int64_t unit = direct ? bl.direct_nr : bl.nb;
  const int64_t n_units = (p.N + unit - 1) / unit, threads = thread_pool().size();
  int64_t rows = direct ? p.T : bl.tb;
  if (!direct && n_units < threads) {  // too few columns: cut T finer (whole register tiles) so every thread works
    const int64_t share = (p.T + threads - 1) / threads;
    rows = std::min(rows, (share + bl.mr - 1) / bl.mr * bl.mr);
  }
  const int64_t t_units = (p.T + rows - 1) / rows;
  const int64_t item_macs = std::min(rows, p.T) * unit * p.K;
  const int64_t grain = std::max<int64_t>(1, kMinMacsPerThread / item_macs);
  const int64_t scratch = direct ? 0 : scratch_floats(bl);

  parallel_for(n_units * t_units, grain, [&](int64_t begin, int64_t end) {
    Block b;
    b.p = &p;
    b.direct = direct;
    b.scratch = direct ? nullptr : thread_scratch(scratch);
    for (int64_t i = begin; i < end;) {
      const int64_t nu = i / t_units, tu = i % t_units;
      if (tu == 0 && end - i >= t_units) {  // whole columns: all of T for a run of column units
        const int64_t nu_end = nu + (end - i) / t_units;
        b.t0 = 0, b.t1 = p.T, b.n0 = nu * unit, b.n1 = std::min(nu_end * unit, p.N);
        i += (nu_end - nu) * t_units;
      } else {  // part of one column unit's rows
        const int64_t tu_end = std::min(t_units, tu + (end - i));
        b.t0 = tu * rows, b.t1 = std::min(tu_end * rows, p.T), b.n0 = nu * unit, b.n1 = std::min(b.n0 + unit, p.N);
        i += tu_end - tu;
      }
      isa.block(b);
    }
  });
}

}  // namespace hyrax::kernels
