// Olmo Hybrid forward pass. Mirrors transformers 5.17 modeling_olmo_hybrid.py:
//   OlmoHybridLinearAttentionDecoderLayer (pre-norm GDN block), OlmoHybridAttentionDecoderLayer (Olmo 3 post-norm
//   attention block), OlmoHybridModel (embed -> layers -> norm), OlmoHybridForCausalLM (lm_head).
// Checkpoint names: both the hub/save_pretrained spelling (attention_layer_norm, feedforward_layer_norm,
// {q,k,v}_conv1d) and the module spelling (input_layernorm, post_attention_layernorm, conv1d).
#include <cstring>

#include "core/check.h"
#include "layers/attention.h"
#include "layers/gated_deltanet.h"
#include "layers/mlp.h"
#include "models/model.h"
#include "models/olmo_hybrid.h"
#include "models/weight_reader.h"

namespace hyrax {
namespace {

using Init = WeightReader::Init;

struct LinearLayer {
  Tensor input_norm, post_attention_norm;  // [C]
  GdnWeights gdn;
  MlpWeights mlp;
};

struct AttentionLayer {
  AttentionWeights attn;
  Tensor post_attention_norm, post_feedforward_norm;  // [C]
  MlpWeights mlp;
};

class OlmoHybrid final : public Model {
 public:
  OlmoHybrid(const ModelSource& src, std::shared_ptr<WeightReader> weights, Backend& be)
      : cfg_(OlmoHybridConfig::parse(src.config, src.generation_config)), weights_(std::move(weights)), be_(be),
        ws_(be) {
    load_weights();
    describe();
  }

  const ModelInfo& info() const override { return info_; }

  StateSpec state_spec() const override {
    StateSpec spec;
    for (bool linear : cfg_.is_linear) {
      LayerStateSpec l;
      if (linear) {
        l.kind = LayerStateSpec::Kind::Recurrent;
        l.conv_channels = cfg_.gdn_conv_dim();
        l.conv_width = cfg_.linear_conv_kernel_dim;
        l.heads = cfg_.linear_num_value_heads;
        l.dk = cfg_.linear_key_head_dim;
        l.dv = cfg_.linear_value_head_dim;
      } else {
        l.kind = LayerStateSpec::Kind::Attention;
        l.kv_heads = cfg_.num_key_value_heads;
        l.head_dim = cfg_.head_dim;
      }
      spec.layers.push_back(l);
    }
    return spec;
  }

  void forward(const StepMeta& m, StatePool& pool, const std::vector<int32_t>& logit_rows,
               const Tensor& logits) override {
    const int64_t T = m.n_tokens, C = cfg_.hidden_size;
    const float eps = float(cfg_.rms_norm_eps);
    be_.begin_step(m);
    Tensor x = ws_.get("x", T, C);       // the residual stream
    Tensor h = ws_.get("h", T, C);       // normed input of a block
    Tensor out = ws_.get("out", T, C);   // a block's output
    be_.embed(embed_tokens_, x);
    // The residual adds are fused with the norm beside them (Backend::add_rms_norm / rms_norm_add: the same bits as
    // the separate ops); `h_ready`: h already holds this linear layer's normed input.
    bool h_ready = false;
    const int64_t n_layers = cfg_.num_hidden_layers;
    for (int64_t il = 0; il < n_layers; ++il) {
      if (cfg_.is_linear[size_t(il)]) {
        const LinearLayer& L = linear_[size_t(il)];
        // x = x + GDN(rms(x))
        if (!h_ready) be_.rms_norm(x, L.input_norm, eps, h);
        gated_deltanet_forward(be_, L.gdn, gdn_shape_, h, pool.recurrent(int(il)), ws_, out);
        be_.add_rms_norm(x, out, L.post_attention_norm, eps, h);
        // x = x + MLP(rms(x)), then the next linear layer's input norm in the same pass
        mlp_forward(be_, L.mlp, h, ws_, out);
        h_ready = il + 1 < n_layers && cfg_.is_linear[size_t(il + 1)];
        if (h_ready) be_.add_rms_norm(x, out, linear_[size_t(il + 1)].input_norm, eps, h);
        else be_.add(x, out, x);
      } else {
        const AttentionLayer& L = attention_[size_t(il)];
        // x = x + rms(Attn(x))
        attention_forward(be_, L.attn, attn_shape_, x, pool.kv(int(il)), ws_, out);
        be_.rms_norm_add(out, L.post_attention_norm, eps, x);
        // x = x + rms(MLP(x))
        mlp_forward(be_, L.mlp, x, ws_, out);
        be_.rms_norm_add(out, L.post_feedforward_norm, eps, x);
        h_ready = false;
      }
    }
    // logits = lm_head(rms(x)) for the wanted rows only
    const int64_t R = int64_t(logit_rows.size());
    if (R == 0) return;
    HYRAX_CHECK(logits.rows() == R && logits.dim(-1) == cfg_.vocab_size, "logits buffer ", logits.shape_str());
    Tensor sel = ws_.get("final", R, C);
    be_.gather_rows(x, logit_rows, sel);
    be_.rms_norm(sel, norm_, eps, sel);
    be_.matmul(sel, lm_head_, logits);
  }

