"""Read a process's signal state from the kernel, as format models.

Each reader takes the least intrusive route that gives the exact answer:
``/proc`` when it shows everything (the blocked mask, an empty queue, the
threads asleep in wait4/waitid), a ptrace stop when the queue's siginfo
records are needed, and syscall injection for what only the process itself
can ask (sigactions, the altstack).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from sigfs import inject, procfs
from sigfs import ptrace_raw as pt
from sigfs.formats.action import Actions, SigAction
from sigfs.formats.altstack import AltStack
from sigfs.formats.pending import Pending
from sigfs.formats.siginfo import Siginfo
from sigfs.formats.waiters import P_PIDFD, Waiter, from_wait4, from_waitid
from sigfs.tracer import Tracer

SYS_WAIT4 = 61
SYS_WAITID = 247


def live_thread(tgid: int) -> int:
    """A thread that can stand for the whole process: the leader unless it
    has exited (a zombie leader with live threads), else the first live one."""
    tids = procfs.list_tids(tgid)
    for tid in [tgid] + [t for t in tids if t != tgid]:
        try:
            state = procfs.read_status(tgid, tid).get("State") or ""
        except ProcessLookupError:
            continue
        if not state.startswith(("Z", "X")):
            return tid
    raise ProcessLookupError(errno.ESRCH, f"process {tgid} has no live thread")


def blocked_mask(tracer: Tracer, tgid: int, tid: int, status: procfs.Status | None = None) -> int:
    """The blocked mask, from ``/proc`` (``status``: the thread's, just read).

    While sigfs injects a syscall the thread's mask is ours (everything
    blocked), so the mask it will get back is reported instead.  Call this
    without an ``await`` between reading ``status`` and the call: trio runs
    one task at a time, so no injection can start or end in between.
    """
    saved = tracer.masked.get(tid)
    if saved is not None:
        return saved
    st = status if status is not None else procfs.read_status(tgid, tid)
    return procfs.hex_field(st, "SigBlk")


# SIGKILL and SIGSTOP: the kernel never lets them be blocked.
UNBLOCKABLE = (1 << (9 - 1)) | (1 << (19 - 1))
# Syscalls that sleep with a temporary mask and give the thread its own back
# on return (TIF_RESTORE_SIGMASK): while a thread sleeps in one, its own mask
# is in the kernel's saved_sigmask, which nothing shows.
TEMP_MASK_SYSCALLS = {
    130: "rt_sigsuspend",
    270: "pselect6",
    271: "ppoll",
    281: "epoll_pwait",
    333: "io_pgetevents",
    441: "epoll_pwait2",
}
ERESTARTNOHAND = -514
EINTR = -errno.EINTR


async def set_blocked(
    tracer: Tracer,
    tgid: int,
    tid: int,
    edit: Callable[[int], int],
    check: Callable[[], None] | None = None,
    relative: bool = True,
) -> tuple[int, int]:
    """Give thread ``tid`` the blocked mask ``edit(current)``, reading the
    current mask and setting the new one in the same ptrace stop (so no
    change the thread makes itself in between is lost).  Returns (old, new).

    PTRACE_SETSIGMASK also drops a mask the thread would have restored on
    leaving sigsuspend, pselect or the like (TIF_RESTORE_SIGMASK): the mask
    written is the one it keeps.  Raises EINVAL, changing nothing, for a
    mask with SIGKILL or SIGSTOP (the kernel would silently drop them, and
    the write would not be what it says), EBUSY while sigfs itself has the
    thread's mask (an injected syscall in flight), and checks afterwards that
    the kernel holds exactly the mask written.  ``check`` runs first in the
    stop (the writer's permission: the thread cannot exec meanwhile).

    ``relative``: the new mask depends on the current one (``+SIG``,
    ``>>``).  Refused with EBUSY for a thread asleep in sigsuspend, ppoll
    and the like (TEMP_MASK_SYSCALLS): the mask one can read then is the
    call's temporary one, and its own is out of sight until it returns."""

    def swap(_att: object) -> tuple[int, int]:
        if check is not None:
            check()
        if tid in tracer.masked:
            raise OSError(errno.EBUSY, f"thread {tid} is running an injected syscall; try again")
        old = pt.getsigmask(tid)
        if relative:
            regs = pt.getregs(tid)
            name = TEMP_MASK_SYSCALLS.get(pt.regs_signed(regs.orig_rax))
            if name is not None and pt.regs_signed(regs.rax) in (ERESTARTNOHAND, EINTR):
                raise OSError(
                    errno.EBUSY,
                    f"thread {tid} sleeps in {name}() with a temporary mask, and its own "
                    "cannot be read until it returns: write the whole mask (a bitmap, or "
                    "signal names with >)",
                )
        new = edit(old)
        if new & UNBLOCKABLE:
            raise OSError(errno.EINVAL, "SIGKILL and SIGSTOP cannot be blocked")
        if new != old:
            pt.setsigmask(tid, new)
            now = pt.getsigmask(tid)
            if now != new:
                pt.setsigmask(tid, old)
                raise OSError(errno.EIO, f"the kernel kept mask {now:#x}, not {new:#x}")
        return old, new

    try:
        return await tracer.with_stopped(tgid, tid, swap)
    except pt.TraceError as exc:
        if exc.errno == errno.ESRCH:
            raise ProcessLookupError(errno.ESRCH, f"thread {tid} exited") from None
        raise


async def read_pending(
    tracer: Tracer, tgid: int, tid: int, shared: bool, status: procfs.Status | None = None
) -> Pending:
    """The thread's private queue, or with ``shared`` the process's queue:
    the bitmap and every queued siginfo in queue order.  ``status`` (the
    thread's, or any thread's for ``shared``) saves a read when given."""
    key = "ShdPnd" if shared else "SigPnd"
    if shared:
        tid = live_thread(tgid) if status is None else tgid
        if status is not None and (status.get("State") or "").startswith(("Z", "X")):
            tid = live_thread(tgid)
    st = status if status is not None else procfs.read_status(tgid, tid)
    mask = procfs.hex_field(st, key)
    if mask == 0 and tid not in tracer.attached:
        return Pending(0, ())  # nothing queued: no need to stop anyone

    before = mask

    def snapshot(_att: object) -> tuple[int, list[bytes]]:
        # Bitmap and queue from the same stopped moment.  When the queue
        # accounts for exactly the bits just read, those bits are that
        # moment's bitmap and /proc need not be read again (20-30 us); a bit
        # without a record (RLIMIT_SIGPENDING overflow, SIGKILL of a dying
        # group) or a queue that moved on in between is read in the stop.
        raws = pt.peeksiginfo(tid, shared)
        bits = 0
        for raw in raws:
            signo = int.from_bytes(raw[0:4], "little", signed=True)
            bits |= 1 << (signo - 1) if 1 <= signo <= 64 else -1
        if bits == before:
            return before, raws
        return procfs.hex_field(procfs.read_status(tgid, tid), key), raws

    mask, raws = await tracer.with_stopped(tgid, tid, snapshot)
    return Pending(mask, tuple(Siginfo(r) for r in raws))


def pending_bitmap_only(tgid: int, tid: int, shared: bool) -> int:
    """The bitmap alone, for when ptrace is unavailable (traced by another)."""
    if shared:
        tid = live_thread(tgid)
    return procfs.hex_field(procfs.read_status(tgid, tid), "ShdPnd" if shared else "SigPnd")


async def read_actions(tracer: Tracer, tgid: int) -> Actions:
    """All 64 sigactions (shared by the threads of a process)."""
    tid = live_thread(tgid)
    async with tracer.stopped(tgid, tid) as att:
        async with inject.Injection(tracer, att) as inj:
            if tgid in tracer.frozen:
                # The same stub asks what `status` and `mm` would inject for
                # (kept until the thaw: nothing of it changes while frozen).
                extras: dict[str, int] = {}
                raw = await inject.read_sigactions(inj, extras)
                tracer.frozen_facts[tgid] = extras
            else:
                raw = await inject.read_sigactions(inj)
    return Actions(
        tuple(
            SigAction(signum=i + 1, handler=h, flags=f, restorer=r, mask=m)
            for i, (h, f, r, m) in enumerate(raw)
        )
    )


async def read_altstack(tracer: Tracer, tgid: int, tid: int) -> AltStack:
    async with tracer.stopped(tgid, tid) as att:
        async with inject.Injection(tracer, att) as inj:
            sp, size, flags = await inject.read_altstack(inj)
    return AltStack(sp=sp, size=size, flags=flags)


async def read_altstacks_frozen(tracer: Tracer, tgid: int) -> dict[int, AltStack]:
    """The sigaltstack of every thread of a frozen process, by one injected
    sigaltstack(NULL, &old) in each, stepped in all threads at once."""
    atts = list(tracer.frozen[tgid])
    out: dict[int, AltStack] = {}
    async with tracer.process_lock(tgid), inject.sessions(tracer, atts) as injs:
        results = await inject.syscall_in_threads(
            injs, inject.SYS["sigaltstack"], lambda inj: (0, inj.scratch)
        )
        for inj, result in zip(injs, results, strict=True):
            if -4096 < result < 0:
                raise OSError(-result, f"sigaltstack in {inj.tid}: {os.strerror(-result)}")
            sp, size, flags = inject.unpack_altstack(inj.read(inj.scratch, inject.STACK_T.size))
            out[inj.tid] = AltStack(sp=sp, size=size, flags=flags)
    return out


def read_waiters(tgid: int) -> list[Waiter]:
    """Threads of the process blocked in wait4/waitid, from
    ``/proc/PID/task/TID/syscall`` (no stop needed)."""
    out: list[Waiter] = []
    for tid in procfs.list_tids(tgid):
        try:
            fields = procfs.current_syscall(tgid, tid)
        except (ProcessLookupError, PermissionError):
            continue
        if len(fields) < 7 or fields[0] in ("running", "-1"):
            continue
        nr = int(fields[0])
        args = [int(a, 16) for a in fields[1:7]]
        if nr == SYS_WAIT4:
            out.append(from_wait4(tid, _s32(args[0]), args[2] & 0xFFFFFFFF))
        elif nr == SYS_WAITID:
            idtype, id = args[0] & 0xFFFFFFFF, _s32(args[1])
            pidfd_pid = _pidfd_pid(tgid, tid, id) if idtype == P_PIDFD else None
            out.append(from_waitid(tid, idtype, id, args[3] & 0xFFFFFFFF, pidfd_pid))
    return out


def _pidfd_pid(tgid: int, tid: int, fd: int) -> int | None:
    """The process a thread's pidfd ``fd`` refers to: the ``Pid:`` line of
    its fdinfo (the waiting thread's own descriptor table).  None when it
    cannot be told: not a pidfd, the fd gone, or the process already reaped
    or outside our pid namespace (the kernel shows -1 or 0 then)."""
    if fd < 0:
        return None
    try:
        with open(f"/proc/{tgid}/task/{tid}/fdinfo/{fd}", "rb") as f:
            text = f.read()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(b"Pid:"):
            try:
                pid = int(line.split()[1])
            except (IndexError, ValueError):
                return None
            return pid if pid > 0 else None
    return None


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
