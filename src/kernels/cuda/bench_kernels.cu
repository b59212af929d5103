// hyrax bench-kernels: the GPU kernels at Olmo Hybrid 7B shapes, timed with CUDA events (medians; small kernels as
// CUDA-graph replays), each figure beside the limit measured in the same run. Inputs are random, never zeros; inputs
// larger than L2 are used as they are, smaller ones are rotated through several copies.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <functional>
#include <vector>

#include "core/check.h"
#include "core/thread_pool.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/cuda/bench_kernels_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/gated_delta_rule/gated_delta_rule_cuda.h"
#include "kernels/matmul/matmul_cuda.h"
#include "kernels/sampling/sampling_cuda.h"

namespace hyrax::kernels::cuda {
namespace {

using bf16 = __nv_bfloat16;

// ---- utilities ---------------------------------------------------------------------------------------------------

__device__ uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Roughly normal values (sum of four uniforms) times `scale`.
template <class T>
__global__ void fill_kernel(T* p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t z = mix(seed + uint64_t(i) * 0x9E3779B97F4A7C15ull);
    float s = 0;
    for (int k = 0; k < 4; ++k) s += float((z >> (16 * k)) & 0xffff) * (1.0f / 65536.0f);
    const float v = (s - 2.0f) * 1.7320508f * scale;
    if constexpr (sizeof(T) == 2) p[i] = __float2bfloat16_rn(v);
    else p[i] = v;
  }
}

class Buf {
 public:
  explicit Buf(size_t bytes) { CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(bytes, 16))); }
  ~Buf() {
    if (p_) cudaFree(p_);
  }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
  template <class T = void>
  T* get() const { return static_cast<T*>(p_); }

 private:
  void* p_ = nullptr;
};

uint64_t g_seed = 1;

template <class T>
void fill(T* p, int64_t n, float scale, cudaStream_t s) {
  fill_kernel<T><<<1024, 256, 0, s>>>(p, n, g_seed++ * 0x12345ull, scale);
  CUDA_CHECK_LAUNCH("fill");
}

Buf upload_i32(const std::vector<int32_t>& v) {
  Buf b(v.size() * 4);
  CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * 4, cudaMemcpyHostToDevice));
  return b;
}

/// Median milliseconds of fn() on `s`, each repetition bracketed by events.
double median_ms(const std::function<void()>& fn, cudaStream_t s, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> t;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, s));
    fn();
    CUDA_CHECK(cudaEventRecord(b, s));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return double(t[t.size() / 2]);
}

/// fn() captured once into a CUDA graph; median milliseconds of one replay.
double graph_ms(const std::function<void()>& fn, cudaStream_t s, int reps) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  fn();
  CUDA_CHECK(cudaStreamEndCapture(s, &g));
  CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  const double ms = median_ms([&] { CUDA_CHECK(cudaGraphLaunch(ge, s)); }, s, 3, reps);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return ms;
}

struct Limits {
  double copy_Bps = 0, gemm_flops = 0;
};

Limits measure_limits(cudaStream_t s, bool quick) {
  Limits L;
  const size_t bytes = size_t(1) << 30;
  {
    Buf a(bytes), b(bytes);
    fill(a.get<float>(), int64_t(bytes / 4), 1.0f, s);
    const double ms = median_ms([&] { CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, s)); },
                                s, 2, quick ? 3 : 10);
    L.copy_Bps = 2.0 * double(bytes) / (ms * 1e-3);
  }
  {
    const int64_t n = 8192;
    Buf x(size_t(n * n) * 2), w(size_t(n * n) * 2), y(size_t(n * n) * 2);
    fill(x.get<bf16>(), n * n, 1.0f, s);
    fill(w.get<bf16>(), n * n, 1.0f, s);
    Gemm gemm;
    GemmArgs a{x.get<bf16>(), n, w.get<bf16>(), y.get(), false, n, n, n, n};
    const double ms = median_ms([&] { gemm.run_unpinned(a, s); }, s, 2, quick ? 3 : 10);
    L.gemm_flops = 2.0 * double(n) * double(n) * double(n) / (ms * 1e-3);
  }
  std::printf("limit  device-to-device copy (1 GiB, read + write)          %8.2f TB/s\n", L.copy_Bps / 1e12);
  std::printf("limit  cuBLAS bf16 GEMM 8192^3 (heuristic's best algorithm)  %8.1f TFLOP/s\n", L.gemm_flops / 1e12);
  return L;
}

