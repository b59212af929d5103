// hyrax info: what a model is and what it costs to run.
#include <cstdio>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"

namespace hyrax::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), u ? "%.2f %s" : "%.0f %s", b, units[u]);
  return buf;
}

void run(const ModelOptions& opt) {
  auto backend = make_backend(opt);
  const std::string dir = resolve_model_dir(opt.model_dir);
  auto model = load_model(dir, *backend);
  const ModelInfo& info = model->info();
  const StateSpec spec = model->state_spec();
  std::printf("model:          %s\n", dir.c_str());
  std::printf("architecture:   %s\n", info.architecture.c_str());
  std::printf("parameters:     %lld (%.3f B)\n", (long long)info.n_params, double(info.n_params) / 1e9);
  std::printf("weight bytes:   %zu (%s)\n", info.weight_bytes, human_bytes(double(info.weight_bytes)).c_str());
  std::printf("vocab:          %lld\n", (long long)info.vocab_size);
  std::printf("hidden:         %lld\n", (long long)info.hidden_size);
  std::printf("layers:         %lld  %s  (L = linear-recurrent, A = attention)\n", (long long)info.n_layers,
              info.layer_pattern.c_str());
  for (const auto& d : info.details) std::printf("                %s\n", d.c_str());
  std::printf("max positions:  %lld\n", (long long)info.max_positions);
  std::string eos;
  for (int32_t id : info.eos_token_ids) eos += (eos.empty() ? "" : " ") + std::to_string(id);
  std::printf("eos ids:        %s\n", eos.empty() ? "(none)" : eos.c_str());
  const size_t state = spec.recurrent_bytes_per_seq();
  std::printf("state per seq:  %zu bytes (%s, float32, constant in length)\n", state, human_bytes(double(state)).c_str());
  for (DType kv : {DType::F32, DType::BF16}) {
    const size_t per_tok = spec.kv_bytes_per_token(kv);
    std::printf("KV per token:   %zu bytes (%s) in %s\n", per_tok, human_bytes(double(per_tok)).c_str(),
                std::string(dtype_name(kv)).c_str());
  }
}

const RegisterCommand reg{{"info", "Describe a model: architecture, parameters, bytes, layer pattern, state sizes",
                           [](CLI::App& app) {
                             auto o = std::make_shared<ModelOptions>();
                             add_model_options(app, *o);
                             app.callback([o] { run(*o); });
                           },
                           40}};

}  // namespace
}  // namespace hyrax::cli