 private:
  Tensor vec(const std::string& name, int64_t n, Init init) {
    return be_.load_f32(weights_->host_f32(name, {n}, init), {n});
  }

  MlpWeights load_mlp(const std::string& p) {
    const int64_t C = cfg_.hidden_size, I = cfg_.intermediate_size;
    return {weights_->stacked({{p + "mlp.gate_proj.weight", I}, {p + "mlp.up_proj.weight", I}}, C),
            weights_->matrix(p + "mlp.down_proj.weight", C, I)};
  }

  // The conv taps of q | k | v as one [conv_dim, W] float32 matrix, from either layout.
  Tensor load_conv(const std::string& p) {
    const int64_t conv_dim = cfg_.gdn_conv_dim(), W = cfg_.linear_conv_kernel_dim;
    if (weights_->dummy() || weights_->has(p + "linear_attn.conv1d.weight"))
      return be_.load_f32(weights_->host_f32(p + "linear_attn.conv1d.weight", {conv_dim, 1, W}, Init::Conv),
                          {conv_dim, W});
    // Split layout: q_conv1d, k_conv1d, v_conv1d concatenated in that order (save_pretrained splits the fused
    // weight into three equal parts, so only the total is fixed).
    std::vector<float> all;
    for (const char* part : {"q_conv1d", "k_conv1d", "v_conv1d"}) {
      const std::string name = p + "linear_attn." + part + ".weight";
      const io::TensorInfo& t = weights_->info(weights_->first_present({name, p + "linear_attn.conv1d.weight"}));
      HYRAX_REQUIRE(t.shape.size() == 3 && t.shape[1] == 1 && t.shape[2] == W, t.file, ": tensor ", name,
                    " has shape ", t.shape_str(), ", expected [rows, 1, ", W, "]");
      const auto part_vals = weights_->host_f32(name, t.shape, Init::Conv);
      all.insert(all.end(), part_vals.begin(), part_vals.end());
    }
    HYRAX_REQUIRE(int64_t(all.size()) == conv_dim * W, p, "linear_attn.{q,k,v}_conv1d.weight hold ",
                  all.size() / size_t(W), " channels together, expected ", conv_dim,
                  " (2 x key_dim + value_dim)");
    return be_.load_f32(all, {conv_dim, W});
  }

  void load_weights() {
    const int64_t C = cfg_.hidden_size, V = cfg_.vocab_size;
    WeightReader& w = *weights_;
    embed_tokens_ = w.matrix("model.embed_tokens.weight", V, C);
    norm_ = vec("model.norm.weight", C, Init::Ones);
    lm_head_ = cfg_.tie_word_embeddings ? embed_tokens_ : w.matrix("lm_head.weight", V, C);

    gdn_shape_.gdn = {cfg_.linear_num_key_heads, cfg_.linear_num_value_heads, cfg_.linear_key_head_dim,
                      cfg_.linear_value_head_dim, cfg_.linear_allow_neg_eigval};
    attn_shape_ = {cfg_.num_attention_heads, cfg_.num_key_value_heads, cfg_.head_dim, float(cfg_.rms_norm_eps),
                   cfg_.rope, float(cfg_.rope_theta)};

    linear_.resize(size_t(cfg_.num_hidden_layers));
    attention_.resize(size_t(cfg_.num_hidden_layers));
    const int64_t Hv = cfg_.linear_num_value_heads, key_dim = cfg_.gdn_key_dim(), value_dim = cfg_.gdn_value_dim();
    for (int64_t il = 0; il < cfg_.num_hidden_layers; ++il) {
      const std::string p = "model.layers." + std::to_string(il) + ".";
      if (cfg_.is_linear[size_t(il)]) {
        LinearLayer& L = linear_[size_t(il)];
        L.input_norm = vec(w.first_present({p + "attention_layer_norm.weight", p + "input_layernorm.weight"}), C,
                           Init::Ones);
        L.post_attention_norm = vec(
            w.first_present({p + "feedforward_layer_norm.weight", p + "post_attention_layernorm.weight"}), C,
            Init::Ones);
        const std::string a = p + "linear_attn.";
        L.gdn.in_proj = w.stacked({{a + "q_proj.weight", key_dim},
                                   {a + "k_proj.weight", key_dim},
                                   {a + "v_proj.weight", value_dim},
                                   {a + "g_proj.weight", value_dim},
                                   {a + "a_proj.weight", Hv},
                                   {a + "b_proj.weight", Hv}},
                                  C);
        L.gdn.o_proj = w.matrix(a + "o_proj.weight", C, value_dim);
        L.gdn.conv = load_conv(p);
        L.gdn.A_log = vec(a + "A_log", Hv, Init::ALog);
        L.gdn.dt_bias = vec(a + "dt_bias", Hv, Init::DtBias);
        L.gdn.o_norm = vec(a + "o_norm.weight", cfg_.linear_value_head_dim, Init::Ones);
        L.mlp = load_mlp(p);
      } else {
        AttentionLayer& L = attention_[size_t(il)];
        const std::string a = p + "self_attn.";
        const int64_t qd = cfg_.num_attention_heads * cfg_.head_dim, kd = cfg_.num_key_value_heads * cfg_.head_dim;
        L.attn.qkv_proj = w.stacked({{a + "q_proj.weight", qd}, {a + "k_proj.weight", kd}, {a + "v_proj.weight", kd}}, C);
        L.attn.o_proj = w.matrix(a + "o_proj.weight", C, qd);
        L.attn.q_norm = vec(a + "q_norm.weight", qd, Init::Ones);
        L.attn.k_norm = vec(a + "k_norm.weight", kd, Init::Ones);
        // In attention layers the post-attention norm is saved as feedforward_layer_norm.
        L.post_attention_norm = vec(
            w.first_present({p + "feedforward_layer_norm.weight", p + "post_attention_layernorm.weight"}), C,
            Init::Ones);
        L.post_feedforward_norm = vec(p + "post_feedforward_layernorm.weight", C, Init::Ones);
        L.mlp = load_mlp(p);
      }
    }
  }

