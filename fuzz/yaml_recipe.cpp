// Fuzz target: a YAML recipe merged over a schema of every leaf type; what loads must write back
// as YAML that loads to the same values. A line after "\n---\n" is also tried as an override.
#include <cstdio>
#include <cstdlib>

#include "fuzz_util.h"
#include "run/recipe.h"

namespace {
const char* kSchema = R"({"seed": 1, "out": "runs/x", "train": {"lr": 0.001, "steps": 10, "bf16": false,
  "sched": {"warmup": 0, "kind": "cosine"}}, "data": {"path": "", "fields": ["a", "b"]}})";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = r1::fuzz::split_once(r1::fuzz::as_text(data, size));
  const std::string& path = r1::fuzz::input_file(parts.first, ".yaml");
  const std::string override_line(parts.second);
  static const nlohmann::json schema = nlohmann::json::parse(kSchema);
  r1::fuzz::expect_only_r1_errors([&] {
    r1::run::Recipe r(schema);
    r.load_yaml(path);
    if (!override_line.empty()) r.set(override_line);
    const std::string& again = r1::fuzz::input_file(r.to_yaml(), ".yaml");
    r1::run::Recipe back(schema);
    back.load_yaml(again);
    if (back.values() != r.values()) {
      std::fprintf(stderr, "to_yaml round trip differs:\n%s\n", r.to_yaml().c_str());
      std::abort();
    }
  });
  return 0;
}
