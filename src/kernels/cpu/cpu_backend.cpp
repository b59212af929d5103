// The CPU backend: float32 activations and KV cache; each op is one call of a kernel in src/kernels/<op>/.
#include <cstring>

#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "kernels/activations/activations.h"
#include "kernels/attention/attention.h"
#include "kernels/backend.h"
#include "kernels/conv1d/conv1d.h"
#include "kernels/gated_delta_rule/gated_delta_rule.h"
#include "kernels/matmul/matmul.h"
#include "kernels/rms_norm/rms_norm.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/sampling.h"

namespace hyrax {
namespace {

void expect_f32(const Tensor& t, const char* what) {
  HYRAX_CHECK(t.dtype == DType::F32 && t.device == Device::CPU, what, " must be a float32 CPU tensor");
}

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }
  DType act_dtype() const override { return DType::F32; }
  DType kv_dtype() const override { return DType::F32; }

  void* alloc(size_t bytes) override {
    void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    HYRAX_REQUIRE(p != nullptr, "out of host memory allocating ", bytes, " bytes");
    return p;
  }
  void release(void* p) override { std::free(p); }
  void zero(void* p, size_t bytes) override { std::memset(p, 0, bytes); }
  void copy_to_host(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }
  void copy_to_device(void* dst, const void* src, size_t bytes) override { std::memcpy(dst, src, bytes); }

  Tensor load_matrix(const io::TensorInfo& t) override {
    HYRAX_CHECK(t.shape.size() == 2, t.name, " is not a matrix");
    return Tensor(const_cast<void*>(t.data), t.dtype, {t.shape[0], t.shape[1]});
  }

  Tensor load_f32(const std::vector<float>& host, std::initializer_list<int64_t> shape) override {
    owned_.emplace_back(host.size() * sizeof(float));
    std::memcpy(owned_.back().data(), host.data(), host.size() * sizeof(float));
    Tensor t(owned_.back().data(), DType::F32, shape);
    HYRAX_CHECK(size_t(t.numel()) == host.size(), "load_f32: shape ", t.shape_str(), " vs ", host.size(), " values");
    return t;
  }

  void begin_step(const StepMeta& m) override { step_ = m; }

  void embed(const Tensor& table, const Tensor& out) override {
    expect_f32(out, "embed output");
    const int64_t C = table.dim(1), V = table.dim(0);
    HYRAX_CHECK(out.rows() == step_.n_tokens && out.dim(-1) == C, "embed: out ", out.shape_str());
    const size_t row_bytes = size_t(C) * dtype_size(table.dtype);
    for (int64_t t = 0; t < step_.n_tokens; ++t) {
      const int32_t id = step_.tokens[t];
      HYRAX_REQUIRE(id >= 0 && id < V, "token id ", id, " is outside the vocabulary [0, ", V, ")");
      to_f32(table.dtype, static_cast<const char*>(table.data) + size_t(id) * row_bytes,
             out.ptr<float>() + t * out.row_stride(), size_t(C));
    }
  }

  void matmul(const Tensor& x, const Tensor& w, const Tensor& y) override {
    expect_f32(x, "matmul input");
    expect_f32(y, "matmul output");
    HYRAX_CHECK(x.dim(-1) == w.dim(1) && y.dim(-1) == w.dim(0) && x.rows() == y.rows(), "matmul shapes x ",
                x.shape_str(), " w ", w.shape_str(), " y ", y.shape_str());
    kernels::MatmulParams p;
    p.x = x.ptr<float>();
    p.ldx = x.row_stride();
    p.w = w.data;
    p.w_dtype = w.dtype;
    p.y = y.ptr<float>();
    p.ldy = y.row_stride();
    p.T = x.rows();
    p.N = w.dim(0);
    p.K = w.dim(1);
    kernels::matmul(p);
  }

  void rms_norm(const Tensor& x, const Tensor& w, float eps, const Tensor& y) override {
    expect_f32(x, "rms_norm input");
    HYRAX_CHECK(x.dim(-1) == w.numel() && y.dim(-1) == w.numel() && x.rows() == y.rows(), "rms_norm shapes");
    kernels::RmsNormParams p;
    p.x = x.ptr<float>();
    p.ldx = x.row_stride();
    p.w = w.ptr<float>();
    p.y = y.ptr<float>();
    p.ldy = y.row_stride();
    p.T = x.rows();
    p.C = x.dim(-1);
    p.eps = eps;
    kernels::rms_norm(p);
  }

