#include "cli/common.h"

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"

namespace hyrax::cli {

namespace fs = std::filesystem;

void add_model_options(CLI::App& app, ModelOptions& opt) {
  app.add_option("--model,-m", opt.model_dir, "Hugging Face model folder (default: the bundled demo model)");
  app.add_option("--device", opt.device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
}

std::unique_ptr<Backend> make_backend(const ModelOptions& opt) {
  if (opt.device == "cpu") return make_cpu_backend();
#ifdef HYRAX_HAS_CUDA
  if (opt.device == "cuda") return make_cuda_backend(opt.cuda);
#endif
  fail("--device ", opt.device, ": this build of hyrax has no CUDA backend");
}

static fs::path executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return fs::current_path();
  buf[n] = 0;
  return fs::path(buf).parent_path();
}

std::string resolve_model_dir(const std::string& model_dir) {
  if (!model_dir.empty()) return model_dir;
  // The bundled demo model lives in models/ at the top of the source tree; the binary sits in build/.
  for (const fs::path& root : {executable_dir().parent_path(), fs::current_path()}) {
    const fs::path p = root / "models" / "kjv-hybrid";
    if (fs::exists(p / "config.json")) return p.string();
  }
  fail("no --model given and the bundled demo model (models/kjv-hybrid) was not found");
}

std::unique_ptr<Engine> open_engine(const ModelOptions& opt, const EngineConfig& cfg) {
  auto backend = make_backend(opt);
  auto model = load_model(resolve_model_dir(opt.model_dir), *backend);
  return std::make_unique<Engine>(std::move(backend), std::move(model), cfg);
}

std::vector<int32_t> parse_ids(const std::string& text, const std::string& what) {
  std::vector<int32_t> ids;
  std::istringstream in(text);
  std::string word;
  while (in >> word) {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(word.c_str(), &end, 10);
    HYRAX_REQUIRE(end && *end == 0 && errno == 0 && v >= INT32_MIN && v <= INT32_MAX, what, ": \"", word,
                  "\" is not a token id (whitespace-separated integers expected)");
    ids.push_back(int32_t(v));
  }
  return ids;
}

std::vector<int32_t> read_ids_file(const std::string& path) {
  HYRAX_REQUIRE(fs::exists(path), path, ": no such file");
  std::ifstream in(path);
  HYRAX_REQUIRE(in.good(), path, ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_ids(ss.str(), path);
}

}  // namespace hyrax::cli
