// Fuzz target: the last fenced code block of a completion, and the R1 format check (think/answer tags).
#include "fuzz_util.h"
#include "reward/code_reward.h"
#include "reward/format_reward.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(r1::fuzz::as_text(data, size));
  r1::fuzz::expect_only_r1_errors([&] {
    auto block = r1::reward::last_code_block(text);
    if (block && block->code.size() > text.size()) std::abort();
    r1::reward::FormatOptions o;
    r1::reward::check_format(text, o);
    r1::reward::think_text(text, o);
  });
  return 0;
}
