// The CUDA backend: bf16 activations and KV cache, float32 recurrent and conv state, float32 accumulation; every
// op is one or two launches of the kernels in src/kernels/<op>/<op>.cu on one stream, GEMMs through cuBLASLt with
// pinned algorithms (kernels/matmul/matmul_cuda.h).
//
// begin_step uploads the step's metadata in one copy (tokens, positions, cu_seqlens, slots, block tables, and the
// work lists derived from them on the host: which sequences decode one token, which prefill, the attention query
// tiles), so that no op needs the host again until the logits are read back.
//
// Step graphs (docs/CUDA.md, "CUDA graphs"): a step's launches recorded once as a CUDA graph under a key and
// replayed for later steps of the same layout. A replay reads the metadata at the addresses recorded, so every
// buffer a step uses keeps its address while its graph lives: the metadata buffer is sized once (reserve_steps),
// and anything that could move a buffer drops every graph (a release, a step larger than all before it, which may
// grow buffers sized on first use such as the GEMM's staging copy); the next step of that key records it again.
#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <map>
#include <vector>

#include <cuda_fp16.h>

#include "core/check.h"
#include "io/safetensors.h"
#include "kernels/activations/activations_cuda.h"
#include "kernels/attention/attention_cuda.h"
#include "kernels/backend.h"
#include "kernels/conv1d/conv1d_cuda.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/embed/embed_cuda.h"
#include "kernels/gated_delta_rule/gated_delta_rule_cuda.h"
#include "kernels/matmul/matmul_cuda.h"
#include "kernels/rms_norm/rms_norm_cuda.h"
#include "kernels/rope/rope_cuda.h"
#include "kernels/sampling/sampling_cuda.h"

namespace hyrax {
namespace {

using bf16 = __nv_bfloat16;
namespace kc = kernels::cuda;

__global__ void f32_to_bf16_kernel(const float* src, bf16* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}
__global__ void f16_to_bf16_kernel(const __half* src, bf16* dst, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(__half2float(src[i]));
}

void expect_bf16(const Tensor& t, const char* what, const char* part = "") {
  HYRAX_CHECK(t.dtype == DType::BF16 && t.device == Device::CUDA, what, part, " must be a bf16 CUDA tensor, got ",
              t.dtype == DType::F32 ? "F32" : t.dtype == DType::F16 ? "F16" : "BF16",
              t.device == Device::CUDA ? " on CUDA" : " on the CPU");
}

bf16* bptr(const Tensor& t) { return static_cast<bf16*>(t.data); }

/// A pinned host buffer whose contents are copied to the device asynchronously; before it is refilled, the last
/// copy out of it must have finished (the event).
class Staging {
 public:
  ~Staging() {
    if (host_) cudaFreeHost(host_);
    if (dev_) cudaFree(dev_);
    if (done_) cudaEventDestroy(done_);
  }
  /// The device side's address (it moves when host() has to grow both sides).
  const int32_t* device() const { return dev_; }
  /// Room for n int32 on both sides; waits for the previous upload to finish.
  int32_t* host(size_t n) {
    if (done_) CUDA_CHECK(cudaEventSynchronize(done_));
    else CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
    if (n > cap_) {
      if (host_) CUDA_CHECK(cudaFreeHost(host_));
      if (dev_) CUDA_CHECK(cudaFree(dev_));
      cap_ = std::max<size_t>(n, 2 * cap_);
      CUDA_CHECK(cudaMallocHost(&host_, cap_ * sizeof(int32_t)));
      CUDA_CHECK(cudaMalloc(&dev_, cap_ * sizeof(int32_t)));
    }
    return host_;
  }
  /// Copies the first n values to the device on `stream`; returns the device copy.
  int32_t* upload(size_t n, cudaStream_t stream) {
    CUDA_CHECK(cudaMemcpyAsync(dev_, host_, n * sizeof(int32_t), cudaMemcpyHostToDevice, stream));
    CUDA_CHECK(cudaEventRecord(done_, stream));
    return dev_;
  }

