#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "base/bf16.h"
#include "base/error.h"
#include "base/fs.h"
#include "model/safetensors.h"

using nlohmann::json;
using r1::DType;
using r1::model::NamedTensor;
using r1::model::SafetensorsReader;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/r1_safetensors_XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return r1::fs::join(path, name); }
  std::vector<std::string> entries() const {
    std::vector<std::string> v;
    for (const auto& e : std::filesystem::directory_iterator(path))
      v.push_back(e.path().filename());
    return v;
  }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const r1::Error& e) {
    return e.what();
  }
  return "<no error>";
}

#define EXPECT_ERROR_HAS(expr, ...)                                                      \
  do {                                                                                   \
    std::string msg_ = error_of([&] { expr; });                                          \
    for (const std::string& s_ : std::initializer_list<std::string>{__VA_ARGS__})        \
      EXPECT_NE(msg_.find(s_), std::string::npos) << "want '" << s_ << "' in: " << msg_; \
  } while (0)

std::vector<float> ramp(size_t n, float scale, float offset = 0.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = offset + scale * std::sin(0.37f * float(i) + 0.1f) * float(i % 17 + 1);
  return v;
}

// A file written by hand: the header text as given, then `data`.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = char((n >> (8 * i)) & 0xff);
  r1::fs::write_file_atomic(path, out + header + data);
}

json read_header(const std::string& path, uint64_t* len = nullptr) {
  std::string bytes = r1::fs::read_file(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  if (len) *len = n;
  return json::parse(bytes.substr(8, n));
}

}  // namespace

TEST(Safetensors, WriteReadF32) {
  TempDir d;
  auto a = ramp(6 * 5, 0.5f), b = ramp(7, 3.0f, 1.0f);
  float s = 42.5f;
  std::string path = d / "model.safetensors";
  r1::model::save_safetensors(path,
                              {{"model.embed_tokens.weight", {6, 5}, a.data()},
                               {"model.norm.weight", {7}, b.data()},
                               {"scalar", {}, &s},
                               {"empty", {0, 3}, nullptr}},
                              DType::F32);

  // The layout the reference implementation reads: 8-byte aligned data, contiguous offsets in
  // the given order, metadata.
  uint64_t hlen = 0;
  json h = read_header(path, &hlen);
  EXPECT_EQ(hlen % 8, 0u);
  EXPECT_EQ(h["__metadata__"], json({{"format", "pt"}}));
  EXPECT_EQ(h["model.embed_tokens.weight"]["dtype"], "F32");
  EXPECT_EQ(h["model.embed_tokens.weight"]["shape"], json({6, 5}));
  EXPECT_EQ(h["model.embed_tokens.weight"]["data_offsets"], json({0, 120}));
  EXPECT_EQ(h["model.norm.weight"]["data_offsets"], json({120, 148}));
  EXPECT_EQ(h["scalar"]["data_offsets"], json({148, 152}));
  EXPECT_EQ(h["empty"]["data_offsets"], json({152, 152}));
  EXPECT_EQ(std::filesystem::file_size(path), 8 + hlen + 152);
  EXPECT_EQ(d.entries(), std::vector<std::string>{"model.safetensors"});  // no temp file left

  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"empty", "model.embed_tokens.weight",
                                                 "model.norm.weight", "scalar"}));
  EXPECT_TRUE(r.contains("model.norm.weight"));
  EXPECT_FALSE(r.contains("lm_head.weight"));
  const auto& info = r.info("model.embed_tokens.weight");
  EXPECT_EQ(info.dtype, DType::F32);
  EXPECT_EQ(info.shape, (std::vector<int64_t>{6, 5}));
  EXPECT_EQ(info.nbytes, 120u);
  EXPECT_EQ(info.file, path);

  std::vector<float> a2(a.size()), b2(b.size());
  float s2 = 0;
  r.read_f32("model.embed_tokens.weight", {6, 5}, a2.data());
  r.read_f32("model.norm.weight", {7}, b2.data());
  r.read_f32("scalar", {}, &s2);
  r.read_f32("empty", {0, 3}, nullptr);
  EXPECT_EQ(a2, a);
  EXPECT_EQ(b2, b);
  EXPECT_EQ(s2, 42.5f);
}

