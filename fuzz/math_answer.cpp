// Fuzz target: the math answer extractor, normaliser, parser and equivalence (without the
// symbolic check, which runs GiNaC under a deadline) on a completion; the first line is the gold.
#include "fuzz_util.h"
#include "reward/latex_normalize.h"
#include "reward/math_answer.h"
#include "reward/math_equivalence.h"
#include "reward/math_extract.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view all = r1::fuzz::as_text(data, size);
  size_t nl = all.find('\n');
  const std::string gold(all.substr(0, nl));
  const std::string completion(nl == std::string_view::npos ? all : all.substr(nl + 1));
  r1::fuzz::expect_only_r1_errors([&] {
    auto got = r1::reward::extract_answer(completion);
    r1::reward::normalize_latex(completion);
    r1::reward::parse_answer(gold);
    r1::reward::EquivalenceOptions o;
    o.symbolic = false;
    o.label_order = r1::reward::label_order_in(completion);
    r1::reward::equivalent(gold, got ? got->text : completion, o);
  });
  return 0;
}
