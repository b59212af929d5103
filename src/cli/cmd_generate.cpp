// hyrax generate: continue a prompt given as text (streamed back as text) or as token ids.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"
#include "runtime/generate.h"
#include "runtime/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::cli {
namespace {

struct Options {
  ModelOptions model;
  std::string prompt, prompt_file, ids, ids_file;
  std::vector<std::string> stops;
  int64_t max_tokens = 64;
  SamplingParams sampling{0.0f, 0, 1.0f, 0.0f, 0};
  bool print_ids = false, ignore_eos = false, stats = false, no_echo = false;
  int64_t chunk = 512;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HYRAX_REQUIRE(in.good(), path, ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run(const Options& o) {
  const int given = int(!o.prompt.empty()) + int(!o.prompt_file.empty()) + int(!o.ids.empty()) + int(!o.ids_file.empty());
  HYRAX_REQUIRE(given == 1, "give the prompt as exactly one of --prompt, --prompt-file, --ids or --ids-file");
  o.sampling.validate();
  const bool text_mode = !o.prompt.empty() || !o.prompt_file.empty();
  const std::string dir = resolve_model_dir(o.model.model_dir);

  std::unique_ptr<Tokenizer> tok;
  std::vector<int32_t> prompt;
  std::string prompt_text;
  if (text_mode) {
    tok = std::make_unique<Tokenizer>(Tokenizer::from_model_dir(dir));
    prompt_text = o.prompt.empty() ? read_text_file(o.prompt_file) : o.prompt;
    if (tok->config().add_bos_token && tok->bos_id() >= 0) prompt.push_back(tok->bos_id());
    tok->encode_into(prompt_text, prompt);
  } else {
    HYRAX_REQUIRE(o.stops.empty(), "--stop needs a text prompt (--prompt) and the model's tokenizer");
    prompt = o.ids.empty() ? read_ids_file(o.ids_file) : parse_ids(o.ids, "--ids");
  }
  HYRAX_REQUIRE(!prompt.empty(), "the prompt has no tokens");

  EngineConfig cfg;
  cfg.max_seq_len = int64_t(prompt.size()) + o.max_tokens + 1;
  cfg.max_step_tokens = o.chunk;
  ModelOptions mo = o.model;
  mo.model_dir = dir;
  auto engine = open_engine(mo, cfg);
  GenerateOptions g;
  g.max_new_tokens = o.max_tokens;
  g.sampling = o.sampling;
  if (!o.ignore_eos) g.stop_ids = engine->model().info().eos_token_ids;

  std::unique_ptr<TextStream> stream;
  if (text_mode && !o.print_ids) {
    stream = std::make_unique<TextStream>(*tok, o.stops);
    if (!o.no_echo) std::fputs(prompt_text.c_str(), stdout);
  }
  bool first = true;
  const auto res = generate(*engine, prompt, g, [&](int32_t id) {
    if (stream) {
      std::fputs(stream->push(id).c_str(), stdout);
    } else {
      std::printf(first ? "%d" : " %d", id);
    }
    std::fflush(stdout);
    first = false;
    return !(stream && stream->stopped());
  });
  if (stream) std::fputs(stream->finish().c_str(), stdout);
  std::printf("\n");
  std::fflush(stdout);
  if (o.stats) {
    const double n = double(res.tokens.size());
    std::fprintf(stderr, "prompt %lld tokens in %.3f s (%.1f tok/s); generated %zu tokens in %.3f s (%.1f tok/s)\n",
                 (long long)res.prompt_tokens, res.prefill_seconds, double(res.prompt_tokens) / res.prefill_seconds,
                 res.tokens.size(), res.decode_seconds, n > 1 ? (n - 1) / res.decode_seconds : 0.0);
  }
}

const RegisterCommand reg{
    {"generate", "Continue a prompt (text or token ids)",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       add_model_options(app, o->model);
       app.add_option("--prompt,-p", o->prompt, "prompt text (tokenized with the model's tokenizer)");
       app.add_option("--prompt-file", o->prompt_file, "file holding the prompt text");
       app.add_option("--ids", o->ids, "prompt as whitespace-separated token ids");
       app.add_option("--ids-file", o->ids_file, "file with the prompt's token ids");
       app.add_option("-n,--max-tokens", o->max_tokens, "most tokens to generate")->check(CLI::NonNegativeNumber);
       app.add_option("--stop", o->stops, "stop when this text appears (repeatable; not printed)");
       app.add_option("--temperature", o->sampling.temperature, "0 = greedy (default)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = off)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--top-p", o->sampling.top_p, "nucleus sampling mass (1 = off)");
       app.add_option("--min-p", o->sampling.min_p, "drop tokens below min_p x the top probability (0 = off)");
       app.add_option("--seed", o->sampling.seed, "sampling seed");
       app.add_flag("--print-ids", o->print_ids, "print the generated ids on one line instead of text");
       app.add_flag("--no-echo", o->no_echo, "do not print the prompt before the generated text");
       app.add_flag("--ignore-eos", o->ignore_eos, "do not stop at the model's eos ids");
       app.add_flag("--stats", o->stats, "print prefill and decode speed to stderr");
       app.add_option("--chunk", o->chunk, "prefill chunk in tokens")->check(CLI::PositiveNumber);
       app.callback([o] { run(*o); });
     },
     20}};

}  // namespace
}  // namespace hyrax::cli
