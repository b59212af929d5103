#include "server/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cstdio>
#include <ctime>

#include "core/check.h"
#include "server/relay.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::server {

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.body()); }

}  // namespace

/// A generation request's place among those in flight; leaving it wakes wait_idle().
struct HttpServer::Slot {
  HttpServer* s;
  explicit Slot(HttpServer* server) : s(server) {}
  ~Slot() { s->leave(); }
};

void HttpServer::leave() {
  if (in_flight_.fetch_sub(1) == 1) {
    std::lock_guard<std::mutex> lock(idle_mu_);
    idle_cv_.notify_all();
  }
}

HttpServer::HttpServer(Scheduler& scheduler, ModelContext model, const Capacity& capacity, const ServerConfig& cfg)
    : sched_(scheduler), model_(std::move(model)), capacity_(capacity), cfg_(cfg),
      http_(std::make_unique<httplib::Server>()) {
  HYRAX_REQUIRE(cfg_.max_concurrent > 0, "--max-concurrent must be positive");
  created_ = int64_t(std::time(nullptr));
  const size_t threads = size_t(cfg_.http_threads > 0 ? cfg_.http_threads : cfg_.max_concurrent + 16);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_payload_max_length(cfg_.max_body_bytes);
  http_->set_keep_alive_max_count(10000);
  http_->set_keep_alive_timeout(5);
  http_->set_read_timeout(30);
  http_->set_write_timeout(30);
  http_->set_tcp_nodelay(true);
  // The library listens with a backlog of 5, which resets connections when many clients connect at once; remember
  // the listening socket so that bind() can raise it.
  http_->set_socket_options([this](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (listen_fd_ < 0) listen_fd_ = sock;
  });
  routes();
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  int port = cfg_.port;
  if (port == 0) {
    port = http_->bind_to_any_port(cfg_.host);
    HYRAX_REQUIRE(port > 0, "cannot listen on ", cfg_.host, " (any port)");
  } else {
    HYRAX_REQUIRE(http_->bind_to_port(cfg_.host, port), "cannot listen on ", cfg_.host, ":", port,
                  " (address in use, or not an address of this machine)");
  }
  if (listen_fd_ >= 0) ::listen(listen_fd_, SOMAXCONN);
  return port;
}

void HttpServer::serve() { http_->listen_after_bind(); }

void HttpServer::stop() {
  if (http_ && http_->is_running()) http_->stop();
}

void HttpServer::begin_drain() { draining_ = true; }

bool HttpServer::wait_idle(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock<std::mutex> lock(idle_mu_);
  return idle_cv_.wait_until(lock, deadline, [&] { return in_flight_.load() == 0; });
}

std::string HttpServer::metrics_text() const {
  return prometheus_text(sched_.stats(), capacity_, model_.name, in_flight_.load(), rejected_.load());
}