// ---- gated delta rule --------------------------------------------------------------------------------------------

constexpr int64_t kH = 30, kDk = 96, kDv = 192, kConv = 2 * kH * kDk + kH * kDv;

struct GdnInputs {
  int64_t T, n;
  Buf qkv, ab, A_log, dt_bias, out;
  GdnInputs(int64_t T_, int64_t n_, cudaStream_t s)
      : T(T_), n(n_), qkv(size_t(T_ * kConv) * 2), ab(size_t(T_ * 2 * kH) * 2), A_log(kH * 4), dt_bias(kH * 4),
        out(size_t(T_ * kH * kDv) * 2) {
    fill(qkv.get<bf16>(), T * kConv, 1.0f, s);
    fill(ab.get<bf16>(), T * 2 * kH, 1.0f, s);
    std::vector<float> al(kH), dt(kH);
    for (int64_t h = 0; h < kH; ++h) {
      al[size_t(h)] = std::log(1.0f + 15.0f * float(h) / float(kH));
      dt[size_t(h)] = std::log(std::expm1(0.001f + 0.099f * float((h * 7) % kH) / float(kH)));
    }
    CUDA_CHECK(cudaMemcpy(A_log.get(), al.data(), kH * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dt_bias.get(), dt.data(), kH * 4, cudaMemcpyHostToDevice));
  }
  GdnParams params(const int32_t* seqs, const int32_t* cu, const int32_t* slots, float* state) const {
    GdnParams p;
    p.n = n;
    p.seqs = seqs;
    p.cu_seqlens = cu;
    p.state_slots = slots;
    p.state = state;
    p.q = qkv.get<bf16>();
    p.k = p.q + kH * kDk;
    p.v = p.q + 2 * kH * kDk;
    p.ld_qkv = kConv;
    p.T = T;
    p.a = ab.get<bf16>();
    p.b = p.a + kH;
    p.ld_ab = 2 * kH;
    p.A_log = A_log.get<float>();
    p.dt_bias = dt_bias.get<float>();
    p.out = out.get<bf16>();
    p.ld_out = kH * kDv;
    p.Hk = kH;
    p.Hv = kH;
    p.Dk = kDk;
    p.Dv = kDv;
    return p;
  }
};

