// The sandbox's seccomp filter, compiled once with libseccomp to a BPF program that the child installs
// with a single prctl (no allocation between fork and exec).
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

#include "reward/sandbox_internal.h"

namespace r1::reward {

const std::vector<sock_filter>& seccomp_program() {
  static std::vector<sock_filter> prog;
  static std::once_flag once;
  std::call_once(once, [] {
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx) return;
    bool ok = true;
    auto deny = [&](int nr) { ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) == 0; };
    // Networking: only AF_UNIX sockets (the network namespace has no interfaces either).
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(socket), 1,
                                SCMP_A0(SCMP_CMP_NE, AF_UNIX)) == 0;
    for (int nr : {SCMP_SYS(ptrace), SCMP_SYS(process_vm_readv), SCMP_SYS(process_vm_writev),
                   SCMP_SYS(mount), SCMP_SYS(umount2), SCMP_SYS(pivot_root), SCMP_SYS(chroot),
                   SCMP_SYS(unshare), SCMP_SYS(setns), SCMP_SYS(setsid), SCMP_SYS(setpgid),
                   SCMP_SYS(reboot), SCMP_SYS(kexec_load), SCMP_SYS(kexec_file_load), SCMP_SYS(init_module),
                   SCMP_SYS(finit_module), SCMP_SYS(delete_module), SCMP_SYS(bpf), SCMP_SYS(perf_event_open),
                   SCMP_SYS(keyctl), SCMP_SYS(add_key), SCMP_SYS(request_key), SCMP_SYS(swapon),
                   SCMP_SYS(swapoff), SCMP_SYS(userfaultfd), SCMP_SYS(acct), SCMP_SYS(settimeofday),
                   SCMP_SYS(clock_settime), SCMP_SYS(sethostname), SCMP_SYS(setdomainname), SCMP_SYS(iopl),
                   SCMP_SYS(ioperm), SCMP_SYS(open_by_handle_at), SCMP_SYS(name_to_handle_at),
                   SCMP_SYS(quotactl), SCMP_SYS(fanotify_init), SCMP_SYS(lookup_dcookie)})
      deny(nr);
    // io_uring performs file and socket operations the filter never sees; the new mount API and the
    // descriptor-stealing calls reach what mount and ptrace are denied for. Older libseccomp may not
    // know some of them by name: those the kernel has are then unknown to the program's libc too.
    for (const char* name : {"io_uring_setup", "io_uring_enter", "io_uring_register", "open_tree",
                             "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
                             "pidfd_getfd", "process_madvise", "kcmp", "syslog"}) {
      int nr = seccomp_syscall_resolve_name(name);
      if (nr != __NR_SCMP_ERROR) deny(nr);
    }
    // New namespaces through clone flags; clone3 passes flags in memory seccomp cannot read, so it
    // reports ENOSYS and libc falls back to clone.
    for (unsigned long flag : {CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWPID, CLONE_NEWIPC, CLONE_NEWUTS,
                               CLONE_NEWCGROUP})
      ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)) == 0;
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) == 0;
    int fd = ok ? memfd_create("r1-seccomp", MFD_CLOEXEC) : -1;
    if (fd >= 0 && seccomp_export_bpf(ctx, fd) == 0) {
      off_t size = lseek(fd, 0, SEEK_END);
      if (size > 0 && size % off_t(sizeof(sock_filter)) == 0) {
        prog.resize(size_t(size) / sizeof(sock_filter));
        if (pread(fd, prog.data(), size_t(size), 0) != size) prog.clear();
      }
    }
    if (fd >= 0) close(fd);
    seccomp_release(ctx);
  });
  return prog;
}

}  // namespace r1::reward
