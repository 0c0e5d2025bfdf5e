#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "base/bf16.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/progress.h"

namespace r1::model {

using nlohmann::json;

namespace {

// The reference implementation refuses headers over 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100'000'000;
constexpr int64_t kParallelMin = 1 << 16;  // elements; smaller tensors convert on one thread
constexpr int64_t kWriteChunk = 1 << 24;   // elements drawn and written at a time (64 MiB in f32)
constexpr int64_t kProgressMinBytes = int64_t(1) << 30;  // smaller saves are quick: no progress line

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::BF16:
      return "BF16";
    case DType::F16:
      return "F16";
    case DType::I32:
      return "I32";
  }
  return "?";
}

bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string dirname_of(const std::string& p) {
  size_t s = p.find_last_of('/');
  if (s == std::string::npos) return "";
  return s == 0 ? "/" : p.substr(0, s);
}

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

// One mapped .safetensors file.
struct SafetensorsReader::Mapping {
  std::string path;
  const uint8_t* base = nullptr;
  size_t size = 0;

  explicit Mapping(std::string p) : path(std::move(p)) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    R1_CHECK(fd >= 0, "cannot open {}: {}", path, std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int e = errno;
      ::close(fd);
      fail("cannot stat {}: {}", path, std::strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail("{}: is a directory, not a .safetensors file", path);
    }
    size = size_t(st.st_size);
    if (size < 8) {
      ::close(fd);
      fail("{}: file is {} bytes, too short to be a safetensors file (at least 8)", path, size);
    }
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    R1_CHECK(m != MAP_FAILED, "cannot mmap {}: {}", path, std::strerror(e));
    base = static_cast<const uint8_t*>(m);
  }
  ~Mapping() {
    if (base) ::munmap(const_cast<uint8_t*>(base), size);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  // Parses and validates the header; every tensor's data lies inside the file.
  std::map<std::string, TensorInfo> parse() const {
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= uint64_t(base[i]) << (8 * i);
    R1_CHECK(n <= size - 8,
             "{}: header length {} is larger than the file (size {}): not a safetensors file, or "
             "truncated?",
             path, n, size);
    R1_CHECK(n <= kMaxHeader, "{}: header length {} exceeds the limit of {} bytes", path, n,
             kMaxHeader);
    json h;
    try {
      h = json::parse(reinterpret_cast<const char*>(base) + 8,
                      reinterpret_cast<const char*>(base) + 8 + n);
    } catch (const json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
      fail("{}: header is not valid JSON: {}", path, e.what());
    }
    R1_CHECK(h.is_object(), "{}: header must be a JSON object", path);
    const uint64_t data_start = 8 + n;
    std::map<std::string, TensorInfo> out;
    for (auto it = h.begin(); it != h.end(); ++it) {
      const std::string& name = it.key();
      const json& e = it.value();
      if (name == "__metadata__") {
        R1_CHECK(e.is_object() || e.is_null(), "{}: __metadata__ must be an object", path);
        continue;
      }
      R1_CHECK(e.is_object(), "{}: header entry for tensor '{}' must be an object", path, name);
      auto dt = e.find("dtype");
      R1_CHECK(dt != e.end(), "{}: tensor '{}' has no dtype", path, name);
      R1_CHECK(dt->is_string(), "{}: tensor '{}': dtype must be a string", path, name);
      auto sh = e.find("shape");
      R1_CHECK(sh != e.end(), "{}: tensor '{}' has no shape", path, name);
      auto off = e.find("data_offsets");
      R1_CHECK(off != e.end(), "{}: tensor '{}' has no data_offsets", path, name);

      TensorInfo t;
      t.name = name;
      t.file = path;
      const std::string d = dt->get<std::string>();
      if (d == "F32") {
        t.dtype = DType::F32;
      } else if (d == "BF16") {
        t.dtype = DType::BF16;
      } else if (d == "F16") {
        t.dtype = DType::F16;
      } else {
        fail("{}: tensor '{}' has unsupported dtype '{}' (supported: F32, BF16, F16)", path, name,
             d);
      }

      R1_CHECK(sh->is_array(), "{}: tensor '{}': shape must be an array of integers", path, name);
      uint64_t numel = 1;
      for (const json& s : *sh) {
        R1_CHECK(s.is_number_unsigned() || (s.is_number_integer() && s.get<int64_t>() >= 0),
                 "{}: tensor '{}': shape {} must hold non-negative integers", path, name,
                 sh->dump());
        uint64_t v = s.get<uint64_t>();
        R1_CHECK(v <= uint64_t(INT64_MAX) && !__builtin_mul_overflow(numel, v, &numel),
                 "{}: tensor '{}': shape {} is too large", path, name, sh->dump());
        t.shape.push_back(int64_t(v));
      }
      uint64_t need = 0;
      R1_CHECK(!__builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &need),
               "{}: tensor '{}': shape {} is too large", path, name, sh->dump());

      R1_CHECK(off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
                   (*off)[1].is_number_unsigned(),
               "{}: tensor '{}': data_offsets must be [begin, end] (got {})", path, name,
               off->dump());
      const uint64_t b = (*off)[0].get<uint64_t>(), en = (*off)[1].get<uint64_t>();
      R1_CHECK(b <= en, "{}: tensor '{}': data_offsets [{}, {}) are reversed", path, name, b, en);
      R1_CHECK(en - b == need,
               "{}: tensor '{}': data_offsets [{}, {}) hold {} bytes but shape {} of {} needs {}",
               path, name, b, en, en - b, shape_str(t.shape), d, need);
      R1_CHECK(en <= size - data_start,
               "{}: tensor '{}' data [{}, {}) extends past the end of the file (size {}): file "
               "truncated?",
               path, name, data_start + b, data_start + en, size);
      t.data = base + data_start + b;
      t.nbytes = size_t(need);
      out.emplace(name, std::move(t));
    }
    return out;
  }
};