void HttpServer::routes() {
  auto& h = *http_;
  h.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) { generate(q, r, false); });
  h.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) { generate(q, r, true); });
  h.Post("/tokenize", [this](const httplib::Request& q, httplib::Response& r) { tokenize(q, r); });
  h.Post("/detokenize", [this](const httplib::Request& q, httplib::Response& r) { detokenize(q, r); });
  for (const char* path : {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"})
    h.Get(path, [](const httplib::Request& q, httplib::Response& r) {
      send_error(r, ApiError{405, "use POST for " + q.path, "invalid_request_error", "", "method_not_allowed"});
    });

  h.Get("/v1/models", [this](const httplib::Request&, httplib::Response& r) {
    json card = json::object();
    card["id"] = model_.name;
    card["object"] = "model";
    card["created"] = created_;
    card["owned_by"] = "hyrax";
    card["root"] = model_.aliases.empty() ? model_.name : model_.aliases.front();
    card["max_model_len"] = std::min(model_.max_seq_len, model_.kv_tokens + 1);
    json out = json::object();
    out["object"] = "list";
    out["data"] = json::array({card});
    send_json(r, 200, out);
  });
  h.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
    const ServingStats s = sched_.stats();
    json out = json::object();
    out["status"] = draining_ ? "draining" : "ok";
    out["model"] = model_.name;
    out["vocab_size"] = model_.vocab_size;
    out["running"] = s.running_seqs;
    out["waiting"] = s.waiting_seqs;
    out["in_flight"] = in_flight_.load();
    out["capacity"] = json{{"sequences", capacity_.max_seqs},       {"kv_tokens", capacity_.kv_tokens},
                           {"kv_blocks", capacity_.n_blocks},         {"block_size", capacity_.block_size},
                           {"max_seq_len", capacity_.max_seq_len},    {"pool_bytes", capacity_.pool_bytes},
                           {"slot_bytes", capacity_.slot_bytes},      {"kv_bytes_per_token", capacity_.token_bytes}};
    send_json(r, draining_ ? 503 : 200, out);
  });
  h.Get("/metrics", [this](const httplib::Request&, httplib::Response& r) {
    r.set_content(metrics_text(), "text/plain; version=0.0.4; charset=utf-8");
  });
  h.Get("/tokenizer_info", [this](const httplib::Request&, httplib::Response& r) {
    if (!model_.tokenizer) {
      send_error(r, ApiError{404, "this model has no tokenizer", "invalid_request_error", "", "tokenizer_unavailable"});
      return;
    }
    const auto& cfg = model_.tokenizer->config();
    auto tok_or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    json out = json::object();
    out["tokenizer_class"] = "hyrax";
    out["eos_token"] = tok_or_null(cfg.eos_token);
    out["bos_token"] = tok_or_null(cfg.bos_token);
    out["pad_token"] = tok_or_null(cfg.pad_token);
    out["unk_token"] = tok_or_null(cfg.unk_token);
    out["add_bos_token"] = cfg.add_bos_token;
    out["chat_template"] = model_.chat_template ? json(model_.chat_template->source()) : json(nullptr);
    out["model_max_length"] = std::min(model_.max_seq_len, model_.kv_tokens + 1);
    out["vocab_size"] = model_.vocab_size;
    send_json(r, 200, out);
  });

  // Errors the library answers itself (no route, body too large) come out as OpenAI-style JSON too.
  h.set_error_handler([](const httplib::Request& q, httplib::Response& r) {
    if (!r.body.empty()) return;
    ApiError e{r.status, "", "invalid_request_error", "", ""};
    switch (r.status) {
      case 404: e.message = "no route " + q.method + " " + q.path; e.code = "not_found"; break;
      case 413: e.message = "the request body is too large"; e.code = "request_too_large"; break;
      case 400: e.message = "the request is malformed"; e.code = "bad_request"; break;
      default: e.message = "HTTP error " + std::to_string(r.status); break;
    }
    if (r.status >= 500) e.type = "server_error";
    send_error(r, e);
  });
  h.set_exception_handler([](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(r, ApiError{500, "internal error: " + what, "server_error", "", "internal_error"});
  });
}

