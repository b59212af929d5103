// Prometheus text exposition (format 0.0.4) of the serving stats.
#include <cstdio>

#include "server/server.h"

namespace hyrax::server {

namespace {

struct Writer {
  std::string out;
  std::string label;  // {model="..."}

  static std::string num(double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    return buf;
  }
  void head(const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void metric(const char* name, const char* type, const char* help, double v) {
    head(name, type, help);
    out += std::string(name) + label + " " + num(v) + "\n";
  }
  void histogram(const char* name, const char* help, const Histogram& h) {
    head(name, "histogram", help);
    uint64_t cum = 0;
    const std::string l = label.substr(0, label.size() - 1);  // {model="x"  (le= is appended)
    for (size_t i = 0; i < h.bounds.size(); ++i) {
      cum += h.counts[i];
      out += std::string(name) + "_bucket" + l + ",le=\"" + num(h.bounds[i]) + "\"} " + std::to_string(cum) + "\n";
    }
    cum += h.counts.back();
    out += std::string(name) + "_bucket" + l + ",le=\"+Inf\"} " + std::to_string(cum) + "\n";
    out += std::string(name) + "_sum" + label + " " + num(h.sum) + "\n";
    out += std::string(name) + "_count" + label + " " + std::to_string(h.count) + "\n";
  }
};

std::string escape_label(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\\' || c == '"') o += '\\';
    if (c == '\n') {
      o += "\\n";
      continue;
    }
    o += c;
  }
  return o;
}

}  // namespace

std::string prometheus_text(const ServingStats& s, const Capacity& cap, const std::string& model, int64_t in_flight,
                            uint64_t rejected) {
  Writer w;
  w.label = "{model=\"" + escape_label(model) + "\"}";
  w.metric("hyrax_requests_in_flight", "gauge", "HTTP generation requests being served (queued or running)",
           double(in_flight));
  w.metric("hyrax_queue_depth", "gauge", "Requests waiting for a sequence slot or KV blocks", double(s.waiting_requests));
  w.metric("hyrax_waiting_sequences", "gauge", "Sequences waiting (new or preempted)", double(s.waiting_seqs));
  w.metric("hyrax_running_sequences", "gauge", "Sequences holding state in the engine", double(s.running_seqs));
  w.metric("hyrax_running_sequences_peak", "gauge", "Most sequences running at once since start",
           double(s.running_seqs_peak));
  w.metric("hyrax_state_slots_total", "gauge", "Recurrent-state slots (the most sequences at once)",
           double(s.slots_total));
  w.metric("hyrax_state_slots_used", "gauge", "Recurrent-state slots in use", double(s.slots_used));
  w.metric("hyrax_kv_blocks_total", "gauge", "KV cache blocks in the pool", double(s.blocks_total));
  w.metric("hyrax_kv_blocks_used", "gauge", "KV cache blocks in use", double(s.blocks_used));
  w.metric("hyrax_kv_blocks_used_peak", "gauge", "Most KV cache blocks in use at once since start",
           double(s.blocks_used_peak));
  w.metric("hyrax_kv_block_size", "gauge", "Positions per KV block", double(s.block_size));
  w.metric("hyrax_kv_capacity_tokens", "gauge", "KV positions the pool holds", double(cap.kv_tokens));
  w.metric("hyrax_pool_bytes", "gauge", "Bytes of the state pool (recurrent slots + KV blocks)",
           double(cap.pool_bytes));
  const double used_bytes = double(s.slots_used) * double(cap.slot_bytes) +
                            double(s.blocks_used) * double(cap.block_size) * double(cap.token_bytes);
  w.metric("hyrax_pool_used_bytes", "gauge", "Bytes of the state pool held by sequences", used_bytes);
  w.metric("hyrax_pool_usage_ratio", "gauge", "Fraction of the state pool held by sequences",
           cap.pool_bytes ? used_bytes / double(cap.pool_bytes) : 0.0);
  w.metric("hyrax_generation_tokens_per_second", "gauge", "Tokens generated per second over the last 10 s",
           s.generation_tokens_per_s);
  w.metric("hyrax_prompt_tokens_per_second", "gauge", "Prompt tokens prefilled per second over the last 10 s",
           s.prompt_tokens_per_s);
  w.metric("hyrax_requests_submitted_total", "counter", "Requests accepted by the scheduler",
           double(s.requests_submitted));
  w.metric("hyrax_requests_finished_total", "counter", "Requests completed", double(s.requests_finished));
  w.metric("hyrax_requests_cancelled_total", "counter", "Requests cancelled (client gone or shutdown)",
           double(s.requests_cancelled));
  w.metric("hyrax_requests_failed_total", "counter", "Requests failed by an engine error", double(s.requests_failed));
  w.metric("hyrax_requests_rejected_total", "counter", "Requests refused with 429 (too many in flight)",
           double(rejected));
  w.metric("hyrax_prompt_tokens_total", "counter", "Prompt tokens prefilled (recomputation included)",
           double(s.prompt_tokens));
  w.metric("hyrax_generation_tokens_total", "counter", "Tokens generated", double(s.generation_tokens));
  w.metric("hyrax_preemptions_total", "counter", "Sequences preempted for KV blocks (recomputed later)",
           double(s.preemptions));
  w.metric("hyrax_recomputed_tokens_total", "counter", "Tokens queued for recomputation by preemption",
           double(s.recomputed_tokens));
  w.metric("hyrax_engine_steps_total", "counter", "Forward steps run", double(s.steps));
  w.metric("hyrax_engine_busy_seconds_total", "counter", "Seconds spent in forward steps", s.busy_seconds);
  w.histogram("hyrax_time_to_first_token_seconds", "Time from arrival to a request's first token", s.ttft);
  w.histogram("hyrax_inter_token_latency_seconds", "Time between consecutive tokens of a sequence", s.itl);
  w.histogram("hyrax_e2e_request_latency_seconds", "Time from arrival to the end of a completed request", s.e2e);
  return w.out;
}

}  // namespace hyrax::server