SafetensorsReader::SafetensorsReader(const std::string& path) {
  std::string p = path;
  if (is_dir(p)) {
    std::string idx = fs::join(p, "model.safetensors.index.json");
    std::string single = fs::join(p, "model.safetensors");
    if (fs::exists(idx)) {
      p = idx;
    } else if (fs::exists(single)) {
      p = single;
    } else {
      fail("{}: no model.safetensors.index.json or model.safetensors in this directory", path);
    }
  }
  if (!ends_with(p, ".json")) {
    files_.push_back(std::make_unique<Mapping>(p));
    tensors_ = files_.back()->parse();
    return;
  }

  // A sharded checkpoint: {"weight_map": {tensor: shard file}}; each shard is mapped once.
  json idx;
  try {
    idx = json::parse(fs::read_file(p));
  } catch (const json::exception& e) {  // a parse error, or out_of_range for a number like 1e999
    fail("{}: invalid JSON: {}", p, e.what());
  }
  R1_CHECK(idx.is_object(), "{}: index must be a JSON object", p);
  auto wm = idx.find("weight_map");
  R1_CHECK(wm != idx.end() && wm->is_object(), "{}: missing key 'weight_map' (an object)", p);
  const std::string dir = dirname_of(p);
  std::map<std::string, std::map<std::string, TensorInfo>> shards;  // shard name -> its tensors
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    R1_CHECK(it.value().is_string(), "{}: weight_map entry for tensor '{}' must be a file name", p,
             it.key());
    const std::string shard = it.value().get<std::string>();
    R1_CHECK(!shard.empty() && shard.find('/') == std::string::npos,
             "{}: weight_map entry for tensor '{}' names '{}', not a file beside the index", p,
             it.key(), shard);
    auto s = shards.find(shard);
    if (s == shards.end()) {
      files_.push_back(std::make_unique<Mapping>(fs::join(dir, shard)));
      s = shards.emplace(shard, files_.back()->parse()).first;
    }
    auto t = s->second.find(it.key());
    R1_CHECK(t != s->second.end(), "{}: tensor '{}' is listed in weight_map but not found in {}", p,
             it.key(), fs::join(dir, shard));
    tensors_.emplace(it.key(), t->second);
  }
}

SafetensorsReader::~SafetensorsReader() = default;

bool SafetensorsReader::contains(const std::string& name) const { return tensors_.count(name) > 0; }

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it != tensors_.end()) return it->second;
  std::string where;
  if (files_.size() == 1) {
    where = files_[0]->path;
  } else if (files_.empty()) {
    where = "an empty checkpoint";
  } else {
    where = fmt::format("the {} shards in {}", files_.size(), dirname_of(files_[0]->path));
  }
  fail("tensor '{}' not found in {} ({} tensors)", name, where, tensors_.size());
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> v;
  v.reserve(tensors_.size());
  for (const auto& [n, t] : tensors_) v.push_back(n);
  return v;
}

void SafetensorsReader::read_f32(const std::string& name,
                                 const std::vector<int64_t>& expected_shape, float* dst) const {
  const TensorInfo& t = info(name);
  read_f32(name, expected_shape, 0, int64_t(t.nbytes / dtype_size(t.dtype)), dst);
}

void SafetensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                                 int64_t begin, int64_t count, float* dst) const {
  const TensorInfo& t = info(name);
  R1_CHECK(t.shape == expected_shape, "{}: tensor '{}' has shape {} but the model expects {}",
           t.file, name, shape_str(t.shape), shape_str(expected_shape));
  const int64_t n = int64_t(t.nbytes / dtype_size(t.dtype));
  R1_CHECK(begin >= 0 && count >= 0 && begin + count <= n, "{}: tensor '{}': elements [{}, {}) outside its {}",
           t.file, name, begin, begin + count, n);
  if (count == 0) return;
  R1_CHECK(dst != nullptr, "{}: tensor '{}': null destination", t.file, name);
  const uint8_t* src = static_cast<const uint8_t*>(t.data) + size_t(begin) * dtype_size(t.dtype);
  if (t.dtype == DType::F32) {
    std::memcpy(dst, src, size_t(count) * sizeof(float));
    return;
  }
  const bool bf16 = t.dtype == DType::BF16;
#pragma omp parallel for schedule(static) if (count >= kParallelMin)
  for (int64_t i = 0; i < count; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);  // the data may be unaligned
    dst[i] = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
}

void save_safetensors(const std::string& path, const std::vector<TensorLayout>& tensors, DType dtype,
                      const TensorSource& source, bool progress,
                      const std::map<std::string, std::string>& metadata) {
  R1_CHECK(dtype == DType::F32 || dtype == DType::BF16,
           "{}: cannot save as {} (supported: F32, BF16)", path, dtype_name(dtype));
  const size_t esize = dtype_size(dtype);
  // Validate everything before writing anything.
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  std::set<std::string> seen;
  std::vector<int64_t> numels;
  uint64_t offset = 0;
  for (const TensorLayout& t : tensors) {
    R1_CHECK(!t.name.empty() && t.name != "__metadata__", "{}: invalid tensor name '{}'", path,
             t.name);
    R1_CHECK(seen.insert(t.name).second, "{}: tensor '{}' given twice", path, t.name);
    uint64_t numel = 1;
    for (int64_t s : t.shape) {
      R1_CHECK(s >= 0, "{}: tensor '{}' has a negative dimension in shape {}", path, t.name,
               shape_str(t.shape));
      numel *= uint64_t(s);
    }
    numels.push_back(int64_t(numel));
    const uint64_t bytes = numel * esize;
    h[t.name] = {{"dtype", st_dtype_name(dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  std::string prefix(8, '\0');
  const uint64_t hn = header.size();
  for (int i = 0; i < 8; ++i) prefix[size_t(i)] = char((hn >> (8 * i)) & 0xff);

  fs::AtomicFile out(path);
  out.write(prefix + header);
  // Chunk by chunk, so the file never has to fit in memory.
  const int64_t total_mib = int64_t((offset + (1 << 20) - 1) >> 20);
  std::optional<Progress> bar;
  if (progress) bar.emplace("writing " + path, total_mib, "MiB");
  uint64_t written = 0;
  int64_t largest = 0;
  for (int64_t n : numels) largest = std::max(largest, n);
  std::vector<float> chunk(size_t(std::min(kWriteChunk, largest)));
  std::vector<uint16_t> half(dtype == DType::BF16 ? chunk.size() : 0);
  for (size_t k = 0; k < tensors.size(); ++k) {
    for (int64_t begin = 0; begin < numels[k]; begin += kWriteChunk) {
      const int64_t n = std::min<int64_t>(kWriteChunk, numels[k] - begin);
      source(k, begin, n, chunk.data());
      if (dtype == DType::F32) {
        out.write({reinterpret_cast<const char*>(chunk.data()), size_t(n) * 4});
      } else {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
        for (int64_t i = 0; i < n; ++i) half[size_t(i)] = f32_to_bf16(chunk[size_t(i)]);
        out.write({reinterpret_cast<const char*>(half.data()), size_t(n) * 2});
      }
      if (bar) {
        const uint64_t before = written >> 20;
        written += uint64_t(n) * esize;
        bar->update(int64_t((written >> 20) - before));
      }
    }
  }
  if (bar) bar->update(total_mib - int64_t(written >> 20), "flushing to disk");
  out.commit();
}

void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, DType dtype,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorLayout> layout;
  int64_t total = 0;
  for (const NamedTensor& t : tensors) {
    layout.push_back({t.name, t.shape});
    int64_t numel = 1;
    for (int64_t s : t.shape) numel *= s;
    R1_CHECK(numel <= 0 || t.data != nullptr, "{}: tensor '{}' has no data", path, t.name);
    total += std::max<int64_t>(numel, 0);
  }
  auto copy = [&](size_t k, int64_t begin, int64_t n, float* dst) {
    std::memcpy(dst, tensors[k].data + begin, size_t(n) * sizeof(float));
  };
  save_safetensors(path, layout, dtype, copy, total * int64_t(dtype_size(dtype)) >= kProgressMinBytes,
                   metadata);
}

}  // namespace r1::model
