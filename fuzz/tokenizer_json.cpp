// Fuzz target: a tokenizer.json loaded, then used on a fixed text (encode and decode).
#include "fuzz_util.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = r1::fuzz::input_file(r1::fuzz::as_text(data, size), ".tokenizer.json");
  r1::fuzz::expect_only_r1_errors([&] {
    auto tok = r1::text::Tokenizer::load(path);
    auto ids = tok->encode("Hello world, 123 <x> \xC3\xA9t\xC3\xA9!\n  end");
    tok->decode(ids);
    for (int32_t id = -1; id <= tok->vocab_size(); ++id) tok->id_to_token(id);
  });
  return 0;
}