 private:
  int32_t* host_ = nullptr;
  int32_t* dev_ = nullptr;
  size_t cap_ = 0;
  cudaEvent_t done_ = nullptr;
};

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(const CudaOptions& o) : decode_gemm_allowed_(o.decode_gemm) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    HYRAX_REQUIRE(e == cudaSuccess && n > 0, "--device cuda: no CUDA device is available (",
                  e == cudaSuccess ? "none found" : cudaGetErrorString(e), ")");
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    gemm_ = std::make_unique<kc::Gemm>();
  }

  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    drop_graphs();
    for (void* p : deferred_free_) cudaFree(p);
    if (iota_) cudaFree(iota_);
    for (void* p : owned_) cudaFree(p);
    if (scratch_) cudaFree(scratch_);
    if (gdn_scratch_) cudaFree(gdn_scratch_);
    gemm_.reset();
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::CUDA; }
  DType act_dtype() const override { return DType::BF16; }
  DType kv_dtype() const override { return DType::BF16; }

  void* alloc(size_t bytes) override {
    moved();  // a buffer allocated while a step is recorded is one that grew mid-step
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<size_t>(bytes, 256));
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail("out of GPU memory allocating ", bytes, " bytes (", free_b >> 20, " MiB free of ", total_b >> 20, " MiB)");
    }
    CUDA_CHECK(e);
    return p;
  }
  void release(void* p) override {
    if (!p) return;
    moved();
    if (capturing_) deferred_free_.push_back(p);  // the recording (to be discarded) may still name it
    else CUDA_CHECK(cudaFree(p));
  }
  void zero(void* p, size_t bytes) override { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream_)); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void copy_to_device(void* dst, const void* src, size_t bytes) override {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  void synchronize() override { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // ---- weights ----

  Tensor load_matrix(const io::TensorInfo& t) override {
    HYRAX_CHECK(t.shape.size() == 2, t.name, " is not a matrix");
    const int64_t n = t.shape[0] * t.shape[1];
    bf16* dst = static_cast<bf16*>(alloc(size_t(n) * 2));
    owned_.push_back(dst);
    if (t.dtype == DType::BF16) {
      CUDA_CHECK(cudaMemcpyAsync(dst, t.data, size_t(n) * 2, cudaMemcpyHostToDevice, stream_));
    } else {
      const size_t bytes = size_t(n) * dtype_size(t.dtype);
      void* raw = alloc(bytes);
      CUDA_CHECK(cudaMemcpyAsync(raw, t.data, bytes, cudaMemcpyHostToDevice, stream_));
      const unsigned blocks = unsigned(std::min<int64_t>((n + 255) / 256, 4096));
      if (t.dtype == DType::F32) f32_to_bf16_kernel<<<blocks, 256, 0, stream_>>>(static_cast<float*>(raw), dst, n);
      else f16_to_bf16_kernel<<<blocks, 256, 0, stream_>>>(static_cast<__half*>(raw), dst, n);
      CUDA_CHECK_LAUNCH("weight conversion to bf16");
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      release(raw);
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));  // the source may be a temporary host buffer
    return Tensor(dst, DType::BF16, {t.shape[0], t.shape[1]}, Device::CUDA);
  }

  Tensor load_f32(const std::vector<float>& host, std::initializer_list<int64_t> shape) override {
    float* p = static_cast<float*>(alloc(host.size() * sizeof(float)));
    owned_.push_back(p);
    copy_to_device(p, host.data(), host.size() * sizeof(float));
    Tensor t(p, DType::F32, shape, Device::CUDA);
    HYRAX_CHECK(size_t(t.numel()) == host.size(), "load_f32: shape ", t.shape_str(), " vs ", host.size(), " values");
    return t;
  }

  // ---- the step ----

  void reserve_steps(const StepCapacity& c) override {
    HYRAX_CHECK(!capturing_, "reserve_steps while a step is recorded");
    // The largest metadata layout of begin_step (every list at its longest) and the identity rows of gather_rows.
    const size_t n = size_t(c.max_seqs), T = size_t(std::max(c.max_tokens, c.max_seqs));
    const size_t tiles = 2 * (T / 64 + n) + n + 2 * (T / 128 + n);
    meta_.host(3 * T + (n + 1) + 2 * n + n * size_t(std::max<int64_t>(c.max_blocks, 1)) + 2 * n + tiles);
    identity_rows(int64_t(T));
    // The decode GEMM is faster than cuBLASLt up to ~32 rows and far slower at hundreds (H100: 9.95 against 12.35 ms
    // a 7B step at 32 sequences, 53 against 21 ms at 256). A row must always take the same kernel, whatever shares
    // its step, so the choice is made here, once, from the most sequences any step can hold: an engine that never
    // steps more than kDecodeGemmMaxSeqs sequences gives its one-token rows the decode GEMM, a larger one gives every
    // row cuBLASLt. Within an engine the bits never depend on the batch.
    decode_gemm_ = decode_gemm_allowed_ && c.max_seqs <= kDecodeGemmMaxSeqs;
  }

  /// y = x · wᵀ as GEMM arguments, shapes checked (`what` names the op).
  kc::GemmArgs gemm_args(const char* what, const Tensor& x, const Tensor& w, const Tensor& y) const {
    expect_bf16(x, what, " input");
    expect_bf16(w, what, " weight");
    HYRAX_CHECK(x.dim(-1) == w.dim(1) && y.dim(-1) == w.dim(0) && x.rows() == y.rows(), what, " shapes x ",
                x.shape_str(), " w ", w.shape_str(), " y ", y.shape_str());
    HYRAX_CHECK(w.contiguous(), what, ": the weight must be contiguous");
    kc::GemmArgs a;
    a.x = bptr(x);
    a.ldx = x.row_stride();
    a.w = bptr(w);
    a.y = y.data;
    a.y_f32 = y.dtype == DType::F32;
    a.ldy = y.row_stride();
    a.R = x.rows();
    a.N = w.dim(0);
    a.K = w.dim(1);
    return a;
  }

  /// Rows [r0, R) of a on the shape class's pinned cuBLASLt algorithm.
  void run_pinned(kc::GemmArgs a, int64_t r0) {
    if (a.R <= r0) return;
    a.x += r0 * a.ldx;
    a.y = static_cast<char*>(a.y) + size_t(r0 * a.ldy) * (a.y_f32 ? 4 : 2);
    a.R -= r0;
    gemm_->run(a, stream_);
  }

  void begin_step(const StepMeta& m) override {
    if (m.n_tokens > max_tokens_seen_) {  // a step larger than all before: buffers sized on first use may grow
      moved();
      max_tokens_seen_ = m.n_tokens;
    }
    step_ = m;
    const int64_t T = m.n_tokens, n = m.n_seqs;
    single_.clear();
    multi_.clear();
    tiles_.clear();
    // The leading one-token sequences' rows (the engine packs them first) take the decode GEMM in every matmul.
    n_decode_ = 0;
    while (decode_gemm_ && n_decode_ < n && m.cu_seqlens[n_decode_ + 1] - m.cu_seqlens[n_decode_] == 1) ++n_decode_;
    for (int64_t s = 0; s < n; ++s) {
      const int32_t len = m.cu_seqlens[s + 1] - m.cu_seqlens[s];
      if (len == 1) {
        single_.push_back(int32_t(s));
      } else if (len > 1) {
        multi_.push_back(int32_t(s));
      }
    }
    // The 64-token chunks of the prefilling sequences: GDN's chunks and attention's query tiles alike.
    kc::GdnChunkPlan plan = kc::gdn_plan_chunks(m.cu_seqlens, multi_);
    tiles_ = std::move(plan.chunks);
    first_chunk_ = std::move(plan.first_chunk);
    // Attention's query tiles at head dims up to 128, by the key positions they read (the head-dim-128 kernel deals
    // them to its persistent blocks from the end of the list: longest first balances the blocks; no bit depends on
    // the order).
    tile_keys_.clear();
    for (int32_t s : multi_) {
      const int32_t len = m.cu_seqlens[s + 1] - m.cu_seqlens[s];
      for (int32_t r = 0; r < len; r += 128) tile_keys_.push_back({m.start_pos[s] + std::min(len, r + 128), s, r});
    }
    std::stable_sort(tile_keys_.begin(), tile_keys_.end(), [](const auto& a, const auto& b) { return a[0] < b[0]; });
    tiles128_.clear();
    for (const auto& t : tile_keys_) tiles128_.push_back(t[1]), tiles128_.push_back(t[2]);
    // Layout of the device copy (int32): tokens, positions, tok_seq [T] | cu_seqlens [n+1] | start_pos, slots [n] |
    // block tables [n, max_blocks] | single, multi lists | attention tiles [2 per tile].
    const size_t nb = size_t(std::max<int64_t>(m.max_blocks, 1));
    const size_t total = 3 * size_t(T) + size_t(n + 1) + 2 * size_t(n) + size_t(n) * nb + single_.size() +
                         multi_.size() + tiles_.size() + first_chunk_.size() + tiles128_.size();
    const int32_t* meta_before = meta_.device();
    int32_t* h = meta_.host(total);
    if (meta_.device() != meta_before) moved();
    size_t at = 0;
    auto put = [&](const int32_t* src, size_t cnt) {
      if (cnt) std::memcpy(h + at, src, cnt * sizeof(int32_t));
      const size_t o = at;
      at += cnt;
      return o;
    };
    const size_t o_tok = put(m.tokens, size_t(T)), o_pos = put(m.positions, size_t(T));
    const size_t o_ts = at;
    for (int64_t s = 0; s < n; ++s)
      for (int32_t t = m.cu_seqlens[s]; t < m.cu_seqlens[s + 1]; ++t) h[o_ts + size_t(t)] = int32_t(s);
    at += size_t(T);
    const size_t o_cu = put(m.cu_seqlens, size_t(n + 1)), o_sp = put(m.start_pos, size_t(n));
    const size_t o_sl = put(m.state_slots, size_t(n));
    const size_t o_bt = at;
    if (m.block_tables) put(m.block_tables, size_t(n) * nb);
    else for (size_t i = 0; i < size_t(n) * nb; ++i) h[at++] = 0;
    const size_t o_single = put(single_.data(), single_.size()), o_multi = put(multi_.data(), multi_.size());
    const size_t o_tiles = put(tiles_.data(), tiles_.size());
    const size_t o_first = put(first_chunk_.data(), first_chunk_.size());
    const size_t o_t128 = put(tiles128_.data(), tiles128_.size());
    HYRAX_CHECK(at == total, "step metadata layout");
    int32_t* d = meta_.upload(total, stream_);
    dev_.tokens = d + o_tok;
    dev_.positions = d + o_pos;
    dev_.tok_seq = d + o_ts;
    dev_.cu_seqlens = d + o_cu;
    dev_.start_pos = d + o_sp;
    dev_.slots = d + o_sl;
    dev_.block_tables = d + o_bt;
    dev_.single = d + o_single;
    dev_.multi = d + o_multi;
    dev_.tiles = d + o_tiles;
    dev_.first_chunk = d + o_first;
    dev_.tiles128 = d + o_t128;
    if (capture_pending_) {  // the upload above runs before every replay; what follows is recorded
      capture_pending_ = false;
      capturing_ = true;
      CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    }
  }

  // ---- step graphs ----

  bool step_graphs() const override { return true; }

  void begin_capture(int64_t key) override {
    HYRAX_CHECK(!capture_pending_ && !capturing_, "begin_capture: a step is already being recorded");
    capture_pending_ = true;
    capture_key_ = key;
    spoiled_ = false;
  }

  bool end_capture() override {
    HYRAX_CHECK(capture_pending_ || capturing_, "end_capture without begin_capture");
    const bool was_pending = capture_pending_;
    capture_pending_ = false;
    if (was_pending) return false;  // no begin_step came: nothing was recorded
    capturing_ = false;
    cudaGraph_t graph = nullptr;
    const cudaError_t e = cudaStreamEndCapture(stream_, &graph);
    for (void* p : deferred_free_) CUDA_CHECK(cudaFree(p));
    deferred_free_.clear();
    if (e != cudaSuccess || spoiled_ || !graph) {
      cudaGetLastError();  // an invalidated capture leaves its error behind
      if (graph) cudaGraphDestroy(graph);
      return false;
    }
    StepGraph g;
    g.n_seqs = step_.n_seqs;
    g.n_tokens = step_.n_tokens;
    g.max_blocks = step_.max_blocks;
    g.dev = dev_;
    const cudaError_t ie = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_CHECK(ie);
    CUDA_CHECK(cudaGraphUpload(g.exec, stream_));
    auto it = graphs_.find(capture_key_);
    if (it != graphs_.end()) {
      cudaGraphExecDestroy(it->second.exec);
      graphs_.erase(it);
    }
    graphs_.emplace(capture_key_, g);
    return true;
  }

  bool has_graph(int64_t key) const override { return graphs_.count(key) > 0; }

  void replay(int64_t key) override {
    HYRAX_CHECK(!capture_pending_ && !capturing_, "replay while a step is being recorded");
    auto it = graphs_.find(key);
    HYRAX_CHECK(it != graphs_.end(), "replay: no step graph under key ", key);
    const StepGraph& g = it->second;
    HYRAX_CHECK(g.n_seqs == step_.n_seqs && g.n_tokens == step_.n_tokens && g.max_blocks == step_.max_blocks &&
                    std::memcmp(&g.dev, &dev_, sizeof(DeviceMeta)) == 0,
                "replay: the step's layout (", step_.n_seqs, " sequences, ", step_.n_tokens, " tokens, block rows of ",
                step_.max_blocks, ") differs from the one recorded under key ", key);
    CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
  }

  // ---- ops ----

  void embed(const Tensor& table, const Tensor& out) override {
    expect_bf16(table, "embedding table");
    expect_bf16(out, "embed output");
    const int64_t C = table.dim(1), V = table.dim(0);
    HYRAX_CHECK(out.rows() == step_.n_tokens && out.dim(-1) == C, "embed: out ", out.shape_str());
    for (int64_t t = 0; t < step_.n_tokens; ++t)
      HYRAX_REQUIRE(step_.tokens[t] >= 0 && step_.tokens[t] < V, "token id ", step_.tokens[t],
                    " is outside the vocabulary [0, ", V, ")");
    kc::gather_rows(bptr(table), table.row_stride(), dev_.tokens, step_.n_tokens, C, bptr(out), out.row_stride(),
                    stream_);
  }

  void matmul(const Tensor& x, const Tensor& w, const Tensor& y) override {
    HYRAX_CHECK(y.device == Device::CUDA && (y.dtype == DType::BF16 || y.dtype == DType::F32),
                "matmul output must be a bf16 or float32 CUDA tensor");
    const kc::GemmArgs a = gemm_args("matmul", x, w, y);
    // Rows [0, n_decode) belong to the step's decoding sequences (in the layers' [T] rows and in the lm_head's
    // gathered rows alike): the decode GEMM; the rest the pinned cuBLASLt algorithm. A row always takes the same
    // one of the two, whatever shares its step (kernels/matmul/matmul_cuda.h).
    const int64_t nd = std::min(n_decode_, a.R);
    if (nd > 0) {
      kc::GemmArgs d = a;
      d.R = nd;
      kc::decode_gemm(d, stream_);
    }
    run_pinned(a, nd);
  }

  // The decode rows take the decode GEMM with the activation fused (the same bits as matmul then swiglu), the
  // others the pinned cuBLASLt algorithm into [gate | up], then swiglu. Up to 8 rows the fused kernel puts a gate
  // tile and its up tile on two sets of warps (as many warps as the plain GEMM); with both on one warp (half as
  // many) the batch-1 7B step was slower than two launches (H100, 2026-11-27: 5.89 against 5.85 ms).
  void matmul_swiglu(const Tensor& x, const Tensor& w, const Tensor& gate_up) override {
    const int64_t nd = std::min(n_decode_, x.rows()), I = w.dim(0) / 2;
    if (nd == 0) return Backend::matmul_swiglu(x, w, gate_up);
    expect_bf16(gate_up, "matmul_swiglu output");
    HYRAX_CHECK(w.dim(0) % 2 == 0, "matmul_swiglu: gate and up stacked, an even row count, not ", w.shape_str());
    const kc::GemmArgs a = gemm_args("matmul_swiglu", x, w, gate_up);
    kc::GemmArgs d = a;
    d.R = nd;
    d.glu_half = I;
    kc::decode_gemm(d, stream_);
    if (a.R > nd) {
      run_pinned(a, nd);
      const Tensor g = gate_up.row_range(nd, a.R);
      swiglu(g.cols(0, I), g.cols(I, 2 * I), g.cols(0, I));
    }
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) override {
    kc::rms_norm(norm_params("rms_norm", x, w, eps, &y, nullptr), stream_);
  }

  void rms_norm_pair(const Tensor& x1, const Tensor& w1, const Tensor& x2, const Tensor& w2, float eps) override {
    kc::rms_norm_pair(norm_params("rms_norm_pair", x1, w1, eps, &x1, nullptr),
                      norm_params("rms_norm_pair", x2, w2, eps, &x2, nullptr), stream_);
  }

  void add_rms_norm(const Tensor& x, const Tensor& d, const Tensor& w, float eps, const Tensor& h) override {
    kc::add_rms_norm(norm_params("add_rms_norm", d, w, eps, &h, &x), stream_);
  }

  void rms_norm_add(const Tensor& d, const Tensor& w, float eps, const Tensor& x) override {
    kc::rms_norm_add(norm_params("rms_norm_add", d, w, eps, nullptr, &x), stream_);
  }

  void gated_rms_norm(const Tensor& x, const Tensor& gate, const Tensor& w, float eps, const Tensor& y) override {
    expect_bf16(x, "gated_rms_norm input");
    expect_bf16(gate, "gated_rms_norm gate");
    expect_bf16(y, "gated_rms_norm output");
    const int64_t D = w.numel();
    HYRAX_CHECK(x.dim(-1) % D == 0 && gate.dim(-1) == x.dim(-1) && y.dim(-1) == x.dim(-1), "gated_rms_norm shapes");
    kc::GatedRmsNormParams p;
    p.x = bptr(x);
    p.ldx = x.row_stride();
    p.gate = bptr(gate);
    p.ldg = gate.row_stride();
    p.w = w.ptr<float>();
    p.y = bptr(y);
    p.ldy = y.row_stride();
    p.T = x.rows();
    p.H = x.dim(-1) / D;
    p.D = D;
    p.eps = eps;
    kc::gated_rms_norm(p, stream_);
  }

  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& y) override {
    expect_bf16(gate, "swiglu gate");
    expect_bf16(up, "swiglu up");
    expect_bf16(y, "swiglu output");
    kc::swiglu({bptr(gate), gate.row_stride()}, {bptr(up), up.row_stride()}, {bptr(y), y.row_stride()}, gate.rows(),
               gate.dim(-1), stream_);
  }

  void add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    expect_bf16(a, "add input");
    expect_bf16(b, "add input");
    expect_bf16(y, "add output");
    const int64_t R = a.rows(), C = a.dim(-1);
    HYRAX_CHECK(b.rows() == R && y.rows() == R && b.dim(-1) == C && y.dim(-1) == C, "add shapes");
    kc::add({bptr(a), a.row_stride()}, {bptr(b), b.row_stride()}, {bptr(y), y.row_stride()}, R, C, stream_);
  }

  void conv1d(const Tensor& x, const Tensor& w, float* conv_pool, const Tensor& y) override {
    expect_bf16(x, "conv1d input");
    expect_bf16(y, "conv1d output");
    HYRAX_CHECK(x.rows() == step_.n_tokens && x.dim(-1) == w.dim(0) && y.dim(-1) == w.dim(0), "conv1d shapes");
    kc::Conv1dParams p;
    p.n_seqs = step_.n_seqs;
    p.T = step_.n_tokens;
    p.cu_seqlens = dev_.cu_seqlens;
    p.state_slots = dev_.slots;
    p.tok_seq = dev_.tok_seq;
    p.state = conv_pool;
    p.x = bptr(x);
    p.ldx = x.row_stride();
    p.y = bptr(y);
    p.ldy = y.row_stride();
    p.w = w.ptr<float>();
    p.C = w.dim(0);
    p.W = w.dim(1);
    p.silu = true;
    p.one_token_each = int64_t(single_.size()) == step_.n_seqs;
    kc::conv1d(p, stream_);
  }

  // In a step of at most 8 sequences, each bringing one token, the conv1d runs in the decode GEMM's epilogue (one
  // launch less; the same bits). At 32 rows the epilogue cost more than the launch it saves (H100, 2026-11-27: the
  // batch-32 7B step 9.43 ms against 8.81 ms, with the state read in the epilogue itself).
  void matmul_conv1d(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& conv_w, float* conv_pool,
                     const Tensor& conv_out) override {
    const int64_t C = conv_w.dim(0);
    if (n_decode_ == 0 || n_decode_ > kc::kDecodeGemmConvRows || n_decode_ != step_.n_seqs || x.rows() != n_decode_ ||
        y.dtype != DType::BF16 || conv_w.dim(1) > kc::kDecodeGemmConvTaps)
      return Backend::matmul_conv1d(x, w, y, conv_w, conv_pool, conv_out);
    expect_bf16(conv_out, "matmul_conv1d conv output");
    HYRAX_CHECK(conv_out.rows() == x.rows() && conv_out.dim(-1) == C && C <= w.dim(0) && conv_w.dtype == DType::F32,
                "matmul_conv1d: conv taps ", conv_w.shape_str(), ", output ", conv_out.shape_str(), " for weight ",
                w.shape_str());
    kc::GemmArgs a = gemm_args("matmul_conv1d", x, w, y);
    a.conv.C = C;
    a.conv.W = conv_w.dim(1);
    a.conv.w = conv_w.ptr<float>();
    a.conv.state = conv_pool;
    a.conv.slots = dev_.slots;
    a.conv.out = bptr(conv_out);
    a.conv.ld_out = conv_out.row_stride();
    kc::decode_gemm(a, stream_);
  }

  void gated_delta_rule(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, const GdnShape& s, float* ssm_pool, const Tensor& out) override {
    expect_bf16(qkv, "gated_delta_rule qkv");
    expect_bf16(a, "gated_delta_rule a");
    expect_bf16(b, "gated_delta_rule b");
    expect_bf16(out, "gated_delta_rule output");
    const int64_t key_dim = s.Hk * s.Dk;
    HYRAX_CHECK(qkv.dim(-1) == 2 * key_dim + s.Hv * s.Dv && out.dim(-1) == s.Hv * s.Dv, "gated_delta_rule shapes");
    HYRAX_CHECK(a.row_stride() == b.row_stride(), "a and b must share a row stride");
    kc::GdnParams p;
    p.cu_seqlens = dev_.cu_seqlens;
    p.state_slots = dev_.slots;
    p.state = ssm_pool;
    p.q = bptr(qkv);
    p.k = p.q + key_dim;
    p.v = p.q + 2 * key_dim;
    p.ld_qkv = qkv.row_stride();
    p.T = qkv.rows();
    p.a = bptr(a);
    p.b = bptr(b);
    p.ld_ab = a.row_stride();
    p.A_log = A_log.ptr<float>();
    p.dt_bias = dt_bias.ptr<float>();
    p.out = bptr(out);
    p.ld_out = out.row_stride();
    p.Hk = s.Hk;
    p.Hv = s.Hv;
    p.Dk = s.Dk;
    p.Dv = s.Dv;
    p.allow_neg_eigval = s.allow_neg_eigval;
    // Each sequence takes the path of its own length (one token: recurrent; more: chunked), never the batch's.
    p.n = int64_t(single_.size());
    p.seqs = dev_.single;
    kc::gdn_recurrent(p, stream_);
    p.n = int64_t(multi_.size());
    p.seqs = dev_.multi;
    kc::GdnChunkWork w;
    w.chunks = dev_.tiles;
    w.first_chunk = dev_.first_chunk;
    w.n_chunks = int64_t(tiles_.size() / 2);
    if (p.n > 0) w.scratch = gdn_scratch(kc::gdn_chunked_scratch_bytes(w.n_chunks, s.Hv, s.Dk));
    kc::gdn_chunked(p, w, stream_);
  }

  void rope(const Tensor& x, int64_t heads, float theta) override {
    expect_bf16(x, "rope input");
    kc::RopeParams p;
    p.x = bptr(x);
    p.ldx = x.row_stride();
    p.pos = dev_.positions;
    p.T = x.rows();
    p.H = heads;
    p.D = x.dim(-1) / heads;
    p.theta = theta;
    kc::rope(p, stream_);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const KvPools& kv, int64_t Hq, int64_t Hkv,
                 int64_t D, float scale, const Tensor& out) override {
    expect_bf16(q, "attention q");
    expect_bf16(k, "attention k");
    expect_bf16(v, "attention v");
    expect_bf16(out, "attention output");
    HYRAX_CHECK(kv.k && kv.v && kv.n_blocks > 0, "attention: no KV cache blocks");
    kc::PagedKv pk;
    pk.k = static_cast<bf16*>(kv.k);
    pk.v = static_cast<bf16*>(kv.v);
    pk.n_blocks = kv.n_blocks;
    pk.block_size = kv.block_size;
    pk.Hkv = Hkv;
    pk.D = D;
    pk.block_tables = dev_.block_tables;
    pk.max_blocks_per_seq = std::max<int64_t>(step_.max_blocks, 1);
    kc::AttnBatch batch;
    batch.n_seqs = step_.n_seqs;
    batch.T = step_.n_tokens;
    batch.cu_seqlens = dev_.cu_seqlens;
    batch.start_pos = dev_.start_pos;
    batch.tok_seq = dev_.tok_seq;
    kc::kv_cache_write(batch, bptr(k), k.row_stride(), bptr(v), v.row_stride(), pk, stream_);

    kc::AttentionParams p;
    p.batch = batch;
    p.q = bptr(q);
    p.ldq = q.row_stride();
    p.out = bptr(out);
    p.ldo = out.row_stride();
    p.kv = pk;
    p.Hq = Hq;
    p.scale = scale;
    if (kc::attention_prefill_tile_rows(D) == 128) kc::attention_prefill(p, dev_.tiles128, int64_t(tiles128_.size() / 2), stream_);
    else kc::attention_prefill(p, dev_.tiles, int64_t(tiles_.size() / 2), stream_);
    if (!single_.empty()) {
      // The bound comes from the block rows' width, not from the lengths, so that a recorded step's grid and
      // scratch layout hold for any later lengths (and the eager run before the recording sizes the scratch).
      const int64_t max_kv = pk.max_blocks_per_seq * pk.block_size;
      const int64_t need = kc::attention_decode_scratch(int64_t(single_.size()), Hq, D, max_kv);
      float* scratch = scratch_floats(need);
      kc::attention_decode(p, dev_.single, int64_t(single_.size()), max_kv, scratch, stream_);
    }
  }

  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, const Tensor& out) override {
    expect_bf16(x, "gather_rows input");
    expect_bf16(out, "gather_rows output");
    for (int32_t r : rows) HYRAX_CHECK(r >= 0 && r < x.rows(), "gather_rows: row ", r);
    if (int64_t(rows.size()) > max_rows_seen_) {  // may grow the lm_head's staging copy (see begin_step)
      moved();
      max_rows_seen_ = int64_t(rows.size());
    }
    bool identity = true;
    for (size_t i = 0; i < rows.size() && identity; ++i) identity = rows[i] == int32_t(i);
    if (identity) {  // every row in order (decode, all logits): a fixed device list, nothing to upload
      kc::gather_rows(bptr(x), x.row_stride(), identity_rows(int64_t(rows.size())), int64_t(rows.size()), x.dim(-1),
                      bptr(out), out.row_stride(), stream_);
      return;
    }
    HYRAX_CHECK(!capturing_, "a recorded step must want the logits of rows 0 .. n-1 in order");
    int32_t* h = rows_.host(std::max<size_t>(rows.size(), 1));
    if (!rows.empty()) std::memcpy(h, rows.data(), rows.size() * sizeof(int32_t));
    int32_t* d = rows_.upload(rows.size(), stream_);
    kc::gather_rows(bptr(x), x.row_stride(), d, int64_t(rows.size()), x.dim(-1), bptr(out), out.row_stride(),
                    stream_);
  }

 private:
  /// The row norm of x (weights w) into y, fused with the residual stream `res` where given; shapes checked.
  static kc::RmsNormParams norm_params(const char* op, const Tensor& x, const Tensor& w, float eps, const Tensor* y,
                                       const Tensor* res) {
    expect_bf16(x, op);
    HYRAX_CHECK(x.dim(-1) == w.numel(), op, ": input ", x.shape_str(), " for ", w.numel(), " weights");
    auto check = [&](const Tensor& t) {
      expect_bf16(t, op);
      HYRAX_CHECK(t.dim(-1) == x.dim(-1) && t.rows() == x.rows(), op, ": ", t.shape_str(), " beside input ",
                  x.shape_str());
    };
    kc::RmsNormParams p;
    p.x = bptr(x);
    p.ldx = x.row_stride();
    p.w = w.ptr<float>();
    p.T = x.rows();
    p.C = x.dim(-1);
    p.eps = eps;
    if (y) {
      check(*y);
      p.y = bptr(*y);
      p.ldy = y->row_stride();
    }
    if (res) {
      check(*res);
      p.res = bptr(*res);
      p.ldr = res->row_stride();
    }
    return p;
  }

  /// A buffer some recorded step may read is about to move: drop every graph, or, while recording, spoil it.
  void moved() {
    if (capturing_) spoiled_ = true;
    else drop_graphs();
  }

  void drop_graphs() {
    for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
    graphs_.clear();
  }

  /// Grows a scratch buffer to `bytes` (its old contents are not kept).
  void grow(void*& p, size_t& have, size_t bytes) {
    if (bytes <= have) return;
    if (p) {
      if (!capturing_) CUDA_CHECK(cudaStreamSynchronize(stream_));
      release(p);
    }
    p = alloc(bytes);
    have = bytes;
  }

  void* gdn_scratch(size_t bytes) {
    grow(gdn_scratch_, gdn_scratch_bytes_, bytes);
    return gdn_scratch_;
  }

  float* scratch_floats(int64_t n) {
    grow(scratch_, scratch_bytes_, size_t(std::max<int64_t>(n, 1)) * sizeof(float));
    return static_cast<float*>(scratch_);
  }

  /// The device list 0, 1, ..., n-1 (at least n long).
  const int32_t* identity_rows(int64_t n) {
    if (n > iota_n_) {
      HYRAX_CHECK(!capturing_, "identity rows grew while a step was recorded");
      moved();
      if (iota_) CUDA_CHECK(cudaFree(iota_));
      iota_n_ = std::max<int64_t>(n, 2 * iota_n_);
      std::vector<int32_t> h(static_cast<size_t>(iota_n_));
      for (size_t i = 0; i < h.size(); ++i) h[i] = int32_t(i);
      CUDA_CHECK(cudaMalloc(&iota_, h.size() * sizeof(int32_t)));
      copy_to_device(iota_, h.data(), h.size() * sizeof(int32_t));
    }
    return iota_;
  }

  struct DeviceMeta {
    int32_t *tokens = nullptr, *positions = nullptr, *tok_seq = nullptr, *cu_seqlens = nullptr;
    int32_t *start_pos = nullptr, *slots = nullptr, *block_tables = nullptr;
    int32_t *single = nullptr, *multi = nullptr, *tiles = nullptr, *first_chunk = nullptr, *tiles128 = nullptr;
  };
  /// A recorded step and the layout it was recorded with (a replay must match it).
  struct StepGraph {
    cudaGraphExec_t exec = nullptr;
    int64_t n_seqs = 0, n_tokens = 0, max_blocks = 0;
    DeviceMeta dev;
  };

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<kc::Gemm> gemm_;
  std::vector<void*> owned_;
  StepMeta step_;
  std::vector<int32_t> single_, multi_, tiles_, first_chunk_, tiles128_;
  std::vector<std::array<int32_t, 3>> tile_keys_;  // [n_tiles] (key positions, sequence, first row) of tiles128_
  static constexpr int64_t kDecodeGemmMaxSeqs = 32;
  bool decode_gemm_allowed_ = true;  // CudaOptions::decode_gemm
  bool decode_gemm_ = false;         // one-token rows take the decode GEMM (set by reserve_steps)
  int64_t n_decode_ = 0;  // the step's leading one-token sequences (0 outside a step: every row takes cuBLASLt)
  Staging meta_, rows_;
  DeviceMeta dev_;
  void* scratch_ = nullptr;  // attention decode partials
  size_t scratch_bytes_ = 0;
  void* gdn_scratch_ = nullptr;  // chunked GDN records
  size_t gdn_scratch_bytes_ = 0;
  int32_t* iota_ = nullptr;  // 0, 1, ..., iota_n_-1: gather_rows' identity rows
  int64_t iota_n_ = 0;
  int64_t max_tokens_seen_ = 0, max_rows_seen_ = 0;  // the largest step so far (see begin_step)
  std::map<int64_t, StepGraph> graphs_;
  bool capture_pending_ = false, capturing_ = false, spoiled_ = false;
  int64_t capture_key_ = -1;
  std::vector<void*> deferred_free_;  // released while recording; freed when the recording ends

 public:
  void sample(const Tensor& logits, const std::vector<kernels::SampleRow>& rows, int32_t* tokens,
              float* logprobs) override {
    HYRAX_CHECK(logits.dtype == DType::F32 && logits.device == Device::CUDA, "sample: logits must be float32 on CUDA");
    HYRAX_CHECK(int64_t(rows.size()) == logits.rows(), "sample: ", rows.size(), " rows of parameters for logits ",
                logits.shape_str());
    for (size_t r = 0; r < rows.size(); ++r) kernels::check_sample_row(rows[r], int64_t(r));
    sampler_.run(logits.ptr<float>(), logits.row_stride(), logits.rows(), logits.dim(-1), rows.data(), tokens,
                 logprobs, stream_);
  }

 private:
  kc::SampleRunner sampler_;  // pinned and device buffers of sample()
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& o) { return std::make_unique<CudaBackend>(o); }

}  // namespace hyrax
