// Loading broken model folders: each problem is one clear hyrax::Error naming the file and the field or tensor.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/check.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "test_util.h"

using namespace hyrax;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// A copy of a fixture's model folder that a test may break.
struct Folder {
  test::TempDir tmp;
  std::string dir;
  explicit Folder(const std::string& fixture = "nope_mha_f32") {
    dir = tmp / "model";
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(test::fixture_dir(fixture)))
      if (e.is_regular_file()) fs::copy_file(e.path(), fs::path(dir) / e.path().filename());
  }
  json config() const { return test::read_json(dir + "/config.json"); }
  void set_config(const json& j) const { std::ofstream(dir + "/config.json") << j.dump(2); }
};

void expect_load_error(const std::string& dir, std::initializer_list<std::string> parts) {
  auto be = make_cpu_backend();
  try {
    load_model(dir, *be);
    FAIL() << "no error loading " << dir;
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// Rewrites model.safetensors through `edit`, which may drop or replace tensors.
void rewrite_weights(const std::string& dir,
                     const std::function<void(std::vector<io::TensorInfo>&, std::vector<std::vector<float>>&)>& edit) {
  std::vector<io::TensorInfo> infos;
  std::vector<std::vector<float>> keep;
  {
    auto store = io::TensorStore::open(dir);
    for (const auto& name : store.names()) {
      const auto& t = store.get(name);
      keep.emplace_back(size_t(t.numel()));
      to_f32(t.dtype, t.data, keep.back().data(), keep.back().size());
      io::TensorInfo c = t;
      c.dtype = DType::F32;
      c.nbytes = size_t(t.numel()) * 4;
      infos.push_back(c);
    }
  }
  edit(infos, keep);
  for (size_t i = 0; i < infos.size(); ++i) infos[i].data = keep[i].data();
  io::write_safetensors(dir + "/model.safetensors", infos);
}

}  // namespace

TEST(ModelFolder, LoadsEveryFixture) {
  for (const char* f : {"nope_mha_f32", "rope_gqa_tied_f32", "legacy_rope_bf16", "nope_gqa_headdim_bf16"}) {
    auto be = make_cpu_backend();
    auto m = load_model(test::fixture_dir(f), *be);
    EXPECT_EQ(m->info().architecture, "olmo_hybrid") << f;
    EXPECT_EQ(m->info().eos_token_ids, std::vector<int32_t>{1}) << f;
  }
}

TEST(ModelFolder, MissingFolderAndFiles) {
  test::TempDir tmp;
  expect_load_error(tmp / "absent", {"absent", "no such model folder"});
  expect_load_error(tmp.str(), {"config.json", "no such file"});
  Folder f;
  fs::remove(f.dir + "/model.safetensors");
  expect_load_error(f.dir, {f.dir, "no model.safetensors"});
}

TEST(ModelFolder, ConfigMissingARequiredField) {
  Folder f;
  auto j = f.config();
  j.erase("hidden_size");
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "field hidden_size", "missing"});
}

TEST(ModelFolder, ConfigFieldOfTheWrongType) {
  Folder f;
  auto j = f.config();
  j["num_hidden_layers"] = "eight";
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "field num_hidden_layers", "integer"});
}

TEST(ModelFolder, MalformedConfigJson) {
  Folder f;
  std::ofstream(f.dir + "/config.json") << "{\"model_type\": \"olmo_hybrid\",";
  expect_load_error(f.dir, {"config.json", "malformed JSON"});
}

TEST(ModelFolder, UnknownModelType) {
  Folder f;
  auto j = f.config();
  j["model_type"] = "llama";
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "field model_type", "llama", "olmo_hybrid"});
}

TEST(ModelFolder, LayerTypesLengthContradictsLayerCount) {
  Folder f;
  auto j = f.config();
  j["layer_types"].erase(0);
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "field layer_types", "7 entries", "num_hidden_layers is 8"});
}

TEST(ModelFolder, HeadsNotDividingHiddenSize) {
  Folder f;
  auto j = f.config();
  j["num_attention_heads"] = 5;
  j["num_key_value_heads"] = 5;
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "num_attention_heads", "does not divide hidden_size"});
}

TEST(ModelFolder, ValueHeadsNotAMultipleOfKeyHeads) {
  Folder f;
  auto j = f.config();
  j["linear_num_key_heads"] = 3;
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "linear_num_value_heads", "not a multiple of linear_num_key_heads"});
}

TEST(ModelFolder, KvHeadsNotDividingHeads) {
  Folder f;
  auto j = f.config();
  j["num_key_value_heads"] = 3;
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "num_key_value_heads", "does not divide"});
}

TEST(ModelFolder, UnsupportedRopeType) {
  Folder f;
  auto j = f.config();
  j["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0}};
  f.set_config(j);
  expect_load_error(f.dir, {"config.json", "rope_parameters", "yarn"});
}

TEST(ModelFolder, MissingTensor) {
  Folder f;
  rewrite_weights(f.dir, [](auto& infos, auto& data) {
    for (size_t i = 0; i < infos.size(); ++i)
      if (infos[i].name == "model.layers.2.linear_attn.b_proj.weight") {
        infos.erase(infos.begin() + int64_t(i));
        data.erase(data.begin() + int64_t(i));
        break;
      }
  });
  expect_load_error(f.dir, {"model.safetensors", "missing tensor model.layers.2.linear_attn.b_proj.weight"});
}

TEST(ModelFolder, WrongShape) {
  Folder f;
  rewrite_weights(f.dir, [](auto& infos, auto& data) {
    for (size_t i = 0; i < infos.size(); ++i)
      if (infos[i].name == "model.layers.3.self_attn.q_proj.weight") {
        infos[i].shape = {32, 128};  // same element count, wrong shape
      }
  });
  expect_load_error(f.dir,
                    {"model.safetensors", "model.layers.3.self_attn.q_proj.weight", "[32, 128]", "expected [64, 64]"});
}

TEST(ModelFolder, SplitConvWeightsWithTheWrongTotal) {
  Folder f;
  rewrite_weights(f.dir, [](auto& infos, auto& data) {
    for (size_t i = 0; i < infos.size(); ++i)
      if (infos[i].name == "model.layers.0.linear_attn.v_conv1d.weight") {
        infos[i].shape = {infos[i].shape[0] - 1, 1, 4};
        data[i].resize(data[i].size() - 4);
        infos[i].nbytes -= 16;
      }
  });
  expect_load_error(f.dir, {"model.layers.0.", "conv1d", "channels", "expected"});
}

TEST(ModelFolder, DummyWeightsAtAnyShape) {
  test::TempDir tmp;
  auto j = test::read_json(test::fixture_dir("nope_gqa_headdim_bf16") + "/config.json");
  std::ofstream(tmp / "config.json") << j.dump();
  auto be = make_cpu_backend();
  auto m = load_model_dummy(tmp / "config.json", *be, 7);
  EXPECT_EQ(m->info().layer_pattern, "ALLAL");
  EXPECT_GT(m->info().n_params, 0);
}
