#pragma once
// run.export_dtype's check, shared by the training commands' tests: a run's exported model is its
// last checkpoint's fp32 weights rounded to bf16.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "base/bf16.h"
#include "model/config.h"
#include "model/safetensors.h"

namespace r1::test {

// `exported` (RUN/model) against `checkpoint` (a checkpoint's model directory, f32): the config says
// bfloat16 and every tensor is BF16 holding the checkpoint's value rounded as f32_to_bf16 rounds it
// (what save_model writes), the same names and shapes.
inline void expect_bf16_export(const std::string& exported, const std::string& checkpoint) {
  EXPECT_EQ(model::load_config(exported + "/config.json").torch_dtype, "bfloat16") << exported;
  const model::SafetensorsReader out(exported + "/model.safetensors"), ck(checkpoint + "/model.safetensors");
  ASSERT_EQ(out.names(), ck.names()) << exported;
  for (const std::string& name : ck.names()) {
    const model::TensorInfo &a = out.info(name), &b = ck.info(name);
    ASSERT_EQ(a.dtype, DType::BF16) << exported << ": " << name;
    ASSERT_EQ(b.dtype, DType::F32) << checkpoint << ": " << name;
    ASSERT_EQ(a.shape, b.shape) << name;
    const auto* h = static_cast<const uint16_t*>(a.data);
    const auto* f = static_cast<const float*>(b.data);
    for (size_t i = 0; i < b.nbytes / sizeof(float); ++i)
      ASSERT_EQ(h[i], f32_to_bf16(f[i])) << exported << ": " << name << " element " << i;
  }
}

}  // namespace r1::test
