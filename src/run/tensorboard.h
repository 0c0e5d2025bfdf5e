#pragma once
// A TensorBoard event-file writer with no TensorFlow or protobuf dependency: the few Event fields
// a scalar needs are hand-encoded, and each record is framed and checksummed as TFRecord expects,
// so `tensorboard --logdir runs/` reads the curves directly.
#include <cstddef>
#include <cstdint>
#include <string>

namespace r1::run {

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), continuing from `crc` (0 to start).
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masked CRC: a CRC stored next to the data it covers is rotated and offset, because
// the CRC of a string that itself contains CRCs is otherwise prone to collisions.
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  // Creates `dir`/events.out.tfevents.<unix time>.<hostname> (".N" appended if that name is taken)
  // and writes the file_version event that TensorBoard expects first.
  explicit TensorBoardWriter(const std::string& dir, double wall_time);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // Buffers one scalar event; nothing reaches the file until flush().
  void add_scalar(const std::string& tag, int64_t step, float value, double wall_time);
  // Writes the buffered events with one write(2), so a crash loses at most the current step.
  void flush();
  const std::string& path() const { return path_; }

 private:
  void add_record(const std::string& event);
  std::string path_;
  std::string pending_;
  int fd_ = -1;
};

}  // namespace r1::run