void bench_gdn(const Limits& L, cudaStream_t s, bool quick) {
  // Prefill: chunked kernel over packed sequences.
  struct Cfg {
    int64_t n, len;
  };
  std::vector<Cfg> cfgs = {{1, 4096}, {1, 16384}, {1, 65536}, {8, 2048}};
  if (quick) cfgs = {{1, 4096}, {8, 2048}};
  const double bytes_per_tok = double(kConv + kH * kDv + 2 * kH) * 2;  // q, k, v, a, b read once; out written once
  const double flop_per_tok = 6.0e6;  // the chunked algorithm's useful work at these shapes (docs/CUDA.md)
  for (const Cfg& c : cfgs) {
    const int64_t T = c.n * c.len;
    GdnInputs in(T, c.n, s);
    std::vector<int32_t> cu, ids;
    for (int64_t i = 0; i <= c.n; ++i) cu.push_back(int32_t(i * c.len));
    for (int64_t i = 0; i < c.n; ++i) ids.push_back(int32_t(i));
    Buf dcu = upload_i32(cu), dids = upload_i32(ids), state(size_t(c.n * kH * kDk * kDv) * 4);
    fill(state.get<float>(), c.n * kH * kDk * kDv, 0.1f, s);
    const GdnParams p = in.params(dids.get<int32_t>(), dcu.get<int32_t>(), dids.get<int32_t>(), state.get<float>());
    const GdnChunkPlan plan = gdn_plan_chunks(cu.data(), ids);
    Buf dchunks = upload_i32(plan.chunks), dfirst = upload_i32(plan.first_chunk);
    const int64_t n_chunks = int64_t(plan.chunks.size() / 2);
    Buf scratch(gdn_chunked_scratch_bytes(n_chunks, kH, kDk));
    GdnChunkWork w{dchunks.get<int32_t>(), dfirst.get<int32_t>(), n_chunks, scratch.get()};
    const int reps = quick ? 3 : (T >= 65536 ? 5 : 10);
    const double ms = median_ms([&] { gdn_chunked(p, w, s); }, s, 2, reps);
    const double ms_prep = median_ms([&] { gdn_chunked_prep(p, w, s); }, s, 1, reps);
    const double ms_state = median_ms([&] { gdn_chunked_state(p, w, s); }, s, 1, reps);
    w.value_slice = 48;
    const double ms_state48 = median_ms([&] { gdn_chunked_state(p, w, s); }, s, 1, reps);
    const double tps = double(T) / (ms * 1e-3);
    std::printf("gdn    prefill chunked  %lld x %-6lld H=30 K=96 V=192   %8.3f ms  %7.1f Mtok/s  %6.1f TFLOP/s "
                "(%4.1f%% of GEMM)  bandwidth floor %.0f Mtok/s\n",
                (long long)c.n, (long long)c.len, ms, tps / 1e6, tps * flop_per_tok / 1e12,
                100.0 * tps * flop_per_tok / L.gemm_flops, L.copy_Bps / bytes_per_tok / 1e6);
    std::printf(
        "gdn      of which: per-chunk prep %.3f ms, state pass %.3f ms (%.2f us per chunk; the mma.sync pass "
        "on 48-column slices %.3f ms)\n",
        ms_prep, ms_state, ms_state * 1e3 / double(c.len / 64), ms_state48);
  }
  // Decode: recurrent kernel, one token per sequence; states rotated so that the working set exceeds L2, and at
  // least two sets, since a launch reads its state before the launch before it has finished (launch.cuh).
  for (int64_t B : {1, 32, 256}) {
    const double state_bytes = double(B * kH * kDk * kDv) * 4;
    const int64_t rot = std::clamp<int64_t>(int64_t(256e6 / state_bytes), 2, 64);
    GdnInputs in(B, B, s);
    std::vector<int32_t> cu, ids;
    for (int64_t i = 0; i <= B; ++i) cu.push_back(int32_t(i));
    for (int64_t i = 0; i < B; ++i) ids.push_back(int32_t(i));
    Buf dcu = upload_i32(cu), dids = upload_i32(ids), state(size_t(rot * B * kH * kDk * kDv) * 4);
    fill(state.get<float>(), rot * B * kH * kDk * kDv, 0.1f, s);
    std::vector<Buf> slot_lists;
    for (int64_t r = 0; r < rot; ++r) {
      std::vector<int32_t> sl;
      for (int64_t i = 0; i < B; ++i) sl.push_back(int32_t(r * B + i));
      slot_lists.push_back(upload_i32(sl));
    }
    const int64_t launches = std::max<int64_t>(rot, 16);
    const double ms = graph_ms(
        [&] {
          for (int64_t i = 0; i < launches; ++i)
            gdn_recurrent(in.params(dids.get<int32_t>(), dcu.get<int32_t>(), slot_lists[size_t(i % rot)].get<int32_t>(),
                                    state.get<float>()),
                          s);
        },
        s, quick ? 5 : 20) / double(launches);
    const double bw = 2.0 * state_bytes / (ms * 1e-3);
    std::printf("gdn    decode recurrent B=%-4lld H=30 K=96 V=192           %8.2f us  state r+w %6.2f TB/s = %5.1f%% of "
                "copy bandwidth\n",
                (long long)B, ms * 1e3, bw / 1e12, 100.0 * bw / L.copy_Bps);
  }
}

