// The OpenAI-compatible request and response shapes: parsing a request body into scheduler requests (with an
// OpenAI-style error naming the parameter at fault), and writing completions, chat completions, their stream chunks
// and logprobs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/request.h"

namespace hyrax {
class Tokenizer;
class ChatTemplate;
}  // namespace hyrax

namespace hyrax::server {

using json = nlohmann::ordered_json;

/// An error answered as {"error": {"message", "type", "param", "code"}} with an HTTP status.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" -> null
  std::string code;   // "" -> null

  json body() const;
};

[[noreturn]] void bad_request(const std::string& param, const std::string& code, const std::string& message);

/// What the protocol layer needs to know about the model being served.
struct ModelContext {
  std::string name;                 // the served model id
  std::vector<std::string> aliases; // other names a request may use (the folder path)
  int64_t vocab_size = 0;
  int64_t max_seq_len = 0;          // context (prompt + max_tokens)
  int64_t kv_tokens = 0;            // KV positions in the pool
  std::vector<int32_t> eos_ids;     // stop ids unless ignore_eos
  int32_t max_n = 128, max_logprobs = 20, max_prompts = 1024, max_stop = 16;
  const Tokenizer* tokenizer = nullptr;   // null: token-id prompts only
  const ChatTemplate* chat_template = nullptr;
};

/// One prompt of a request, ready for the scheduler.
struct PromptJob {
  RequestParams params;
  std::string echo_text;  // the prompt's text, returned first when echo
};

struct ParsedRequest {
  bool chat = false;
  std::vector<PromptJob> prompts;   // completions: one per prompt; chat: exactly one
  bool stream = false, include_usage = false, continuous_usage = false;
  bool echo = false;                // completions: return the prompt (and its logprobs) first
  bool return_token_ids = false;    // hyrax/vLLM extension: "token_ids" in each choice or chunk
  int32_t logprobs = -1;            // completions: k; chat: top_logprobs when logprobs is true, else -1
  bool add_generation_prompt = true;
  std::string model;
};

/// Parses a /v1/completions body. Throws ApiError.
ParsedRequest parse_completion(const json& body, const ModelContext& m);
/// Parses a /v1/chat/completions body. Throws ApiError.
ParsedRequest parse_chat(const json& body, const ModelContext& m);
/// Parses the raw body as a JSON object. Throws ApiError (invalid JSON, bad UTF-8, not an object).
json parse_body(const std::string& body);

/// The text a token stands for in logprobs: its decoded text, or "token_id:N" without a tokenizer.
std::string token_text(const ModelContext& m, int32_t id);

/// Accumulates one choice's output for the final (non-streaming) response.
struct ChoiceResult {
  std::string text;
  std::vector<int32_t> ids;
  std::vector<TokenLogprob> logprobs;
  Finish finish = Finish::None;
  std::string stop_string;
  int32_t stop_id = -1;
};

/// Completions "logprobs" object for `tokens` (prompt entries first when echo: entry 0 has null logprobs).
json completion_logprobs(const ModelContext& m, const std::vector<TokenLogprob>& tokens, bool first_is_null,
                         size_t text_offset0);
/// Chat "logprobs" object: {"content": [{token, logprob, bytes, top_logprobs}], "refusal": null}.
json chat_logprobs(const ModelContext& m, const std::vector<TokenLogprob>& tokens);
/// OpenAI's finish_reason, or null while unfinished.
json finish_reason(Finish f);
/// vLLM's stop_reason: the stop string, the stop id (not an eos id), or null.
json stop_reason(const ModelContext& m, const std::string& stop_string, int32_t stop_id);

}  // namespace hyrax::server
