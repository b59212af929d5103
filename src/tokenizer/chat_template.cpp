#include "tokenizer/chat_template.h"

#include "core/check.h"
#include "tokenizer/jinja/interpreter.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/tokenizer.h"

namespace hyrax {

ChatTemplate::ChatTemplate(const std::string& source, nlohmann::ordered_json defaults)
    : source_(source),
      defaults_(std::move(defaults)),
      body_(std::make_shared<jinja::Body>(jinja::parse_template(source))) {
  HYRAX_REQUIRE(defaults_.is_object(), "chat template defaults must be a JSON object");
}

ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;
ChatTemplate::~ChatTemplate() = default;

ChatTemplate ChatTemplate::from_config(const TokenizerConfig& config, const std::string& name) {
  auto it = config.chat_templates.find(name);
  HYRAX_REQUIRE(it != config.chat_templates.end(), "the model has no chat template named \"", name, "\"",
                config.chat_templates.empty() ? " (tokenizer_config.json has no chat_template)" : "");
  nlohmann::ordered_json defaults = nlohmann::ordered_json::object();
  for (const auto& [key, value] : config.special_token_strings) defaults[key] = value;
  return ChatTemplate(it->second, std::move(defaults));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& tools,
                                 const nlohmann::ordered_json& extra_context) const {
  HYRAX_REQUIRE(messages.is_array(), "chat messages must be a JSON array");
  HYRAX_REQUIRE(tools.is_null() || tools.is_array(), "chat tools must be a JSON array or null");
  HYRAX_REQUIRE(extra_context.is_object(), "chat template extra context must be a JSON object");
  jinja::Object globals;
  jinja::add_global_functions(globals);
  for (auto it = defaults_.begin(); it != defaults_.end(); ++it) globals.set(it.key(), jinja::from_json(it.value()));
  globals.set("messages", jinja::from_json(messages));
  globals.set("tools", jinja::from_json(tools));
  globals.set("documents", jinja::Value::none());
  globals.set("add_generation_prompt", jinja::Value::boolean(add_generation_prompt));
  for (auto it = extra_context.begin(); it != extra_context.end(); ++it)
    globals.set(it.key(), jinja::from_json(it.value()));
  jinja::Interpreter interp(*body_, globals);
  return interp.render();
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& tools, const nlohmann::json& extra_context) const {
  auto convert = [](const nlohmann::json& j) { return nlohmann::ordered_json::parse(j.dump()); };
  return render(convert(messages), add_generation_prompt, convert(tools), convert(extra_context));
}

}  // namespace hyrax