// ---- attention ---------------------------------------------------------------------------------------------------

void bench_attention(const Limits& L, cudaStream_t s, bool quick) {
  const int64_t H = 30, D = 128, bs = 16;
  for (int64_t T : quick ? std::vector<int64_t>{4096} : std::vector<int64_t>{4096, 16384}) {
    Buf q(size_t(T * H * D) * 2), k(size_t(T * H * D) * 2), v(size_t(T * H * D) * 2), o(size_t(T * H * D) * 2);
    Buf kc(size_t(T * H * D) * 2), vc(size_t(T * H * D) * 2);
    fill(q.get<bf16>(), T * H * D, 1.0f, s);
    fill(k.get<bf16>(), T * H * D, 1.0f, s);
    fill(v.get<bf16>(), T * H * D, 1.0f, s);
    std::vector<int32_t> table, meta = {0, int32_t(T)}, tok_seq(size_t(T), 0), start = {0}, tiles;
    for (int64_t b = 0; b < T / bs; ++b) table.push_back(int32_t(b));
    for (int64_t r = 0; r < T; r += attention_prefill_tile_rows(D)) tiles.push_back(0), tiles.push_back(int32_t(r));
    Buf dtab = upload_i32(table), dcu = upload_i32(meta), dts = upload_i32(tok_seq), dsp = upload_i32(start),
        dtiles = upload_i32(tiles);
    PagedKv kv{kc.get<bf16>(), vc.get<bf16>(), T / bs, bs, H, D, dtab.get<int32_t>(), T / bs};
    AttnBatch b{1, T, dcu.get<int32_t>(), dsp.get<int32_t>(), dts.get<int32_t>()};
    kv_cache_write(b, k.get<bf16>(), H * D, v.get<bf16>(), H * D, kv, s);
    AttentionParams p{b, q.get<bf16>(), H * D, o.get<bf16>(), H * D, kv, H, 1.0f / std::sqrt(float(D))};
    const double ms = median_ms([&] { attention_prefill(p, dtiles.get<int32_t>(), int64_t(tiles.size() / 2), s); }, s,
                                2, quick ? 3 : 10);
    const double flops = 2.0 * double(T) * double(T) * double(D) * double(H);  // causal: half of 4·T²·D·H
    std::printf("attn   prefill causal   T=%-6lld 30 heads x 128          %8.3f ms  %6.1f TFLOP/s (%4.1f%% of GEMM)\n",
                (long long)T, ms, flops / (ms * 1e-3) / 1e12, 100.0 * flops / (ms * 1e-3) / L.gemm_flops);
  }
  {
    const int64_t B = 32, ctx = 8192, per = ctx / bs, nb = B * per;
    Buf q(size_t(B * H * D) * 2), o(size_t(B * H * D) * 2);
    Buf kc(size_t(nb * bs * H * D) * 2), vc(size_t(nb * bs * H * D) * 2);
    fill(q.get<bf16>(), B * H * D, 1.0f, s);
    fill(kc.get<bf16>(), nb * bs * H * D, 1.0f, s);
    fill(vc.get<bf16>(), nb * bs * H * D, 1.0f, s);
    std::vector<int32_t> table, cu, start, tok_seq, ids;
    for (int64_t i = 0; i < B; ++i) {
      for (int64_t j = 0; j < per; ++j) table.push_back(int32_t((j * B + i) % nb));  // interleaved blocks
      cu.push_back(int32_t(i));
      start.push_back(int32_t(ctx - 1));
      tok_seq.push_back(int32_t(i));
      ids.push_back(int32_t(i));
    }
    cu.push_back(int32_t(B));
    Buf dtab = upload_i32(table), dcu = upload_i32(cu), dsp = upload_i32(start), dts = upload_i32(tok_seq),
        dids = upload_i32(ids), scratch(size_t(attention_decode_scratch(B, H, D, ctx)) * 4);
    PagedKv kv{kc.get<bf16>(), vc.get<bf16>(), nb, bs, H, D, dtab.get<int32_t>(), per};
    AttnBatch b{B, B, dcu.get<int32_t>(), dsp.get<int32_t>(), dts.get<int32_t>()};
    AttentionParams p{b, q.get<bf16>(), H * D, o.get<bf16>(), H * D, kv, H, 1.0f / std::sqrt(float(D))};
    const double ms = graph_ms([&] { attention_decode(p, dids.get<int32_t>(), B, ctx, scratch.get<float>(), s); }, s,
                               quick ? 5 : 20);
    const double bytes = 2.0 * double(B * ctx * H * D) * 2;
    std::printf("attn   decode paged     B=32 ctx=8192 30 heads x 128   %8.3f ms  KV read %6.2f TB/s = %5.1f%% of copy "
                "bandwidth\n",
                ms, bytes / (ms * 1e-3) / 1e12, 100.0 * bytes / (ms * 1e-3) / L.copy_Bps);
  }
}

