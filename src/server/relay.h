// Relays one HTTP request's scheduler events to the client: the whole response (non-streaming) or SSE chunks in
// OpenAI's format (streaming), for completions and chat completions, with several prompts and n choices each.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "runtime/request.h"
#include "server/protocol.h"

namespace hyrax::server {

class Relay {
 public:
  Relay(const ModelContext& model, ParsedRequest request, std::vector<std::shared_ptr<RequestHandle>> handles);
  /// Cancels whatever has not finished (the client went away, or the response was abandoned).
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  /// Waits for every choice to finish and returns the response body. Throws ApiError when the scheduler failed a
  /// request (500) or is shutting down (503).
  json collect();

  /// Streaming: waits up to `wait` for output and returns the SSE text it makes ("" if none came). `done` turns true
  /// once the text ends with "data: [DONE]".
  std::string next_sse(std::chrono::milliseconds wait, bool& done);

  /// Drops every unfinished request.
  void cancel();

 private:
  struct PromptState;
  struct Event {
    size_t prompt = 0;
    RequestEvent ev;
  };
  std::optional<Event> next_event(std::chrono::milliseconds wait);
  std::string next_sse_one(std::chrono::milliseconds wait, bool& done);
  json chunk_base() const;
  std::string sse_for(size_t prompt, ChoiceUpdate& u);
  std::string sse_usage() const;
  json usage() const;

  const ModelContext& m_;
  ParsedRequest req_;
  std::vector<std::shared_ptr<RequestHandle>> handles_;
  std::vector<std::unique_ptr<PromptState>> prompts_;
  std::string id_;
  int64_t created_ = 0;
  size_t rr_ = 0;
  bool failed_ = false, done_ = false;
};

}  // namespace hyrax::server
