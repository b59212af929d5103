#include "server/relay.h"

#include <ctime>
#include <random>
#include <thread>

#include "core/check.h"

namespace hyrax::server {

struct Relay::PromptState {
  const PromptJob* job = nullptr;
  std::vector<ChoiceResult> choices;
  std::vector<bool> started;                  // streaming: the choice's first chunk was sent
  std::vector<std::vector<ChoiceUpdate>> held;  // streaming echo: updates waiting for the prompt's logprobs
  std::optional<PromptLogprobs> prompt_lp;
  RequestDone done;
  bool ended = false;
  std::string error;
  bool shutting_down = false;
};

namespace {
std::string random_hex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = digits[rng() & 15];
  return s;
}
}  // namespace

Relay::Relay(const ModelContext& model, ParsedRequest request, std::vector<std::shared_ptr<RequestHandle>> handles)
    : m_(model), req_(std::move(request)), handles_(std::move(handles)) {
  HYRAX_CHECK(handles_.size() == req_.prompts.size(), "one handle per prompt");
  id_ = (req_.chat ? "chatcmpl-" : "cmpl-") + random_hex(24);
  created_ = int64_t(std::time(nullptr));
  for (const auto& job : req_.prompts) {
    auto st = std::make_unique<PromptState>();
    st->job = &job;
    const size_t n = size_t(job.params.n);
    st->choices.resize(n);
    st->started.assign(n, false);
    st->held.resize(n);
    prompts_.push_back(std::move(st));
  }
}

Relay::~Relay() { cancel(); }

void Relay::cancel() {
  for (size_t i = 0; i < handles_.size(); ++i)
    if (!prompts_[i]->ended) handles_[i]->cancel();
}

std::optional<Relay::Event> Relay::next_event(std::chrono::milliseconds wait) {
  using namespace std::chrono;
  const auto deadline = steady_clock::now() + wait;
  for (;;) {
    // Round-robin over the prompts still running, so that one busy prompt cannot starve the others.
    size_t live = 0, last_live = 0;
    for (size_t k = 0; k < handles_.size(); ++k) {
      const size_t i = (rr_ + k) % handles_.size();
      if (prompts_[i]->ended) continue;
      ++live;
      last_live = i;
      if (auto e = handles_[i]->next(milliseconds(0))) {
        rr_ = i + 1;
        return Event{i, std::move(*e)};
      }
    }
    if (live == 0) return std::nullopt;
    const auto now = steady_clock::now();
    if (now >= deadline) return std::nullopt;
    // One prompt: sleep on its channel. Several: wait on one briefly, then look at all again.
    const auto left = duration_cast<milliseconds>(deadline - now) + milliseconds(1);
    const auto slice = live == 1 ? left : std::min(left, milliseconds(5));
    if (auto e = handles_[last_live]->next(slice)) return Event{last_live, std::move(*e)};
  }
}

json Relay::usage() const {
  int64_t p = 0, c = 0;
  for (const auto& st : prompts_) {
    p += st->done.prompt_tokens;
    c += st->done.completion_tokens;
  }
  json u = json::object();
  u["prompt_tokens"] = p;
  u["completion_tokens"] = c;
  u["total_tokens"] = p + c;
  return u;
}