void HttpServer::generate(const httplib::Request& req, httplib::Response& res, bool chat) {
  // Take a place first, so that the count is exact however the request ends.
  const int64_t n = in_flight_.fetch_add(1) + 1;
  auto slot = std::make_shared<Slot>(this);
  if (draining_) {
    send_error(res, ApiError{503, "the server is shutting down", "server_error", "", "shutting_down"});
    return;
  }
  if (n > cfg_.max_concurrent) {
    ++rejected_;
    send_error(res, ApiError{429, str_cat("too many requests in flight (the limit is ", cfg_.max_concurrent,
                                          "); retry later"),
                             "rate_limit_error", "", "too_many_requests"});
    return;
  }
  std::shared_ptr<Relay> relay;
  try {
    const json body = parse_body(req.body);
    ParsedRequest pr = chat ? parse_chat(body, model_) : parse_completion(body, model_);
    std::vector<std::shared_ptr<RequestHandle>> handles;
    try {
      for (auto& job : pr.prompts) handles.push_back(sched_.submit(job.params));
    } catch (...) {
      for (auto& hd : handles) hd->cancel();
      throw;
    }
    const bool stream = pr.stream;
    relay = std::make_shared<Relay>(model_, std::move(pr), std::move(handles));
    if (!stream) {
      send_json(res, 200, relay->collect());
      return;
    }
  } catch (const ApiError& e) {
    send_error(res, e);
    return;
  } catch (const SubmitError& e) {
    if (e.kind() == SubmitError::Kind::ShuttingDown) {
      send_error(res, ApiError{503, e.what(), "server_error", "", "shutting_down"});
    } else {
      send_error(res, ApiError{400, e.what(), "invalid_request_error", "", "invalid_value"});
    }
    return;
  } catch (const Error& e) {
    send_error(res, ApiError{400, e.what(), "invalid_request_error", "", "invalid_value"});
    return;
  }
  // SSE: the provider runs on this thread after the handler returns; the relay and the slot live as long as it.
  const auto keepalive = std::chrono::milliseconds(cfg_.keepalive_ms);
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [relay, keepalive](size_t, httplib::DataSink& sink) {
        bool done = false;
        std::string text = relay->next_sse(keepalive, done);
        // Silence: an SSE comment, so that a client that went away is found (its write fails) and cancelled.
        if (text.empty() && !done) text = ": keep-alive\n\n";
        if (!text.empty() && !sink.write(text.data(), text.size())) {
          relay->cancel();
          return false;
        }
        if (done) sink.done();
        return true;
      },
      [relay, slot](bool success) {
        if (!success) relay->cancel();
      });
}

void HttpServer::tokenize(const httplib::Request& req, httplib::Response& res) {
  try {
    const json body = parse_body(req.body);
    if (!model_.tokenizer)
      bad_request("prompt", "tokenizer_unavailable", "this model has no tokenizer (no tokenizer.json)");
    std::vector<int32_t> ids;
    if (body.contains("messages")) {
      json chat_body = body;
      chat_body["max_tokens"] = 0;
      ids = parse_chat(chat_body, model_).prompts.at(0).params.prompt;
    } else {
      if (!body.contains("prompt") || !body.at("prompt").is_string())
        bad_request("prompt", "invalid_type", "'prompt' must be a string");
      const bool add_special = !body.contains("add_special_tokens") || body.at("add_special_tokens") == true;
      const std::string text = body.at("prompt").get<std::string>();
      ids = add_special ? model_.tokenizer->encode_with_special_tokens(text) : model_.tokenizer->encode(text);
    }
    json out = json::object();
    out["count"] = ids.size();
    out["max_model_len"] = std::min(model_.max_seq_len, model_.kv_tokens + 1);
    out["tokens"] = ids;
    send_json(res, 200, out);
  } catch (const ApiError& e) {
    send_error(res, e);
  } catch (const Error& e) {
    send_error(res, ApiError{400, e.what(), "invalid_request_error", "", "invalid_value"});
  }
}

void HttpServer::detokenize(const httplib::Request& req, httplib::Response& res) {
  try {
    const json body = parse_body(req.body);
    if (!model_.tokenizer)
      bad_request("tokens", "tokenizer_unavailable", "this model has no tokenizer (no tokenizer.json)");
    if (!body.contains("tokens") || !body.at("tokens").is_array())
      bad_request("tokens", "invalid_type", "'tokens' must be a list of token ids");
    std::vector<int32_t> ids;
    for (const auto& v : body.at("tokens")) {
      if (!v.is_number_integer()) bad_request("tokens", "invalid_type", "'tokens' must hold integers");
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id >= model_.vocab_size)
        bad_request("tokens", "invalid_token_id", str_cat("token id ", id, " is outside the vocabulary"));
      ids.push_back(int32_t(id));
    }
    json out = json::object();
    out["prompt"] = model_.tokenizer->decode(ids);
    send_json(res, 200, out);
  } catch (const ApiError& e) {
    send_error(res, e);
  }
}

}  // namespace hyrax::server
