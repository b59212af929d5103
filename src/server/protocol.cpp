#include "server/protocol.h"

#include <cmath>
#include <limits>
#include <random>

#include "core/check.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace hyrax::server {

json ApiError::body() const {
  json e = json::object();
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  json out = json::object();
  out["error"] = e;
  return out;
}

void bad_request(const std::string& param, const std::string& code, const std::string& message) {
  throw ApiError{400, message, "invalid_request_error", param, code};
}

json parse_body(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    const std::string what = e.what();
    if (what.find("UTF-8") != std::string::npos || what.find("utf-8") != std::string::npos)
      bad_request("", "invalid_utf8", "the request body is not valid UTF-8: " + what);
    bad_request("", "invalid_json", "the request body is not valid JSON: " + what);
  }
  if (!j.is_object()) bad_request("", "invalid_json", "the request body must be a JSON object");
  return j;
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& v) {
  bad_request(param, "invalid_type", "'" + param + "' must be " + expected + ", got " + type_name(v));
}

bool present(const json& body, const char* key) { return body.contains(key) && !body.at(key).is_null(); }

/// An integer field (integral floats accepted), checked against [lo, hi]; nullopt when missing or null.
std::optional<int64_t> get_int(const json& body, const char* key, int64_t lo, int64_t hi) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body.at(key);
  int64_t x = 0;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
      x = std::numeric_limits<int64_t>::max();
    } else {
      x = v.get<int64_t>();
    }
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) wrong_type(key, "an integer", v);
    x = d >= 9.2e18 ? std::numeric_limits<int64_t>::max() : d <= -9.2e18 ? std::numeric_limits<int64_t>::min()
                                                                           : int64_t(d);
  } else {
    wrong_type(key, "an integer", v);
  }
  if (x < lo || x > hi)
    bad_request(key, "invalid_value", str_cat("'", key, "' must be in [", lo, ", ", hi, "], got ", x));
  return x;
}

std::optional<double> get_number(const json& body, const char* key, double lo, double hi, bool lo_open = false) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body.at(key);
  if (!v.is_number()) wrong_type(key, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo))
    bad_request(key, "invalid_value",
                str_cat("'", key, "' must be in ", lo_open ? "(" : "[", lo, ", ", hi, "], got ", v.dump()));
  return x;
}

std::optional<bool> get_bool(const json& body, const char* key) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body.at(key);
  if (!v.is_boolean()) wrong_type(key, "a boolean", v);
  return v.get<bool>();
}

std::optional<std::string> get_string(const json& body, const char* key) {
  if (!present(body, key)) return std::nullopt;
  const json& v = body.at(key);
  if (!v.is_string()) wrong_type(key, "a string", v);
  return v.get<std::string>();
}

void check_model(const json& body, const ModelContext& m, ParsedRequest& out) {
  const auto model = get_string(body, "model");
  if (!model) return;
  out.model = *model;
  if (*model == m.name) return;
  for (const auto& a : m.aliases)
    if (*model == a) return;
  throw ApiError{404, "The model '" + *model + "' does not exist; this server serves '" + m.name + "'",
                 "invalid_request_error", "model", "model_not_found"};
}

std::vector<int32_t> parse_ids(const json& arr, const std::string& param, const ModelContext& m) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i) {
    const json& v = arr[i];
    if (!v.is_number_integer())
      bad_request(param, "invalid_type", str_cat("'", param, "' token ", i, " must be an integer, got ", type_name(v)));
    const int64_t id = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v.get<int64_t>();
    if (id < 0 || id >= m.vocab_size)
      bad_request(param, "invalid_token_id",
                  str_cat("'", param, "' token ", i, " is ", id, ", outside the vocabulary [0, ", m.vocab_size, ")"));
    ids.push_back(int32_t(id));
  }
  return ids;
}

const Tokenizer& need_tokenizer(const ModelContext& m, const std::string& param) {
  if (!m.tokenizer)
    bad_request(param, "tokenizer_unavailable",
                "this model has no tokenizer (no tokenizer.json): send prompts as token ids");
  return *m.tokenizer;
}

