// cuBLASLt GEMMs with one algorithm pinned per shape class (see kernels/matmul/matmul_cuda.h). Host code only.
//
// Row-major y[R, N] = x[R, K] · w[N, K]ᵀ is, in cuBLAS's column-major terms, yᵀ[N, R] = op(A)·B with
// A = w seen as a K×N column-major matrix (ld K) transposed, and B = xᵀ, a K×R column-major matrix (ld ldx).
#include <algorithm>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "core/check.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/matmul/matmul_cuda.h"

namespace hyrax::kernels::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

int alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  int al = 16;
  while (al > 2 && (a % uintptr_t(al)) != 0) al /= 2;
  return al;
}

// Everything about a call except R.
struct ShapeKey {
  int64_t N, K, ldx, ldy;
  bool y_f32;
  int ax, aw, ay;  // pointer alignments in bytes (2..16)
  bool operator<(const ShapeKey& o) const {
    return std::tie(N, K, ldx, ldy, y_f32, ax, aw, ay) < std::tie(o.N, o.K, o.ldx, o.ldy, o.y_f32, o.ax, o.aw, o.ay);
  }
};

ShapeKey key_of(const GemmArgs& a) {
  return {a.N, a.K, a.ldx, a.ldy, a.y_f32, alignment_of(a.x), alignment_of(a.w), alignment_of(a.y)};
}

struct Layouts {
  cublasLtMatrixLayout_t A = nullptr, B = nullptr, D = nullptr;
  Layouts() = default;
  Layouts(const ShapeKey& k, int64_t R) {
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&A, CUDA_R_16BF, uint64_t(k.K), uint64_t(k.N), k.K));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&B, CUDA_R_16BF, uint64_t(k.K), uint64_t(R), k.ldx));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&D, k.y_f32 ? CUDA_R_32F : CUDA_R_16BF, uint64_t(k.N), uint64_t(R), k.ldy));
  }
  void destroy() {
    if (A) cublasLtMatrixLayoutDestroy(A);
    if (B) cublasLtMatrixLayoutDestroy(B);
    if (D) cublasLtMatrixLayoutDestroy(D);
    A = B = D = nullptr;
  }
};

// Row counts up to kSmallRows (decode-sized) and from kLargeRows (prefill-sized) may use the shape class's
// small-row and large-row algorithms.
constexpr int64_t kSmallRows = 32, kLargeRows = 1024;

// An algorithm other than the pinned one for a band of row counts, proven to give the same bits.
struct AltAlgo {
  bool tried = false;  // looked for (at the first call in the band)
  bool found = false;
  cublasLtMatmulAlgo_t algo{};
  std::string name;
};

struct ShapeClass {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatmulAlgo_t algo{};  // pinned at the reference row count
  std::string name;
  AltAlgo small, large;  // for R <= kSmallRows, R >= kLargeRows
  // Each row count seen: its layouts and the algorithm it runs (checked against them once).
  std::map<int64_t, std::pair<Layouts, cublasLtMatmulAlgo_t>> by_rows;
  const cublasLtMatmulAlgo_t& preferred(int64_t R) const {
    if (small.found && R <= kSmallRows) return small.algo;
    if (large.found && R >= kLargeRows) return large.algo;
    return algo;
  }
};

}  // namespace

struct Gemm::Impl {
  int64_t rows_ref;
  bool other_rows;
  cublasLtHandle_t lt = nullptr;
  void* workspace = nullptr;
  void* staging = nullptr;  // aligned copies of misaligned operands
  size_t staging_bytes = 0;
  std::map<ShapeKey, ShapeClass> classes;
  std::map<std::pair<ShapeKey, int64_t>, std::pair<cublasLtMatmulAlgo_t, Layouts>> unpinned;

