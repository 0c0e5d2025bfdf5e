// r1 chat: an interactive conversation in the terminal. Each turn renders the whole conversation
// with the model's chat template, samples a reply over the KV cache and streams it as it is
// generated (never half a UTF-8 character). Commands: /reset clears the history, /quit leaves.
#include <fmt/format.h>

#include <iostream>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "base/timer.h"
#include "cli/commands.h"
#include "model/checkpoint.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "text/chat_template.h"
#include "text/hf_codec.h"

namespace r1::cli {

void add_chat(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, system, template_name, device = "cpu";
    int max_new_tokens = 512, context = 4096;
    float temperature = 0.6f, top_p = 0.95f;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("chat", "chat with a model in the terminal (streaming)");
  cmd->add_option("--model,-m", o->model, "HF model directory")->required();
  cmd->add_option("--tokenizer,-t", o->tokenizer, "tokenizer directory (default: the model directory)");
  cmd->add_option("--system", o->system, "system message");
  cmd->add_option("--template", o->template_name, "chat template name (tokenizer_config.json) or r1-zero");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "reply length limit")->capture_default_str();
  cmd->add_option("--context", o->context, "KV cache length (prompt + reply)")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0 is greedy")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "nucleus sampling")->capture_default_str();
  cmd->add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  cmd->add_option("--device", o->device, "cpu or cuda (bf16 weights on the GPU)")->capture_default_str();
  cmd->callback([o] {
    const std::string tok_dir = o->tokenizer.empty() ? o->model : o->tokenizer;
    const Device device = parse_device(o->device, "--device");
    require_device(device, "--device");
    model::Transformer m = model::load_model(o->model, device, /*trainable=*/false);
    auto codec = text::HfCodec::load(tok_dir, o->model);
    text::ChatTemplate tmpl = text::ChatTemplate::load(tok_dir, o->template_name);
    int context = o->context;
    if (m.config().max_position_embeddings > 0) context = std::min(context, m.config().max_position_embeddings);
    rollout::Engine engine(m, {1, context, 8192});
    nlohmann::ordered_json history = nlohmann::ordered_json::array();
    if (!o->system.empty()) history.push_back({{"role", "system"}, {"content", o->system}});
    log::info("r1 chat: {} ({} layers, vocab {}); /reset clears the conversation, /quit or Ctrl-D leaves",
              o->model, m.config().num_hidden_layers, m.config().vocab_size);
    std::string line;
    int64_t turn = 0;
    while (true) {
      fmt::print("> ");
      std::fflush(stdout);
      if (!std::getline(std::cin, line) || line == "/quit") break;
      if (line.empty()) continue;
      if (line == "/reset") {
        history.erase(history.begin() + (o->system.empty() ? 0 : 1), history.end());
        fmt::print("(conversation cleared)\n");
        continue;
      }
      history.push_back({{"role", "user"}, {"content", line}});
      std::vector<int32_t> ids = codec->encode(tmpl.render(history, true));
      if (int64_t(ids.size()) + 1 >= context) {
        fmt::print("(the conversation no longer fits the context of {} tokens; /reset to start over)\n", context);
        history.erase(history.end() - 1);
        continue;
      }
      rollout::GenerateParams gp;
      gp.sampling = {o->temperature, o->top_p, 0, o->seed};
      gp.max_new_tokens = std::min(o->max_new_tokens, context - int(ids.size()));
      gp.stop_ids = codec->eos_ids();
      text::StreamDecoder stream(codec->tokenizer(), true);
      gp.on_token = [&](int64_t, int64_t, int32_t tok) {
        fmt::print("{}", stream.push(tok));
        std::fflush(stdout);
      };
      Timer clock;
      auto out = engine.generate({{ids, 1, turn++}}, gp);
      fmt::print("{}\n", stream.finish());
      std::vector<int32_t> body = out[0].tokens;
      if (out[0].finish == rollout::FinishReason::Stop && !body.empty()) body.pop_back();
      history.push_back({{"role", "assistant"}, {"content", codec->decode(body)}});
      log::info("[{} tokens, {:.1f} tok/s{}]", out[0].tokens.size(), double(out[0].tokens.size()) / clock.seconds(),
                out[0].finish == rollout::FinishReason::Length ? ", cut at the length limit" : "");
    }
  });
}

}  // namespace r1::cli