/// Sampling, stop conditions and extensions shared by both endpoints.
void parse_common(const json& body, const ModelContext& m, ParsedRequest& out, RequestParams& p) {
  check_model(body, m, out);
  p.n = int32_t(get_int(body, "n", 1, m.max_n).value_or(1));
  if (const auto best_of = get_int(body, "best_of", 1, m.max_n); best_of && *best_of != p.n)
    bad_request("best_of", "unsupported_parameter", "best_of other than n is not supported");
  p.sampling.temperature = float(get_number(body, "temperature", 0.0, 100.0).value_or(1.0));
  p.sampling.top_p = float(get_number(body, "top_p", 0.0, 1.0, true).value_or(1.0));
  const int64_t top_k = get_int(body, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0);
  p.sampling.top_k = top_k < 0 ? 0 : int32_t(top_k);
  p.sampling.min_p = float(get_number(body, "min_p", 0.0, 1.0).value_or(0.0));
  if (const auto seed = get_int(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max())) {
    p.sampling.seed = uint64_t(*seed);
  } else {
    static thread_local std::random_device rd;
    p.sampling.seed = (uint64_t(rd()) << 32) ^ uint64_t(rd());
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (get_number(body, key, -2.0, 2.0).value_or(0.0) != 0.0)
      bad_request(key, "unsupported_parameter", std::string("'") + key + "' is not supported (only 0)");
  if (const auto rp = get_number(body, "repetition_penalty", 0.0, 100.0, true); rp && *rp != 1.0)
    bad_request("repetition_penalty", "unsupported_parameter", "'repetition_penalty' is not supported (only 1)");
  if (present(body, "logit_bias")) {
    const json& lb = body.at("logit_bias");
    if (!lb.is_object()) wrong_type("logit_bias", "an object", lb);
    if (!lb.empty()) bad_request("logit_bias", "unsupported_parameter", "'logit_bias' is not supported");
  }
  // stop: a string or a list of strings.
  if (present(body, "stop")) {
    const json& s = body.at("stop");
    if (s.is_string()) {
      p.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      for (const auto& x : s) {
        if (!x.is_string()) bad_request("stop", "invalid_type", "'stop' must be a string or a list of strings");
        p.stop.push_back(x.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or a list of strings", s);
    }
    if (int32_t(p.stop.size()) > m.max_stop)
      bad_request("stop", "invalid_value", str_cat("'stop' may hold at most ", m.max_stop, " strings"));
    for (const auto& x : p.stop)
      if (x.empty()) bad_request("stop", "invalid_value", "'stop' strings must not be empty");
    if (!p.stop.empty()) need_tokenizer(m, "stop");
  }
  if (present(body, "stop_token_ids")) {
    const json& s = body.at("stop_token_ids");
    if (!s.is_array()) wrong_type("stop_token_ids", "a list of integers", s);
    p.stop_ids = parse_ids(s, "stop_token_ids", m);
  }
  if (!get_bool(body, "ignore_eos").value_or(false))
    p.stop_ids.insert(p.stop_ids.end(), m.eos_ids.begin(), m.eos_ids.end());
  p.include_stop_str = get_bool(body, "include_stop_str_in_output").value_or(false);
  p.skip_special_tokens = get_bool(body, "skip_special_tokens").value_or(true);
  out.stream = get_bool(body, "stream").value_or(false);
  if (present(body, "stream_options")) {
    const json& so = body.at("stream_options");
    if (!so.is_object()) wrong_type("stream_options", "an object", so);
    if (!out.stream) bad_request("stream_options", "invalid_value", "'stream_options' needs 'stream': true");
    out.include_usage = get_bool(so, "include_usage").value_or(false);
    out.continuous_usage = get_bool(so, "continuous_usage_stats").value_or(false);
  }
  out.return_token_ids = get_bool(body, "return_token_ids").value_or(false);
  if (present(body, "suffix")) bad_request("suffix", "unsupported_parameter", "'suffix' is not supported");
  if (present(body, "response_format")) {
    const json& rf = body.at("response_format");
    if (!rf.is_object() || !rf.contains("type") || rf.at("type") != "text")
      bad_request("response_format", "unsupported_parameter", "only response_format {\"type\": \"text\"} is supported");
  }
}

/// max_tokens against the context and the KV pool; `default_max` when absent (-1: all the room left).
void check_lengths(RequestParams& p, const ModelContext& m, const char* max_key, std::optional<int64_t> max_tokens,
                   int64_t default_max) {
  const int64_t P = int64_t(p.prompt.size());
  // A request caches P + max_tokens - 1 positions (the last token is sampled, never fed) and spans P + max_tokens.
  const int64_t limit = std::min(m.max_seq_len, m.kv_tokens + 1);
  const int64_t room = limit - P;
  const bool score_only = max_tokens && *max_tokens == 0;
  if (P > m.kv_tokens || P > m.max_seq_len || (room <= 0 && !score_only))
    bad_request("prompt", "context_length_exceeded",
                str_cat("this model's maximum context length is ", limit, " tokens; the prompt has ", P,
                        " tokens, which leaves no room for output"));
  p.max_tokens = max_tokens ? *max_tokens : default_max < 0 ? room : std::min(default_max, room);
  if (p.max_tokens > room)
    bad_request(max_key, "context_length_exceeded",
                str_cat("this model's maximum context length is ", limit, " tokens; the prompt has ", P,
                        " tokens and ", max_key, " asks for ", p.max_tokens, " more; lower ", max_key,
                        " to at most ", room));
}

}  // namespace

ParsedRequest parse_completion(const json& body, const ModelContext& m) {
  ParsedRequest out;
  RequestParams p;
  parse_common(body, m, out, p);
  const auto max_tokens = get_int(body, "max_tokens", 0, std::numeric_limits<int64_t>::max());
  out.echo = get_bool(body, "echo").value_or(false);
  out.logprobs = int32_t(get_int(body, "logprobs", 0, m.max_logprobs).value_or(-1));
  p.logprobs = out.logprobs;
  p.prompt_logprobs = out.echo && out.logprobs >= 0;
  const bool add_special = get_bool(body, "add_special_tokens").value_or(true);

  if (!body.contains("prompt")) bad_request("prompt", "missing_required_parameter", "'prompt' is required");
  const json& pr = body.at("prompt");
  std::vector<std::pair<std::vector<int32_t>, std::string>> prompts;  // ids, original text
  auto encode = [&](const std::string& text) {
    const Tokenizer& tok = need_tokenizer(m, "prompt");
    return add_special ? tok.encode_with_special_tokens(text) : tok.encode(text);
  };
  if (pr.is_string()) {
    prompts.emplace_back(encode(pr.get<std::string>()), pr.get<std::string>());
  } else if (pr.is_array()) {
    if (pr.empty()) bad_request("prompt", "invalid_value", "'prompt' must not be an empty list");
    if (pr[0].is_number_integer()) {
      prompts.emplace_back(parse_ids(pr, "prompt", m), std::string());
    } else if (pr[0].is_string() || pr[0].is_array()) {
      if (int32_t(pr.size()) > m.max_prompts)
        bad_request("prompt", "invalid_value", str_cat("at most ", m.max_prompts, " prompts per request"));
      for (const auto& x : pr) {
        if (x.is_string() && pr[0].is_string()) {
          prompts.emplace_back(encode(x.get<std::string>()), x.get<std::string>());
        } else if (x.is_array() && pr[0].is_array()) {
          prompts.emplace_back(parse_ids(x, "prompt", m), std::string());
        } else {
          bad_request("prompt", "invalid_type", "'prompt' lists must hold only strings or only lists of token ids");
        }
      }
    } else {
      bad_request("prompt", "invalid_type",
                  "'prompt' must be a string, a list of strings, a list of token ids or a list of such lists");
    }
  } else {
    wrong_type("prompt", "a string, a list of strings, a list of token ids or a list of such lists", pr);
  }
  for (auto& [ids, text] : prompts) {
    if (ids.empty()) bad_request("prompt", "invalid_value", "the prompt is empty: give at least one token");
    PromptJob job;
    job.params = p;
    job.params.prompt = std::move(ids);
    check_lengths(job.params, m, "max_tokens", max_tokens, 16);
    job.echo_text = text.empty() && m.tokenizer ? m.tokenizer->decode(job.params.prompt) : text;
    out.prompts.push_back(std::move(job));
  }
  return out;
}

namespace {

/// A message's content as the template sees it: a string (text parts joined), or null.
json message_content(const json& msg, size_t i) {
  const std::string param = str_cat("messages[", i, "].content");
  if (!msg.contains("content") || msg.at("content").is_null()) return nullptr;
  const json& c = msg.at("content");
  if (c.is_string()) return c;
  if (!c.is_array()) wrong_type(param, "a string or a list of content parts", c);
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || !part.at("type").is_string())
      bad_request(param, "invalid_type", "each content part must be an object with a 'type'");
    if (part.at("type") != "text")
      bad_request(param, "unsupported_parameter",
                  "content parts of type '" + part.at("type").get<std::string>() + "' are not supported (text only)");
    if (!part.contains("text") || !part.at("text").is_string())
      bad_request(param, "invalid_type", "a text content part needs a string 'text'");
    text += part.at("text").get<std::string>();
  }
  return text;
}

}  // namespace

