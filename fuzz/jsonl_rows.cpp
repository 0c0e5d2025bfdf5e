// Fuzz target: a JSONL dataset file read with each preset's field mapping.
#include "data/jsonl_dataset.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = r1::fuzz::input_file(r1::fuzz::as_text(data, size), ".jsonl");
  for (const char* preset : {"gsm8k", "math500", "aime24"})
    r1::fuzz::expect_only_r1_errors([&] { r1::data::load_jsonl_problems(path, r1::data::preset_fields(preset)); });
  return 0;
}