TEST(Safetensors, WriteReadBF16) {
  TempDir d;
  // Large enough for the parallel conversion paths; odd sizes so later tensors are only 2-aligned.
  auto big = ramp(3 * 40001, 2.0f);
  auto small = ramp(5, 100.0f);
  small[0] = 1.0f + 1.0f / 256;  // a tie: rounds to even (1.0)
  small[1] = -0.0f;
  std::string path = d / "bf16.safetensors";
  r1::model::save_safetensors(path, {{"small", {5}, small.data()}, {"big", {3, 40001}, big.data()}},
                              DType::BF16, {{"format", "pt"}, {"producer", "r1"}});
  json h = read_header(path);
  EXPECT_EQ(h["big"]["dtype"], "BF16");
  EXPECT_EQ(h["small"]["data_offsets"], json({0, 10}));
  EXPECT_EQ(h["big"]["data_offsets"], json({10, 10 + 2 * 3 * 40001}));
  EXPECT_EQ(h["__metadata__"]["producer"], "r1");

  SafetensorsReader r(path);
  EXPECT_EQ(r.info("big").dtype, DType::BF16);
  std::vector<float> big2(big.size()), small2(small.size());
  r.read_f32("big", {3, 40001}, big2.data());
  r.read_f32("small", {5}, small2.data());
  for (size_t i = 0; i < big.size(); ++i) {
    ASSERT_NEAR(big2[i], big[i], std::fabs(big[i]) / 256 + 1e-30f) << i;
    ASSERT_EQ(big2[i], r1::bf16_to_f32(r1::f32_to_bf16(big[i]))) << i;
  }
  EXPECT_EQ(small2[0], 1.0f);
  EXPECT_TRUE(std::signbit(small2[1]));
  for (size_t i = 2; i < small.size(); ++i)
    EXPECT_NEAR(small2[i], small[i], std::fabs(small[i]) / 256);
}

TEST(Safetensors, ReadsF16) {
  TempDir d;
  const uint16_t h[] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000};
  const float want[] = {1.0f, -2.0f, 0.5f, 65504.0f, std::ldexp(1.0f, -24), -0.0f};
  std::string data(reinterpret_cast<const char*>(h), sizeof(h));
  write_raw(d / "f16.safetensors", R"({"x":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}})",
            data);
  SafetensorsReader r(d / "f16.safetensors");
  EXPECT_EQ(r.info("x").dtype, DType::F16);
  float got[6];
  r.read_f32("x", {2, 3}, got);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[i], want[i]) << i;
  EXPECT_TRUE(std::signbit(got[5]));
}