// ---- GEMM: the price of pinning one algorithm per shape class ------------------------------------------------------

void bench_gemm(const Limits& L, cudaStream_t s, bool quick) {
  struct Shape {
    const char* name;
    int64_t N, K;
  };
  const std::vector<Shape> shapes = {{"gdn q,k", 2880, 3840},    {"gdn v,g", 5760, 3840},   {"gdn o", 3840, 5760},
                                     {"mlp gate,up", 11008, 3840}, {"mlp down", 3840, 11008}, {"attn q,k,v,o", 3840, 3840},
                                     {"lm_head", 100352, 3840}};
  const std::vector<int64_t> rows = {1, 32, 256, 2048};
  const std::vector<int64_t> refs = {32, 256, 2048};
  std::vector<std::unique_ptr<Gemm>> pinned;
  for (int64_t r : refs) pinned.push_back(std::make_unique<Gemm>(r, false));
  Gemm free_gemm, backend;
  std::printf("gemm   y[R,N] = x[R,K]·w[N,K]ᵀ bf16, µs per call: heuristic's best for each R (split-K allowed; not "
              "invariant) | the backend's (pinned at 256 + a bitwise-equal small-R algorithm) | pinned at R_ref = 32 "
              "/ 256 / 2048 alone\n");
  for (const Shape& sh : shapes) {
    const int64_t Rmax = rows.back();
    Buf x(size_t(Rmax * sh.K) * 2), w(size_t(sh.N * sh.K) * 2), y(size_t(Rmax * sh.N) * 2);
    fill(x.get<bf16>(), Rmax * sh.K, 1.0f, s);
    fill(w.get<bf16>(), sh.N * sh.K, 0.05f, s);
    for (int64_t R : rows) {
      GemmArgs a{x.get<bf16>(), sh.K, w.get<bf16>(), y.get(), false, sh.N, R, sh.N, sh.K};
      const int reps = quick ? 3 : 10;
      const double best = median_ms([&] { free_gemm.run_unpinned(a, s); }, s, 2, reps);
      const double mine = median_ms([&] { backend.run(a, s); }, s, 2, reps);
      std::printf("gemm   %-12s N=%-6lld K=%-6lld R=%-5lld %9.1f | %9.1f |", sh.name, (long long)sh.N, (long long)sh.K,
                  (long long)R, best * 1e3, mine * 1e3);
      for (auto& g : pinned) std::printf(" %9.1f", median_ms([&] { g->run(a, s); }, s, 2, reps) * 1e3);
      // Do the algorithms pinned at different reference row counts give the same bits? (If so, a small-R
      // algorithm could serve decode without breaking batch invariance.)
      std::vector<uint16_t> ya(size_t(R * sh.N)), yb(size_t(R * sh.N));
      pinned[0]->run(a, s);
      CUDA_CHECK(cudaMemcpyAsync(ya.data(), y.get(), ya.size() * 2, cudaMemcpyDeviceToHost, s));
      pinned[1]->run(a, s);
      CUDA_CHECK(cudaMemcpyAsync(yb.data(), y.get(), yb.size() * 2, cudaMemcpyDeviceToHost, s));
      CUDA_CHECK(cudaStreamSynchronize(s));
      std::printf(" %s", ya == yb ? "[@32 == @256 bitwise]" : "[@32 != @256]");
      const double wbytes = double(sh.N * sh.K) * 2, flops = 2.0 * double(R * sh.N * sh.K);
      std::printf("   backend: %5.1f%% of copy bw (weights), %5.1f%% of GEMM peak\n",
                  100.0 * wbytes / (mine * 1e-3) / L.copy_Bps, 100.0 * flops / (mine * 1e-3) / L.gemm_flops);
    }
    std::printf("gemm   %-12s backend's algorithms: %s\n", sh.name,
                backend.pinned_algo({x.get<bf16>(), sh.K, w.get<bf16>(), y.get(), false, sh.N, 1, sh.N, sh.K}).c_str());
  }
}

