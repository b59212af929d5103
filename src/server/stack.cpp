#include "server/stack.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "models/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::server {

namespace fs = std::filesystem;

size_t available_host_memory() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  size_t kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

ServingStack::ServingStack(const StackOptions& o, std::unique_ptr<Backend> backend) {
  HYRAX_REQUIRE(o.dummy == !o.config.empty(), "use --config FILE together with --dummy-weights, or --model DIR");
  HYRAX_REQUIRE(o.prefill_chunk > 0 && o.prefill_chunk % 64 == 0, "--prefill-chunk must be a positive multiple of 64",
                " (the gated delta rule's chunk), got ", o.prefill_chunk);
  HYRAX_CHECK(backend, "no backend");
  std::unique_ptr<Model> model;
  std::string dir;
  if (o.dummy) {
    model = load_model_dummy(o.config, *backend, o.dummy_seed);
    ctx_.name = o.served_name.empty() ? fs::path(o.config).stem().string() : o.served_name;
  } else {
    dir = o.model_dir;
    model = load_model(dir, *backend);
    std::string base = fs::path(dir).filename().string();
    if (base.empty()) base = fs::path(dir).parent_path().filename().string();
    ctx_.name = o.served_name.empty() ? base : o.served_name;
    ctx_.aliases = {dir};
    if (fs::exists(fs::path(dir) / "tokenizer.json")) {
      tok_ = std::make_unique<Tokenizer>(Tokenizer::from_model_dir(dir));
      if (tok_->config().chat_templates.count("default")) {
        try {
          tmpl_ = std::make_unique<ChatTemplate>(ChatTemplate::from_config(tok_->config()));
        } catch (const Error& e) {
          std::fprintf(stderr, "hyrax serve: warning: the chat template cannot be used (%s); "
                               "/v1/chat/completions is off\n", e.what());
        }
      }
    } else {
      std::fprintf(stderr, "hyrax serve: %s has no tokenizer.json: prompts must be token ids\n", dir.c_str());
    }
  }
  const ModelInfo info = model->info();

  CapacityRequest cr;
  cr.max_seqs = o.max_seqs;
  cr.max_seq_len = o.max_seq_len;
  cr.block_size = o.block_size;
  if (!o.max_memory.empty()) {
    cr.max_memory = parse_bytes(o.max_memory);
  } else if (o.device == "cpu") {
    // No budget: what the sequences need, but never more than half of the memory available now.
    const Capacity full = plan_capacity(model->state_spec(), backend->kv_dtype(), info.max_positions, cr);
    const size_t half = available_host_memory() / 2;
    if (half > 0 && full.pool_bytes > half) cr.max_memory = half;
  }
  cap_ = plan_capacity(model->state_spec(), backend->kv_dtype(), info.max_positions, cr);
  const int64_t step = o.max_step_tokens > 0 ? o.max_step_tokens : o.prefill_chunk + cap_.max_seqs;
  EngineConfig ec = cap_.engine_config(step);
  ec.cuda_graphs = o.cuda_graphs;
  engine_ = std::make_unique<Engine>(std::move(backend), std::move(model), ec);
  HYRAX_CHECK(engine_->pool().bytes() == cap_.pool_bytes, "the pool holds ", engine_->pool().bytes(),
              " bytes, the plan ", cap_.pool_bytes);
  std::printf("hyrax serve: model %s (%s, %.1f M parameters), device %s, tokenizer %s, chat template %s\n",
              ctx_.name.c_str(), info.architecture.c_str(), double(info.n_params) / 1e6, o.device.c_str(),
              tok_ ? "yes" : "no (token ids only)", tmpl_ ? "yes" : "no");
  std::printf("%s\n", cap_.describe().c_str());
  std::printf("hyrax serve: prefill chunk %lld tokens, step budget %lld tokens, at most %lld requests in flight\n",
              (long long)o.prefill_chunk, (long long)step, (long long)o.http.max_concurrent);
  std::fflush(stdout);

  SchedulerConfig sc;
  sc.prefill_chunk = o.prefill_chunk;
  sched_ = std::make_unique<Scheduler>(*engine_, tok_.get(), sc);

  ctx_.vocab_size = info.vocab_size;
  ctx_.max_seq_len = sched_->max_seq_len();
  ctx_.kv_tokens = sched_->kv_capacity_tokens();
  ctx_.eos_ids = info.eos_token_ids;
  if (tok_ && tok_->eos_id() >= 0 &&
      std::find(ctx_.eos_ids.begin(), ctx_.eos_ids.end(), tok_->eos_id()) == ctx_.eos_ids.end())
    ctx_.eos_ids.push_back(tok_->eos_id());
  ctx_.max_n = sc.max_n;
  ctx_.max_logprobs = sc.max_logprobs;
  ctx_.tokenizer = tok_.get();
  ctx_.chat_template = tmpl_.get();
  http_ = std::make_unique<HttpServer>(*sched_, ctx_, cap_, o.http);
}

ServingStack::~ServingStack() { shutdown(std::chrono::milliseconds(0)); }

int ServingStack::start() {
  const int port = http_->bind();
  engine_thread_ = std::thread([this] {
    try {
      sched_->run();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hyrax serve: the engine thread failed: %s\n", e.what());
      std::abort();
    }
  });
  http_thread_ = std::thread([this] { http_->serve(); });
  return port;
}

void ServingStack::shutdown(std::chrono::milliseconds drain) {
  if (stopped_) return;
  stopped_ = true;
  http_->begin_drain();
  sched_->shutdown(true);
  if (!http_->wait_idle(std::chrono::steady_clock::now() + drain)) {
    sched_->shutdown(false);  // cancel what is left: streams end with an error event
    http_->wait_idle(std::chrono::steady_clock::now() + std::chrono::seconds(30));
  }
  http_->stop();
  if (http_thread_.joinable()) http_thread_.join();
  if (engine_thread_.joinable()) engine_thread_.join();
}

}  // namespace hyrax::server
