// The op set that layers are written against. A backend owns a device's memory and runs each op with that
// device's kernels; layers and models see only this interface and Tensors, never the device.
//
// Conventions: activations are 2-D views [rows, cols] with a row stride (Tensor::ld) in the backend's act_dtype()
// (float32 on CPU, bf16 on GPU); weight matrices are [N, K] as stored; small parameter vectors are float32.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/sampling/sampling.h"

namespace hyrax::io {
struct TensorInfo;
}

namespace hyrax {

/// The packed batch of one forward step, in host memory: n sequences, each contributing a run of new tokens.
struct StepMeta {
  int64_t n_seqs = 0, n_tokens = 0;
  const int32_t* tokens = nullptr;        // [n_tokens]
  const int32_t* positions = nullptr;     // [n_tokens] absolute position of each token in its sequence
  const int32_t* cu_seqlens = nullptr;    // [n_seqs + 1] offsets of each sequence's tokens
  const int32_t* start_pos = nullptr;     // [n_seqs] position of each sequence's first new token
  const int32_t* state_slots = nullptr;   // [n_seqs] recurrent-state slot of each sequence
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks] KV blocks of each sequence
  int64_t max_blocks = 0;                 // row width of block_tables (>= every sequence's block count)
};

/// The largest steps an engine will run: lets a backend size its per-step buffers once, so that they keep their
/// device addresses (which a recorded step graph has baked in).
struct StepCapacity {
  int64_t max_seqs = 0;    // sequences in a step, padding included
  int64_t max_tokens = 0;  // tokens in a step
  int64_t max_blocks = 0;  // block-table row width
};

/// One recurrent layer's state pools: conv inputs [n_slots, W-1, C] and the delta-rule state [n_slots, H, Dk, Dv].
struct RecurrentPools {
  float* conv = nullptr;
  float* ssm = nullptr;
};

/// One attention layer's paged KV pools: [n_blocks, block_size, Hkv, D] each, in the backend's kv dtype.
struct KvPools {
  void* k = nullptr;
  void* v = nullptr;
  int64_t n_blocks = 0, block_size = 0;
};

struct GdnShape {
  int64_t Hk = 0, Hv = 0, Dk = 0, Dv = 0;
  bool allow_neg_eigval = true;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  virtual DType act_dtype() const = 0;
  virtual DType kv_dtype() const = 0;

