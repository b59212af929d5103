// hyrax bench: whole-model prefill and decode speed, with decode measured against the memory-bandwidth roofline
// (weights and recurrent state read once per step) that this machine's own measured bandwidth allows.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

#include "cli/command.h"
#include "cli/common.h"
#include "core/check.h"
#include "core/cpu_features.h"
#include "core/thread_pool.h"
#include "server/load_generator.h"
#include "server/stack.h"
#ifdef HYRAX_HAS_CUDA
#include "kernels/cuda/bench_kernels_cuda.h"
#endif

namespace hyrax::cli {
namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Host memory read bandwidth, all threads, best of several passes over a buffer far larger than the caches.
double measure_host_read_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  HostBuffer buf(bytes);
  const size_t n = bytes / sizeof(uint64_t);
  uint64_t* p = buf.as<uint64_t>();
  parallel_for(int64_t(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) p[i] = uint64_t(i) * 0x9E3779B97F4A7C15ull;
  });
  const int parts = thread_pool().size();
  std::vector<uint64_t> sink(size_t(parts) * 8, 0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = clock_type::now();
    parallel_for(int64_t(n), int64_t(n) / parts, [&](int64_t b, int64_t e) {
      // Eight independent xor chains vectorize and keep several loads in flight.
      uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t i = b;
      for (; i + 8 <= e; i += 8)
        for (int k = 0; k < 8; ++k) acc[k] ^= p[i + k];
      for (; i < e; ++i) acc[0] ^= p[i];
      const size_t slot = size_t(b / std::max<int64_t>(1, int64_t(n) / parts)) % size_t(parts);
      for (int k = 0; k < 8; ++k) sink[slot * 8 + size_t(k)] ^= acc[k];
    });
    best = std::max(best, double(bytes) / seconds_since(t0));
  }
  volatile uint64_t keep = std::accumulate(sink.begin(), sink.end(), uint64_t(0), std::bit_xor<uint64_t>());
  (void)keep;
  return best;
}

struct Options {
  ModelOptions model;
  std::string config;
  bool dummy = false;
  int64_t prompt_len = 256, decode_steps = 16, batch = 1, chunk = 512;
  uint64_t seed = 1;
  bool graphs = true;
};

/// The A/B switches of the benchmarks: what a figure gains from CUDA graphs and from the decode GEMM.
void add_ab_switches(CLI::App& app, ModelOptions& model, bool& graphs) {
  app.add_flag_function(
      "--no-graphs", [&graphs](int64_t) { graphs = false; },
      "run decode steps eagerly, without CUDA graphs (the same bits)");
  app.add_flag_function(
      "--no-decode-gemm", [&model](int64_t) { model.cuda.decode_gemm = false; },
      "every GEMM row on cuBLASLt, none on hyrax's decode GEMM (other bits)");
}

