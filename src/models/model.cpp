#include "models/model.h"

#include <filesystem>
#include <map>

#include "core/check.h"
#include "models/weight_reader.h"

namespace hyrax {

namespace fs = std::filesystem;

// The architectures hyrax runs, by config.json model_type. Adding a model adds one line here.
std::unique_ptr<Model> make_olmo_hybrid(const ModelSource&, std::shared_ptr<WeightReader>, Backend&);

static const std::map<std::string, ModelFactory>& registry() {
  static const std::map<std::string, ModelFactory> r = {
      {"olmo_hybrid", make_olmo_hybrid},
  };
  return r;
}

std::vector<std::string> registered_models() {
  std::vector<std::string> out;
  for (const auto& kv : registry()) out.push_back(kv.first);
  return out;
}

static const ModelFactory& factory_for(const io::JsonFile& config) {
  const std::string type = config.get_string("model_type");
  auto it = registry().find(type);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : registered_models()) known += (known.empty() ? "" : ", ") + n;
    config.field_error("model_type", "is \"" + type + "\", which hyrax does not support (supported: " + known + ")");
  }
  return it->second;
}

static io::JsonFile generation_config_of(const fs::path& dir) {
  const fs::path p = dir / "generation_config.json";
  if (fs::exists(p)) return io::JsonFile::load(p.string());
  return io::JsonFile(p.string(), nlohmann::json::object());
}

std::unique_ptr<Model> load_model(const std::string& dir, Backend& be) {
  HYRAX_REQUIRE(fs::exists(dir), dir, ": no such model folder");
  HYRAX_REQUIRE(fs::is_directory(dir), dir, ": not a folder (expected a model folder with config.json)");
  ModelSource src{io::JsonFile::load((fs::path(dir) / "config.json").string()), generation_config_of(dir)};
  const ModelFactory& make = factory_for(src.config);
  return make(src, std::make_shared<WeightReader>(io::TensorStore::open(dir), be), be);
}

std::unique_ptr<Model> load_model_dummy(const std::string& config_path, Backend& be, uint64_t seed) {
  ModelSource src{io::JsonFile::load(config_path), generation_config_of(fs::path(config_path).parent_path())};
  const ModelFactory& make = factory_for(src.config);
  return make(src, std::make_shared<WeightReader>(seed, be), be);
}

}  // namespace hyrax
