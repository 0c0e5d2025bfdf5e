// Fuzz target: a config.json through the key table's reader and checks, the sizes derived from it,
// then written and read back.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = r1::fuzz::input_file(r1::fuzz::as_text(data, size), ".config.json");
  r1::fuzz::expect_only_r1_errors([&] {
    r1::model::ModelConfig c = r1::model::load_config(path);
    // What every loader computes next from an accepted config (sizes of the weights, the report).
    static volatile long long sink;
    for (long long v : {(long long)c.q_dim(), (long long)c.kv_dim(), c.num_parameters()}) sink = v;
    // What the reader accepted, the writer writes and the reader reads again.
    r1::model::config_from_json(r1::model::config_to_json(c), "round trip");
  });
  return 0;
}
