// The OpenAI-compatible HTTP server: routes, request limits, SSE streaming, health and metrics. HTTP threads parse
// and validate requests, hand them to the Scheduler (whose engine thread runs elsewhere) and relay its events.
//
//   POST /v1/completions, /v1/chat/completions   (stream: true for SSE)
//   GET  /v1/models, /health, /metrics
//   POST /tokenize, /detokenize; GET /tokenizer_info   (vLLM's tokenizer endpoints; lm-eval's "remote" tokenizer)
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "runtime/capacity.h"
#include "runtime/scheduler.h"
#include "server/protocol.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace hyrax::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8000;                        // 0: any free port (bind() tells which)
  int64_t max_concurrent = 256;           // generation requests in flight (queued or running); more get 429
  size_t max_body_bytes = size_t(32) << 20;
  int64_t http_threads = 0;               // 0: max_concurrent + 16
  int64_t keepalive_ms = 1000;            // a silent stream sends an SSE comment this often (finds gone clients)
};

class HttpServer {
 public:
  HttpServer(Scheduler& scheduler, ModelContext model, const Capacity& capacity, const ServerConfig& cfg);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Binds the listening socket; returns the port. Throws hyrax::Error when the address is taken.
  int bind();
  /// Accepts connections until stop(); run it on its own thread.
  void serve();
  /// From now on generation requests get 503 and /health reports "draining".
  void begin_drain();
  /// Waits until no generation request is in flight, or until `deadline`; true when none is.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);
  /// Stops accepting and closes the listening socket; serve() returns once open connections end.
  void stop();

  int64_t in_flight() const { return in_flight_.load(); }
  /// Prometheus text exposition of the scheduler's stats and the server's own gauges.
  std::string metrics_text() const;

 private:
  struct Slot;
  friend struct Slot;
  void routes();
  void generate(const httplib::Request& req, httplib::Response& res, bool chat);
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);
  void leave();

  Scheduler& sched_;
  ModelContext model_;
  Capacity capacity_;
  ServerConfig cfg_;
  std::unique_ptr<httplib::Server> http_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<bool> draining_{false};
  std::mutex idle_mu_;
  std::condition_variable idle_cv_;
  int64_t created_ = 0;
  int listen_fd_ = -1;
};

/// Prometheus text of `s` (and the server gauges); shared with `hyrax bench serve`.
std::string prometheus_text(const ServingStats& s, const Capacity& cap, const std::string& model, int64_t in_flight,
                            uint64_t rejected);

}  // namespace hyrax::server
