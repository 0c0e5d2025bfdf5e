#pragma once
// Shared between the sandbox's files only.
#include <linux/filter.h>

#include <vector>

namespace r1::reward {

// The compiled seccomp filter; empty when libseccomp could not build it.
const std::vector<sock_filter>& seccomp_program();

}  // namespace r1::reward
