#pragma once
// Shared between the sandbox's files only: what the forked child needs, all built before fork so
// the child allocates nothing (only async-signal-safe calls between fork and exec).
#include <linux/filter.h>
#include <signal.h>

#include <string>
#include <vector>

#include "reward/sandbox.h"

namespace r1::reward {

// The compiled seccomp filter; empty when libseccomp could not build it.
const std::vector<sock_filter>& seccomp_program();

// One host path made visible read-only inside the private root.
struct RootEntry {
  std::string host;         // "/usr"
  std::string inside;       // "<root mount point>/usr"
  std::string link_target;  // non-empty: recreate as a symbolic link ("usr/bin") instead of a bind
  bool is_dir = true;
  bool writable = false;           // the /dev nodes: writable, never executable
  unsigned long locked_flags = 0;  // MS_NOSUID... the host mount already has (a remount must keep them)
};

struct ChildPlan {
  std::vector<char*> argv, envp;
  std::string dir;                  // the job's directory on the host
  std::string root;                 // the empty mount point the private root is built on
  std::vector<RootEntry> entries;   // read-only paths, then the /dev nodes
  std::vector<std::string> mkdirs;  // directories to create in the root (parents first)
  std::string root_tmp, root_shm, root_proc;
  std::string uid_map, gid_map;
  uid_t uid = 0;
  SandboxLimits limits;
  bool root_user = false;          // started as root: switch to the sandbox uid
  bool allow_unsandboxed = false;  // run even when a protection is missing
  sigset_t parent_mask;
  int in_r = -1, out_w = -1, err_w = -1, status_w = -1;
  std::vector<int> pass_fds;  // become 4, 5, ...
};

// The status channel (descriptor 3 in the child, closed at exec) carries one line per event:
// "+protection", "-missing: errno N", "W<wait status of the program>", "X<setup failure>".
constexpr int kStatusFd = 3;
constexpr int kFirstPassFd = 4;

[[noreturn]] void child_main(const ChildPlan& p);

}  // namespace r1::reward