  void gated_rms_norm(const Tensor& x, const Tensor& gate, const Tensor& w, float eps, const Tensor& y) override {
    const int64_t D = w.numel();
    HYRAX_CHECK(x.dim(-1) % D == 0 && gate.dim(-1) == x.dim(-1) && y.dim(-1) == x.dim(-1), "gated_rms_norm shapes");
    kernels::GatedRmsNormParams p;
    p.x = x.ptr<float>();
    p.ldx = x.row_stride();
    p.gate = gate.ptr<float>();
    p.ldg = gate.row_stride();
    p.w = w.ptr<float>();
    p.y = y.ptr<float>();
    p.ldy = y.row_stride();
    p.T = x.rows();
    p.H = x.dim(-1) / D;
    p.D = D;
    p.eps = eps;
    kernels::gated_rms_norm(p);
  }

  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& y) override {
    kernels::SwigluParams p;
    p.gate = gate.ptr<float>();
    p.ldg = gate.row_stride();
    p.up = up.ptr<float>();
    p.ldu = up.row_stride();
    p.y = y.ptr<float>();
    p.ldy = y.row_stride();
    p.T = gate.rows();
    p.C = gate.dim(-1);
    kernels::swiglu(p);
  }

  void add(const Tensor& a, const Tensor& b, const Tensor& y) override {
    const int64_t R = a.rows(), C = a.dim(-1);
    HYRAX_CHECK(b.rows() == R && y.rows() == R && b.dim(-1) == C && y.dim(-1) == C, "add shapes");
    parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* pa = a.ptr<float>() + r * a.row_stride();
        const float* pb = b.ptr<float>() + r * b.row_stride();
        float* py = y.ptr<float>() + r * y.row_stride();
        for (int64_t c = 0; c < C; ++c) py[c] = pa[c] + pb[c];
      }
    });
  }

  void conv1d(const Tensor& x, const Tensor& w, float* conv_pool, const Tensor& y) override {
    kernels::Conv1dParams p;
    p.n_seqs = step_.n_seqs;
    p.cu_seqlens = step_.cu_seqlens;
    p.state_slots = step_.state_slots;
    p.state = conv_pool;
    p.x = x.ptr<float>();
    p.ldx = x.row_stride();
    p.y = y.ptr<float>();
    p.ldy = y.row_stride();
    p.w = w.ptr<float>();
    p.C = w.dim(0);
    p.W = w.dim(1);
    p.silu = true;
    kernels::conv1d(p);
  }

  void gated_delta_rule(const Tensor& qkv, const Tensor& a, const Tensor& b, const Tensor& A_log,
                        const Tensor& dt_bias, const GdnShape& s, float* ssm_pool, const Tensor& out) override {
    const int64_t key_dim = s.Hk * s.Dk;
    HYRAX_CHECK(qkv.dim(-1) == 2 * key_dim + s.Hv * s.Dv && out.dim(-1) == s.Hv * s.Dv, "gated_delta_rule shapes");
    HYRAX_CHECK(a.row_stride() == b.row_stride(), "a and b must share a row stride");
    kernels::GatedDeltaRuleParams p;
    p.state = ssm_pool;
    p.q = qkv.ptr<float>();
    p.k = qkv.ptr<float>() + key_dim;
    p.v = qkv.ptr<float>() + 2 * key_dim;
    p.ld_qkv = qkv.row_stride();
    p.a = a.ptr<float>();
    p.b = b.ptr<float>();
    p.ld_ab = a.row_stride();
    p.A_log = A_log.ptr<float>();
    p.dt_bias = dt_bias.ptr<float>();
    p.out = out.ptr<float>();
    p.ld_out = out.row_stride();
    p.Hk = s.Hk;
    p.Hv = s.Hv;
    p.Dk = s.Dk;
    p.Dv = s.Dv;
    p.allow_neg_eigval = s.allow_neg_eigval;
    // Each sequence takes the path chosen by its own length (one token: recurrent; more: chunked), so its result
    // never depends on the other sequences of the step. Runs of adjacent sequences of one kind go in one call.
    const float* base_qkv = qkv.ptr<float>();
    std::vector<int32_t> cu, slots;
    int64_t first = 0;
    while (first < step_.n_seqs) {
      const bool single = step_.cu_seqlens[first + 1] - step_.cu_seqlens[first] == 1;
      int64_t e = first + 1;
      while (e < step_.n_seqs && (step_.cu_seqlens[e + 1] - step_.cu_seqlens[e] == 1) == single) ++e;
      const int64_t row0 = step_.cu_seqlens[first];
      cu.assign(1, 0);
      slots.clear();
      for (int64_t i = first; i < e; ++i) {
        cu.push_back(step_.cu_seqlens[i + 1] - int32_t(row0));
        slots.push_back(step_.state_slots[i]);
      }
      p.n_seqs = e - first;
      p.cu_seqlens = cu.data();
      p.state_slots = slots.data();
      p.q = base_qkv + row0 * p.ld_qkv;
      p.k = p.q + key_dim;
      p.v = p.q + 2 * key_dim;
      p.a = a.ptr<float>() + row0 * p.ld_ab;
      p.b = b.ptr<float>() + row0 * p.ld_ab;
      p.out = out.ptr<float>() + row0 * p.ld_out;
      if (single) kernels::gated_delta_rule_recurrent(p);
      else kernels::gated_delta_rule_chunked(p);
      first = e;
    }
  }

  void rope(const Tensor& x, int64_t heads, float theta) override {
    kernels::RopeParams p;
    p.x = x.ptr<float>();
    p.ldx = x.row_stride();
    p.pos = step_.positions;
    p.T = x.rows();
    p.H = heads;
    p.D = x.dim(-1) / heads;
    p.theta = theta;
    kernels::rope(p);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, const KvPools& kv, int64_t Hq, int64_t Hkv,
                 int64_t D, float scale, const Tensor& out) override {
    kernels::PagedKv pk;
    pk.k = static_cast<float*>(kv.k);
    pk.v = static_cast<float*>(kv.v);
    pk.n_blocks = kv.n_blocks;
    pk.block_size = kv.block_size;
    pk.Hkv = Hkv;
    pk.D = D;
    pk.block_tables = step_.block_tables;
    pk.max_blocks_per_seq = step_.max_blocks;

    kernels::KvWriteParams w;
    w.n_seqs = step_.n_seqs;
    w.cu_seqlens = step_.cu_seqlens;
    w.start_pos = step_.start_pos;
    w.k = k.ptr<float>();
    w.ldk = k.row_stride();
    w.v = v.ptr<float>();
    w.ldv = v.row_stride();
    w.kv = pk;
    kernels::kv_cache_write(w);

    kernels::AttentionParams p;
    p.n_seqs = step_.n_seqs;
    p.cu_seqlens = step_.cu_seqlens;
    p.start_pos = step_.start_pos;
    p.q = q.ptr<float>();
    p.ldq = q.row_stride();
    p.out = out.ptr<float>();
    p.ldo = out.row_stride();
    p.kv = pk;
    p.Hq = Hq;
    p.scale = scale;
    kernels::attention(p);
  }

  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, const Tensor& out) override {
    const int64_t C = x.dim(-1);
    for (size_t i = 0; i < rows.size(); ++i) {
      HYRAX_CHECK(rows[i] >= 0 && rows[i] < x.rows(), "gather_rows: row ", rows[i]);
      std::memcpy(out.ptr<float>() + int64_t(i) * out.row_stride(), x.ptr<float>() + rows[i] * x.row_stride(),
                  size_t(C) * sizeof(float));
    }
  }

  void sample(const Tensor& logits, const std::vector<kernels::SampleRow>& rows, int32_t* tokens,
              float* logprobs) override {
    expect_f32(logits, "sample logits");
    HYRAX_CHECK(int64_t(rows.size()) == logits.rows(), "sample: ", rows.size(), " rows of parameters for logits ",
                logits.shape_str());
    // Rows are independent: one reference call per row, rows spread over the cores.
    parallel_for(logits.rows(), 1, [&](int64_t b, int64_t e) {
      kernels::SampleParams p;
      p.logits = logits.ptr<float>() + b * logits.row_stride();
      p.ld = logits.row_stride();
      p.R = e - b;
      p.V = logits.dim(-1);
      p.rows = rows.data() + b;
      p.tokens = tokens + b;
      p.logprobs = logprobs ? logprobs + b : nullptr;
      kernels::sample_ref(p);
    });
  }

 private:
  StepMeta step_;
  std::vector<HostBuffer> owned_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace hyrax