  void describe() {
    info_.architecture = "olmo_hybrid";
    info_.vocab_size = cfg_.vocab_size;
    info_.hidden_size = cfg_.hidden_size;
    info_.n_layers = cfg_.num_hidden_layers;
    info_.max_positions = cfg_.max_position_embeddings;
    for (bool l : cfg_.is_linear) info_.layer_pattern += l ? 'L' : 'A';
    info_.n_params = weights_->n_params();
    info_.weight_bytes = weights_->bytes();
    // A decode step reads every matrix once, except the embedding table (one row), unless it is also the lm_head.
    const size_t embed_bytes = size_t(embed_tokens_.numel()) * dtype_size(embed_tokens_.dtype);
    info_.decode_weight_bytes = info_.weight_bytes - (cfg_.tie_word_embeddings ? 0 : embed_bytes);
    info_.params_per_token = info_.n_params - cfg_.vocab_size * cfg_.hidden_size * (cfg_.tie_word_embeddings ? 1 : 2);
    info_.eos_token_ids = cfg_.eos_token_ids;
    auto line = [&](const std::string& s) { info_.details.push_back(s); };
    line(str_cat("attention: ", cfg_.num_attention_heads, " query heads, ", cfg_.num_key_value_heads, " kv heads x ",
                 cfg_.head_dim, ", ", cfg_.rope ? str_cat("RoPE theta=", cfg_.rope_theta) : std::string("NoPE")));
    line(str_cat("gated deltanet: ", cfg_.linear_num_key_heads, " key heads x ", cfg_.linear_key_head_dim, ", ",
                 cfg_.linear_num_value_heads, " value heads x ", cfg_.linear_value_head_dim, ", conv ",
                 cfg_.linear_conv_kernel_dim, ", beta in [0, ", cfg_.linear_allow_neg_eigval ? 2 : 1, "]"));
    line(str_cat("mlp: ", cfg_.intermediate_size, " (SwiGLU), rms_norm_eps ", cfg_.rms_norm_eps,
                 cfg_.tie_word_embeddings ? ", tied embeddings" : ""));
  }

  OlmoHybridConfig cfg_;
  std::shared_ptr<WeightReader> weights_;
  Backend& be_;
  Workspace ws_;
  ModelInfo info_;
  GdnLayerShape gdn_shape_;
  AttentionShape attn_shape_;
  Tensor embed_tokens_, norm_, lm_head_;
  std::vector<LinearLayer> linear_;        // indexed by layer; unused entries for attention layers
  std::vector<AttentionLayer> attention_;  // indexed by layer; unused entries for linear layers
};

}  // namespace

std::unique_ptr<Model> make_olmo_hybrid(const ModelSource& src, std::shared_ptr<WeightReader> weights, Backend& be) {
  return std::make_unique<OlmoHybrid>(src, std::move(weights), be);
}

}  // namespace hyrax
