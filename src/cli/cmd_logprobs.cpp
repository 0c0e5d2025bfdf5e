// r1 logprobs: per-token log-probabilities of given token sequences.
// stdin: {"ids": [...]} per line; stdout: {"logprobs": [...]} with logprobs[i] = log p(ids[i+1] | ids[..i]).
#include <iostream>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/jsonl.h"
#include "model/checkpoint.h"

namespace r1::cli {

void add_logprobs(CLI::App& app) {
  struct Opts {
    std::string model;
    float temperature = 1.0f;
    int64_t batch_tokens = 8192;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("logprobs", "per-token log-probs of token sequences (JSONL stdin -> stdout)");
  cmd->add_option("--model,-m", o->model, "HF model directory")->required();
  cmd->add_option("--temperature", o->temperature, "softmax temperature")->capture_default_str();
  cmd->add_option("--batch-tokens", o->batch_tokens, "tokens packed into one forward")->capture_default_str();
  cmd->callback([o] {
    R1_CHECK(o->temperature > 0, "--temperature must be > 0");
    model::Transformer m = model::load_model(o->model);
    const auto& c = m.config();
    // Read and check everything first: a bad line stops the command before anything is written.
    std::vector<std::vector<int32_t>> seqs;
    for (const JsonLine& l : read_jsonl(std::cin, "stdin")) {
      seqs.push_back(int_array(l, "ids", "stdin", 0, c.vocab_size));
      R1_CHECK(!seqs.back().empty(), "stdin line {}: 'ids' is empty", l.line_no);
      R1_CHECK(c.max_position_embeddings <= 0 || int64_t(seqs.back().size()) <= c.max_position_embeddings,
               "stdin line {}: {} ids exceed max_position_embeddings {}", l.line_no, seqs.back().size(),
               c.max_position_embeddings);
    }
    model::TrainState state;
    std::string out;
    for (size_t first = 0; first < seqs.size();) {
      size_t last = first;
      int64_t tokens = 0;
      while (last < seqs.size() && (last == first || tokens + int64_t(seqs[last].size()) <= o->batch_tokens))
        tokens += int64_t(seqs[last++].size());
      std::vector<std::vector<int32_t>> group(seqs.begin() + long(first), seqs.begin() + long(last));
      model::Batch batch = model::pack_sequences(group);
      Tensor logp = state.forward(m, batch, o->temperature);
      for (int64_t b = 0; b < batch.sequences(); ++b) {
        nlohmann::json lp = nlohmann::json::array();
        for (int32_t t = batch.cu_seqlens[size_t(b)]; t + 1 < batch.cu_seqlens[size_t(b) + 1]; ++t)
          lp.push_back(double(logp.f32()[t]));
        out += nlohmann::json{{"logprobs", lp}}.dump() + "\n";
      }
      first = last;
    }
    std::cout << out << std::flush;
  });
}

}  // namespace r1::cli
