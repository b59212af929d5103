// Each `hyrax <command>` lives in its own cmd_<name>.cpp and registers itself here at static-init time, so that
// adding a command touches one file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace hyrax::cli {

/// setup() adds the subcommand's options and its callback to `app` (the subcommand itself).
struct Command {
  std::string name;
  std::string help;
  std::function<void(CLI::App& app)> setup;
  int order = 100;  // position in --help
};

std::vector<Command>& commands();

struct RegisterCommand {
  explicit RegisterCommand(Command c) { commands().push_back(std::move(c)); }
};

/// Adds --threads N (CPU worker threads; default: all cores) to a subcommand; applied before its callback runs.
void add_threads_option(CLI::App& app);

}  // namespace hyrax::cli
