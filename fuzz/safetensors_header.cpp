// Fuzz target: a safetensors file (8-byte header length, JSON header, data) through the reader;
// every tensor it accepts must lie inside the file (each byte of it is read).
#include "fuzz_util.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = r1::fuzz::input_file(r1::fuzz::as_text(data, size), ".safetensors");
  r1::fuzz::expect_only_r1_errors([&] {
    r1::model::SafetensorsReader reader(path);
    unsigned sum = 0;
    for (const auto& name : reader.names()) {
      const auto& t = reader.info(name);
      const auto* p = static_cast<const uint8_t*>(t.data);
      for (size_t i = 0; i < t.nbytes; ++i) sum += p[i];
    }
    static volatile unsigned sink;
    sink = sum;
  });
  return 0;
}
