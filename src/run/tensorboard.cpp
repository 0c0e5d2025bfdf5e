#include "run/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "base/error.h"
#include "base/fs.h"

namespace r1::run {

namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

// Protobuf wire format, only what Event needs: varints, fixed64/fixed32, length-delimited.
void put_varint(std::string& s, uint64_t v) {
  while (v >= 0x80) {
    s.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  s.push_back(char(v));
}
void put_tag(std::string& s, int field, int wire_type) { put_varint(s, uint64_t(field) << 3 | wire_type); }
void put_double(std::string& s, int field, double v) {
  put_tag(s, field, 1);
  uint64_t u;
  std::memcpy(&u, &v, 8);
  for (int i = 0; i < 8; ++i) s.push_back(char(u >> (8 * i)));
}
void put_float(std::string& s, int field, float v) {
  put_tag(s, field, 5);
  uint32_t u;
  std::memcpy(&u, &v, 4);
  for (int i = 0; i < 4; ++i) s.push_back(char(u >> (8 * i)));
}
void put_bytes(std::string& s, int field, std::string_view b) {
  put_tag(s, field, 2);
  put_varint(s, b.size());
  s.append(b);
}
void put_int64(std::string& s, int field, int64_t v) {
  put_tag(s, field, 0);
  put_varint(s, uint64_t(v));  // int64 negatives are 10-byte two's-complement varints
}
void put_u32_le(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(char(v >> (8 * i)));
}

std::string hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == 0) return "localhost";
  std::string h(buf);
  for (char& c : h)  // the name goes into a file name
    if (c == '/') c = '_';
  return h;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = kCrcTable[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir, double wall_time) {
  const std::string base =
      fs::join(dir, "events.out.tfevents." + std::to_string(int64_t(wall_time)) + "." + hostname());
  // Two writers in the same second (a quick resume) must not append to each other's file.
  path_ = base;
  for (int i = 1; fd_ < 0; ++i) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      R1_CHECK(errno == EEXIST && i < 1000, "cannot create TensorBoard file {}: {}", path_,
               std::strerror(errno));
      path_ = base + "." + std::to_string(i);
    }
  }
  // Event{wall_time=1, file_version=3 "brain.Event:2"}
  std::string ev;
  put_double(ev, 1, wall_time);
  put_bytes(ev, 3, "brain.Event:2");
  add_record(ev);
  flush();
}

TensorBoardWriter::~TensorBoardWriter() {
  try {
    flush();
  } catch (...) {  // a destructor must not throw; the last step's events are what is lost
  }
  if (fd_ >= 0) ::close(fd_);
}

void TensorBoardWriter::add_scalar(const std::string& tag, int64_t step, float value, double wall_time) {
  // Summary.Value{tag=1, simple_value=2}
  std::string val;
  put_bytes(val, 1, tag);
  put_float(val, 2, value);
  // Summary{value=1 (repeated)}
  std::string summary;
  put_bytes(summary, 1, val);
  // Event{wall_time=1, step=2, summary=5}
  std::string ev;
  put_double(ev, 1, wall_time);
  put_int64(ev, 2, step);
  put_bytes(ev, 5, summary);
  add_record(ev);
}

void TensorBoardWriter::add_record(const std::string& event) {
  // TFRecord: uint64 length, masked crc of the length bytes, data, masked crc of the data.
  std::string len;
  const uint64_t n = event.size();
  for (int i = 0; i < 8; ++i) len.push_back(char(n >> (8 * i)));
  pending_ += len;
  put_u32_le(pending_, masked_crc32c(len.data(), len.size()));
  pending_ += event;
  put_u32_le(pending_, masked_crc32c(event.data(), event.size()));
}

void TensorBoardWriter::flush() {
  size_t off = 0;
  while (off < pending_.size()) {
    ssize_t n = ::write(fd_, pending_.data() + off, pending_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      pending_.erase(0, off);  // a retry must not write the same bytes twice
      fail("cannot write {}: {}", path_, std::strerror(e));
    }
    off += size_t(n);
  }
  pending_.clear();
}

}  // namespace r1::run
