// r1 logprobs: per-token log-probabilities of given token sequences.
// stdin: {"ids": [...]} per line; stdout: {"logprobs": [...]} with logprobs[i] = log p(ids[i+1] | ids[..i]).
// --grads-out also writes d loss / d parameter for loss = -mean(log-probs over every predicted token
// of every line), per parameter under its HF name, f32: the gradient half of the parity checks
// (tools/parity/gpu_parity.py) on either device.
#include <fmt/format.h>

#include <iostream>
#include <string>

#include "base/error.h"
#include "cli/commands.h"
#include "cli/jsonl.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "tensor/device_memory.h"
#include "model/train_state.h"

namespace r1::cli {

namespace {

void write_grads(const model::Transformer& m, const std::string& path, double loss) {
  const std::vector<float> g = to_host_f32(m.grads().flat);
  std::vector<model::NamedTensor> tensors;
  for (const model::ParamSpec& s : m.specs()) tensors.push_back({s.name, s.shape, g.data() + s.offset});
  model::save_safetensors(path, tensors, DType::F32,
                          {{"format", "pt"}, {"loss", fmt::format("{:.17g}", loss)}});
}

}  // namespace

void add_logprobs(CLI::App& app) {
  struct Opts {
    std::string model, device = "cpu", grads_out;
    float temperature = 1.0f;
    int64_t batch_tokens = 8192;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd =
      app.add_subcommand("logprobs", "per-token log-probs of token sequences (JSONL stdin -> stdout)");
  cmd->add_option("--model,-m", o->model, "HF model directory")->required();
  cmd->add_option("--device", o->device, "cpu | cuda (bf16 compute, fp32 gradients)")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "softmax temperature")->capture_default_str();
  cmd->add_option("--batch-tokens", o->batch_tokens, "tokens packed into one forward")->capture_default_str();
  cmd->add_option("--grads-out", o->grads_out,
                  "also write the gradient of -mean(log-probs of all lines) per parameter (f32 safetensors)");
  cmd->callback([o] {
    R1_CHECK(o->temperature > 0, "--temperature must be > 0");
    const Device device = parse_device(o->device, "--device");
    require_device(device, "r1 logprobs --device " + o->device);
    const bool grads = !o->grads_out.empty();
    // Without --grads-out the model is frozen: no gradients, no master copy, inference memory.
    model::Transformer m = model::load_model(o->model, device, /*trainable=*/grads);
    const auto& c = m.config();
    // Read and check everything first: a bad line stops the command before anything is written.
    const std::vector<std::vector<int32_t>> seqs = read_id_lines(std::cin, "stdin", c);
    int64_t predicted = 0;
    for (const auto& q : seqs) predicted += int64_t(q.size()) - 1;
    R1_CHECK(!grads || predicted > 0, "--grads-out: no line has a token to predict (every line has 1 id)");
    if (grads) m.zero_grads();
    model::TrainState state;
    std::string out;
    double loss = 0;
    for (size_t first = 0; first < seqs.size();) {
      size_t last = first;
      int64_t tokens = 0;
      while (last < seqs.size() && (last == first || tokens + int64_t(seqs[last].size()) <= o->batch_tokens))
        tokens += int64_t(seqs[last++].size());
      std::vector<std::vector<int32_t>> group(seqs.begin() + long(first), seqs.begin() + long(last));
      model::Batch batch = model::pack_sequences(group);
      state.forward(m, batch, o->temperature);
      const std::vector<float> logp = state.logp_host();
      for (int64_t b = 0; b < batch.sequences(); ++b) {
        nlohmann::json lp = nlohmann::json::array();
        for (int32_t t = batch.cu_seqlens[size_t(b)]; t + 1 < batch.cu_seqlens[size_t(b) + 1]; ++t)
          lp.push_back(double(logp[size_t(t)]));
        out += nlohmann::json{{"logprobs", lp}}.dump() + "\n";
      }
      if (grads) {
        std::vector<float> dlogp(logp.size(), 0.0f);
        for (size_t t = 0; t < logp.size(); ++t)
          if (batch.targets[t] >= 0) {
            dlogp[t] = -1.0f / float(predicted);
            loss -= double(logp[t]) / double(predicted);
          }
        state.backward(m, dlogp);
      }
      first = last;
    }
    if (grads) write_grads(m, o->grads_out, loss);
    std::cout << out << std::flush;
  });
}

}  // namespace r1::cli
