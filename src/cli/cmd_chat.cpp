// hyrax chat: an interactive multi-turn chat through the model's chat template. The conversation's state stays in
// one sequence, so each turn prefills only its new tokens (when the template re-renders the history unchanged).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"
#include "runtime/generate.h"
#include "runtime/text_stream.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::cli {
namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_sigint(int) { g_interrupted = true; }

struct Options {
  ModelOptions model;
  std::string system;
  std::vector<std::string> stops;
  int64_t max_tokens = 512, context = 4096;
  SamplingParams sampling{0.7f, 0, 0.9f, 0.0f, 0};
};

void run(const Options& o) {
  o.sampling.validate();
  const std::string dir = resolve_model_dir(o.model.model_dir);
  const Tokenizer tok = Tokenizer::from_model_dir(dir);
  HYRAX_REQUIRE(tok.config().chat_templates.count("default"), dir,
                ": the model folder has no chat_template (tokenizer_config.json or chat_template.jinja)");
  const ChatTemplate tmpl = ChatTemplate::from_config(tok.config());
  EngineConfig cfg;
  cfg.max_seq_len = o.context;
  ModelOptions mo = o.model;
  mo.model_dir = dir;
  auto engine = open_engine(mo, cfg);
  std::vector<int32_t> stop_ids = engine->model().info().eos_token_ids;
  if (tok.eos_id() >= 0 && std::find(stop_ids.begin(), stop_ids.end(), tok.eos_id()) == stop_ids.end())
    stop_ids.push_back(tok.eos_id());

  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: Ctrl-C at the prompt ends the read
  sigaction(SIGINT, &sa, nullptr);

  const bool tty = ::isatty(STDIN_FILENO);
  nlohmann::json messages = nlohmann::json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  Session session(*engine);
  std::fprintf(stderr, "hyrax chat: %s (/reset clears the conversation, /exit or Ctrl-D ends, Ctrl-C stops a reply)\n",
               dir.c_str());
  for (;;) {
    if (tty) std::fputs("> ", stdout), std::fflush(stdout);
    std::string line;
    g_interrupted = false;
    if (!std::getline(std::cin, line)) break;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      messages = nlohmann::json::array();
      if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
      session.reset();
      std::fprintf(stderr, "(conversation cleared)\n");
      continue;
    }
    if (line.empty()) continue;
    messages.push_back({{"role", "user"}, {"content", line}});
    const std::string rendered = tmpl.render(messages, true, nullptr);
    const std::vector<int32_t> ids = tok.encode(rendered);
    // Reuse the state when the conversation so far is a prefix of the new prompt; else start over.
    const auto& seen = session.consumed();
    std::vector<float> logits;
    if (seen.size() < ids.size() && std::equal(seen.begin(), seen.end(), ids.begin())) {
      logits = session.append(std::span<const int32_t>(ids.data() + seen.size(), ids.size() - seen.size()));
    } else {
      session.reset();
      logits = session.append(ids);
    }
    HYRAX_REQUIRE(int64_t(ids.size()) + o.max_tokens <= o.context, "the conversation (", ids.size(),
                  " tokens) no longer fits --context ", o.context, ": /reset to start over");
    GenerateOptions g;
    g.max_new_tokens = o.max_tokens;
    g.sampling = o.sampling;
    g.sampling.seed = o.sampling.seed + messages.size();
    g.stop_ids = stop_ids;
    TextStream stream(tok, o.stops);
    std::string reply;
    g_interrupted = false;
    const auto res = session.generate(std::move(logits), g, [&](int32_t id) {
      const std::string piece = stream.push(id);
      reply += piece;
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
      return !g_interrupted && !stream.stopped();
    });
    const std::string tail = stream.finish();
    reply += tail;
    std::fputs(tail.c_str(), stdout);
    std::fputs(g_interrupted ? " [stopped]\n" : "\n", stdout);
    std::fflush(stdout);
    messages.push_back({{"role", "assistant"}, {"content", reply}});
    const double n = double(res.tokens.size());
    std::fprintf(stderr, "[%zu tokens, %.1f tok/s]\n", res.tokens.size(), n > 1 ? (n - 1) / res.decode_seconds : 0.0);
  }
}

const RegisterCommand reg{
    {"chat", "Chat with a model through its chat template",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       add_model_options(app, o->model);
       app.add_option("--system", o->system, "system message");
       app.add_option("-n,--max-tokens", o->max_tokens, "most tokens per reply")->check(CLI::PositiveNumber);
       app.add_option("--context", o->context, "most tokens of the conversation")->check(CLI::PositiveNumber);
       app.add_option("--stop", o->stops, "end a reply when this text appears (repeatable)");
       app.add_option("--temperature", o->sampling.temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
       app.add_option("--top-k", o->sampling.top_k, "keep the k most likely tokens (0 = off)")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--top-p", o->sampling.top_p, "nucleus sampling mass (1 = off)");
       app.add_option("--min-p", o->sampling.min_p, "drop tokens below min_p x the top probability");
       app.add_option("--seed", o->sampling.seed, "sampling seed");
       app.callback([o] { run(*o); });
     },
     25}};

}  // namespace
}  // namespace hyrax::cli
