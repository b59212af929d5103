// The safetensors reader on good and broken files: every problem is a hyrax::Error naming the file and tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/check.h"
#include "io/safetensors.h"
#include "test_util.h"

using namespace hyrax;
using hyrax::io::TensorInfo;

namespace {

void write_raw(const std::string& path, const std::string& header, const std::vector<uint8_t>& data,
               int64_t header_len_override = -1) {
  std::ofstream out(path, std::ios::binary);
  const uint64_t len = header_len_override >= 0 ? uint64_t(header_len_override) : header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(header.data(), std::streamsize(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

// Expects opening `path` to fail with a message containing every string of `parts`.
void expect_error(const std::string& path, std::initializer_list<std::string> parts) {
  try {
    io::TensorStore::open(path);
    FAIL() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
}

}  // namespace

TEST(Safetensors, ReadsWhatItWrites) {
  test::TempDir dir;
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {f32_to_bf16(0.5f), f32_to_bf16(-2.0f)};
  std::vector<uint16_t> c = {f32_to_f16(0.25f)};
  io::write_safetensors(dir / "m.safetensors",
                        {TensorInfo{"a", DType::F32, {2, 3}, a.data(), 24, ""},
                         TensorInfo{"b", DType::BF16, {2}, b.data(), 4, ""},
                         TensorInfo{"c", DType::F16, {1, 1}, c.data(), 2, ""}});
  auto store = io::TensorStore::open(dir / "m.safetensors");
  const auto& ta = store.get("a", {2, 3});
  EXPECT_EQ(ta.dtype, DType::F32);
  EXPECT_EQ(std::memcmp(ta.data, a.data(), 24), 0);
  float out[2];
  to_f32(DType::BF16, store.get("b").data, out, 2);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], -2.0f);
  to_f32(DType::F16, store.get("c").data, out, 1);
  EXPECT_EQ(out[0], 0.25f);
  EXPECT_EQ(store.total_bytes(), 30u);
}

TEST(Safetensors, MissingFileOrFolder) {
  test::TempDir dir;
  expect_error(dir / "nope.safetensors", {"nope.safetensors", "no such file"});
  expect_error(dir.str(), {dir.str(), "no model.safetensors"});
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors", "{}", {}, 1 << 20);
  expect_error(dir / "m.safetensors", {"m.safetensors", "header length 1048576", "past the end"});
}

TEST(Safetensors, TooShortForAHeader) {
  test::TempDir dir;
  std::ofstream(dir / "m.safetensors") << "abc";
  expect_error(dir / "m.safetensors", {"m.safetensors", "truncated"});
}

TEST(Safetensors, MalformedHeaderJson) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors", "{\"a\": {\"dtype\": \"F32\", ", {});
  expect_error(dir / "m.safetensors", {"m.safetensors", "malformed header JSON"});
}

TEST(Safetensors, OffsetsOutOfRange) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors", R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
            std::vector<uint8_t>(16));
  expect_error(dir / "m.safetensors", {"m.safetensors", "tensor w", "[8, 24)", "past the end"});
}

TEST(Safetensors, TruncatedFile) {
  test::TempDir dir;
  std::vector<float> a(100, 1.0f);
  io::write_safetensors(dir / "m.safetensors", {TensorInfo{"big", DType::F32, {100}, a.data(), 400, ""}});
  std::filesystem::resize_file(dir / "m.safetensors", std::filesystem::file_size(dir / "m.safetensors") - 10);
  expect_error(dir / "m.safetensors", {"m.safetensors", "tensor big", "truncated"});
}

TEST(Safetensors, OverlappingTensors) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors",
            R"({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
            R"( "y": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
            std::vector<uint8_t>(16));
  expect_error(dir / "m.safetensors", {"m.safetensors", "x", "y", "overlap"});
}

TEST(Safetensors, UnknownDtype) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors", R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})",
            std::vector<uint8_t>(16));
  expect_error(dir / "m.safetensors", {"m.safetensors", "tensor ids", "unsupported dtype I64"});
}

TEST(Safetensors, SpanDisagreesWithShape) {
  test::TempDir dir;
  write_raw(dir / "m.safetensors", R"({"w": {"dtype": "BF16", "shape": [3, 3], "data_offsets": [0, 16]}})",
            std::vector<uint8_t>(16));
  expect_error(dir / "m.safetensors", {"m.safetensors", "tensor w", "16 bytes", "needs 18"});
}

TEST(Safetensors, MissingTensorAndWrongShapeNameFileAndTensor) {
  test::TempDir dir;
  std::vector<float> a(6, 1.0f);
  io::write_safetensors(dir / "model.safetensors", {TensorInfo{"a", DType::F32, {2, 3}, a.data(), 24, ""}});
  auto store = io::TensorStore::open(dir.str());
  try {
    store.get("b");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor b"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  try {
    store.get("a", {3, 2});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor a has shape [2, 3], expected [3, 2]"), std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, ShardedIndexPointingAtAMissingShard) {
  test::TempDir dir;
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors"}})";
  expect_error(dir.str(), {"model-00001-of-00002.safetensors", "no such file"});
}

TEST(Safetensors, ShardedIndexNamingATensorItsShardLacks) {
  test::TempDir dir;
  std::vector<float> a(2, 1.0f);
  io::write_safetensors(dir / "s1.safetensors", {TensorInfo{"a", DType::F32, {2}, a.data(), 8, ""}});
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})";
  expect_error(dir.str(), {"model.safetensors.index.json", "tensor b", "s1.safetensors"});
}
