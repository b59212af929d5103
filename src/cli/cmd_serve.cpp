// hyrax serve: the OpenAI-compatible HTTP server (see docs/SERVING.md). SIGTERM or SIGINT drains: new requests get
// 503, those in flight finish (up to --drain-timeout, then they are cancelled), and the process exits 0.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"
#include "server/stack.h"

namespace hyrax::cli {
namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const char c = char(sig);
  const int saved = errno;
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &c, 1);
  errno = saved;
}

struct Options {
  ModelOptions model;
  server::StackOptions stack;
  double drain_timeout = 30;
};

void run(Options& o) {
  // A client that hangs up mid-response must not kill the server with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  HYRAX_REQUIRE(::pipe(g_signal_pipe) == 0, "cannot create the signal pipe");
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);

  server::StackOptions& so = o.stack;
  so.device = o.model.device;
  if (!so.dummy) so.model_dir = resolve_model_dir(o.model.model_dir);
  server::ServingStack stack(so, make_backend(o.model));
  const int port = stack.start();
  std::printf("hyrax serve: listening on http://%s:%d (model id \"%s\")\n", so.http.host.c_str(), port,
              stack.model().name.c_str());
  std::fflush(stdout);

  char sig = 0;
  while (::read(g_signal_pipe[0], &sig, 1) < 0 && errno == EINTR) {
  }
  std::printf("hyrax serve: %s received: draining %lld request(s) in flight (up to %.0f s), then exiting\n",
              sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)stack.http().in_flight(), o.drain_timeout);
  std::fflush(stdout);
  stack.shutdown(std::chrono::milliseconds(int64_t(o.drain_timeout * 1000)));
  const ServingStats s = stack.scheduler().stats();
  std::printf("hyrax serve: stopped (%llu requests finished, %llu cancelled, %llu failed)\n",
              (unsigned long long)s.requests_finished, (unsigned long long)s.requests_cancelled,
              (unsigned long long)s.requests_failed);
  std::fflush(stdout);
}

const RegisterCommand reg{
    {"serve", "Serve the model over an OpenAI-compatible HTTP API",
     [](CLI::App& app) {
       auto o = std::make_shared<Options>();
       auto& s = o->stack;
       add_model_options(app, o->model);
       app.add_option("--host", s.http.host, "address to listen on (default 127.0.0.1; 0.0.0.0 for all)");
       app.add_option("--port", s.http.port, "port (0: any free port, printed at startup)")
           ->check(CLI::Range(0, 65535));
       app.add_option("--served-model-name", s.served_name, "model id in the API (default: the folder's name)");
       app.add_option("--max-memory", s.max_memory,
                      "bytes for the state pool (recurrent slots + KV cache), e.g. 2G, 512M (default: what "
                      "--max-seqs full-context sequences need, at most half the free memory on CPU)");
       app.add_option("--max-seqs", s.max_seqs, "sequences decoded at once (default: 64, fewer if memory is short)")
           ->check(CLI::PositiveNumber);
       app.add_option("--max-seq-len", s.max_seq_len, "context per sequence (default: the model's)")
           ->check(CLI::PositiveNumber);
       app.add_option("--block-size", s.block_size, "KV positions per block")->check(CLI::PositiveNumber);
       app.add_option("--prefill-chunk", s.prefill_chunk, "prefill piece in tokens (a multiple of 64)")
           ->check(CLI::PositiveNumber);
       app.add_option("--max-step-tokens", s.max_step_tokens,
                      "tokens per forward step (default: prefill chunk + max seqs)")
           ->check(CLI::PositiveNumber);
       app.add_option("--max-concurrent", s.http.max_concurrent,
                      "generation requests in flight (queued or running); more get 429")
           ->check(CLI::PositiveNumber);
       app.add_option("--max-body-bytes", s.http.max_body_bytes, "largest request body (413 above)")
           ->check(CLI::PositiveNumber);
       app.add_option("--drain-timeout", o->drain_timeout,
                      "seconds SIGTERM waits for requests in flight before cancelling them")
           ->check(CLI::NonNegativeNumber);
       app.add_option("--config", s.config, "config.json of an architecture to serve with --dummy-weights");
       app.add_flag("--dummy-weights", s.dummy, "random weights at the config's shapes (token-id prompts only)");
       app.callback([o] { run(*o); });
     },
     40}};

}  // namespace
}  // namespace hyrax::cli