// ---- the decode GEMM: weight streaming at decode row counts ----------------------------------------------------------

// Each call reads another copy of the weights (copies past the L2 size, so every read comes from HBM), all calls
// replayed as one CUDA graph: time per call, weights' GB/s, % of the copy bandwidth; beside it cuBLASLt at its best
// for the exact shape (run_unpinned, split-K allowed, not invariant) and the backend's pinned cuBLASLt algorithm.
void bench_decode_gemm(const Limits& L, cudaStream_t s, bool quick) {
  struct Shape {
    const char* name;
    int64_t N, K;
    bool f32;
  };
  const std::vector<Shape> shapes = {
      {"gdn q,k", 2880, 3840, false},      {"gdn v,g", 5760, 3840, false},     {"gdn a,b", 30, 3840, false},
      {"gdn o", 3840, 5760, false},        {"attn q,k,v,o", 3840, 3840, false}, {"mlp gate,up", 11008, 3840, false},
      {"mlp down", 3840, 11008, false},    {"lm_head f32", 100352, 3840, true}, {"fused q+k+v", 11520, 3840, false},
      {"fused gate+up", 22016, 3840, false}};
  const std::vector<int64_t> rows = {1, 4, 16, 32, 64};
  const int reps = quick ? 5 : 20;
  Gemm free_gemm, backend;
  std::printf("decode gemm  y[R,N] = x[R,K]·w[N,K]ᵀ, weights from HBM, graph replays: decode GEMM µs, weights GB/s, "
              "%% of copy bw | cuBLASLt best for the shape (split-K allowed) | backend's pinned cuBLASLt\n");
  for (const Shape& sh : shapes) {
    const size_t wbytes = size_t(sh.N * sh.K) * 2;
    const int copies = int(std::min<size_t>(64, (size_t(256) << 20) / wbytes + 1));
    std::vector<Buf> ws;
    for (int c = 0; c < copies; ++c) {
      ws.emplace_back(wbytes);
      fill(ws.back().get<bf16>(), sh.N * sh.K, 0.05f, s);
    }
    const int64_t Rmax = rows.back();
    Buf x(size_t(Rmax * sh.K) * 2), y(size_t(Rmax * sh.N) * 4);
    fill(x.get<bf16>(), Rmax * sh.K, 1.0f, s);
    for (int64_t R : rows) {
      auto args = [&](int c) { return GemmArgs{x.get<bf16>(), sh.K, ws[size_t(c)].get<bf16>(), y.get(), sh.f32, sh.N, R, sh.N, sh.K}; };
      auto per_call_ms = [&](const std::function<void(const GemmArgs&)>& fn) {
        fn(args(0));  // first use (algorithm choice) outside the capture
        CUDA_CHECK(cudaStreamSynchronize(s));
        return graph_ms([&] { for (int c = 0; c < copies; ++c) fn(args(c)); }, s, reps) / copies;
      };
      const double mine = per_call_ms([&](const GemmArgs& a) { decode_gemm(a, s); });
      const double best = per_call_ms([&](const GemmArgs& a) { free_gemm.run_unpinned(a, s); });
      const double pinned = per_call_ms([&](const GemmArgs& a) { backend.run(a, s); });
      auto gbs = [&](double ms) { return double(wbytes) / (ms * 1e-3) / 1e9; };
      std::printf("decode gemm  %-13s N=%-6lld K=%-5lld R=%-3lld kw=%d %8.1f µs %6.0f GB/s %5.1f%% | %8.1f µs %5.1f%% | "
                  "%8.1f µs %5.1f%%\n",
                  sh.name, (long long)sh.N, (long long)sh.K, (long long)R, decode_gemm_k_warps(sh.N, sh.K),
                  mine * 1e3, gbs(mine), 100.0 * gbs(mine) * 1e9 / L.copy_Bps, best * 1e3,
                  100.0 * gbs(best) * 1e9 / L.copy_Bps, pinned * 1e3, 100.0 * gbs(pinned) * 1e9 / L.copy_Bps);
      if (R > 16) {  // the layouts of the work (the same bits)
        std::printf("decode gemm  %-13s N=%-6lld K=%-5lld R=%-3lld layouts:", sh.name, (long long)sh.N,
                    (long long)sh.K, (long long)R);
        const int kw = decode_gemm_k_warps(sh.N, sh.K);
        for (int l = 0; l < kDecodeGemmLayouts; ++l)
          std::printf("  %d: %6.1f µs", l, per_call_ms([&](const GemmArgs& a) { decode_gemm(a, s, kw, l); }) * 1e3);
        std::printf("\n");
      }
      if (R != 1 && R != 32) continue;
      std::printf("decode gemm  %-13s N=%-6lld K=%-5lld R=%-3lld other K splits:", sh.name, (long long)sh.N,
                  (long long)sh.K, (long long)R);
      for (int kw : {1, 2, 4, 8})
        std::printf("  kw=%d %6.1f µs", kw, per_call_ms([&](const GemmArgs& a) { decode_gemm(a, s, kw); }) * 1e3);
      std::printf("\n");
    }
  }
}

