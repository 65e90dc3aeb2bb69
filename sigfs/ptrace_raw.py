"""Thin ptrace layer: the requests python-ptrace lacks, on its raw ``ptrace()``.

Nothing here knows about processes, locks or trio: each function is one
request, and every failure is raised as :class:`TraceError`, an ``OSError``
carrying the errno, the request and the thread id.  The object layer
(:mod:`sigfs.tracer`) builds on this.  x86-64 Linux only.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from ctypes import addressof, c_int32, c_uint32, c_uint64, sizeof


def _preload_libc() -> None:
    """Hand python-ptrace the C library before it looks for it.

    ``ptrace.ctypes_libc`` calls ``ctypes.util.find_library("c")`` on
    import, which runs ``ldconfig -p`` (or gcc) in a subprocess: about 20 ms
    of every one-shot command's start.  glibc's soname is fixed, so load it
    by name and register the module python-ptrace would have built; where
    that fails (another C library), python-ptrace searches as before."""
    import sys
    import types

    if "ptrace.ctypes_libc" in sys.modules:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    module = types.ModuleType("ptrace.ctypes_libc")
    module.LIBC_FILENAME = "libc.so.6"  # type: ignore[attr-defined]
    module.libc = libc  # type: ignore[attr-defined]
    sys.modules["ptrace.ctypes_libc"] = module


_preload_libc()

from ptrace import PtraceError  # noqa: E402
from ptrace.binding import func as _func  # noqa: E402

# Requests (include/uapi/linux/ptrace.h).
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETSIGINFO = 0x4202
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_LISTEN = 0x4208
PTRACE_PEEKSIGINFO = 0x4209
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F

PTRACE_PEEKSIGINFO_SHARED = 1

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_EXITKILL = 0x100000

PTRACE_EVENT_STOP = 128

# Syscall-info ops (PTRACE_GET_SYSCALL_INFO).
SYSCALL_INFO_NONE = 0
SYSCALL_INFO_ENTRY = 1
SYSCALL_INFO_EXIT = 2
SYSCALL_INFO_SECCOMP = 3

# Regset notes (include/uapi/linux/elf.h).
NT_PRSTATUS = 1
NT_PRFPREG = 2
NT_X86_XSTATE = 0x202

WALL = 0x40000000  # __WALL: wait for threads as well as processes
SIGINFO_SIZE = 128
SIGSET_SIZE = 8

_REG_FIELDS = (
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
)


class Regs(ctypes.Structure):
    """x86-64 ``struct user_regs_struct`` (arch/x86/include/asm/user_64.h)."""

    _fields_ = [(name, ctypes.c_ulong) for name in _REG_FIELDS]
    r15: int
    r14: int
    r13: int
    r12: int
    rbp: int
    rbx: int
    r11: int
    r10: int
    r9: int
    r8: int
    rax: int
    rcx: int
    rdx: int
    rsi: int
    rdi: int
    orig_rax: int
    rip: int
    cs: int
    eflags: int
    rsp: int
    ss: int
    fs_base: int
    gs_base: int
    ds: int
    es: int
    fs: int
    gs: int


REGISTER_NAMES: tuple[str, ...] = _REG_FIELDS


class TraceError(OSError):
    """A failed ptrace request: ``errno`` says why, ``tid`` and ``request`` say where."""

    def __init__(self, err: int, request: str, tid: int, detail: str = "") -> None:
        msg = f"{request}({tid}): {os.strerror(err)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.tid = tid
        self.request = request


def _call(request: int, name: str, tid: int, arg1: int = 0, arg2: int = 0) -> int:
    try:
        return int(_func.ptrace(request, tid, arg1, arg2))
    except PtraceError as exc:
        err = exc.errno if exc.errno else errno_mod.EIO
        raise TraceError(err, name, tid) from None


class _PeekSiginfoArgs(ctypes.Structure):
    _fields_ = (("off", c_uint64), ("flags", c_uint32), ("nr", c_int32))


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _RseqConfig(ctypes.Structure):
    _fields_ = (
        ("rseq_abi_pointer", c_uint64),
        ("rseq_abi_size", c_uint32),
        ("signature", c_uint32),
        ("flags", c_uint32),
        ("pad", c_uint32),
    )


def seize(tid: int, options: int = PTRACE_O_TRACESYSGOOD) -> None:
    """Attach without stopping the thread or sending it any signal."""
    _call(PTRACE_SEIZE, "PTRACE_SEIZE", tid, 0, options)


def interrupt(tid: int) -> None:
    """Ask a seized thread to enter a PTRACE_EVENT_STOP trap."""
    _call(PTRACE_INTERRUPT, "PTRACE_INTERRUPT", tid)


def detach(tid: int, sig: int = 0) -> None:
    _call(PTRACE_DETACH, "PTRACE_DETACH", tid, 0, sig)


def cont(tid: int, sig: int = 0) -> None:
    _call(PTRACE_CONT, "PTRACE_CONT", tid, 0, sig)


def syscall(tid: int, sig: int = 0) -> None:
    """Resume until the next syscall entry or exit stop."""
    _call(PTRACE_SYSCALL, "PTRACE_SYSCALL", tid, 0, sig)


def setoptions(tid: int, options: int) -> None:
    _call(PTRACE_SETOPTIONS, "PTRACE_SETOPTIONS", tid, 0, options)


def getregs(tid: int) -> Regs:
    regs = Regs()
    _call(PTRACE_GETREGS, "PTRACE_GETREGS", tid, 0, addressof(regs))
    return regs


def setregs(tid: int, regs: Regs) -> None:
    _call(PTRACE_SETREGS, "PTRACE_SETREGS", tid, 0, addressof(regs))


def copy_regs(regs: Regs) -> Regs:
    new = Regs()
    ctypes.memmove(addressof(new), addressof(regs), sizeof(Regs))
    return new


def getsigmask(tid: int) -> int:
    mask = c_uint64()
    _call(PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK", tid, SIGSET_SIZE, addressof(mask))
    return int(mask.value)


def setsigmask(tid: int, mask: int) -> None:
    value = c_uint64(mask & 0xFFFFFFFFFFFFFFFF)
    _call(PTRACE_SETSIGMASK, "PTRACE_SETSIGMASK", tid, SIGSET_SIZE, addressof(value))


def getsiginfo(tid: int) -> bytes:
    buf = ctypes.create_string_buffer(SIGINFO_SIZE)
    _call(PTRACE_GETSIGINFO, "PTRACE_GETSIGINFO", tid, 0, addressof(buf))
    return buf.raw


def peeksiginfo(tid: int, shared: bool, batch: int = 32) -> list[bytes]:
    """Every queued siginfo of the thread's private (or the process's shared)
    queue, in queue order, as raw 128-byte records."""
    out: list[bytes] = []
    args = _PeekSiginfoArgs(0, PTRACE_PEEKSIGINFO_SHARED if shared else 0, batch)
    buf = ctypes.create_string_buffer(SIGINFO_SIZE * batch)
    while True:
        args.off = len(out)
        n = _call(PTRACE_PEEKSIGINFO, "PTRACE_PEEKSIGINFO", tid, addressof(args), addressof(buf))
        raw = buf.raw
        out.extend(raw[i * SIGINFO_SIZE : (i + 1) * SIGINFO_SIZE] for i in range(n))
        if n < batch:
            return out


def getregset(tid: int, note: int, size: int) -> bytes:
    """One register set (NT_*) as bytes, trimmed to what the kernel filled."""
    buf = ctypes.create_string_buffer(size)
    iov = _Iovec(addressof(buf), size)
    _call(PTRACE_GETREGSET, "PTRACE_GETREGSET", tid, note, addressof(iov))
    return buf.raw[: iov.len]


def setregset(tid: int, note: int, data: bytes) -> None:
    buf = ctypes.create_string_buffer(data, len(data))
    iov = _Iovec(addressof(buf), len(data))
    _call(PTRACE_SETREGSET, "PTRACE_SETREGSET", tid, note, addressof(iov))


def get_syscall_info(tid: int) -> bytes:
    """The raw ``struct ptrace_syscall_info`` (up to 88 bytes)."""
    buf = ctypes.create_string_buffer(128)
    n = _call(PTRACE_GET_SYSCALL_INFO, "PTRACE_GET_SYSCALL_INFO", tid, 128, addressof(buf))
    return buf.raw[: min(n, 128)]


def get_rseq_configuration(tid: int) -> tuple[int, int, int, int]:
    """(abi pointer, abi size, signature, flags) of the thread's rseq registration."""
    conf = _RseqConfig()
    _call(
        PTRACE_GET_RSEQ_CONFIGURATION,
        "PTRACE_GET_RSEQ_CONFIGURATION",
        tid,
        sizeof(conf),
        addressof(conf),
    )
    return (conf.rseq_abi_pointer, conf.rseq_abi_size, conf.signature, conf.flags)


def regs_signed(value: int) -> int:
    """A register read as unsigned 64-bit, seen as the signed value the ABI means."""
    return value - (1 << 64) if value >= 1 << 63 else value


def regs_unsigned(value: int) -> int:
    return value & 0xFFFFFFFFFFFFFFFF
