#pragma once
// Each subcommand registers itself on the r1 program; one file per subcommand.
#include <CLI/CLI.hpp>

namespace r1::cli {

void add_init(CLI::App& app);
void add_logprobs(CLI::App& app);
void add_demo(CLI::App& app);
void add_tool_demo(CLI::App& app);
void add_convert(CLI::App& app);
void add_merge(CLI::App& app);
void add_generate(CLI::App& app);
void add_chat(CLI::App& app);
void add_grpo(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_reward(CLI::App& app);
void add_pipeline(CLI::App& app);
void add_sample(CLI::App& app);
void add_eval(CLI::App& app);
void add_sft(CLI::App& app);
void add_rm(CLI::App& app);

}  // namespace r1::cli
