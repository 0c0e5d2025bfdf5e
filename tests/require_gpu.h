#pragma once
// REQUIRE_GPU(): skips the current test, saying why, unless a CUDA device is usable (never on CI).
#include <gtest/gtest.h>

#include <string>

#include "tensor/device_memory.h"

#define REQUIRE_GPU()                                                                          \
  do {                                                                                         \
    std::string r1_why_;                                                                       \
    if (!r1::device_usable(r1::Device::CUDA, &r1_why_)) GTEST_SKIP() << "no usable GPU: " << r1_why_; \
  } while (0)
