// hyrax logits: the logits of every position of an id sequence, as raw little-endian float32 [T, vocab].
#include <fstream>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"

namespace hyrax::cli {
namespace {

struct Options {
  ModelOptions model;
  std::string ids_file, out;
  int64_t chunk = 512;
};

void run(const Options& o) {
  const auto ids = read_ids_file(o.ids_file);
  HYRAX_REQUIRE(!ids.empty(), o.ids_file, ": no token ids");
  EngineConfig cfg;
  cfg.max_seq_len = int64_t(ids.size());
  cfg.max_step_tokens = o.chunk;
  auto engine = open_engine(o.model, cfg);
  const auto logits = engine->logits_all(ids);
  std::ofstream out(o.out, std::ios::binary);
  HYRAX_REQUIRE(out.good(), o.out, ": cannot write");
  out.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
  HYRAX_REQUIRE(out.good(), o.out, ": write failed");
}

const RegisterCommand reg{{"logits", "Write the logits of every position as float32 [T, vocab]",
                           [](CLI::App& app) {
                             auto o = std::make_shared<Options>();
                             add_model_options(app, o->model);
                             app.add_option("--ids-file", o->ids_file, "whitespace-separated token ids")->required();
                             app.add_option("--out", o->out, "output file (raw little-endian float32)")->required();
                             app.add_option("--chunk", o->chunk, "prefill chunk in tokens")
                                 ->check(CLI::PositiveNumber);
                             app.callback([o] { run(*o); });
                           },
                           30}};

}  // namespace
}  // namespace hyrax::cli
