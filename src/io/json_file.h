// JSON files of a model folder (config.json, generation_config.json, ...) with field access whose errors name the
// file and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace hyrax::io {

class JsonFile {
 public:
  /// Parses `path`; a missing file or malformed JSON is a hyrax::Error naming the file.
  static JsonFile load(const std::string& path);
  JsonFile(std::string path, nlohmann::json j) : path_(std::move(path)), j_(std::move(j)) {}

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }
  /// True when the field is present and not null.
  bool has(const std::string& key) const;

  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_number(const std::string& key) const;
  double get_number(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  /// An int or a list of ints (eos_token_id's two spellings); empty when absent or null.
  std::vector<int64_t> get_int_list(const std::string& key) const;

  /// "PATH: field KEY ..." error.
  [[noreturn]] void field_error(const std::string& key, const std::string& what) const;

 private:
  const nlohmann::json& at(const std::string& key) const;
  std::string path_;
  nlohmann::json j_;
};

}  // namespace hyrax::io
