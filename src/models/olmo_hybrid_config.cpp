#include <algorithm>

#include "core/check.h"
#include "models/olmo_hybrid.h"

namespace hyrax {

OlmoHybridConfig OlmoHybridConfig::parse(const io::JsonFile& f, const io::JsonFile& gen) {
  OlmoHybridConfig c;
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) f.field_error(key, "must be positive, found " + std::to_string(v));
    return v;
  };
  c.vocab_size = positive("vocab_size", f.get_int("vocab_size"));
  c.hidden_size = positive("hidden_size", f.get_int("hidden_size"));
  c.intermediate_size = positive("intermediate_size", f.get_int("intermediate_size"));
  c.num_hidden_layers = positive("num_hidden_layers", f.get_int("num_hidden_layers"));
  c.num_attention_heads = positive("num_attention_heads", f.get_int("num_attention_heads"));
  c.num_key_value_heads = positive("num_key_value_heads", f.get_int("num_key_value_heads", c.num_attention_heads));
  c.max_position_embeddings = f.get_int("max_position_embeddings", 65536);
  c.rms_norm_eps = f.get_number("rms_norm_eps", 1e-6);
  if (c.rms_norm_eps < 0) f.field_error("rms_norm_eps", "must not be negative");
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);

  if (f.has("head_dim")) {
    c.head_dim = positive("head_dim", f.get_int("head_dim"));
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      f.field_error("num_attention_heads", "(" + std::to_string(c.num_attention_heads) +
                                               ") does not divide hidden_size (" + std::to_string(c.hidden_size) + ")");
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    f.field_error("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) +
                                             ") does not divide num_attention_heads (" +
                                             std::to_string(c.num_attention_heads) + ")");

  // layer_types: authoritative when present; transformers' default puts attention at every 4th layer.
  if (f.has("layer_types")) {
    const auto types = f.get_strings("layer_types");
    if (int64_t(types.size()) != c.num_hidden_layers)
      f.field_error("layer_types", "has " + std::to_string(types.size()) + " entries but num_hidden_layers is " +
                                       std::to_string(c.num_hidden_layers));
    for (size_t i = 0; i < types.size(); ++i) {
      const std::string& t = types[i];
      if (t == "linear_attention" || t == "mamba" || t == "conv") c.is_linear.push_back(true);
      else if (t == "full_attention" || t == "attention") c.is_linear.push_back(false);
      else f.field_error("layer_types", "entry " + std::to_string(i) + " is \"" + t + "\" (expected linear_attention or full_attention)");
    }
  } else {
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) c.is_linear.push_back(i % 4 != 3);
    if (std::find(c.is_linear.begin(), c.is_linear.end(), false) == c.is_linear.end()) c.is_linear.back() = false;
  }

  // Positions: "rope_parameters": null and no rope_theta -> NoPE (the released checkpoints). A dict or a legacy
  // top-level rope_theta -> RoPE. (transformers 5.17 itself turns a null rope_parameters into RoPE theta=10000 on
  // from_pretrained, contradicting the model it saved; hyrax follows the checkpoint. See docs/NUMERICS.md.)
  const bool has_params = f.has("rope_parameters");
  if (has_params) {
    const auto& rp = f.json()["rope_parameters"];
    if (!rp.is_object()) f.field_error("rope_parameters", "must be null or an object, found " + rp.dump());
    std::string type = "default";
    if (rp.contains("rope_type") && rp["rope_type"].is_string()) type = rp["rope_type"].get<std::string>();
    else if (rp.contains("type") && rp["type"].is_string()) type = rp["type"].get<std::string>();
    if (type != "default")
      f.field_error("rope_parameters", "has rope_type \"" + type + "\"; hyrax supports \"default\" RoPE or NoPE");
    if (rp.contains("rope_theta") && rp["rope_theta"].is_null()) {
      c.rope = false;  // transformers skips RoPE when rope_theta is None
    } else {
      c.rope = true;
      if (rp.contains("rope_theta")) {
        if (!rp["rope_theta"].is_number()) f.field_error("rope_parameters", "rope_theta must be a number");
        c.rope_theta = rp["rope_theta"].get<double>();
      } else {
        c.rope_theta = f.get_number("rope_theta", 10000.0);
      }
    }
  } else if (f.has("rope_theta")) {
    c.rope = true;
    c.rope_theta = f.get_number("rope_theta");
  }
  if (c.rope && c.head_dim % 2 != 0) f.field_error("head_dim", "must be even for RoPE");
  if (c.rope && !(c.rope_theta > 0)) f.field_error("rope_theta", "must be positive");

  c.linear_num_key_heads = positive("linear_num_key_heads", f.get_int("linear_num_key_heads", c.num_attention_heads));
  c.linear_num_value_heads =
      positive("linear_num_value_heads", f.get_int("linear_num_value_heads", c.num_attention_heads));
  c.linear_key_head_dim = f.has("linear_key_head_dim")
                              ? positive("linear_key_head_dim", f.get_int("linear_key_head_dim"))
                              : int64_t(0.75 * double(c.hidden_size) / double(c.linear_num_key_heads));
  if (c.linear_key_head_dim <= 0) f.field_error("linear_key_head_dim", "derives to zero; set it explicitly");
  c.linear_value_head_dim = positive("linear_value_head_dim", f.get_int("linear_value_head_dim", 2 * c.linear_key_head_dim));
  if (c.linear_num_value_heads % c.linear_num_key_heads != 0)
    f.field_error("linear_num_value_heads", "(" + std::to_string(c.linear_num_value_heads) +
                                                ") is not a multiple of linear_num_key_heads (" +
                                                std::to_string(c.linear_num_key_heads) + ")");
  c.linear_conv_kernel_dim = positive("linear_conv_kernel_dim", f.get_int("linear_conv_kernel_dim", 4));
  c.linear_allow_neg_eigval = f.get_bool("linear_allow_neg_eigval", true);
  const std::string act = f.get_string("hidden_act", "silu");
  if (act != "silu") f.field_error("hidden_act", "is \"" + act + "\"; Olmo Hybrid uses silu");
  if (f.get_bool("attention_bias", false)) f.field_error("attention_bias", "is true; Olmo Hybrid has no biases");

  for (const auto* src : {&f, &gen}) {
    for (int64_t id : src->get_int_list("eos_token_id")) {
      if (id < 0 || id >= c.vocab_size)
        src->field_error("eos_token_id", "has id " + std::to_string(id) + " outside the vocabulary");
      if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), int32_t(id)) == c.eos_token_ids.end())
        c.eos_token_ids.push_back(int32_t(id));
    }
  }
  return c;
}

}  // namespace hyrax