ParsedRequest parse_chat(const json& body, const ModelContext& m) {
  ParsedRequest out;
  out.chat = true;
  RequestParams p;
  parse_common(body, m, out, p);
  const Tokenizer& tok = need_tokenizer(m, "messages");
  if (!m.chat_template)
    bad_request("messages", "chat_template_unavailable", "this model has no chat template (tokenizer_config.json)");
  auto max_tokens = get_int(body, "max_completion_tokens", 0, std::numeric_limits<int64_t>::max());
  const char* max_key = "max_completion_tokens";
  if (!max_tokens) {
    max_tokens = get_int(body, "max_tokens", 0, std::numeric_limits<int64_t>::max());
    max_key = "max_tokens";
  }
  const bool logprobs = get_bool(body, "logprobs").value_or(false);
  const auto top = get_int(body, "top_logprobs", 0, m.max_logprobs);
  if (top && !logprobs) bad_request("top_logprobs", "invalid_value", "'top_logprobs' needs 'logprobs': true");
  out.logprobs = logprobs ? int32_t(top.value_or(0)) : -1;
  p.logprobs = out.logprobs;
  if (get_bool(body, "echo").value_or(false))
    bad_request("echo", "unsupported_parameter", "'echo' is not supported for chat completions");

  if (!body.contains("messages")) bad_request("messages", "missing_required_parameter", "'messages' is required");
  const json& msgs = body.at("messages");
  if (!msgs.is_array()) wrong_type("messages", "a list of messages", msgs);
  if (msgs.empty()) bad_request("messages", "invalid_value", "'messages' must hold at least one message");
  json messages = json::array();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& msg = msgs[i];
    const std::string where = str_cat("messages[", i, "]");
    if (!msg.is_object()) wrong_type(where, "an object", msg);
    if (!msg.contains("role") || !msg.at("role").is_string())
      bad_request(where + ".role", "missing_required_parameter", where + " needs a string 'role'");
    const std::string role = msg.at("role").get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      bad_request(where + ".role", "invalid_value",
                  "unknown role '" + role + "' (expected system, developer, user, assistant or tool)");
    json copy = msg;
    copy["content"] = message_content(msg, i);
    if (copy["content"].is_null() && role != "assistant")
      bad_request(where + ".content", "missing_required_parameter", where + " (" + role + ") needs 'content'");
    messages.push_back(std::move(copy));
  }
  json tools = nullptr;
  if (present(body, "tools")) {
    tools = body.at("tools");
    if (!tools.is_array()) wrong_type("tools", "a list of tools", tools);
    for (size_t i = 0; i < tools.size(); ++i)
      if (!tools[i].is_object() || !tools[i].contains("function") || !tools[i].at("function").is_object())
        bad_request(str_cat("tools[", i, "]"), "invalid_type", "each tool must be {\"type\": \"function\", \"function\": {...}}");
    if (present(body, "tool_choice") && body.at("tool_choice") == "none") tools = nullptr;
  }
  json extra = json::object();
  if (present(body, "chat_template_kwargs")) {
    extra = body.at("chat_template_kwargs");
    if (!extra.is_object()) wrong_type("chat_template_kwargs", "an object", extra);
  }
  out.add_generation_prompt = get_bool(body, "add_generation_prompt").value_or(true);
  std::string rendered;
  try {
    rendered = m.chat_template->render(messages, out.add_generation_prompt, tools, extra);
  } catch (const Error& e) {
    bad_request("messages", "chat_template_error", std::string("the chat template failed: ") + e.what());
  }
  p.prompt = get_bool(body, "add_special_tokens").value_or(false) ? tok.encode_with_special_tokens(rendered)
                                                                   : tok.encode(rendered);
  if (p.prompt.empty()) bad_request("messages", "invalid_value", "the rendered chat prompt is empty");
  check_lengths(p, m, max_key, max_tokens, -1);
  PromptJob job;
  job.params = std::move(p);
  out.prompts.push_back(std::move(job));
  return out;
}