  Impl(int64_t r, bool other) : rows_ref(r), other_rows(other) {
    CUBLAS_CHECK(cublasLtCreate(&lt));
    CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
  }
  ~Impl() {
    for (auto& [k, c] : classes) {
      for (auto& [r, l] : c.by_rows) l.first.destroy();
      cublasLtMatmulDescDestroy(c.op);
    }
    for (auto& [k, v] : unpinned) v.second.destroy();
    cudaFree(workspace);
    if (staging) cudaFree(staging);
    cublasLtDestroy(lt);
  }

  static cublasLtMatmulDesc_t make_op() {
    cublasLtMatmulDesc_t op;
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    return op;
  }

  // The heuristic's candidates for (k, R), without split-K when `no_split` (filtered again below: an algorithm
  // whose configuration still says SPLITK_NUM > 1 is skipped).
  std::vector<cublasLtMatmulHeuristicResult_t> candidates(cublasLtMatmulDesc_t op, const ShapeKey& k,
                                                          const Layouts& l, bool no_split) {
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = kWorkspaceBytes;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
    const uint32_t ax = uint32_t(k.ax), aw = uint32_t(k.aw), ay = uint32_t(k.ay);
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, sizeof(aw)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, sizeof(ax)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, sizeof(ay)));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, sizeof(ay)));
    if (no_split) {
      const uint32_t mask = CUBLASLT_REDUCTION_SCHEME_NONE;
      CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask,
                                                        sizeof(mask)));
    }
    std::vector<cublasLtMatmulHeuristicResult_t> res(16);
    int n = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(lt, op, l.A, l.B, l.D, l.D, pref, int(res.size()), res.data(), &n);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS) n = 0;
    res.resize(size_t(n));
    std::vector<cublasLtMatmulHeuristicResult_t> ok;
    for (const auto& r : res) {
      if (r.state != CUBLAS_STATUS_SUCCESS) continue;
      if (no_split) {
        int32_t splitk = 1;
        size_t written = 0;
        cublasLtMatmulAlgoConfigGetAttribute(&r.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof(splitk),
                                             &written);
        if (written == sizeof(splitk) && splitk > 1) continue;
      }
      ok.push_back(r);
    }
    return ok;
  }

  static std::string describe(const cublasLtMatmulAlgo_t& algo) {
    auto get = [&](cublasLtMatmulAlgoConfigAttributes_t a) {
      int32_t v = -1;
      size_t w = 0;
      cublasLtMatmulAlgoConfigGetAttribute(&algo, a, &v, sizeof(v), &w);
      return v;
    };
    return str_cat("algo ", get(CUBLASLT_ALGO_CONFIG_ID), " tile ", get(CUBLASLT_ALGO_CONFIG_TILE_ID), " stages ",
                   get(CUBLASLT_ALGO_CONFIG_STAGES_ID), " splitK ", get(CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                   " cluster ", get(CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID));
  }

  ShapeClass& shape_class(const GemmArgs& a, cudaStream_t stream) {
    const ShapeKey k = key_of(a);
    auto it = classes.find(k);
    if (it != classes.end()) return it->second;
    ShapeClass c;
    c.op = make_op();
    Layouts ref(k, rows_ref);
    auto cands = candidates(c.op, k, ref, true);
    ref.destroy();
    HYRAX_CHECK(!cands.empty(), "cuBLASLt offers no split-K-free algorithm for y[R, ", k.N, "] = x[R, ", k.K,
                "]·wᵀ (ldx ", k.ldx, ", ldy ", k.ldy, ", ", k.y_f32 ? "f32" : "bf16", " output, alignments x ", k.ax,
                " w ", k.aw, " y ", k.ay, ")");
    c.algo = cands.front().algo;
    c.name = describe(c.algo);
    return classes.emplace(k, std::move(c)).first->second;
  }

  bool supports(const ShapeClass& c, const cublasLtMatmulAlgo_t& algo, const ShapeKey& k, int64_t R) {
    Layouts l(k, R);
    cublasLtMatmulHeuristicResult_t check{};
    const cublasStatus_t st = cublasLtMatmulAlgoCheck(lt, c.op, l.A, l.B, l.D, l.D, &algo, &check);
    l.destroy();
    return st == CUBLAS_STATUS_SUCCESS && check.workspaceSize <= kWorkspaceBytes;
  }

  // Among the split-K-free algorithms the heuristic offers at the row counts `heur_rows`, the fastest at Rt rows
  // that runs at every row count of `need_rows` and gives bitwise the same result as the pinned algorithm on a
  // random input at Rt rows (same reduction order: the choice then cannot change any bits, so timing may pick it).
  void choose_alt(const ShapeClass& c, const ShapeKey& k, const __nv_bfloat16* w, cudaStream_t stream, int64_t Rt,
                  const std::vector<int64_t>& heur_rows, const std::vector<int64_t>& need_rows, AltAlgo& out) {
    auto runs_everywhere = [&](const cublasLtMatmulAlgo_t& al) {
      if (!supports(c, al, k, Rt)) return false;
      for (int64_t R : need_rows)
        if (!supports(c, al, k, R)) return false;
      return true;
    };
    if (!runs_everywhere(c.algo)) return;
    const size_t ysz = k.y_f32 ? 4 : 2, xn = size_t(Rt * k.ldx), yb = size_t(Rt * k.ldy) * ysz;
    std::vector<uint16_t> hx(xn);
    uint64_t z = 0x9E3779B97F4A7C15ull * uint64_t(k.N * 131 + k.K);
    for (auto& v : hx) {  // bf16 of roughly uniform [-1, 1)
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      const float f = float(int32_t(z >> 40) - (1 << 23)) / float(1 << 23);
      uint32_t u;
      std::memcpy(&u, &f, 4);
      v = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    void *dx = nullptr, *dy = nullptr;
    CUDA_CHECK(cudaMalloc(&dx, xn * 2));
    CUDA_CHECK(cudaMalloc(&dy, yb));
    CUDA_CHECK(cudaMemcpy(dx, hx.data(), xn * 2, cudaMemcpyHostToDevice));
    Layouts l(k, Rt);
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    const float one = 1.0f, zero = 0.0f;
    auto run_algo = [&](const cublasLtMatmulAlgo_t& al) {
      return cublasLtMatmul(lt, c.op, &one, w, l.A, dx, l.B, &zero, dy, l.D, dy, l.D, &al, workspace, kWorkspaceBytes,
                            stream) == CUBLAS_STATUS_SUCCESS;
    };
    auto time_algo = [&](const cublasLtMatmulAlgo_t& al) {  // best of 5, after one warm-up
      float best = 1e30f;
      for (int i = 0; i < 6; ++i) {
        CUDA_CHECK(cudaEventRecord(e0, stream));
        if (!run_algo(al)) return 1e30f;
        CUDA_CHECK(cudaEventRecord(e1, stream));
        CUDA_CHECK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (i > 0) best = std::min(best, ms);
      }
      return best;
    };
    std::vector<unsigned char> ref(yb), got(yb);
    bool ok = run_algo(c.algo);
    CUDA_CHECK(cudaMemcpyAsync(ref.data(), dy, yb, cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    float best = ok ? time_algo(c.algo) : 0.0f;
    for (int64_t R : heur_rows) {
      if (!ok) break;
      Layouts lr(k, R);
      auto cand = candidates(c.op, k, lr, true);
      lr.destroy();
      for (size_t i = 0; i < cand.size() && i < 6; ++i) {
        const cublasLtMatmulAlgo_t& al = cand[i].algo;
        if (!runs_everywhere(al)) continue;
        CUDA_CHECK(cudaMemsetAsync(dy, 0xFF, yb, stream));
        if (!run_algo(al)) continue;
        CUDA_CHECK(cudaMemcpyAsync(got.data(), dy, yb, cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        if (got != ref) continue;
        const float t = time_algo(al);
        if (t < 0.9f * best) {
          best = t;
          out.algo = al;
          out.found = true;
          out.name = describe(al);
        }
      }
    }
    l.destroy();
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(dx);
    cudaFree(dy);
  }

  void choose_small(ShapeClass& c, const ShapeKey& k, const __nv_bfloat16* w, cudaStream_t stream) {
    choose_alt(c, k, w, stream, 16, {1, 8, kSmallRows}, {1, kSmallRows}, c.small);
  }

  // Timed at 4096 rows (fewer where the output would pass 512 MB; none below kLargeRows).
  void choose_large(ShapeClass& c, const ShapeKey& k, const __nv_bfloat16* w, cudaStream_t stream) {
    int64_t Rt = 4096;
    while (Rt > kLargeRows && Rt * k.ldy * (k.y_f32 ? 4 : 2) > (int64_t(512) << 20)) Rt /= 2;
    if (Rt * k.ldy * (k.y_f32 ? 4 : 2) > (int64_t(512) << 20)) return;
    choose_alt(c, k, w, stream, Rt, {4096, 8192}, {kLargeRows, 8192, 16384}, c.large);
  }

  // The layouts of R rows and the algorithm they run: the band's alternative where it runs at R, else the pinned
  // one (the same bits either way).
  const std::pair<Layouts, cublasLtMatmulAlgo_t>& layouts_for(ShapeClass& c, const ShapeKey& k, int64_t R) {
    auto it = c.by_rows.find(R);
    if (it != c.by_rows.end()) return it->second;
    Layouts l(k, R);
    cublasLtMatmulHeuristicResult_t check{};
    cublasLtMatmulAlgo_t algo = c.preferred(R);
    cublasStatus_t st = cublasLtMatmulAlgoCheck(lt, c.op, l.A, l.B, l.D, l.D, &algo, &check);
    if (st != CUBLAS_STATUS_SUCCESS || check.workspaceSize > kWorkspaceBytes) {
      algo = c.algo;
      st = cublasLtMatmulAlgoCheck(lt, c.op, l.A, l.B, l.D, l.D, &algo, &check);
    }
    if (st != CUBLAS_STATUS_SUCCESS || check.workspaceSize > kWorkspaceBytes) {
      l.destroy();
      fail("the cuBLASLt algorithm pinned for y[R, ", k.N, "] = x[R, ", k.K, "]·wᵀ (", c.name,
           ") does not run at R = ", R, " (status ", int(st), ")");
    }
    return c.by_rows.emplace(R, std::make_pair(l, algo)).first->second;
  }
};

static void check_args(const GemmArgs& a) {
  HYRAX_CHECK(a.R >= 0 && a.N > 0 && a.K > 0, "gemm R=", a.R, " N=", a.N, " K=", a.K);
  HYRAX_CHECK(a.x && a.w && a.y, "gemm: null pointer");
  HYRAX_CHECK(a.ldx >= a.K && a.ldy >= a.N, "gemm: row strides ldx=", a.ldx, " ldy=", a.ldy, " for K=", a.K,
              " N=", a.N);
}

Gemm::Gemm(int64_t rows_ref, bool other_rows) : impl_(std::make_unique<Impl>(rows_ref, other_rows)) {}
Gemm::~Gemm() = default;

void Gemm::run(const GemmArgs& a_in, cudaStream_t stream) {
  check_args(a_in);
  if (a_in.R == 0) return;
  // Rows that are not 16-byte aligned (e.g. a projection written into columns of a wider buffer) go through an
  // aligned staging copy: exact, and it keeps every call of a layer in the same shape class.
  GemmArgs a = a_in;
  const size_t ysz = a.y_f32 ? 4 : 2;
  const bool x_ok = alignment_of(a.x) == 16 && (a.ldx * 2) % 16 == 0;
  const bool y_ok = alignment_of(a.y) == 16 && (size_t(a.ldy) * ysz) % 16 == 0;
  if (!x_ok || !y_ok) {
    const int64_t ldx = (a.K + 7) / 8 * 8, ldy = (a.N + 7) / 8 * 8;
    const size_t need = (x_ok ? 0 : size_t(a.R * ldx) * 2) + (y_ok ? 0 : size_t(a.R * ldy) * ysz) + 256;
    if (need > impl_->staging_bytes) {
      if (impl_->staging) {
        CUDA_CHECK(cudaStreamSynchronize(stream));
        CUDA_CHECK(cudaFree(impl_->staging));
      }
      CUDA_CHECK(cudaMalloc(&impl_->staging, need));
      impl_->staging_bytes = need;
    }
    char* at = static_cast<char*>(impl_->staging);
    if (!x_ok) {
      CUDA_CHECK(cudaMemcpy2DAsync(at, size_t(ldx) * 2, a.x, size_t(a.ldx) * 2, size_t(a.K) * 2, size_t(a.R),
                                   cudaMemcpyDeviceToDevice, stream));
      a.x = reinterpret_cast<const __nv_bfloat16*>(at);
      a.ldx = ldx;
      at += (size_t(a.R * ldx) * 2 + 255) / 256 * 256;
    }
    if (!y_ok) {
      a.y = at;
      a.ldy = ldy;
    }
  }
  ShapeClass& c = impl_->shape_class(a, stream);
  if (impl_->other_rows && a.R <= kSmallRows && !c.small.tried) {
    impl_->choose_small(c, key_of(a), a.w, stream);
    c.small.tried = true;
  }
  if (impl_->other_rows && a.R >= kLargeRows && !c.large.tried) {
    impl_->choose_large(c, key_of(a), a.w, stream);
    c.large.tried = true;
  }
  const auto& [l, algo] = impl_->layouts_for(c, key_of(a), a.R);
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(impl_->lt, c.op, &one, a.w, l.A, a.x, l.B, &zero, a.y, l.D, a.y, l.D, &algo,
                              impl_->workspace, kWorkspaceBytes, stream));
  if (a.y != a_in.y)
    CUDA_CHECK(cudaMemcpy2DAsync(a_in.y, size_t(a_in.ldy) * ysz, a.y, size_t(a.ldy) * ysz, size_t(a.N) * ysz,
                                 size_t(a.R), cudaMemcpyDeviceToDevice, stream));
}

void Gemm::run_unpinned(const GemmArgs& a, cudaStream_t stream) {
  check_args(a);
  if (a.R == 0) return;
  const ShapeKey k = key_of(a);
  ShapeClass& c = impl_->shape_class(a, stream);  // for its op descriptor
  auto it = impl_->unpinned.find({k, a.R});
  if (it == impl_->unpinned.end()) {
    Layouts l(k, a.R);
    auto cands = impl_->candidates(c.op, k, l, false);
    HYRAX_CHECK(!cands.empty(), "cuBLASLt offers no algorithm for R=", a.R, " N=", a.N, " K=", a.K);
    it = impl_->unpinned.emplace(std::make_pair(k, a.R), std::make_pair(cands.front().algo, l)).first;
  }
  const Layouts& l = it->second.second;
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(impl_->lt, c.op, &one, a.w, l.A, a.x, l.B, &zero, a.y, l.D, a.y, l.D,
                              &it->second.first, impl_->workspace, kWorkspaceBytes, stream));
}

std::string Gemm::pinned_algo(const GemmArgs& a) {
  const ShapeClass& c = impl_->shape_class(a, nullptr);
  std::string s = c.name;
  if (c.small.found) s += "; R <= 32: " + c.small.name;
  if (c.large.found) s += "; R >= 1024: " + c.large.name;
  return s;
}

}  // namespace hyrax::kernels::cuda
