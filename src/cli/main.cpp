// r1: the command-line front of r1.cpp. Each subcommand lives in its own cmd_*.cpp.
#include <fmt/format.h>

#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"r1.cpp: train reasoning language models the DeepSeek-R1 way"};
  app.require_subcommand(1);
  r1::cli::add_init(app);
  r1::cli::add_logprobs(app);
  r1::cli::add_demo(app);
  r1::cli::add_convert(app);
  r1::cli::add_generate(app);
  r1::cli::add_chat(app);
  r1::cli::add_grpo(app);
  r1::cli::add_sft(app);
  r1::cli::add_sample(app);
  r1::cli::add_rm(app);
  r1::cli::add_eval(app);
  r1::cli::add_pipeline(app);
  r1::cli::add_tokenize(app);
  r1::cli::add_reward(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const r1::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
