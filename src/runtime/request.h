// A serving request as the scheduler sees it: a prompt of token ids, how to continue it (n choices, sampling, stop
// conditions, logprobs), and the thread-safe channel its results flow back on. The HTTP layer builds the params
// and reads events; the engine thread writes events.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "runtime/sampler.h"
#include "tokenizer/stream_decoder.h"

namespace hyrax {

class Tokenizer;

struct RequestParams {
  std::vector<int32_t> prompt;       // token ids, at least one
  int64_t max_tokens = 16;           // new tokens per choice; 0 scores the prompt only (echo)
  int32_t n = 1;                     // choices: independent sequences continuing the same prompt
  SamplingParams sampling;           // choice i samples with seed sampling.seed + i
  std::vector<int32_t> stop_ids;     // a choice finishes after emitting one (eos ids, the request's stop ids)
  std::vector<std::string> stop;     // a choice finishes when its text contains one (needs a tokenizer)
  bool include_stop_str = false;     // keep the matched stop string in the text
  bool skip_special_tokens = true;   // leave special tokens out of the text
  int32_t logprobs = -1;             // -1: none; k >= 0: each new token's logprob and the k most likely
  bool prompt_logprobs = false;      // logprobs of the prompt tokens too (echo), with the same k
};

/// A token's log-probability under the model (log-softmax of the raw logits, float64) and the top alternatives.
struct TokenLogprob {
  int32_t id = 0;
  double logprob = 0;
  std::vector<std::pair<int32_t, double>> top;  // the k most likely ids, most likely first (ties: lower id)
};

enum class Finish { None, Length, Stop, Cancelled, Error };
const char* finish_name(Finish f);  // "length", "stop", "cancelled", "error"; "" for None

/// New output of one choice since its previous update.
struct ChoiceUpdate {
  int32_t index = 0;
  std::vector<int32_t> ids;             // tokens sampled
  std::vector<TokenLogprob> logprobs;   // one per id when logprobs were asked for
  std::string text;                     // text that became final (held back: partial UTF-8, stop-string prefixes)
  Finish finish = Finish::None;
  std::string stop_string;              // the stop string that ended the choice
  int32_t stop_id = -1;                 // or the stop id
};

/// The prompt's logprobs (echo): entry 0 has no logprob (nothing precedes it), so it holds only the id.
struct PromptLogprobs {
  std::vector<TokenLogprob> tokens;
};

struct RequestDone {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

struct RequestFailed {
  std::string message;
};

using RequestEvent = std::variant<PromptLogprobs, ChoiceUpdate, RequestDone, RequestFailed>;

/// The channel between the engine thread (producer) and the client's thread (consumer). The client reads events
/// until RequestDone or RequestFailed; cancel() asks the scheduler to drop the request, which frees its sequences at
/// the start of its next iteration.
class RequestHandle {
 public:
  explicit RequestHandle(uint64_t id) : id_(id) {}
  uint64_t id() const { return id_; }

  /// Waits up to `timeout` for the next event; nullopt on timeout.
  std::optional<RequestEvent> next(std::chrono::milliseconds timeout);
  /// Asks the scheduler to drop the request (safe from any thread, any number of times).
  void cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  /// True once RequestDone or RequestFailed has been pushed.
  bool finished() const;

  // Producer side (engine thread).
  void push(RequestEvent e);
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }

 private:
  const uint64_t id_;
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestEvent> events_;
  bool finished_ = false;
  std::function<void()> wake_;  // pokes the scheduler so that a cancel is seen without waiting for new work
};

/// Turns one choice's token stream into final text: streaming UTF-8-safe decoding, stop strings found across
/// token boundaries, and text held back while it could still be the start of a stop string.
class TextTracker {
 public:
  /// `tokenizer` may be null (token-id models): text stays empty and stop strings must be empty.
  TextTracker(const Tokenizer* tokenizer, const std::vector<std::string>* stops, bool skip_special,
              bool include_stop);
  /// Adds a token; returns the text that became final. Sets `stopped` (and stop_string) when a stop string matched:
  /// the returned text then ends at (or after, with include_stop) the match and nothing more may be pushed.
  std::string push(int32_t id, bool& stopped, std::string& stop_string);
  /// The choice ended without a stop string: everything held back.
  std::string finish();

 private:
  const Tokenizer* tok_;
  const std::vector<std::string>* stops_;
  std::optional<StreamDecoder> dec_;
  bool include_stop_;
  std::string text_;      // all text decoded so far
  size_t emitted_ = 0;    // bytes of text_ handed out
};

/// Log-softmax of one logits row [V] in float64: the chosen token's logprob and the k most likely tokens.
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t id, int32_t top_k);

}  // namespace hyrax
