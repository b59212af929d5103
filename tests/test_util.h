// Helpers shared by the C++ tests: fixture paths, reading reference files, temporary folders.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace hyrax::test {

/// The source tree: where this binary was built from, or (a build carried to another machine) the working directory.
inline std::string source_dir() {
  const std::string built = HYRAX_SOURCE_DIR;
  if (std::filesystem::exists(built + "/tests/fixtures")) return built;
  return std::filesystem::current_path().string();
}
inline std::string fixture_dir(const std::string& name) { return source_dir() + "/tests/fixtures/" + name; }

inline nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

inline std::vector<float> read_f32(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  const auto n = size_t(in.tellg()) / sizeof(float);
  std::vector<float> v(n);
  in.seekg(0);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(float)));
  return v;
}

/// A fresh empty folder under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("hyrax-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& f) const { return (path_ / f).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace hyrax::test
