#include "server/load_generator.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/check.h"

namespace hyrax::server {

namespace {

using clock_type = std::chrono::steady_clock;
using json = nlohmann::json;

double since(clock_type::time_point t0, clock_type::time_point t) { return std::chrono::duration<double>(t - t0).count(); }

struct HostPort {
  std::string host;
  int port = 80;
};

HostPort parse_url(const std::string& url) {
  std::string rest = url;
  const std::string scheme = "http://";
  HYRAX_REQUIRE(rest.rfind(scheme, 0) == 0, "--url ", url, ": only http://host:port is supported");
  rest = rest.substr(scheme.size());
  if (const size_t slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  HostPort hp;
  const size_t colon = rest.rfind(':');
  hp.host = colon == std::string::npos ? rest : rest.substr(0, colon);
  if (colon != std::string::npos) hp.port = std::stoi(rest.substr(colon + 1));
  return hp;
}

/// One streamed request: its timings, or why it failed.
struct Sample {
  bool ok = false;
  std::string error;
  double ttft = 0, e2e = 0;
  std::vector<double> token_times;  // seconds since the request was sent, one per generated token
  int64_t prompt_tokens = 0, output_tokens = 0;
};

Sample stream_one(httplib::Client& cli, const std::string& body) {
  Sample s;
  std::string buf;
  bool done = false;
  const auto t0 = clock_type::now();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "text/event-stream"}};
  req.body = body;
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    const auto now = clock_type::now();
    buf.append(data, n);
    size_t end;
    while ((end = buf.find("\n\n")) != std::string::npos) {
      const std::string event = buf.substr(0, end);
      buf.erase(0, end + 2);
      if (event.rfind("data: ", 0) != 0) continue;  // SSE comments (keep-alives)
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const json j = json::parse(payload, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        s.error = j["error"].value("message", "error event");
        continue;
      }
      if (j.contains("usage") && j["usage"].is_object()) s.prompt_tokens = j["usage"].value("prompt_tokens", 0);
      if (!j.contains("choices")) continue;
      for (const auto& c : j["choices"]) {
        const size_t k = c.contains("token_ids") ? c["token_ids"].size() : (c.value("text", "").empty() ? 0 : 1);
        for (size_t i = 0; i < k; ++i) s.token_times.push_back(since(t0, now));
      }
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  const bool sent = cli.send(req, res, err);
  s.e2e = since(t0, clock_type::now());
  if (!sent) {
    s.error = "request failed: " + httplib::to_string(err);
  } else if (res.status != 200) {
    s.error = "HTTP " + std::to_string(res.status) + ": " + buf;
  } else if (!done && s.error.empty()) {
    s.error = "the stream ended without [DONE]";
  }
  s.output_tokens = int64_t(s.token_times.size());
  s.ttft = s.token_times.empty() ? 0 : s.token_times.front();
  s.ok = s.error.empty();
  return s;
}

}  // namespace

double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

LoadReport run_load(const LoadOptions& o) {
  HYRAX_REQUIRE(o.concurrency > 0 && o.input_len > 0 && o.output_len > 0, "concurrency, input and output lengths",
                " must be positive");
  const HostPort hp = parse_url(o.url);
  int64_t vocab = o.vocab_size;
  if (vocab <= 0) {
    httplib::Client probe(hp.host, hp.port);
    auto r = probe.Get("/health");
    HYRAX_REQUIRE(r && r->status < 500, "cannot reach ", o.url, "/health; give --vocab-size for a server without it");
    const json h = json::parse(r->body, nullptr, false);
    HYRAX_REQUIRE(!h.is_discarded() && h.contains("vocab_size"), o.url, "/health has no vocab_size; give --vocab-size");
    vocab = h["vocab_size"].get<int64_t>();
  }
  const int64_t n = o.num_prompts > 0 ? o.num_prompts : 4 * o.concurrency;
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab - 1));
  auto body_for = [&](std::mt19937_64& r) {
    std::vector<int32_t> ids(size_t(o.input_len));
    for (auto& t : ids) t = tok(r);
    json b = {{"prompt", ids}, {"max_tokens", o.output_len}, {"temperature", 0}, {"ignore_eos", true},
              {"stream", true}, {"return_token_ids", true}, {"stream_options", {{"include_usage", true}}}};
    if (!o.model.empty()) b["model"] = o.model;
    return b.dump();
  };
  std::vector<std::string> bodies;
  for (int64_t i = 0; i < n; ++i) bodies.push_back(body_for(rng));

  {
    httplib::Client cli(hp.host, hp.port);
    cli.set_read_timeout(3600);
    for (int64_t i = 0; i < o.warmup; ++i) {
      const Sample s = stream_one(cli, body_for(rng));
      HYRAX_REQUIRE(s.ok, "warm-up request failed: ", s.error);
    }
  }

  std::vector<Sample> samples(static_cast<size_t>(n));
  std::atomic<int64_t> next{0};
  const auto t0 = clock_type::now();
  std::vector<std::thread> clients;
  for (int64_t c = 0; c < o.concurrency; ++c)
    clients.emplace_back([&] {
      httplib::Client cli(hp.host, hp.port);
      cli.set_read_timeout(3600);
      cli.set_keep_alive(true);
      for (int64_t i; (i = next.fetch_add(1)) < n;) samples[size_t(i)] = stream_one(cli, bodies[size_t(i)]);
    });
  for (auto& t : clients) t.join();

  LoadReport r;
  r.seconds = since(t0, clock_type::now());
  for (const Sample& s : samples) {
    if (!s.ok) {
      ++r.failed;
      if (r.first_error.empty()) r.first_error = s.error;
      continue;
    }
    ++r.ok;
    r.prompt_tokens += s.prompt_tokens;
    r.output_tokens += s.output_tokens;
    r.ttft.push_back(s.ttft);
    r.e2e.push_back(s.e2e);
    for (size_t i = 1; i < s.token_times.size(); ++i) r.itl.push_back(s.token_times[i] - s.token_times[i - 1]);
    if (s.token_times.size() > 1)
      r.tpot.push_back((s.token_times.back() - s.token_times.front()) / double(s.token_times.size() - 1));
  }
  return r;
}