// ---- sampling: the kernel beside the host path it replaces ----------------------------------------------------------

void bench_sampling(cudaStream_t s, bool quick) {
  const int64_t V = 100352;
  struct Mode {
    const char* name;
    SampleRow row;
  };
  const std::vector<Mode> modes = {{"greedy", {0.0f, 0, 1.0f, 0.0f, 0.0}},
                                   {"temperature 1", {1.0f, 0, 1.0f, 0.0f, 0.0}},
                                   {"top-p 0.9", {1.0f, 0, 0.9f, 0.0f, 0.0}},
                                   {"top-k 50", {1.0f, 50, 1.0f, 0.0f, 0.0}}};
  std::printf("sample V=%lld, logits ~ N(0, 2.5^2) float32, per call: the kernel (graph replay) | the host path it "
              "replaces: copy of the rows to the host + kernels::sample_ref (full sort) on 1 thread / on %d threads\n",
              (long long)V, thread_pool().size());
  for (int64_t R : {int64_t(1), int64_t(32), int64_t(256)}) {
    Buf logits(size_t(R * V) * 4), rows(size_t(R) * sizeof(SampleRow)), tok(size_t(R) * 4), lp(size_t(R) * 4);
    fill(logits.get<float>(), R * V, 2.5f, s);
    std::vector<float> host(size_t(R * V));
    for (const Mode& m : modes) {
      std::vector<SampleRow> hr(size_t(R), m.row);
      for (int64_t r = 0; r < R; ++r) hr[size_t(r)].u = m.row.temperature == 0.0f ? 0.0 : double((r * 7919) % 1000) / 1000.0;
      CUDA_CHECK(cudaMemcpy(rows.get(), hr.data(), hr.size() * sizeof(SampleRow), cudaMemcpyHostToDevice));
      SampleParams p;
      p.logits = logits.get<float>(), p.ld = V, p.R = R, p.V = V, p.rows = rows.get<SampleRow>();
      p.tokens = tok.get<int32_t>(), p.logprobs = lp.get<float>();
      sample(p, s);  // configures the kernel outside the capture
      CUDA_CHECK(cudaStreamSynchronize(s));
      const double gpu_ms = graph_ms([&] { sample(p, s); }, s, quick ? 5 : 20);
      // The host path: the rows to pageable memory (as Engine::step did), then the reference.
      std::vector<int32_t> ht(static_cast<size_t>(R));
      std::vector<float> hl(static_cast<size_t>(R));
      double copy_ms = 0;
      auto host_ms = [&](bool all_threads) {
        std::vector<double> t, c;
        for (int rep = 0; rep < (R >= 256 || quick ? 1 : 3); ++rep) {
          const auto t0 = std::chrono::steady_clock::now();
          CUDA_CHECK(cudaMemcpy(host.data(), logits.get(), host.size() * 4, cudaMemcpyDeviceToHost));
          c.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
          auto rows_fn = [&](int64_t b, int64_t e) {
            SampleParams q = p;
            q.logits = host.data() + b * V, q.R = e - b, q.rows = hr.data() + b, q.tokens = ht.data() + b;
            q.logprobs = hl.data() + b;
            sample_ref(q);
          };
          if (all_threads) parallel_for(R, 1, rows_fn);
          else rows_fn(0, R);
          t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(t.begin(), t.end());
        std::sort(c.begin(), c.end());
        copy_ms = c[c.size() / 2];
        return t[t.size() / 2];
      };
      const double one = host_ms(false), many = host_ms(true);
      // Does the kernel agree with the reference on these rows? (tokens; logprobs within 1e-5)
      std::vector<int32_t> gt(static_cast<size_t>(R));
      std::vector<float> gl(static_cast<size_t>(R));
      CUDA_CHECK(cudaMemcpy(gt.data(), tok.get(), size_t(R) * 4, cudaMemcpyDeviceToHost));
      CUDA_CHECK(cudaMemcpy(gl.data(), lp.get(), size_t(R) * 4, cudaMemcpyDeviceToHost));
      int64_t same = 0;
      double lp_err = 0;
      for (int64_t r = 0; r < R; ++r) {
        same += gt[size_t(r)] == ht[size_t(r)];
        lp_err = std::max(lp_err, double(std::fabs(gl[size_t(r)] - hl[size_t(r)])));
      }
      std::printf("sample %-14s R=%-4lld gpu %8.1f us | host %9.3f ms / %8.3f ms (copy %.3f ms)  %5.0fx / %4.0fx  "
                  "same tokens %lld/%lld, max |dlogprob| %.1e\n",
                  m.name, (long long)R, gpu_ms * 1e3, one, many, copy_ms, one / gpu_ms, many / gpu_ms, (long long)same,
                  (long long)R, lp_err);
    }
  }
}

}  // namespace

