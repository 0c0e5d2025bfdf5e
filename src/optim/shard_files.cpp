// Level full's checkpoint files, written by every rank in parallel (data_parallel.h): rank 0 lays
// the files out (headers, zero data) with the ordinary writers, so they are byte for byte what one
// process writes once filled; each rank then writes its contiguous range of the flat layout into
// them at the data offsets the layout implies.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/bf16.h"
#include "base/fs.h"
#include "base/log.h"
#include "dist/world.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "optim/data_parallel.h"
#include "optim/sharded_weights.h"
#include "tensor/device_memory.h"

namespace r1::optim {

namespace {

void zeros(size_t, int64_t, int64_t count, float* dst) { std::fill(dst, dst + count, 0.0f); }

// A file rank 0 prepared, open for writing in place.
class ShardFile {
 public:
  explicit ShardFile(std::string path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_RDWR);
    R1_CHECK(fd_ >= 0, "rank {}: cannot open {} to write its shard: {}", dist::rank(), path_, std::strerror(errno));
    uint8_t prefix[8] = {};
    R1_CHECK(::pread(fd_, prefix, 8, 0) == 8, "rank {}: {} has no safetensors header", dist::rank(), path_);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];
    data_ = 8 + n;
  }
  ~ShardFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  ShardFile(const ShardFile&) = delete;
  ShardFile& operator=(const ShardFile&) = delete;
  // `bytes` bytes at byte `offset` of the data section.
  void write(const void* data, size_t bytes, uint64_t offset) {
    const char* p = static_cast<const char*>(data);
    size_t left = bytes;
    uint64_t at = data_ + offset;
    while (left > 0) {
      const ssize_t n = ::pwrite(fd_, p, left, off_t(at));
      R1_CHECK(n > 0 || errno == EINTR, "rank {}: writing its shard into {} failed: {}", dist::rank(), path_,
               std::strerror(errno));
      if (n <= 0) continue;
      p += n, at += uint64_t(n), left -= size_t(n);
    }
  }
  // To disk: on a shared filesystem of several nodes each rank syncs what it wrote.
  void sync() { R1_CHECK(::fsync(fd_) == 0, "rank {}: cannot sync {}: {}", dist::rank(), path_, std::strerror(errno)); }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t data_ = 0;
};

}  // namespace

void DataParallel::prepare_shard_files(const std::string& model_dir, const std::string& optimizer_path,
                                       DType dtype) const {
  R1_CHECK(sharded_, "prepare_shard_files: only level full writes its files by shards");
  model::save_model_streamed(m_.config(), m_.specs(), model_dir, dtype, zeros, false);
  if (optimizer_path.empty()) return;
  const int64_t n = total_elements();
  model::save_safetensors(optimizer_path, std::vector<model::TensorLayout>{{"m", {n}}, {"v", {n}}}, DType::F32, zeros,
                          false, adamw_file_metadata(opt_->steps_taken()));
}

void DataParallel::write_shards(const std::string& model_dir, const std::string& optimizer_path, DType dtype) const {
  R1_CHECK(dtype == DType::F32 || dtype == DType::BF16, "write_shards: the model's dtype must be f32 or bf16");
  dist::Comm& host = dist::host_comm();
  const std::string dir = host.all_gather_strings(model_dir)[0], opt_path = host.all_gather_strings(optimizer_path)[0];
  const int64_t begin = shard_begin_, end = begin + shard_counts_[size_t(comm_->rank())];
  {
    // The model's tensors in layout order, packed: each overlap with [begin, end) at its place.
    ShardFile f(fs::join(dir, "model.safetensors"));
    std::vector<float> host = to_host_f32(sharded_->shard());  // a GPU's shard comes to the host
    const size_t es = dtype_size(dtype);
    const char* shard = reinterpret_cast<const char*>(host.data());
    std::vector<uint16_t> half;
    if (dtype == DType::BF16) {  // rounded as the safetensors writer rounds
      half.resize(host.size());
      for (size_t i = 0; i < host.size(); ++i) half[i] = f32_to_bf16(host[i]);
      shard = reinterpret_cast<const char*>(half.data());
      std::vector<float>().swap(host);
    }
    uint64_t at = 0;
    for (const model::ParamSpec& s : m_.specs()) {
      const int64_t a = std::max(s.offset, begin), b = std::min(s.offset + s.numel(), end);
      if (b > a) f.write(shard + size_t(a - begin) * es, size_t(b - a) * es, at + uint64_t(a - s.offset) * es);
      at += uint64_t(s.numel()) * es;
    }
    f.sync();
  }
  if (!opt_path.empty()) {
    // m then v, each of the flat layout's length: this rank's moments at its shard's offset.
    std::vector<float> m(size_t(end - begin)), v(size_t(end - begin));
    opt_->moments_host(m.data(), v.data());
    ShardFile f(opt_path);
    const uint64_t v_at = uint64_t(total_elements()) * sizeof(float);
    f.write(m.data(), m.size() * sizeof(float), uint64_t(begin) * sizeof(float));
    f.write(v.data(), v.size() * sizeof(float), v_at + uint64_t(begin) * sizeof(float));
    f.sync();
  }
  host.barrier();
  if (dist::is_root())
    log::info("{} ranks wrote their shards of {}{} in parallel", comm_->size(), dir,
              opt_path.empty() ? "" : " and " + opt_path);
}

}  // namespace r1::optim
