// The interface every architecture implements, and the registry that opens a model folder by its model_type.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/json_file.h"
#include "io/safetensors.h"
#include "kernels/backend.h"
#include "state/state_pool.h"
#include "state/state_spec.h"

namespace hyrax {

/// What `hyrax info` prints and what the runtime needs to know about a model.
struct ModelInfo {
  std::string architecture;  // model_type, e.g. "olmo_hybrid"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  int64_t max_positions = 0;
  std::string layer_pattern;  // one letter per layer: L = linear-recurrent, A = attention
  int64_t n_params = 0;
  size_t weight_bytes = 0;
  size_t decode_weight_bytes = 0;  // weight bytes one decode step must read (every matrix but the embedding table)
  int64_t params_per_token = 0;    // weights each token multiplies (all but the embedding table and the lm_head)
  std::vector<int32_t> eos_token_ids;
  std::vector<std::string> details;  // extra "key: value" lines for `hyrax info`
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelInfo& info() const = 0;
  /// The per-sequence state each layer needs.
  virtual StateSpec state_spec() const = 0;
  /// One forward step over the packed batch `m` (already passed to backend.begin_step by the caller is not
  /// required: forward does it). Writes logits [logit_rows.size(), vocab] for the chosen rows of the step.
  virtual void forward(const StepMeta& m, StatePool& pool, const std::vector<int32_t>& logit_rows,
                       const Tensor& logits) = 0;
};

class WeightReader;

/// A model folder's configuration, as every architecture's loader receives it.
struct ModelSource {
  io::JsonFile config;
  io::JsonFile generation_config;  // an empty object when the folder has none
};

/// Builds the model; it keeps `weights` alive (its tensors may point into the reader's mappings or buffers).
using ModelFactory =
    std::function<std::unique_ptr<Model>(const ModelSource&, std::shared_ptr<WeightReader> weights, Backend&)>;

/// Opens a Hugging Face model folder: config.json, generation_config.json (optional), safetensors.
std::unique_ptr<Model> load_model(const std::string& dir, Backend& be);
/// A model of the architecture and shapes of `config_path` with random weights (benchmarks at any shape).
std::unique_ptr<Model> load_model_dummy(const std::string& config_path, Backend& be, uint64_t seed = 0);
/// The registered model_type names.
std::vector<std::string> registered_models();

}  // namespace hyrax
