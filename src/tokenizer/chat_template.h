// Chat templates: renders a model's Jinja chat_template the way transformers' apply_chat_template does (same
// variables, trim_blocks + lstrip_blocks, loop controls, raise_exception, strftime_now, transformers' tojson).
//
//   hyrax::Tokenizer tok = hyrax::Tokenizer::from_model_dir(dir);
//   hyrax::ChatTemplate tmpl = hyrax::ChatTemplate::from_config(tok.config());
//   std::string prompt = tmpl.render(messages, /*add_generation_prompt=*/true);
//   std::vector<int32_t> ids = tok.encode(prompt);   // the template writes any BOS itself
//
// Messages, tools and extra context are JSON as the OpenAI-style API has them. Use nlohmann::ordered_json to
// keep key order (tojson prints keys in insertion order, like Python dicts); nlohmann::json sorts them.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace hyrax {

struct TokenizerConfig;

namespace jinja {
struct Node;
}

class ChatTemplate {
 public:
  /// Parses `source`. `defaults` are variables every render sees (bos_token, eos_token, ...), overridden by
  /// extra_context. Errors (hyrax::Error) name the unsupported construct or syntax error and its line.
  explicit ChatTemplate(const std::string& source, nlohmann::ordered_json defaults = nlohmann::ordered_json::object());
  /// The template named `name` of a model's config ("default": the model's template), with the config's special
  /// tokens (bos_token, eos_token, unk_token, pad_token, ...) as defaults.
  static ChatTemplate from_config(const TokenizerConfig& config, const std::string& name = "default");

  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;
  ~ChatTemplate();

  /// Renders `messages` (a JSON array of {role, content, ...}). `tools` is a JSON array or null (rendered as
  /// None, as transformers passes it); `extra_context` an object of further variables (enable_thinking,
  /// documents, ...). Throws hyrax::Error on template errors and on raise_exception().
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& tools = nullptr,
                     const nlohmann::ordered_json& extra_context = nlohmann::ordered_json::object()) const;
  /// As above with nlohmann::json (object keys in sorted order).
  std::string render(const nlohmann::json& messages, bool add_generation_prompt, const nlohmann::json& tools,
                     const nlohmann::json& extra_context = nlohmann::json::object()) const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  nlohmann::ordered_json defaults_;
  std::shared_ptr<std::vector<std::unique_ptr<jinja::Node>>> body_;
};

}  // namespace hyrax