void run(const Options& o) {
  HYRAX_REQUIRE(o.dummy == !o.config.empty(), "use --config FILE together with --dummy-weights, or --model DIR");
  auto backend = make_backend(o.model);
  const auto t_load = clock_type::now();
  auto model = o.dummy ? load_model_dummy(o.config, *backend, o.seed)
                       : load_model(resolve_model_dir(o.model.model_dir), *backend);
  const double load_s = seconds_since(t_load);
  const ModelInfo info = model->info();
  EngineConfig cfg;
  cfg.max_seqs = o.batch;
  cfg.max_seq_len = o.prompt_len + o.decode_steps + 1;
  cfg.max_step_tokens = std::max(o.chunk, o.batch);
  cfg.cuda_graphs = o.graphs;
  Engine engine(std::move(backend), std::move(model), cfg);
  const StateSpec spec = engine.model().state_spec();

  std::printf("hyrax bench: %s, %.3f B parameters, %.2f GB of weights (%s), device %s, %d threads, simd %s\n",
              info.architecture.c_str(), double(info.n_params) / 1e9, double(info.weight_bytes) / 1e9,
              o.dummy ? "dummy" : "checkpoint", o.model.device.c_str(), thread_pool().size(),
              simd_level_name(simd_level()));
  std::printf("load: %.2f s\n", load_s);

  std::mt19937 rng(unsigned(o.seed));
  std::uniform_int_distribution<int32_t> tok(0, int32_t(info.vocab_size - 1));
  std::vector<std::vector<int32_t>> prompts(size_t(o.batch));
  for (auto& p : prompts) {
    p.resize(size_t(o.prompt_len));
    for (auto& t : p) t = tok(rng);
  }
  // An untimed prefill first: the GEMMs pick (and time) their algorithms at the first call of each shape.
  {
    Sequence warm;
    HYRAX_REQUIRE(engine.open(warm), "no free slot");
    engine.step({StepItem{&warm, prompts[0].data(), std::min(o.chunk, o.prompt_len), false}});
    engine.close(warm);
  }
  std::vector<Sequence> seqs(size_t(o.batch));
  for (auto& s : seqs) HYRAX_REQUIRE(engine.open(s), "no free slot");

  // Prefill: each sequence's prompt in chunks.
  const auto t_prefill = clock_type::now();
  std::vector<int32_t> next(size_t(o.batch));
  for (int64_t b = 0; b < o.batch; ++b) {
    std::vector<float> logits;
    for (int64_t i = 0; i < o.prompt_len; i += o.chunk) {
      const int64_t n = std::min(o.chunk, o.prompt_len - i);
      logits = engine.step({StepItem{&seqs[size_t(b)], prompts[size_t(b)].data() + i, n, false}});
    }
    next[size_t(b)] = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double prefill_s = seconds_since(t_prefill);
  const double prefill_tok = double(o.prompt_len * o.batch);
  // Matmul FLOPs of the layers (the lm_head runs on one row per piece, attention scores are left out).
  const double flops_per_tok = 2.0 * double(info.params_per_token);
  std::printf("prefill: %lld x %lld tokens in %.3f s = %.1f tok/s (%.1f GFLOP/s of layer matmuls)\n", (long long)o.batch,
              (long long)o.prompt_len, prefill_s, prefill_tok / prefill_s, prefill_tok * flops_per_tok / prefill_s / 1e9);

  // Decode: one token per sequence per step, greedy, sampled on the backend as serving does (only the tokens come
  // back); the first steps warm up (on a GPU: the step graph of this batch size is recorded there).
  double decode_s = 0;
  const std::vector<SampleRow> greedy(size_t(o.batch), SampleRow{0.0f, 0, 1.0f, 0.0f, 0.0});
  constexpr int64_t kWarmSteps = 2;
  for (int64_t step = 0; step < o.decode_steps + kWarmSteps; ++step) {
    std::vector<StepItem> items;
    for (int64_t b = 0; b < o.batch; ++b) items.push_back(StepItem{&seqs[size_t(b)], &next[size_t(b)], 1, false});
    const auto t0 = clock_type::now();
    const auto got = engine.step_sample(items, greedy);
    if (step >= kWarmSteps) decode_s += seconds_since(t0);
    for (int64_t b = 0; b < o.batch; ++b) next[size_t(b)] = got[size_t(b)].token;
  }
  const double step_s = decode_s / double(std::max<int64_t>(1, o.decode_steps));
  const double state_bytes = 2.0 * double(spec.recurrent_bytes_per_seq()) * double(o.batch);
  const double kv_bytes = double(spec.kv_bytes_per_token(engine.backend().kv_dtype())) *
                          double(o.prompt_len + o.decode_steps / 2) * double(o.batch);
  const double bytes = double(info.decode_weight_bytes) + state_bytes + kv_bytes;
  std::printf("decode: batch %lld, %.2f ms/step = %.1f tok/s; reads %.3f GB/step (weights %.3f, state r+w %.3f, KV %.3f) = %.1f GB/s\n",
              (long long)o.batch, step_s * 1e3, double(o.batch) / step_s, bytes / 1e9,
              double(info.decode_weight_bytes) / 1e9, state_bytes / 1e9, kv_bytes / 1e9, bytes / step_s / 1e9);
#ifdef HYRAX_HAS_CUDA
  if (o.model.device == "cuda") {
    const auto lim = kernels::cuda::measure_device_limits();
    std::printf("limit: %s, measured device-to-device copy %.2f TB/s -> decode reaches %.0f%% of it (roofline %.1f "
                "tok/s at batch %lld); measured cuBLAS bf16 8192^3 %.0f TFLOP/s -> prefill's layer matmuls reach "
                "%.0f%% of it\n",
                lim.name.c_str(), lim.copy_Bps / 1e12, 100.0 * bytes / step_s / lim.copy_Bps,
                lim.copy_Bps / bytes * double(o.batch), (long long)o.batch, lim.gemm_flops / 1e12,
                100.0 * prefill_tok * flops_per_tok / prefill_s / lim.gemm_flops);
  }
#endif
  if (o.model.device == "cpu") {
    const double bw = measure_host_read_bandwidth();
    std::printf("limit: measured host memory read bandwidth %.1f GB/s -> decode reaches %.0f%% of it "
                "(roofline %.1f tok/s at batch %lld)\n",
                bw / 1e9, 100.0 * bytes / step_s / bw, bw / bytes * double(o.batch), (long long)o.batch);
  }
  for (auto& s : seqs) engine.close(s);
}

/// `hyrax bench serve`: the load generator against a server started in-process (or --url).
struct ServeBenchOptions {
  ModelOptions model;
  server::StackOptions stack;
  server::LoadOptions load;
  std::string url;
};

void run_serve_bench(ServeBenchOptions& o) {
  std::unique_ptr<server::ServingStack> stack;
  server::LoadOptions load = o.load;
  if (o.url.empty()) {
    ::signal(SIGPIPE, SIG_IGN);
    server::StackOptions& so = o.stack;
    so.device = o.model.device;
    if (!so.dummy) so.model_dir = resolve_model_dir(o.model.model_dir);
    if (so.max_seqs == 0) so.max_seqs = load.concurrency;
    if (so.max_seq_len == 0) so.max_seq_len = load.input_len + load.output_len;
    so.http.host = "127.0.0.1";
    so.http.port = 0;
    so.http.max_concurrent = std::max<int64_t>(so.http.max_concurrent, load.concurrency + 1);
    stack = std::make_unique<server::ServingStack>(so, make_backend(o.model));
    load.url = "http://127.0.0.1:" + std::to_string(stack->start());
    load.model = stack->model().name;
  } else {
    load.url = o.url;
  }
  std::printf("hyrax bench serve: %s, %lld clients, %lld requests of %lld prompt tokens (random ids) -> %lld output "
              "tokens (greedy, ignore_eos), %d threads\n",
              load.url.c_str(), (long long)load.concurrency,
              (long long)(load.num_prompts > 0 ? load.num_prompts : 4 * load.concurrency), (long long)load.input_len,
              (long long)load.output_len, thread_pool().size());
  std::fflush(stdout);
  const server::LoadReport r = server::run_load(load);
  std::printf("%s", r.text(load).c_str());
  if (stack) {
    const ServingStats s = stack->scheduler().stats();
    std::printf("server: %llu steps, %.2f s busy, peak %lld sequences running, peak %lld of %lld KV blocks, "
                "%llu preemptions\n",
                (unsigned long long)s.steps, s.busy_seconds, (long long)s.running_seqs_peak,
                (long long)s.blocks_used_peak, (long long)s.blocks_total, (unsigned long long)s.preemptions);
    stack->shutdown(std::chrono::milliseconds(0));
  }
  HYRAX_REQUIRE(r.failed == 0, r.failed, " requests failed: ", r.first_error);
}

void add_serve_bench(CLI::App& bench) {
  auto o = std::make_shared<ServeBenchOptions>();
  CLI::App* app = bench.add_subcommand("serve", "Load-test the OpenAI-compatible server: output tok/s, TTFT, ITL");
  add_threads_option(*app);
  add_model_options(*app, o->model);
  add_ab_switches(*app, o->model, o->stack.cuda_graphs);
  auto& s = o->stack;
  auto& l = o->load;
  app->add_option("--url", o->url, "benchmark a running server (http://host:port) instead of starting one");
  app->add_option("--config", s.config, "config.json of the architecture to serve with --dummy-weights");
  app->add_flag("--dummy-weights", s.dummy, "random weights at the config's shapes (token-id prompts only)");
  app->add_option("--concurrency,-c", l.concurrency, "clients, each with one request in flight")
      ->check(CLI::PositiveNumber);
  app->add_option("--num-prompts,-n", l.num_prompts, "requests in all (default: 4 per client)")
      ->check(CLI::PositiveNumber);
  app->add_option("--input-len", l.input_len, "prompt tokens per request")->check(CLI::PositiveNumber);
  app->add_option("--output-len", l.output_len, "generated tokens per request")->check(CLI::PositiveNumber);
  app->add_option("--warmup", l.warmup, "requests sent one by one before timing")->check(CLI::NonNegativeNumber);
  app->add_option("--seed", l.seed, "seed of the prompts (and of dummy weights)");
  app->add_option("--vocab-size", l.vocab_size, "draw prompt ids below this (default: the server's vocabulary)");
  app->add_option("--max-memory", s.max_memory, "state pool budget of the in-process server, e.g. 40G");
  app->add_option("--max-seqs", s.max_seqs, "sequences at once (default: --concurrency)")->check(CLI::PositiveNumber);
  app->add_option("--max-seq-len", s.max_seq_len, "context per sequence (default: input + output length)")
      ->check(CLI::PositiveNumber);
  app->add_option("--prefill-chunk", s.prefill_chunk, "prefill piece in tokens (a multiple of 64)")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-step-tokens", s.max_step_tokens, "tokens per step (default: prefill chunk + max seqs)")
      ->check(CLI::PositiveNumber);
  app->callback([o] {
    o->stack.dummy_seed = o->load.seed;
    run_serve_bench(*o);
  });
}

const RegisterCommand reg{
    {"bench", "Measure prefill and decode speed against the memory-bandwidth roofline",
     [](CLI::App& app) {
       add_serve_bench(app);
       auto o = std::make_shared<Options>();
       add_model_options(app, o->model);
       add_ab_switches(app, o->model, o->graphs);
       app.add_option("--config", o->config, "config.json of the architecture to build with --dummy-weights");
       app.add_flag("--dummy-weights", o->dummy, "random weights at the config's shapes (no checkpoint needed)");
       app.add_option("--prompt-len", o->prompt_len, "prompt tokens per sequence")->check(CLI::PositiveNumber);
       app.add_option("--decode", o->decode_steps, "decode steps to time")->check(CLI::PositiveNumber);
       app.add_option("--batch", o->batch, "sequences decoded together")->check(CLI::PositiveNumber);
       app.add_option("--chunk", o->chunk, "prefill chunk in tokens")->check(CLI::PositiveNumber);
       app.add_option("--seed", o->seed, "seed of the dummy weights and prompts");
       app.callback([o, &app] {
         if (!app.got_subcommand("serve")) run(*o);
       });
     },
     60}};

}  // namespace
}  // namespace hyrax::cli
