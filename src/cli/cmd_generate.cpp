// hyrax generate: continue a prompt (token ids now; text once the model folder has a tokenizer).
#include <cstdio>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"
#include "runtime/generate.h"

namespace hyrax::cli {
namespace {

struct Options {
  ModelOptions model;
  std::string ids, ids_file;
  int64_t max_tokens = 64;
  SamplingParams sampling{0.0f, 0, 1.0f, 0.0f, 0};
  bool print_ids = false, ignore_eos = false, stats = false;
  int64_t chunk = 512;
};

void run(const Options& o) {
  HYRAX_REQUIRE(o.ids.empty() != o.ids_file.empty(), "give the prompt as exactly one of --ids or --ids-file");
  const auto prompt = o.ids.empty() ? read_ids_file(o.ids_file) : parse_ids(o.ids, "--ids");
  HYRAX_REQUIRE(!prompt.empty(), "the prompt has no token ids");
  o.sampling.validate();
  EngineConfig cfg;
  cfg.max_seq_len = int64_t(prompt.size()) + o.max_tokens;
  cfg.max_step_tokens = o.chunk;
  auto engine = open_engine(o.model, cfg);
  GenerateOptions g;
  g.max_new_tokens = o.max_tokens;
  g.sampling = o.sampling;
  if (!o.ignore_eos) g.stop_ids = engine->model().info().eos_token_ids;
  bool first = true;
  const auto res = generate(*engine, prompt, g, [&](int32_t id) {
    std::printf(first ? "%d" : " %d", id);
    std::fflush(stdout);
    first = false;
    return true;
  });
  std::printf("\n");
  if (o.stats) {
    const double n = double(res.tokens.size());
    std::fprintf(stderr, "prompt %lld tokens in %.3f s (%.1f tok/s); generated %zu tokens in %.3f s (%.1f tok/s)\n",
                 (long long)res.prompt_tokens, res.prefill_seconds, double(res.prompt_tokens) / res.prefill_seconds,
                 res.tokens.size(), res.decode_seconds, n > 1 ? (n - 1) / res.decode_seconds : 0.0);
  }
}

const RegisterCommand reg{
    {"generate", "Continue a prompt",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       add_model_options(app, o->model);
       app.add_option("--ids", o->ids, "prompt as whitespace-separated token ids");
       app.add_option("--ids-file", o->ids_file, "file with the prompt's token ids");
       app.add_option("-n,--max-tokens", o->max_tokens, "most tokens to generate")->check(CLI::NonNegativeNumber);
       app.add_option("--temperature", o->sampling.temperature, "0 = greedy (default)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = off)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--top-p", o->sampling.top_p, "nucleus sampling mass (1 = off)");
       app.add_option("--min-p", o->sampling.min_p, "drop tokens below min_p x the top probability (0 = off)");
       app.add_option("--seed", o->sampling.seed, "sampling seed");
       app.add_flag("--print-ids", o->print_ids, "print the generated ids on one line");
       app.add_flag("--ignore-eos", o->ignore_eos, "do not stop at the model's eos ids");
       app.add_flag("--stats", o->stats, "print prefill and decode speed to stderr");
       app.add_option("--chunk", o->chunk, "prefill chunk in tokens")->check(CLI::PositiveNumber);
       app.callback([o] { run(*o); });
     },
     20}};

}  // namespace
}  // namespace hyrax::cli
