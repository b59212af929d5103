// Pieces every model-running command shares: --model/--device options, opening an engine, reading ids.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace hyrax::cli {

struct ModelOptions {
  std::string model_dir;
  std::string device = "cpu";
  CudaOptions cuda;  // --device cuda only
};

/// Adds --model DIR and --device to a command.
void add_model_options(CLI::App& app, ModelOptions& opt);

/// The backend named by --device ("cpu", or "cuda" when built with CUDA).
std::unique_ptr<Backend> make_backend(const ModelOptions& opt);

/// Loads the model of --model (or the bundled demo model when none is given) into an engine.
std::unique_ptr<Engine> open_engine(const ModelOptions& opt, const EngineConfig& cfg);

/// The model folder --model names, or the bundled demo model.
std::string resolve_model_dir(const std::string& model_dir);

/// Whitespace-separated integers; errors name `what` (a flag or file) and the bad word.
std::vector<int32_t> parse_ids(const std::string& text, const std::string& what);
std::vector<int32_t> read_ids_file(const std::string& path);

}  // namespace hyrax::cli
