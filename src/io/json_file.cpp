#include "io/json_file.h"

#include <filesystem>
#include <fstream>

#include "core/check.h"

namespace hyrax::io {

JsonFile JsonFile::load(const std::string& path) {
  HYRAX_REQUIRE(std::filesystem::exists(path), path, ": no such file");
  std::ifstream in(path);
  HYRAX_REQUIRE(in.good(), path, ": cannot read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": malformed JSON: ", e.what());
  }
  HYRAX_REQUIRE(j.is_object(), path, ": expected a JSON object at the top level");
  return JsonFile(path, std::move(j));
}

bool JsonFile::has(const std::string& key) const { return j_.contains(key) && !j_[key].is_null(); }

void JsonFile::field_error(const std::string& key, const std::string& what) const {
  fail(path_, ": field ", key, " ", what);
}

const nlohmann::json& JsonFile::at(const std::string& key) const {
  if (!has(key)) field_error(key, "is missing");
  return j_[key];
}

int64_t JsonFile::get_int(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_number_integer()) field_error(key, "must be an integer, found " + v.dump());
  return v.get<int64_t>();
}

int64_t JsonFile::get_int(const std::string& key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }

double JsonFile::get_number(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_number()) field_error(key, "must be a number, found " + v.dump());
  return v.get<double>();
}

double JsonFile::get_number(const std::string& key, double fallback) const {
  return has(key) ? get_number(key) : fallback;
}

bool JsonFile::get_bool(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const auto& v = j_[key];
  if (!v.is_boolean()) field_error(key, "must be true or false, found " + v.dump());
  return v.get<bool>();
}

std::string JsonFile::get_string(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_string()) field_error(key, "must be a string, found " + v.dump());
  return v.get<std::string>();
}

std::string JsonFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

std::vector<std::string> JsonFile::get_strings(const std::string& key) const {
  const auto& v = at(key);
  if (!v.is_array()) field_error(key, "must be a list of strings");
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) field_error(key, "must be a list of strings, found " + e.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<int64_t> JsonFile::get_int_list(const std::string& key) const {
  std::vector<int64_t> out;
  if (!has(key)) return out;
  const auto& v = j_[key];
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_number_integer()) field_error(key, "must be an integer or a list of integers");
      out.push_back(e.get<int64_t>());
    }
  } else {
    field_error(key, "must be an integer or a list of integers, found " + v.dump());
  }
  return out;
}

}  // namespace hyrax::io
