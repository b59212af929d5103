// hyrax: the command-line entry point. Errors end as one line on stderr and exit code 1.
#include <algorithm>
#include <cstdio>

#include "cli/command.h"
#include "core/check.h"
#include "core/thread_pool.h"

namespace hyrax::cli {

std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}

static int g_threads = 0;

void add_threads_option(CLI::App& app) {
  app.add_option("--threads", g_threads, "CPU worker threads (default: one per core)")->check(CLI::NonNegativeNumber);
  app.parse_complete_callback([] {
    if (g_threads > 0) set_num_threads(g_threads);
  });
}

}  // namespace hyrax::cli

int main(int argc, char** argv) {
  using namespace hyrax::cli;
  CLI::App app{"hyrax: an inference engine for hybrid (attention + linear-recurrent) language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hyrax 0.1.0");
  auto& all = commands();
  std::stable_sort(all.begin(), all.end(), [](const Command& a, const Command& b) { return a.order < b.order; });
  for (auto& c : all) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    add_threads_option(*sub);
    c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const hyrax::Error& e) {
    std::fprintf(stderr, "hyrax: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hyrax: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
