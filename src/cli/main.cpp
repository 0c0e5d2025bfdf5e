// r1: the command-line front of r1.cpp. Each subcommand lives in its own cmd_*.cpp.
#include <fmt/format.h>

#include <cstdio>

#include "base/error.h"
#include "cli/commands.h"
#include "dist/world.h"

namespace {
// An error on one rank of a multi-rank job must end every rank: the others may be waiting for this
// one in a collective. A single process reports and returns as before.
int report_error(const char* what) {
  if (r1::dist::world_size() > 1) r1::dist::abort_job(what);
  fmt::print(stderr, "error: {}\n", what);
  try {
    r1::dist::finalize();  // a one-rank mpirun job still ends MPI cleanly
  } catch (const std::exception&) {
  }
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    r1::dist::init(&argc, &argv);  // first: MPI may take its own arguments out of argv
  } catch (const std::exception& e) {
    return report_error(e.what());
  }
  CLI::App app{"r1.cpp: train reasoning language models the DeepSeek-R1 way"};
  app.require_subcommand(1);
  r1::cli::add_init(app);
  r1::cli::add_logprobs(app);
  r1::cli::add_demo(app);
  r1::cli::add_tool_demo(app);
  r1::cli::add_convert(app);
  r1::cli::add_merge(app);
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
  // Only the data-parallel trainers run as several ranks: any other command would run as N copies
  // writing the same files.
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub->get_name() != "grpo" && sub->get_name() != "sft")
      sub->preparse_callback([name = sub->get_name()](std::size_t) {
        R1_CHECK(r1::dist::world_size() == 1,
                 "r1 {} runs as one process; under mpirun only r1 grpo and r1 sft run (data-parallel)", name);
      });
  try {
    app.parse(argc, argv);
    r1::dist::finalize();
  } catch (const CLI::ParseError& e) {
    // Every rank parses the same arguments, so all of them get here (--help too) and finalize.
    r1::dist::finalize();
    return app.exit(e);
  } catch (const r1::Error& e) {
    return report_error(e.what());
  } catch (const std::exception& e) {
    return report_error(e.what());
  }
  return 0;
}