std::string LoadReport::text(const LoadOptions& o) const {
  auto mean = [](const std::vector<double>& v) {
    double t = 0;
    for (double x : v) t += x;
    return v.empty() ? 0.0 : t / double(v.size());
  };
  auto line = [&](const char* name, const std::vector<double>& v, double scale, const char* unit) {
    char buf[256];
    std::snprintf(buf, sizeof(buf), "%-5s %s: mean %.2f  p50 %.2f  p90 %.2f  p99 %.2f  (n=%zu)\n", name, unit,
                  mean(v) * scale, percentile(v, 0.5) * scale, percentile(v, 0.9) * scale, percentile(v, 0.99) * scale,
                  v.size());
    return std::string(buf);
  };
  char head[512];
  std::snprintf(head, sizeof(head),
                "requests: %lld ok, %lld failed in %.2f s (%.2f req/s); %lld clients, %lld prompt + %lld output "
                "tokens each\n"
                "output: %lld tokens = %.1f tok/s; prompt + output: %.1f tok/s\n",
                (long long)ok, (long long)failed, seconds, double(ok) / seconds, (long long)o.concurrency,
                (long long)o.input_len, (long long)o.output_len, (long long)output_tokens,
                double(output_tokens) / seconds, double(prompt_tokens + output_tokens) / seconds);
  std::string out = head;
  out += line("TTFT", ttft, 1e3, "ms");
  out += line("ITL", itl, 1e3, "ms");
  out += line("TPOT", tpot, 1e3, "ms");
  out += line("E2E", e2e, 1.0, "s ");
  if (failed > 0) out += "first error: " + first_error + "\n";
  return out;
}

}  // namespace hyrax::server