std::string token_text(const ModelContext& m, int32_t id) {
  if (!m.tokenizer) return "token_id:" + std::to_string(id);
  const int32_t one[1] = {id};
  return m.tokenizer->decode(one);
}

namespace {
size_t utf8_chars(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

json completion_logprobs(const ModelContext& m, const std::vector<TokenLogprob>& tokens, bool first_is_null,
                         size_t text_offset0) {
  json toks = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = text_offset0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenLogprob& t = tokens[i];
    const std::string s = token_text(m, t.id);
    toks.push_back(s);
    offsets.push_back(offset);
    offset += utf8_chars(s);
    if (i == 0 && first_is_null) {
      lps.push_back(nullptr);
      tops.push_back(nullptr);
      continue;
    }
    lps.push_back(t.logprob);
    json top = json::object();
    // The chosen token is always listed (as OpenAI and vLLM do), beside the k most likely.
    for (const auto& [id, lp] : t.top) top[token_text(m, id)] = lp;
    const std::string chosen = s;
    if (!top.contains(chosen)) top[chosen] = t.logprob;
    tops.push_back(std::move(top));
  }
  json out = json::object();
  out["tokens"] = std::move(toks);
  out["token_logprobs"] = std::move(lps);
  out["top_logprobs"] = std::move(tops);
  out["text_offset"] = std::move(offsets);
  return out;
}

json chat_logprobs(const ModelContext& m, const std::vector<TokenLogprob>& tokens) {
  auto entry = [&](int32_t id, double lp) {
    json e = json::object();
    const std::string s = token_text(m, id);
    e["token"] = s;
    e["logprob"] = lp;
    json bytes = json::array();
    if (m.tokenizer) {
      for (unsigned char c : m.tokenizer->token_bytes(id)) bytes.push_back(int(c));
    } else {
      for (unsigned char c : s) bytes.push_back(int(c));
    }
    e["bytes"] = std::move(bytes);
    return e;
  };
  json content = json::array();
  for (const auto& t : tokens) {
    json e = entry(t.id, t.logprob);
    json top = json::array();
    for (const auto& [id, lp] : t.top) top.push_back(entry(id, lp));
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  json out = json::object();
  out["content"] = std::move(content);
  out["refusal"] = nullptr;
  return out;
}

json finish_reason(Finish f) {
  switch (f) {
    case Finish::Length: return "length";
    case Finish::Stop: return "stop";
    case Finish::Cancelled: return "abort";
    case Finish::Error: return "error";
    case Finish::None: break;
  }
  return nullptr;
}

json stop_reason(const ModelContext& m, const std::string& stop_string, int32_t stop_id) {
  if (!stop_string.empty()) return stop_string;
  if (stop_id >= 0 && std::find(m.eos_ids.begin(), m.eos_ids.end(), stop_id) == m.eos_ids.end()) return stop_id;
  return nullptr;
}

}  // namespace hyrax::server
