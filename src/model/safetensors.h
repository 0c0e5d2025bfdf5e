#pragma once
// Safetensors checkpoints: read (mmap; F32, BF16, F16 converted to f32; sharded via
// model.safetensors.index.json) and write (F32 or BF16, written atomically).
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace r1::model {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // into the mapped file
  size_t nbytes = 0;
  std::string file;            // which file holds it (for error messages)
};

// One or more mapped .safetensors files seen as one name -> tensor table.
class SafetensorsReader {
 public:
  // `path` is a .safetensors file, a model.safetensors.index.json, or a directory holding either.
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // error names the tensor and the file
  std::vector<std::string> names() const;
  // Copies tensor `name` into dst (f32), converting from its stored dtype. Errors if the shape
  // differs from `expected_shape`, naming the tensor, the file and both shapes.
  void read_f32(const std::string& name, const std::vector<int64_t>& expected_shape, float* dst) const;
  // Elements [begin, begin + count) of it (in its row-major order) into dst: a rank's part of a
  // tensor, read without the rest.
  void read_f32(const std::string& name, const std::vector<int64_t>& expected_shape, int64_t begin, int64_t count,
                float* dst) const;

 private:
  struct Mapping;
  std::vector<std::unique_ptr<Mapping>> files_;
  std::map<std::string, TensorInfo> tensors_;
};

struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;  // f32 source
};

// Writes tensors to one .safetensors file as `dtype` (F32 or BF16), with optional string metadata
// (e.g. {"format": "pt"}), via a temporary file renamed into place. A progress line for 1 GiB and up.
void save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors, DType dtype,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

struct TensorLayout {
  std::string name;
  std::vector<int64_t> shape;
};
// Puts elements [begin, begin + count) of tensor k, in f32, into dst.
using TensorSource = std::function<void(size_t k, int64_t begin, int64_t count, float* dst)>;
// The same file, with the data asked from `source` a chunk at a time, so weights that were never
// in memory as a whole (a random model drawn as it is written) stream to disk; `progress` shows
// a progress line with ETA.
void save_safetensors(const std::string& path, const std::vector<TensorLayout>& tensors, DType dtype,
                      const TensorSource& source, bool progress,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace r1::model
