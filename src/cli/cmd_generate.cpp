// r1 generate: batched sampling from an HF model. stdin JSON lines {"prompt": "..."} (raw text, or
// wrapped by --template) or {"messages": [...]} (chat template); stdout one line per sample with
// the text, token ids, per-token log-probs, finish reason and timing. A bad input line is reported
// by number (stderr and an {"line", "error"} record) and the other lines are still generated.
#include <fmt/format.h>

#include <iostream>
#include <string>

#include "base/error.h"
#include "base/log.h"
#include "base/progress.h"
#include "base/timer.h"
#include "cli/commands.h"
#include "cli/jsonl.h"
#include "model/checkpoint.h"
#include "rollout/engine.h"
#include "tensor/device_memory.h"
#include "text/chat_template.h"
#include "text/hf_codec.h"

namespace r1::cli {

void add_generate(CLI::App& app) {
  struct Opts {
    std::string model, tokenizer, template_name = "chat", device = "cpu";
    int n = 1, max_new_tokens = 256, batch = 64;
    float temperature = 1.0f, top_p = 1.0f;
    int top_k = 0;
    uint64_t seed = 0;
    std::vector<std::string> stop;
  };
  auto o = std::make_shared<Opts>();
  auto* cmd = app.add_subcommand("generate", "sample completions for JSONL prompts (stdin -> stdout)");
  cmd->add_option("--model,-m", o->model, "HF model directory")->required();
  cmd->add_option("--tokenizer,-t", o->tokenizer, "tokenizer directory (default: the model directory)");
  cmd->add_option("--template", o->template_name,
                  "how a \"prompt\" is wrapped: chat (the tokenizer's chat template), r1-zero, or none")
      ->capture_default_str();
  cmd->add_option("-n", o->n, "samples per prompt")->capture_default_str();
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "completion length limit")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0 is greedy")->capture_default_str();
  cmd->add_option("--top-p", o->top_p, "nucleus sampling")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "0: no limit")->capture_default_str();
  cmd->add_option("--seed", o->seed, "sampling seed")->capture_default_str();
  cmd->add_option("--batch", o->batch, "sequences decoded together")->capture_default_str();
  cmd->add_option("--stop", o->stop, "stop string (repeatable)");
  cmd->add_option("--device", o->device, "cpu or cuda (bf16 weights on the GPU)")->capture_default_str();
  cmd->callback([o] {
    R1_CHECK(o->template_name == "chat" || o->template_name == "r1-zero" || o->template_name == "none",
             "--template must be chat, r1-zero or none (got '{}')", o->template_name);
    const std::string tok_dir = o->tokenizer.empty() ? o->model : o->tokenizer;
    const Device device = parse_device(o->device, "--device");
    require_device(device, "--device");
    model::Transformer m = model::load_model(o->model, device, /*trainable=*/false);
    auto codec = text::HfCodec::load(tok_dir, o->model);
    std::unique_ptr<text::ChatTemplate> chat;
    auto chat_template = [&]() -> const text::ChatTemplate& {
      if (!chat) chat = std::make_unique<text::ChatTemplate>(text::ChatTemplate::load(tok_dir));
      return *chat;
    };
    const text::ChatTemplate r1zero = text::ChatTemplate::builtin("r1-zero");

    // Render every line; a bad one is reported and skipped, the others still run.
    std::vector<rollout::Request> reqs;
    std::vector<int> req_line;
    std::vector<nlohmann::json> bad_lines;
    std::vector<JsonLine> lines = read_jsonl_lenient(std::cin, "stdin", bad_lines);
    int max_prompt = 1;
    for (const JsonLine& l : lines) {
      try {
        std::string text;
        if (l.value.contains("messages")) {
          text = chat_template().render(nlohmann::ordered_json::parse(l.value["messages"].dump()), true);
        } else {
          R1_CHECK(l.value.contains("prompt") && l.value["prompt"].is_string(), "needs a string 'prompt' or 'messages'");
          const std::string p = l.value["prompt"].get<std::string>();
          R1_CHECK(!p.empty(), "empty prompt");
          nlohmann::ordered_json msgs = nlohmann::ordered_json::array({{{"role", "user"}, {"content", p}}});
          text = o->template_name == "none"    ? p
                 : o->template_name == "r1-zero" ? r1zero.render(msgs, true)
                                                 : chat_template().render(msgs, true);
        }
        std::vector<int32_t> ids = codec->encode(text);
        R1_CHECK(!ids.empty(), "the prompt encodes to no tokens");
        R1_CHECK(m.config().max_position_embeddings <= 0 ||
                     int64_t(ids.size()) + 1 <= m.config().max_position_embeddings,
                 "prompt of {} tokens is longer than the model's context ({})", ids.size(),
                 m.config().max_position_embeddings);
        max_prompt = std::max(max_prompt, int(ids.size()));
        reqs.push_back({std::move(ids), o->n, int64_t(l.line_no)});
        req_line.push_back(l.line_no);
      } catch (const Error& e) {
        bad_lines.push_back({{"line", l.line_no}, {"error", fmt::format("stdin line {}: {}", l.line_no, e.what())}});
      }
    }
    std::string errors;
    for (const auto& e : bad_lines) {
      log::warn("{}", e["error"].get<std::string>());
      errors += e.dump() + "\n";
    }
    rollout::GenerateParams gp;
    gp.sampling = {o->temperature, o->top_p, o->top_k, o->seed};
    gp.max_new_tokens = o->max_new_tokens;
    gp.stop_ids = codec->eos_ids();
    gp.stop_strings = o->stop;
    gp.token_text = [&](int32_t id) { return codec->token_text(id); };
    int max_len = max_prompt + o->max_new_tokens;
    if (m.config().max_position_embeddings > 0) max_len = std::min(max_len, m.config().max_position_embeddings);
    rollout::Engine engine(m, {o->batch, max_len, 8192});
    int64_t total = int64_t(reqs.size()) * o->n;
    Progress bar("generate", total, "seq");
    Timer clock;
    auto outs = engine.generate(reqs, gp, [&](int64_t done, int64_t) {
      bar.update(1, fmt::format("{:.0f} tok/s", double(engine.stats().generated_tokens) / clock.seconds()));
      (void)done;
    });
    if (total > 0) bar.finish();
    const double secs = clock.seconds();
    std::string out = errors;
    for (const auto& c : outs) {
      std::vector<int32_t> body = c.tokens;
      if (c.finish == rollout::FinishReason::Stop && !body.empty() &&
          std::count(gp.stop_ids.begin(), gp.stop_ids.end(), body.back()))
        body.pop_back();
      out += nlohmann::json{{"line", req_line[size_t(c.prompt_index)]},
                            {"sample", c.sample_index},
                            {"text", codec->decode(body)},
                            {"token_ids", c.tokens},
                            {"logprobs", c.logprobs},
                            {"finish_reason", rollout::finish_reason_name(c.finish)},
                            {"prompt_tokens", reqs[size_t(c.prompt_index)].prompt.size()}}
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
             "\n";
    }
    std::cout << out << std::flush;
    const auto& st = engine.stats();
    log::info("{} sequences, {} tokens in {:.2f} s ({:.1f} tok/s; prefill {:.2f} s, decode {:.2f} s over {} steps)",
              outs.size(), st.generated_tokens, secs, double(st.generated_tokens) / std::max(secs, 1e-9),
              st.prefill_seconds, st.decode_seconds, st.decode_steps);
    if (!bad_lines.empty())
      fail("{} input line(s) could not be generated (see the error records)", bad_lines.size());
  });
}

}  // namespace r1::cli
