// Everything `hyrax serve` runs, assembled from its options: backend, model, tokenizer and chat template, the state
// pool sized from the memory budget, the scheduler on its engine thread and the HTTP server on its own thread.
// `hyrax bench serve` starts the same stack in-process.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "runtime/capacity.h"
#include "runtime/engine.h"
#include "runtime/scheduler.h"
#include "server/server.h"

namespace hyrax {
class Tokenizer;
class ChatTemplate;
}  // namespace hyrax

namespace hyrax::server {

struct StackOptions {
  std::string model_dir;            // the model folder (unless dummy)
  std::string device = "cpu";       // the backend's name, for the log and the CPU memory default
  std::string config;               // with dummy: the config.json of the architecture
  bool dummy = false;               // random weights, no tokenizer: token-id prompts only
  uint64_t dummy_seed = 0;
  std::string served_name;          // "" : the folder's name
  std::string max_memory;           // "" : what max_seqs full-length sequences need (capped on CPU)
  int64_t max_seqs = 0, max_seq_len = 0, block_size = 16;
  int64_t prefill_chunk = 512, max_step_tokens = 0;  // 0: prefill_chunk + max_seqs
  bool cuda_graphs = true;          // EngineConfig::cuda_graphs
  ServerConfig http;
};

class ServingStack {
 public:
  /// Loads and sizes everything on `backend`; prints the capacity line. Throws hyrax::Error on bad options.
  ServingStack(const StackOptions& o, std::unique_ptr<Backend> backend);
  ~ServingStack();

  /// Binds, then starts the engine and HTTP threads; returns the port.
  int start();
  /// Stops taking requests, lets those in flight finish until `drain` has passed, cancels the rest, and joins.
  void shutdown(std::chrono::milliseconds drain);

  Scheduler& scheduler() { return *sched_; }
  HttpServer& http() { return *http_; }
  const Capacity& capacity() const { return cap_; }
  const ModelContext& model() const { return ctx_; }
  Engine& engine() { return *engine_; }

 private:
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<ChatTemplate> tmpl_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Scheduler> sched_;
  std::unique_ptr<HttpServer> http_;
  Capacity cap_;
  ModelContext ctx_;
  std::thread engine_thread_, http_thread_;
  bool stopped_ = false;
};

/// Bytes of physical memory available now (MemAvailable), 0 if unknown.
size_t available_host_memory();

}  // namespace hyrax::server