DeviceLimits measure_device_limits() {
  CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const Limits L = measure_limits(s, false);
  CUDA_CHECK(cudaStreamDestroy(s));
  return {L.copy_Bps, L.gemm_flops, prop.name};
}

void run_kernel_benchmarks(const KernelBenchOptions& o) {
  int n = 0;
  HYRAX_REQUIRE(cudaGetDeviceCount(&n) == cudaSuccess && n > 0, "bench-kernels: no CUDA device is available");
  CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof(date), "%Y-%m-%d", std::gmtime(&now));
  std::printf("hyrax bench-kernels: %s, %d SMs, %.0f GiB, %s\n", prop.name, prop.multiProcessorCount,
              double(prop.totalGlobalMem) / double(1 << 30), date);
  cudaStream_t s;
  CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const Limits L = measure_limits(s, o.quick);
  if (o.gdn) bench_gdn(L, s, o.quick);
  if (o.attention) bench_attention(L, s, o.quick);
  if (o.gemm) bench_decode_gemm(L, s, o.quick);
  if (o.gemm) bench_gemm(L, s, o.quick);
  if (o.sampling) bench_sampling(s, o.quick);
  CUDA_CHECK(cudaStreamSynchronize(s));
  cudaStreamDestroy(s);
}

}  // namespace hyrax::kernels::cuda