  // ---- memory (device memory for a GPU backend) ----
  virtual void* alloc(size_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void zero(void* p, size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void synchronize() {}

  // ---- weights ----
  /// A weight matrix [N, K] where the backend's matmul can read it (CPU: the mapped bytes themselves).
  virtual Tensor load_matrix(const io::TensorInfo& t) = 0;
  /// A small float32 parameter (norm weights, gates, conv taps) copied to the device; `host` holds numel floats.
  virtual Tensor load_f32(const std::vector<float>& host, std::initializer_list<int64_t> shape) = 0;

  // ---- the step ----
  /// Sizes per-step buffers for steps up to `c` (optional; buffers grow on demand past it).
  virtual void reserve_steps(const StepCapacity& c) { (void)c; }
  /// Makes the packed batch's metadata available to the ops of this step.
  virtual void begin_step(const StepMeta& m) = 0;

  // ---- step graphs (CUDA graphs; optional) ----
  // A step's ops can be recorded once under a key and replayed for later steps with the same key. Steps sharing a
  // key must share their layout: n_seqs, n_tokens, max_blocks, every sequence bringing one token, and the logits
  // rows 0 .. n_seqs-1; only the metadata values (tokens, positions, slots, block tables) differ. The caller runs
  // such a step eagerly once before recording it (lazy initialisations: algorithm choices, scratch sizes).
  /// Whether this backend records and replays steps; the others run every step eagerly.
  virtual bool step_graphs() const { return false; }
  /// The next forward step is recorded under `key` instead of run: its begin_step uploads the metadata as usual,
  /// then every op until end_capture is recorded, none runs.
  virtual void begin_capture(int64_t key) { (void)key; }
  /// Ends the recording; false (nothing kept) when it could not be kept, e.g. a buffer it uses moved meanwhile.
  virtual bool end_capture() { return false; }
  /// Whether a recording under `key` exists and still holds (the buffers it reads have not moved since).
  virtual bool has_graph(int64_t key) const { (void)key; return false; }
  /// Runs the recording under `key` for the step whose metadata begin_step has just uploaded.
  virtual void replay(int64_t key) { (void)key; }

  // ---- ops (shapes: T = the step's tokens) ----
  /// out[T, C] = table[token] rows, table [V, C] as stored.
  virtual void embed(const Tensor& table, const Tensor& out) = 0;
  /// y[R, N] = x[R, K] · w[N, K]ᵀ
  virtual void matmul(const Tensor& x, const Tensor& w, const Tensor& y) = 0;
  /// y = x / sqrt(mean(x²) + eps) * w over the last dim; y may alias x.
  virtual void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) = 0;
  /// Two independent norms in place, x1 = rms(x1)·w1 and x2 = rms(x2)·w2 (attention's q and k): the same as two
  /// rms_norm calls; a backend may run them together.
  virtual void rms_norm_pair(const Tensor& x1, const Tensor& w1, const Tensor& x2, const Tensor& w2, float eps) {
    rms_norm(x1, w1, eps, x1);
    rms_norm(x2, w2, eps, x2);
  }
  /// Per head of D = w.numel() values: y = rms(x) * w * silu(gate); y may alias x.
  virtual void gated_rms_norm(const Tensor& x, const Tensor& gate, const Tensor& w, float eps, const Tensor& y) = 0;
  /// y = silu(gate) * up
  virtual void swiglu(const Tensor& gate, const Tensor& up, const Tensor& y) = 0;
  /// The gated MLP's first half: gate_up = x · w_gate_upᵀ (w stacked [gate; up], 2I rows), then act = silu(gate) *
  /// up, act [R, I] being gate_up's first I columns. A backend may fuse the two (the same bits as matmul then
  /// swiglu); gate_up's contents past act are then unspecified.
  virtual void matmul_swiglu(const Tensor& x, const Tensor& w_gate_up, const Tensor& gate_up) {
    const int64_t I = w_gate_up.dim(0) / 2;
    matmul(x, w_gate_up, gate_up);
    const Tensor gate = gate_up.cols(0, I);
    swiglu(gate, gate_up.cols(I, 2 * I), gate);
  }
  /// y = a + b; y may alias either.
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& y) = 0;
  /// The pre-norm residual step: x = x + d, then h = rms_norm(x)·w. A backend may fuse the two passes; the result
  /// is the same as add then rms_norm.
  virtual void add_rms_norm(const Tensor& x, const Tensor& d, const Tensor& w, float eps, const Tensor& h) {
    add(x, d, x);
    rms_norm(x, w, eps, h);
  }
  /// The post-norm residual step: x = x + rms_norm(d)·w, the same as rms_norm then add. d is scratch: its contents
  /// afterwards are unspecified.
  virtual void rms_norm_add(const Tensor& d, const Tensor& w, float eps, const Tensor& x) {
    rms_norm(d, w, eps, d);
    add(x, d, x);
  }
  /// Causal depthwise conv (taps w [C, W]) + SiLU over each sequence, continuing from and updating its conv state.
  virtual void conv1d(const Tensor& x, const Tensor& w, float* conv_pool, const Tensor& y) = 0;
  /// y = x · wᵀ, then conv1d (taps conv_w [C, W]) over y's first C columns into conv_out. A backend may fuse the two;
  /// the result has the bits of matmul then conv1d.
  virtual void matmul_conv1d(const Tensor& x, const Tensor& w, const Tensor& y, const Tensor& conv_w, float* conv_pool,
                             const Tensor& conv_out) {
    matmul(x, w, y);
    conv1d(y.cols(0, conv_w.dim(0)), conv_w, conv_pool, conv_out);
  }
  /// The gated delta rule over each sequence, continuing from and updating its state; see
  /// kernels/gated_delta_rule. qkv [T, 2·Hk·Dk + Hv·Dv] (q | k | v), a and b [T, Hv], out [T, Hv·Dv].
  virtual void gated_delta_rule(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& A_log,
                                const Tensor& dt_bias, const GdnShape& shape, float* ssm_pool, const Tensor& out) = 0;
  /// Rotates x [T, H·D] in place at the step's token positions (rotate-half RoPE).
  virtual void rope(const Tensor& x, int64_t heads, float theta) = 0;
  /// Writes the step's k, v [T, Hkv·D] into the paged cache, then out[T, Hq·D] = causal softmax attention of q over
  /// each sequence's cached positions.
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, const KvPools& kv, int64_t Hq,
                         int64_t Hkv, int64_t D, float scale, const Tensor& out) = 0;
  /// out[i] = x[rows[i]]: picks the rows whose logits are wanted.
  virtual void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, const Tensor& out) = 0;

  // ---- sampling ----
  /// One token from each row of float32 logits [R, V] with rows[r]'s parameters and draw (kernels/sampling), and
  /// its log-softmax of the raw logits; tokens and logprobs are host arrays [R] (logprobs may be null). A row's
  /// result depends only on that row.
  virtual void sample(const Tensor& logits, const std::vector<kernels::SampleRow>& rows, int32_t* tokens,
                      float* logprobs) = 0;
};

/// The CPU backend (float32 activations and KV cache, all cores).
std::unique_ptr<Backend> make_cpu_backend();

struct CudaOptions {
  bool decode_gemm = true;  // one-token rows on hyrax's decode GEMM in engines of <= 32 sequences (docs/CUDA.md)
};

/// The CUDA backend on GPU 0 (bf16 activations and KV cache, float32 state and accumulation); defined only in
/// builds with CUDA (HYRAX_HAS_CUDA). Throws hyrax::Error when no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(const CudaOptions& o = {});

}  // namespace hyrax
