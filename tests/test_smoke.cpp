#include <gtest/gtest.h>

#include "tensor/tensor.h"

TEST(Tensor, Describe) {
  float x[6];
  auto t = r1::Tensor::f32(x, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.describe(), "(2, 3) f32");
}