TEST(Safetensors, ShardedIndexAndDirectory) {
  TempDir d;
  auto a = ramp(8, 1.0f), b = ramp(12, 2.0f), c = ramp(4, 3.0f);
  r1::model::save_safetensors(d / "model-00001-of-00002.safetensors",
                              {{"a", {8}, a.data()}, {"b", {3, 4}, b.data()}}, DType::F32);
  r1::model::save_safetensors(d / "model-00002-of-00002.safetensors", {{"c", {2, 2}, c.data()}},
                              DType::BF16);
  json idx = {{"metadata", {{"total_size", 8 * 4 + 12 * 4 + 4 * 2}}},
              {"weight_map",
               {{"a", "model-00001-of-00002.safetensors"},
                {"b", "model-00001-of-00002.safetensors"},
                {"c", "model-00002-of-00002.safetensors"}}}};
  r1::fs::write_file_atomic(d / "model.safetensors.index.json", idx.dump(2));
  // A directory with both prefers the index: this single file must be ignored.
  float z = 0;
  r1::model::save_safetensors(d / "model.safetensors", {{"zzz", {1}, &z}}, DType::F32);

  for (const std::string& p : {d / "model.safetensors.index.json", d.path}) {
    SCOPED_TRACE(p);
    SafetensorsReader r(p);
    EXPECT_EQ(r.names(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(r.info("a").file, d / "model-00001-of-00002.safetensors");
    EXPECT_EQ(r.info("c").file, d / "model-00002-of-00002.safetensors");
    std::vector<float> a2(8), b2(12), c2(4);
    r.read_f32("a", {8}, a2.data());
    r.read_f32("b", {3, 4}, b2.data());
    r.read_f32("c", {2, 2}, c2.data());
    EXPECT_EQ(a2, a);
    EXPECT_EQ(b2, b);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(c2[i], c[i], std::fabs(c[i]) / 256);
    EXPECT_ERROR_HAS(r.info("zzz"), "tensor 'zzz' not found", d.path.c_str());
  }

  // Without the index, the directory means model.safetensors.
  std::filesystem::remove(d / "model.safetensors.index.json");
  EXPECT_EQ(SafetensorsReader(d.path).names(), std::vector<std::string>{"zzz"});

  // An index naming a tensor its shard lacks.
  idx["weight_map"]["d"] = "model-00002-of-00002.safetensors";
  r1::fs::write_file_atomic(d / "model.safetensors.index.json", idx.dump());
  EXPECT_ERROR_HAS(SafetensorsReader(d.path), "tensor 'd' is listed in weight_map but not found",
                   "model-00002-of-00002.safetensors");
  // An index naming a missing shard.
  idx["weight_map"]["d"] = "model-00003-of-00002.safetensors";
  r1::fs::write_file_atomic(d / "model.safetensors.index.json", idx.dump());
  EXPECT_ERROR_HAS(SafetensorsReader(d.path), "model-00003-of-00002.safetensors");
  // An index without weight_map, and one that is not JSON.
  r1::fs::write_file_atomic(d / "model.safetensors.index.json", "{}");
  EXPECT_ERROR_HAS(SafetensorsReader(d.path), "model.safetensors.index.json", "weight_map");
  r1::fs::write_file_atomic(d / "model.safetensors.index.json", "{\"weight_map\": ");
  EXPECT_ERROR_HAS(SafetensorsReader(d.path), "model.safetensors.index.json", "invalid JSON");

  TempDir empty;
  EXPECT_ERROR_HAS(SafetensorsReader(empty.path), empty.path.c_str(),
                   "no model.safetensors.index.json or model.safetensors");
  EXPECT_ERROR_HAS(SafetensorsReader(empty / "nope.safetensors"), "nope.safetensors");
}

TEST(Safetensors, TruncatedFile) {
  TempDir d;
  auto a = ramp(16, 1.0f);
  std::string path = d / "model.safetensors";
  r1::model::save_safetensors(path, {{"w", {16}, a.data()}}, DType::F32);
  uint64_t hlen = 0;
  read_header(path, &hlen);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  std::string want = fmt::format(
      "{}: tensor 'w' data [{}, {}) extends past the end of the file (size {}): file truncated?",
      path, 8 + hlen, 8 + hlen + 64, 8 + hlen + 60);
  EXPECT_ERROR_HAS(SafetensorsReader r(path), want.c_str());
  // Cut inside the header, and below the 8 bytes of its length.
  std::filesystem::resize_file(path, 20);
  EXPECT_ERROR_HAS(SafetensorsReader r(path), path.c_str(), "header length",
                   "larger than the file");
  std::filesystem::resize_file(path, 3);
  EXPECT_ERROR_HAS(SafetensorsReader r(path), path.c_str(), "too short");
}

TEST(Safetensors, CorruptHeaders) {
  TempDir d;
  std::string p = d / "bad.safetensors";
  // Header length larger than the file.
  std::string bytes(8, '\0');
  bytes[0] = char(0xff);
  bytes[5] = char(0x01);
  r1::fs::write_file_atomic(p, bytes + "{}");
  EXPECT_ERROR_HAS(SafetensorsReader r(p), p.c_str(), "header length",
                   "larger than the file (size 10)");
  // Not JSON.
  write_raw(p, "{\"w\": {\"dtype\": \"F32\", garbage", "");
  EXPECT_ERROR_HAS(SafetensorsReader r(p), p.c_str(), "header is not valid JSON");
  write_raw(p, "[1, 2]", "");
  EXPECT_ERROR_HAS(SafetensorsReader r(p), p.c_str(), "JSON object");
  // Unsupported dtypes.
  write_raw(p, R"({"ids":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})",
            std::string(16, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), p.c_str(), "tensor 'ids'", "unsupported dtype 'I64'",
                   "F32, BF16, F16");
  write_raw(p, R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x'", "unsupported dtype 'F64'");
  // Missing fields.
  write_raw(p, R"({"x":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), p.c_str(), "tensor 'x' has no dtype");
  write_raw(p, R"({"x":{"dtype":"F32","data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x' has no shape");
  write_raw(p, R"({"x":{"dtype":"F32","shape":[1]}})", std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x' has no data_offsets");
  // Offsets that disagree with the shape, or are malformed.
  write_raw(p, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(8, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x'", "hold 4 bytes", "needs 8");
  write_raw(p, R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", std::string(8, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x'", "reversed");
  write_raw(p, R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x'", "non-negative");
  write_raw(p, R"({"x":{"dtype":"F32","shape":[1],"data_offsets":"0-4"}})", std::string(4, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x'", "data_offsets must be");
  // Offsets past the end, with a well-formed header.
  write_raw(p, R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", std::string(8, '\0'));
  EXPECT_ERROR_HAS(SafetensorsReader r(p), "tensor 'x' data", "extends past the end", "truncated?");
  // A header of valid tensors, padded with spaces, read fine; __metadata__ is not a tensor.
  write_raw(
      p,
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}   )",
      std::string("\0\0\x80\x3f", 4));
  SafetensorsReader r(p);
  EXPECT_EQ(r.names(), std::vector<std::string>{"x"});
  float x = 0;
  r.read_f32("x", {1}, &x);
  EXPECT_EQ(x, 1.0f);
}

TEST(Safetensors, ShapeAndNameErrors) {
  TempDir d;
  std::vector<float> w(64, 1.0f);
  std::string path = d / "model.safetensors";
  r1::model::save_safetensors(path, {{"model.norm.weight", {64}, w.data()}}, DType::BF16);
  SafetensorsReader r(path);
  std::vector<float> dst(64);
  EXPECT_ERROR_HAS(
      r.read_f32("model.norm.weight", {32}, dst.data()),
      (path + ": tensor 'model.norm.weight' has shape [64] but the model expects [32]").c_str());
  EXPECT_ERROR_HAS(r.read_f32("model.norm.weight", {8, 8}, dst.data()), "expects [8, 8]");
  EXPECT_ERROR_HAS(r.read_f32("lm_head.weight", {64}, dst.data()),
                   "tensor 'lm_head.weight' not found", path.c_str());
  EXPECT_ERROR_HAS(r.info("lm_head.weight"), "tensor 'lm_head.weight' not found");
}

TEST(Safetensors, WriteFailuresLeaveNoFile) {
  TempDir d;
  std::vector<float> w(4, 1.0f);
  // A directory that does not exist.
  std::string p = d / "missing/model.safetensors";
  EXPECT_ERROR_HAS(r1::model::save_safetensors(p, {{"w", {4}, w.data()}}, DType::F32),
                   "missing/model.safetensors");
  EXPECT_TRUE(d.entries().empty());
  // The target is a directory: the temporary file is written, the rename fails, it is removed.
  std::filesystem::create_directory(d / "model.safetensors");
  EXPECT_ERROR_HAS(
      r1::model::save_safetensors(d / "model.safetensors", {{"w", {4}, w.data()}}, DType::F32),
      "model.safetensors");
  EXPECT_EQ(d.entries(), std::vector<std::string>{"model.safetensors"});
  EXPECT_TRUE(std::filesystem::is_empty(d / "model.safetensors"));
  // An unwritable directory (root writes anywhere, so only checked for other users).
  if (geteuid() != 0) {
    std::filesystem::create_directory(d / "ro");
    chmod((d / "ro").c_str(), 0555);
    EXPECT_ERROR_HAS(
        r1::model::save_safetensors(d / "ro/m.safetensors", {{"w", {4}, w.data()}}, DType::F32),
        "ro/m.safetensors");
    EXPECT_TRUE(std::filesystem::is_empty(d / "ro"));
    chmod((d / "ro").c_str(), 0755);
  }
  // Bad input is refused before anything is written.
  std::string q = d / "q.safetensors";
  EXPECT_ERROR_HAS(
      r1::model::save_safetensors(q, {{"w", {4}, w.data()}, {"w", {4}, w.data()}}, DType::F32),
      "tensor 'w' given twice");
  EXPECT_ERROR_HAS(r1::model::save_safetensors(q, {{"w", {4}, nullptr}}, DType::F32),
                   "tensor 'w' has no data");
  EXPECT_ERROR_HAS(r1::model::save_safetensors(q, {{"w", {4}, w.data()}}, DType::F16),
                   "cannot save as");
  EXPECT_ERROR_HAS(r1::model::save_safetensors(q, {{"__metadata__", {4}, w.data()}}, DType::F32),
                   "invalid tensor name");
  EXPECT_FALSE(r1::fs::exists(q));
}

TEST(Safetensors, OverwriteIsAtomic) {
  TempDir d;
  std::vector<float> a(4, 1.0f), b(6, 2.0f);
  std::string p = d / "m.safetensors";
  r1::model::save_safetensors(p, {{"a", {4}, a.data()}}, DType::F32);
  r1::model::save_safetensors(p, {{"b", {6}, b.data()}}, DType::F32, {});
  SafetensorsReader r(p);
  EXPECT_EQ(r.names(), std::vector<std::string>{"b"});
  EXPECT_FALSE(read_header(p).contains("__metadata__"));
  EXPECT_EQ(d.entries(), std::vector<std::string>{"m.safetensors"});
}