json Relay::collect() {
  size_t left = handles_.size();
  while (left > 0) {
    auto e = next_event(std::chrono::milliseconds(1000));
    if (!e) continue;
    PromptState& st = *prompts_[e->prompt];
    if (auto* u = std::get_if<ChoiceUpdate>(&e->ev)) {
      ChoiceResult& c = st.choices[size_t(u->index)];
      c.text += u->text;
      c.ids.insert(c.ids.end(), u->ids.begin(), u->ids.end());
      c.logprobs.insert(c.logprobs.end(), u->logprobs.begin(), u->logprobs.end());
      if (u->finish != Finish::None) {
        c.finish = u->finish;
        c.stop_string = u->stop_string;
        c.stop_id = u->stop_id;
      }
    } else if (auto* p = std::get_if<PromptLogprobs>(&e->ev)) {
      st.prompt_lp = std::move(*p);
    } else if (auto* d = std::get_if<RequestDone>(&e->ev)) {
      st.done = *d;
      st.ended = true;
      --left;
    } else if (auto* f = std::get_if<RequestFailed>(&e->ev)) {
      st.ended = true;
      cancel();
      if (f->message.find("shutting down") != std::string::npos)
        throw ApiError{503, "the server is shutting down", "server_error", "", "shutting_down"};
      throw ApiError{500, "generation failed: " + f->message, "server_error", "", "internal_error"};
    }
  }
  json choices = json::array();
  for (size_t i = 0; i < prompts_.size(); ++i) {
    PromptState& st = *prompts_[i];
    const size_t n = st.choices.size();
    for (size_t j = 0; j < n; ++j) {
      ChoiceResult& c = st.choices[j];
      json ch = json::object();
      ch["index"] = i * n + j;
      if (req_.chat) {
        json msg = json::object();
        msg["role"] = "assistant";
        msg["content"] = c.text;
        ch["message"] = std::move(msg);
        ch["logprobs"] = req_.logprobs >= 0 ? chat_logprobs(m_, c.logprobs) : json(nullptr);
      } else {
        const std::string prefix = req_.echo ? st.job->echo_text : std::string();
        ch["text"] = prefix + c.text;
        if (req_.logprobs >= 0) {
          std::vector<TokenLogprob> all;
          if (req_.echo && st.prompt_lp) all = st.prompt_lp->tokens;
          all.insert(all.end(), c.logprobs.begin(), c.logprobs.end());
          ch["logprobs"] = completion_logprobs(m_, all, req_.echo, 0);
        } else {
          ch["logprobs"] = nullptr;
        }
      }
      ch["finish_reason"] = finish_reason(c.finish);
      ch["stop_reason"] = stop_reason(m_, c.stop_string, c.stop_id);
      if (req_.return_token_ids) {
        ch["token_ids"] = c.ids;
        if (!req_.chat) ch["prompt_token_ids"] = st.job->params.prompt;
      }
      choices.push_back(std::move(ch));
    }
  }
  json out = json::object();
  out["id"] = id_;
  out["object"] = req_.chat ? "chat.completion" : "text_completion";
  out["created"] = created_;
  out["model"] = m_.name;
  out["choices"] = std::move(choices);
  out["usage"] = usage();
  return out;
}

json Relay::chunk_base() const {
  json c = json::object();
  c["id"] = id_;
  c["object"] = req_.chat ? "chat.completion.chunk" : "text_completion";
  c["created"] = created_;
  c["model"] = m_.name;
  return c;
}

