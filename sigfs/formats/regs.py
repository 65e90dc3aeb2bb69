"""The ``regs`` file: one thread's general registers (x86-64 ``struct user_regs_struct``).

One line per register, in the struct's order, the value as ``0x`` and 16 lowercase hex
digits::

    r15 0x0000000000000000
    ...
    rax 0xfffffffffffffdfc
    ...
    orig_rax 0x00000000000000e6
    rip 0x00007f3a1c2e57fa
    ...
    gs 0x0000000000000000
    # syscall 230 clock_nanosleep args 0x0 0x0 0x7ffc1a2b3c40 0x7ffc1a2b3c40 0x0 0x0
    # restart: restart_block (rax -516 ERESTART_RESTARTBLOCK: the kernel runs restart_syscall)

When the thread is inside a system call (``orig_rax`` is not negative) two comment lines
follow for people: the call with its six arguments, and what ``rax`` means (see
:func:`syscall_state`).  Being comments, they are ignored on input.

On input all 27 registers must be given exactly once, in any order; values may be
decimal, ``0x`` hex, or negative (taken as two's complement, e.g. ``orig_rax -1``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

from sigfs.formats.errors import (
    FormatError,
    check_size,
    is_comment,
    numbered_lines,
    parse_int,
    show,
)
from sigfs.record import record

__all__ = [
    "ERRNO_NAMES",
    "MAX_TEXT",
    "REGISTER_NAMES",
    "RESTART_KINDS",
    "SIZE",
    "Regs",
    "SyscallState",
    "parse",
    "parse_some",
    "render",
    "syscall_name",
    "syscall_number",
    "syscall_state",
]

#: ``struct user_regs_struct`` field names, in the struct's order.
REGISTER_NAMES: tuple[str, ...] = (
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx",
    "rdx", "rsi", "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base",
    "gs_base", "ds", "es", "fs", "gs",
)  # fmt: skip
#: Size in bytes of ``struct user_regs_struct`` (27 unsigned 64-bit words).
SIZE = 8 * len(REGISTER_NAMES)
#: Largest text accepted (27 short lines plus generous comments).
MAX_TEXT = 64 * 1024
#: Values of :attr:`SyscallState.restart`.
RESTART_KINDS = ("none", "restart", "restart_block", "returned")

_U64 = (1 << 64) - 1
_INDEX = {name: i for i, name in enumerate(REGISTER_NAMES)}
_STRUCT = struct.Struct(f"<{len(REGISTER_NAMES)}Q")

# x86-64 system call numbers 0..334 and 424..470 (arch/x86/entry/syscalls/syscall_64.tbl).
_LOW = (
    "read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction "
    "rt_sigprocmask rt_sigreturn ioctl pread64 pwrite64 readv writev access pipe select "
    "sched_yield mremap msync mincore madvise shmget shmat shmctl dup dup2 pause nanosleep "
    "getitimer alarm setitimer getpid sendfile socket connect accept sendto recvfrom sendmsg "
    "recvmsg shutdown bind listen getsockname getpeername socketpair setsockopt getsockopt "
    "clone fork vfork execve exit wait4 kill uname semget semop semctl shmdt msgget msgsnd "
    "msgrcv msgctl fcntl flock fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir "
    "rename mkdir rmdir creat link unlink symlink readlink chmod fchmod chown fchown lchown "
    "umask gettimeofday getrlimit getrusage sysinfo times ptrace getuid syslog getgid setuid "
    "setgid geteuid getegid setpgid getppid getpgrp setsid setreuid setregid getgroups "
    "setgroups setresuid getresuid setresgid getresgid getpgid setfsuid setfsgid getsid capget "
    "capset rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend sigaltstack utime mknod "
    "uselib personality ustat statfs fstatfs sysfs getpriority setpriority sched_setparam "
    "sched_getparam sched_setscheduler sched_getscheduler sched_get_priority_max "
    "sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall vhangup "
    "modify_ldt pivot_root _sysctl prctl arch_prctl adjtimex setrlimit chroot sync acct "
    "settimeofday mount umount2 swapon swapoff reboot sethostname setdomainname iopl ioperm "
    "create_module init_module delete_module get_kernel_syms query_module quotactl nfsservctl "
    "getpmsg putpmsg afs_syscall tuxcall security gettid readahead setxattr lsetxattr fsetxattr "
    "getxattr lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr lremovexattr "
    "fremovexattr tkill time futex sched_setaffinity sched_getaffinity set_thread_area io_setup "
    "io_destroy io_getevents io_submit io_cancel get_thread_area lookup_dcookie epoll_create "
    "epoll_ctl_old epoll_wait_old remap_file_pages getdents64 set_tid_address restart_syscall "
    "semtimedop fadvise64 timer_create timer_settime timer_gettime timer_getoverrun "
    "timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group "
    "epoll_wait epoll_ctl tgkill utimes vserver mbind set_mempolicy get_mempolicy mq_open "
    "mq_unlink mq_timedsend mq_timedreceive mq_notify mq_getsetattr kexec_load waitid add_key "
    "request_key keyctl ioprio_set ioprio_get inotify_init inotify_add_watch inotify_rm_watch "
    "migrate_pages openat mkdirat mknodat fchownat futimesat newfstatat unlinkat renameat "
    "linkat symlinkat readlinkat fchmodat faccessat pselect6 ppoll unshare set_robust_list "
    "get_robust_list splice tee sync_file_range vmsplice move_pages utimensat epoll_pwait "
    "signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4 "
    "signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo "
    "perf_event_open recvmmsg fanotify_init fanotify_mark prlimit64 name_to_handle_at "
    "open_by_handle_at clock_adjtime syncfs sendmmsg setns getcpu process_vm_readv "
    "process_vm_writev kcmp finit_module sched_setattr sched_getattr renameat2 seccomp "
    "getrandom memfd_create kexec_file_load bpf execveat userfaultfd membarrier mlock2 "
    "copy_file_range preadv2 pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents "
    "rseq"
).split()
_HIGH = (
    "pidfd_send_signal io_uring_setup io_uring_enter io_uring_register open_tree move_mount "
    "fsopen fsconfig fsmount fspick pidfd_open clone3 close_range openat2 pidfd_getfd "
    "faccessat2 process_madvise epoll_pwait2 mount_setattr quotactl_fd landlock_create_ruleset "
    "landlock_add_rule landlock_restrict_self memfd_secret process_mrelease futex_waitv "
    "set_mempolicy_home_node cachestat fchmodat2 map_shadow_stack futex_wake futex_wait "
    "futex_requeue statmount listmount lsm_get_self_attr lsm_set_self_attr lsm_list_modules "
    "mseal setxattrat getxattrat listxattrat removexattrat open_tree_attr file_getattr "
    "file_setattr listns"
).split()
_HIGH_BASE = 424
_SYSCALLS: dict[int, str] = {
    **dict(enumerate(_LOW)),
    **{_HIGH_BASE + i: name for i, name in enumerate(_HIGH)},
}
_SYSCALL_NUMBERS = {name: nr for nr, name in _SYSCALLS.items()}

#: Names of the errno values a syscall commonly returns (for comments only).
ERRNO_NAMES: dict[int, str] = {
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG",
    8: "ENOEXEC", 9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES",
    14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR",
    21: "EISDIR", 22: "EINVAL", 23: "ENFILE", 24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY",
    27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS", 31: "EMLINK", 32: "EPIPE",
    33: "EDOM", 34: "ERANGE", 35: "EDEADLK", 36: "ENAMETOOLONG", 38: "ENOSYS",
    39: "ENOTEMPTY", 40: "ELOOP", 61: "ENODATA", 62: "ETIME", 75: "EOVERFLOW",
    95: "EOPNOTSUPP", 98: "EADDRINUSE", 104: "ECONNRESET", 110: "ETIMEDOUT",
    111: "ECONNREFUSED", 115: "EINPROGRESS", 125: "ECANCELED",
    512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
}  # fmt: skip

_ENOSYS = 38
_RESTART = {
    512: ("restart", "the kernel re-issues the syscall"),
    513: ("restart", "the kernel re-issues the syscall"),
    514: ("restart", "the kernel re-issues the syscall unless a handler runs"),
    516: ("restart_block", "the kernel runs restart_syscall"),
}


def _signed(value: int) -> int:
    return value - (1 << 64) if value >> 63 else value


def syscall_name(nr: int) -> str:
    """The x86-64 name of system call ``nr``, or ``syscall_N`` when unknown."""
    return _SYSCALLS.get(nr, f"syscall_{nr}")


def syscall_number(name: str) -> int:
    """The number of the x86-64 system call ``name`` (also ``syscall_N``)."""
    if name in _SYSCALL_NUMBERS:
        return _SYSCALL_NUMBERS[name]
    if name.startswith("syscall_"):
        return parse_int(name[8:], "syscall number", 0, _U64)
    raise FormatError(None, f"unknown system call {show(name)}")


@record
class Regs:
    """``struct user_regs_struct``: ``values[i]`` is register ``REGISTER_NAMES[i]``."""

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.values, tuple) or len(self.values) != len(REGISTER_NAMES):
            raise FormatError(
                None, f"expected {len(REGISTER_NAMES)} register values, got {len(self.values)}"
            )
        for name, value in zip(REGISTER_NAMES, self.values, strict=True):
            if not isinstance(value, int) or not 0 <= value <= _U64:
                raise FormatError(None, f"{name}: {value!r} is not an unsigned 64-bit value")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, int]) -> Regs:
        """Build from ``{name: value}`` holding every register exactly (negatives wrap)."""
        unknown = sorted(set(mapping) - set(_INDEX))
        if unknown:
            raise FormatError(None, f"unknown register {show(unknown[0])}")
        missing = [n for n in REGISTER_NAMES if n not in mapping]
        if missing:
            raise FormatError(None, f"missing registers: {' '.join(missing)}")
        return cls(tuple(_wrap(name, mapping[name]) for name in REGISTER_NAMES))

    @classmethod
    def from_bytes(cls, data: bytes) -> Regs:
        """Decode the raw 216-byte ``struct user_regs_struct`` (PTRACE_GETREGS)."""
        if len(data) != SIZE:
            raise FormatError(None, f"user_regs_struct is {SIZE} bytes, got {len(data)}")
        return cls(_STRUCT.unpack(data))

    def to_bytes(self) -> bytes:
        """The raw 216-byte ``struct user_regs_struct`` (for PTRACE_SETREGS)."""
        return _STRUCT.pack(*self.values)

    def get(self, name: str) -> int:
        """The value of register ``name`` (``KeyError`` for an unknown name)."""
        return self.values[_INDEX[name]]

    def signed(self, name: str) -> int:
        """The value of register ``name`` read as a signed 64-bit number."""
        return _signed(self.get(name))

    def as_dict(self) -> dict[str, int]:
        """``{name: value}`` in struct order."""
        return dict(zip(REGISTER_NAMES, self.values, strict=True))

    def replace(self, **changes: int) -> Regs:
        """A copy with some registers changed (negative values wrap)."""
        values = self.as_dict()
        for name, value in changes.items():
            if name not in _INDEX:
                raise FormatError(None, f"unknown register {show(name)}")
            values[name] = _wrap(name, value)
        return Regs(tuple(values.values()))

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(zip(REGISTER_NAMES, self.values, strict=True))


def _wrap(name: str, value: int) -> int:
    if not isinstance(value, int) or not -(1 << 63) <= value <= _U64:
        raise FormatError(None, f"{name}: {value!r} does not fit in 64 bits")
    return value & _U64


@record
class SyscallState:
    """What the registers say about a system call the thread is in (informational).

    ``restart`` is ``"restart"`` (rax is -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND:
    on resuming, the kernel re-issues the call), ``"restart_block"`` (rax is
    -ERESTART_RESTARTBLOCK: the kernel runs restart_syscall), ``"none"`` (rax is -ENOSYS,
    as at a syscall-entry stop: the call has not run yet) or ``"returned"`` (rax holds
    the call's return value, as at a syscall-exit stop).
    """

    nr: int
    name: str
    args: tuple[int, ...]
    restart: str
    rax: int

    def __post_init__(self) -> None:
        if len(self.args) != 6:
            raise FormatError(None, f"expected 6 syscall arguments, got {len(self.args)}")
        if self.restart not in RESTART_KINDS:
            raise FormatError(None, f"unknown restart kind {show(self.restart)}")

    def comment_lines(self) -> tuple[str, str]:
        """The two ``#`` lines :func:`render` appends (without newlines)."""
        args = " ".join(f"{a:#x}" for a in self.args)
        return (f"# syscall {self.nr} {self.name} args {args}", f"# restart: {self._explain()}")

    def _explain(self) -> str:
        rax = self.rax
        errno = ERRNO_NAMES.get(-rax)
        if -rax in _RESTART:
            return f"{self.restart} (rax {rax} {errno}: {_RESTART[-rax][1]})"
        if self.restart == "none":
            return f"none (rax {rax} ENOSYS: the syscall has not run yet)"
        if -4095 <= rax < 0:
            name = errno or f"errno {-rax}"
            return f"returned (rax {rax} {name}: the syscall's return value)"
        return f"returned (rax {rax:#x}: the syscall's return value)"


def syscall_state(regs: Regs) -> SyscallState | None:
    """Decode the syscall the thread is in, or ``None`` when signed ``orig_rax < 0``."""
    orig = regs.signed("orig_rax")
    if orig < 0:
        return None
    rax = regs.signed("rax")
    if -rax in _RESTART:
        restart = _RESTART[-rax][0]
    elif rax == -_ENOSYS:
        restart = "none"
    else:
        restart = "returned"
    args = tuple(regs.get(n) for n in ("rdi", "rsi", "rdx", "r10", "r8", "r9"))
    return SyscallState(orig, syscall_name(orig), args, restart, rax)


def render(regs: Regs) -> str:
    """27 ``name 0x%016x`` lines in struct order, then the syscall comments if any."""
    lines = [f"{name} 0x{value:016x}" for name, value in regs]
    state = syscall_state(regs)
    if state is not None:
        lines.extend(state.comment_lines())
    return "\n".join(lines) + "\n"


def parse(text: str) -> Regs:
    """Parse ``regs`` text: every register exactly once, any order, comments skipped."""
    seen, last = _lines(text)
    missing = [n for n in REGISTER_NAMES if n not in seen]
    if missing:
        raise FormatError(
            last, f"end of input: {len(missing)} registers missing: {' '.join(missing)}"
        )
    return Regs(tuple(seen[n][1] for n in REGISTER_NAMES))


def parse_some(text: str) -> dict[str, int]:
    """Some registers, each at most once: what a write of part of the file
    says (the registers not named keep their values)."""
    seen, last = _lines(text)
    if not seen:
        raise FormatError(last, "end of input: expected 'name value' lines")
    return {name: value for name, (_, value) in seen.items()}


def _lines(text: str) -> tuple[dict[str, tuple[int, int]], int]:
    check_size(text, MAX_TEXT, "regs")
    seen: dict[str, tuple[int, int]] = {}
    last = 1
    for number, line in numbered_lines(text):
        last = number
        if is_comment(line):
            continue
        tokens = line.split()
        if len(tokens) != 2:
            raise FormatError(number, f"expected 2 fields 'name value', got {len(tokens)}")
        name, token = tokens
        if name not in _INDEX:
            raise FormatError(number, f"unknown register {show(name)}")
        if name in seen:
            raise FormatError(number, f"{name} given twice (also on line {seen[name][0]})")
        value = parse_int(token, name, -(1 << 63), _U64, number) & _U64
        seen[name] = (number, value)
    return seen, last
