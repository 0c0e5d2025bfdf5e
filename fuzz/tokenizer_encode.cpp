// Fuzz target: a real tokenizer (Llama 3: byte-level BPE, no normaliser) encodes arbitrary bytes;
// valid UTF-8 must decode back to itself, invalid UTF-8 must be an r1::Error.
// The tokenizer is R1_FUZZ_TOKENIZER or tests/data/tokenizers/llama3 (scripts/fetch_test_data.sh).
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "fuzz_util.h"
#include "text/tokenizer.h"

namespace {
const r1::text::Tokenizer& tokenizer() {
  static const std::unique_ptr<r1::text::Tokenizer> tok = [] {
    const char* env = std::getenv("R1_FUZZ_TOKENIZER");
    return r1::text::Tokenizer::load(env ? env : R1_SOURCE_DIR "/tests/data/tokenizers/llama3");
  }();
  return *tok;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(r1::fuzz::as_text(data, size));
  r1::fuzz::expect_only_r1_errors([&] {
    auto ids = tokenizer().encode(text);
    if (tokenizer().decode(ids) != text) {
      std::fprintf(stderr, "decode(encode(x)) != x\n");
      std::abort();
    }
  });
  return 0;
}

// Loading the tokenizer (seconds under ASan) is not part of any input's time.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tokenizer();
  return 0;
}