namespace {
std::string sse(const json& j) { return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n"; }
}  // namespace

std::string Relay::sse_for(size_t prompt, ChoiceUpdate& u) {
  PromptState& st = *prompts_[prompt];
  const size_t n = st.choices.size();
  const size_t j = size_t(u.index);
  std::string out;
  json ch = json::object();
  ch["index"] = prompt * n + j;
  if (req_.chat) {
    if (!st.started[j]) {
      // The first chunk of a choice names the role, as OpenAI's does.
      json first = chunk_base();
      json c0 = json::object();
      c0["index"] = prompt * n + j;
      c0["delta"] = json{{"role", "assistant"}, {"content", ""}};
      c0["logprobs"] = nullptr;
      c0["finish_reason"] = nullptr;
      first["choices"] = json::array({c0});
      if (req_.include_usage) first["usage"] = nullptr;
      out += sse(first);
      st.started[j] = true;
    }
    json delta = json::object();
    if (!u.text.empty() || u.finish == Finish::None) delta["content"] = u.text;
    ch["delta"] = std::move(delta);
    ch["logprobs"] = req_.logprobs >= 0 ? chat_logprobs(m_, u.logprobs) : json(nullptr);
  } else {
    std::string text = u.text;
    std::vector<TokenLogprob> lps = u.logprobs;
    bool first_null = false;
    if (!st.started[j] && req_.echo) {
      text = st.job->echo_text + text;
      if (st.prompt_lp) {
        lps.insert(lps.begin(), st.prompt_lp->tokens.begin(), st.prompt_lp->tokens.end());
        first_null = true;
      }
    }
    st.started[j] = true;
    ch["text"] = text;
    ch["logprobs"] = req_.logprobs >= 0 ? completion_logprobs(m_, lps, first_null, 0) : json(nullptr);
  }
  ch["finish_reason"] = finish_reason(u.finish);
  ch["stop_reason"] = u.finish == Finish::None ? json(nullptr) : stop_reason(m_, u.stop_string, u.stop_id);
  if (req_.return_token_ids) ch["token_ids"] = u.ids;
  json c = chunk_base();
  c["choices"] = json::array({ch});
  if (req_.include_usage) c["usage"] = nullptr;
  out += sse(c);
  return out;
}

std::string Relay::sse_usage() const {
  json c = chunk_base();
  c["choices"] = json::array();
  c["usage"] = usage();
  return sse(c);
}

std::string Relay::next_sse(std::chrono::milliseconds wait, bool& done) {
  // Everything already waiting goes out in one write (one syscall per step, not per token, under load).
  std::string out = next_sse_one(wait, done);
  for (int i = 0; i < 256 && !done && !out.empty(); ++i) {
    std::string more = next_sse_one(std::chrono::milliseconds(0), done);
    if (more.empty()) break;
    out += more;
  }
  return out;
}

std::string Relay::next_sse_one(std::chrono::milliseconds wait, bool& done) {
  done = done_;
  if (done_) return {};
  std::string out;
  auto e = next_event(wait);
  if (!e) return out;
  PromptState& st = *prompts_[e->prompt];
  const bool wants_prompt_lp = !req_.chat && req_.echo && req_.logprobs >= 0;
  if (auto* u = std::get_if<ChoiceUpdate>(&e->ev)) {
    if (wants_prompt_lp && !st.prompt_lp) {
      st.held[size_t(u->index)].push_back(std::move(*u));
    } else {
      out += sse_for(e->prompt, *u);
    }
  } else if (auto* p = std::get_if<PromptLogprobs>(&e->ev)) {
    st.prompt_lp = std::move(*p);
    for (auto& held : st.held) {
      for (auto& hu : held) out += sse_for(e->prompt, hu);
      held.clear();
    }
  } else if (auto* d = std::get_if<RequestDone>(&e->ev)) {
    st.done = *d;
    st.ended = true;
    // A choice that finished before any output (max_tokens 0) still gets its chunk (echo text, finish_reason).
    for (size_t j = 0; j < st.choices.size(); ++j) {
      for (auto& hu : st.held[j]) out += sse_for(e->prompt, hu);
      st.held[j].clear();
    }
  } else if (auto* f = std::get_if<RequestFailed>(&e->ev)) {
    st.ended = true;
    cancel();
    const bool shutting = f->message.find("shutting down") != std::string::npos;
    ApiError err{shutting ? 503 : 500, shutting ? "the server is shutting down" : "generation failed: " + f->message,
                 "server_error", "", shutting ? "shutting_down" : "internal_error"};
    out += sse(err.body());
    out += "data: [DONE]\n\n";
    done_ = done = true;
    return out;
  }
  bool all = true;
  for (const auto& s : prompts_) all = all && s->ended;
  if (all) {
    if (req_.include_usage) out += sse_usage();
    out += "data: [DONE]\n\n";
    done_ = done = true;
  }
  return out;
}

}  // namespace hyrax::server
