// bench/kernel_trace.h's host side (the CUPTI records themselves need a GPU): kernel names as a
// table shows them, and a decode step's summary of graph-launched kernels and the gaps between them.
#include <gtest/gtest.h>

#include "kernel_trace.h"

using r1::bench::KernelRecord;

TEST(KernelTrace, NamesAreTheFunctionAndItsTemplateArguments) {
  // void r1::cuda::(anonymous namespace)::rmsnorm_forward_kernel<8, true, __nv_bfloat16>(...)
  EXPECT_EQ(r1::bench::short_kernel_name(
                "_ZN2r14cuda12_GLOBAL__N_122rmsnorm_forward_kernelILi8ELb1E13__nv_bfloat16EEvPT1_PfPKS3_S7_lf"),
            "rmsnorm_forward_kernel<8, true, __nv_bfloat16>");
  EXPECT_EQ(r1::bench::short_kernel_name("_Z10add_kernelPfPKfi"), "add_kernel");
  // a library kernel whose name is not mangled stays as it is
  EXPECT_EQ(r1::bench::short_kernel_name("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize64x64x64"),
            "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize64x64x64");
}

// Two replays of one graph (ids 7) and an eager prefill kernel (id 0): per step, the graph's
// kernels, their sum, and the gaps inside a replay (not the pause between replays over 200 µs,
// nor the eager kernel).
TEST(KernelTrace, SummaryIsPerStepOfTheGraphsKernelsAndTheirGaps) {
  const std::vector<KernelRecord> trace = {
      {"prefill", 0, 50'000, 0},
      {"norm", 100'000, 103'000, 7}, {"gemm", 105'000, 115'000, 7}, {"norm", 116'000, 119'000, 7},
      {"norm", 500'000, 503'000, 7}, {"gemm", 504'000, 514'000, 7}, {"norm", 516'000, 519'000, 7}};
  const nlohmann::json s = r1::bench::graph_kernel_summary(trace, 2);
  EXPECT_DOUBLE_EQ(s["kernels_per_step"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(s["kernel_us_per_step"].get<double>(), 16.0);  // (3 + 10 + 3) µs
  EXPECT_DOUBLE_EQ(s["gap_us_per_step"].get<double>(), 3.0);      // (2 + 1 + 1 + 2) µs over 2 steps
  ASSERT_EQ(s["kernels"].size(), 2u);
  EXPECT_EQ(s["kernels"][0]["kernel"], "gemm");  // the most time first
  EXPECT_DOUBLE_EQ(s["kernels"][0]["us_per_step"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(s["kernels"][1]["launches_per_step"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(s["kernels"][1]["share"].get<double>(), 6.0 / 16.0);
}
