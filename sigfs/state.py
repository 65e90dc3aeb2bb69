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
from collections.abc import Awaitable, Callable

from sigfs import aio, inject, procfs
from sigfs import ptrace_raw as pt
from sigfs.formats.action import Actions, SigAction
from sigfs.formats.altstack import AltStack
from sigfs.formats.pending import Pending
from sigfs.formats.siginfo import Siginfo
from sigfs.formats.status import Status as StatusModel
from sigfs.formats.waiters import P_PIDFD, Waiter, from_wait4, from_waitid
from sigfs.tracer import Tracer

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

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


def _may_write(tracer: Tracer, tid: int, check: Callable[[], None] | None) -> None:
    """First thing in a write's stop: the writer's permission (``check``),
    and EBUSY while an injected syscall of sigfs's holds the thread (its
    mask and registers are sigfs's then)."""
    if check is not None:
        check()
    if tid in tracer.masked:
        raise OSError(errno.EBUSY, f"thread {tid} is running an injected syscall; try again")


async def _with_stopped_write(tracer: Tracer, tgid: int, tid: int, fn: Callable[[object], T]) -> T:
    """``tracer.with_stopped`` for a write: a thread gone is ESRCH."""
    try:
        return await tracer.with_stopped(tgid, tid, fn)
    except pt.TraceError as exc:
        if exc.errno == errno.ESRCH:
            raise ProcessLookupError(errno.ESRCH, f"thread {tid} exited") from None
        raise


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
        _may_write(tracer, tid, check)
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

    return await _with_stopped_write(tracer, tgid, tid, swap)


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
            if tgid in tracer.frozen and tgid not in tracer.loosened:
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
    out: dict[int, AltStack] = {}
    async with tracer.process_lock(tgid):
        # The threads held now, under the lock: one handed off by another
        # request meanwhile is no longer among them.
        atts = list(tracer.frozen.get(tgid) or [])
        async with inject.sessions(tracer, atts) as injs:
            results = await inject.syscall_in_threads(
                injs, inject.SYS["sigaltstack"], lambda inj: (0, inj.scratch)
            )
            for inj, result in zip(injs, results, strict=True):
                if -4096 < result < 0:
                    raise OSError(-result, f"sigaltstack in {inj.tid}: {os.strerror(-result)}")
                raw = inj.read(inj.scratch, inject.STACK_T.size)
                sp, size, flags = inject.unpack_altstack(raw)
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


# Writing a pending queue (sig/pending, sig/shared_pending).
SI_TKILL = -6
SI_TIMER = -2
SIGCONT = 18
# The stop signals: queueing one drops a pending SIGCONT, and queueing
# SIGCONT drops every pending one (prepare_signal()).
STOP_SIGNALS = {19, 20, 21, 22}
SIGRTMIN = 32


def _signo(raw: bytes) -> int:
    return int.from_bytes(raw[0:4], "little", signed=True)


def _code(raw: bytes) -> int:
    return int.from_bytes(raw[8:12], "little", signed=True)


def _bits(raws: list[bytes]) -> int:
    out = 0
    for raw in raws:
        out |= 1 << (_signo(raw) - 1)
    return out


def _names(mask: int) -> str:
    from sigfs.signals import signal_name

    return " ".join(signal_name(k) for k in range(1, 65) if mask >> (k - 1) & 1)


def sigq(tgid: int) -> tuple[int, int]:
    """(signals queued, RLIMIT_SIGPENDING) for the process's real user:
    ``SigQ`` in /proc/PID/status."""
    field = (procfs.read_status(tgid).get("SigQ") or "0/0").split("/")
    return int(field[0]), int(field[1])


def plan_pending(
    old: list[bytes],
    old_mask: int,
    new: list[bytes],
    replace: bool,
    exact: bool,
    elsewhere: int = 0,
) -> tuple[dict[int, int], list[bytes], list[bytes], str]:
    """What a write of ``new`` to a queue holding ``old`` (and ``old_mask``)
    takes: (how many of each signal to take out, the siginfos to queue, the
    queue expected after, a note for ``errors``).  Raises OSError (EBUSY)
    for a write whose result the kernel would not keep as written.

    ``replace`` (``>``): the queue becomes ``new``.  When the queue as it is
    starts with ``new``'s first records, only the rest are queued; otherwise
    everything is taken out first.  Without: ``new`` is queued after what is
    there.  ``exact`` (siginfo records, to be restored byte for byte): a
    standard signal (1-31) already pending is refused, since the kernel
    keeps one of each; for signals named by a person it is merged, as
    kill(2) would, and the note says so.  ``elsewhere``: the signals
    pending in the process's other queues (SIGCONT and stop signals)."""
    take: dict[int, int] = {}
    if replace and not (_bits(old) == old_mask and new[: len(old)] == old):
        # Everything out (a bit without a record: one, the kernel's
        # one-per-standard-signal), then the whole of ``new`` in.
        for k in range(1, 65):
            if old_mask >> (k - 1) & 1:
                take[k] = max(1, sum(1 for raw in old if _signo(raw) == k))
        base, queue, mask = [], list(new), 0
        stuck = set(take) & {9, 19}
        if stuck:
            raise OSError(
                errno.EBUSY,
                f"{_names(_mask_of(stuck))} is pending, and no one can take it out "
                "(rt_sigtimedwait never returns it): write what is to be added with >>",
            )
    elif replace:
        base, queue, mask = list(old), new[len(old) :], old_mask
    else:
        base, queue, mask = list(old), list(new), old_mask
    # SIGCONT and the stop signals cancel each other in every queue of the
    # process, this one or not.
    around = mask | elsewhere
    kept: list[bytes] = []
    merged = 0
    for raw in queue:
        k = _signo(raw)
        if k < SIGRTMIN and mask >> (k - 1) & 1:
            if exact:
                raise OSError(
                    errno.EBUSY,
                    f"{_names(1 << (k - 1))} is already pending, and the kernel keeps one "
                    "of each standard signal (1-31): write the whole queue with >",
                )
            merged |= 1 << (k - 1)
            continue
        if (
            k == SIGCONT
            and around & _mask_of(STOP_SIGNALS)
            or (k in STOP_SIGNALS and around >> (SIGCONT - 1) & 1)
        ):
            other = "stop signals" if k == SIGCONT else "SIGCONT"
            raise OSError(
                errno.EBUSY,
                f"queueing {_names(1 << (k - 1))} would make the kernel drop the pending "
                f"{other}: the queue would not be what was written",
            )
        kept.append(raw)
        mask |= 1 << (k - 1)
        around |= 1 << (k - 1)
    note = ""
    if merged:
        note = f"; already pending, merged as kill(2) would: {_names(merged)}"
    return take, kept, base + kept, note


def _pending_elsewhere(tgid: int, tid: int, shared: bool) -> int:
    """The signals pending in the process's queues other than the one
    written: the shared queue and every thread's own."""
    out = 0
    for t in procfs.list_tids(tgid):
        try:
            st = procfs.read_status(tgid, t)
        except ProcessLookupError:
            continue
        if shared or t != tid:
            out |= procfs.hex_field(st, "SigPnd")
        if not shared:
            out |= procfs.hex_field(st, "ShdPnd")
    return out


def _counts(raws: list[bytes]) -> dict[int, int]:
    out: dict[int, int] = {}
    for raw in raws:
        out[_signo(raw)] = out.get(_signo(raw), 0) + 1
    return out


def _mask_of(signals: set[int]) -> int:
    return sum(1 << (k - 1) for k in signals)


#: How a failure that changed the process begins its message: the
#: ``errors`` line then says so instead of "write refused" (see fs.write).
PARTWAY = "changed partway: "


def _ns_last(st: procfs.Status, key: str, default: int) -> int:
    """The last number of ``NSpid``/``NStgid``: the id as the process's own
    pid namespace has it (what its syscalls take)."""
    field = (st.get(key) or "").split()
    return int(field[-1]) if field else default


def _limited(raw: bytes) -> bool:
    """Whether queueing this siginfo counts against RLIMIT_SIGPENDING: the
    kernel lets a standard signal with a kernel's si_code (>= 0) pass the
    limit, and queues any other over it without its siginfo (or refuses)."""
    return not (_signo(raw) < SIGRTMIN and _code(raw) >= 0)


def _same_siginfo(taken: bytes, shown: bytes) -> bool:
    """Whether a siginfo taken out is the record the queue showed.  A POSIX
    timer's is rewritten as it is taken out (its overrun count, its private
    word), so only its signal, code, timer id and value are compared."""
    if _code(shown) == SI_TIMER:
        return taken[:20] == shown[:20] and taken[24:32] == shown[24:32]
    return taken == shown


async def write_pending(
    tracer: Tracer,
    tgid: int,
    tid: int,
    shared: bool,
    new: list[bytes],
    replace: bool,
    exact: bool,
    check: Callable[[], None] | None = None,
) -> str:
    """Make thread ``tid``'s private queue (or with ``shared`` the
    process's) what was written: ``new`` raw siginfos queued after it, or
    with ``replace`` instead of it (see :func:`plan_pending`).  Returns a
    line for ``errors`` saying what changed.

    Only the process itself can queue a siginfo the kernel would have made
    (si_code >= 0, SI_TKILL): each is queued by an injected
    rt_tgsigqueueinfo in the thread (for the shared queue rt_sigqueueinfo
    in the leader), so it arrives byte for byte; the ids passed are the
    ones of the process's own pid namespace.  What is taken out is taken by
    an injected rt_sigtimedwait with a zero timeout, one at a time, each
    checked against the record it should be.  All in one stop: ``check``
    (the writer's permission) first, then the queue as it is, the plan, the
    changes and, where nothing else can touch the queue (a thread's own
    queue, or a frozen process), a read back that must be exactly what was
    planned.  Should a step fail after siginfos were taken out, what was
    queued meanwhile is taken out again and they are queued back, in order."""
    if shared:
        qtid = live_thread(tgid)
        kernel_coded = any(_code(r) >= 0 or _code(r) == SI_TKILL for r in new)
        if qtid != tgid and kernel_coded:
            raise OSError(
                errno.EBUSY,
                "the thread group leader has exited: only it may queue a siginfo with "
                "a kernel's si_code (or SI_TKILL) to its own process",
            )
    else:
        qtid = tid
    what = "shared" if shared else f"thread {qtid}'s"
    async with tracer.stopped(tgid, qtid) as att:
        _may_write(tracer, qtid, check)
        try:
            old = pt.peeksiginfo(qtid, shared)
            st = procfs.read_status(tgid, qtid)
        except pt.TraceError as exc:
            if exc.errno == errno.ESRCH:
                raise ProcessLookupError(errno.ESRCH, f"thread {qtid} exited") from None
            raise
        old_mask = procfs.hex_field(st, "ShdPnd" if shared else "SigPnd")
        if (procfs.hex_field(st, "ShdPnd") | procfs.hex_field(st, "SigPnd")) & _mask_of({19}):
            # SIGSTOP cannot be blocked: the injected code would take it,
            # and the process would stop in the middle of the write.
            raise OSError(
                errno.EBUSY,
                f"SIGSTOP is pending for thread {qtid}, and the code sigfs runs there to "
                "change the queue would take it: let it stop first (thaw), or send SIGCONT",
            )
        elsewhere = 0
        if _bits(new) & _mask_of(STOP_SIGNALS | {SIGCONT}):
            elsewhere = _pending_elsewhere(tgid, qtid, shared)
        take, queue, expected, note = plan_pending(old, old_mask, new, replace, exact, elsewhere)
        own: list[bytes] = []  # the thread's own queue, lifted and put back
        if shared and take and procfs.hex_field(st, "SigPnd") & _mask_of(set(take)):
            # rt_sigtimedwait takes from the thread's own queue first: take
            # all of it out, and queue it again, in order, afterwards.
            own = pt.peeksiginfo(qtid, False)
            if _bits(own) != procfs.hex_field(st, "SigPnd") or any(
                _code(r) == SI_TIMER for r in own
            ):
                raise OSError(
                    errno.EBUSY,
                    f"thread {qtid} has {_names(procfs.hex_field(st, 'SigPnd'))} pending "
                    "itself, which cannot be taken out and queued again unchanged (a bit "
                    "without its siginfo, or a POSIX timer's): the shared queue's cannot "
                    "be taken out without it",
                )
        queued, limit = sigq(tgid)
        taken = sum(1 for r in old if _signo(r) in take and _limited(r))
        adding = sum(1 for r in queue if _limited(r))
        if adding and queued - taken + adding > limit:
            raise OSError(
                errno.EAGAIN,
                f"{adding} more queued signals would pass the user's RLIMIT_SIGPENDING "
                f"({queued} of {limit} queued)",
            )
        if not take and not queue:
            return f"unchanged{note}"
        ns_tgid, ns_tid = _ns_last(st, "NStgid", tgid), _ns_last(st, "NSpid", qtid)

        async def put(inj: inject.Injection, raw: bytes, to_shared: bool) -> int:
            inj.write(inj.scratch, raw)
            if to_shared:
                return await inj.syscall(
                    inject.SYS["rt_sigqueueinfo"], ns_tgid, _signo(raw), inj.scratch
                )
            return await inj.syscall(
                inject.SYS["rt_tgsigqueueinfo"], ns_tgid, ns_tid, _signo(raw), inj.scratch
            )

        # Shielded throughout: a cancelled request must not stop between a
        # take-out and its putting back.
        with aio.shield():
            async with inject.Injection(tracer, att) as inj:
                out_own: list[bytes] = []
                out_queue: list[bytes] = []
                done: list[bytes] = []
                try:
                    await _take_out(inj, _counts(own), own, qtid, out_own)
                    await _take_out(inj, take, old, qtid, out_queue)
                    for i, raw in enumerate(queue):
                        r = await put(inj, raw, shared)
                        if r != 0:
                            raise OSError(
                                errno.EIO,
                                f"the kernel refused to queue {_names(1 << (_signo(raw) - 1))} "
                                f"({os.strerror(-r) if -4096 < r < 0 else r}) after {i} of "
                                f"{len(queue)}",
                            )
                        done.append(raw)
                    for raw in own:
                        r = await put(inj, raw, False)
                        if r != 0:
                            raise OSError(
                                errno.EIO,
                                f"thread {qtid}'s own queue could not be put back "
                                f"({os.strerror(-r) if -4096 < r < 0 else r})",
                            )
                        out_own.pop(0)  # back in place
                except Exception as exc:
                    if not (out_own or out_queue):
                        if done:
                            raise OSError(
                                errno.EIO,
                                f"{PARTWAY}{len(done)} of {len(queue)} queued; the {what} queue "
                                f"holds them: read it ({exc})",
                            ) from None
                        raise
                    back = await _put_back(inj, put, shared, done, out_queue, out_own, qtid)
                    raise OSError(
                        errno.EIO,
                        (
                            f"{exc}; the {what} queue was put back as it was"
                            if back
                            else f"{PARTWAY}{exc}; the {what} queue could not be put back: read it"
                        ),
                    ) from None
        if own and pt.peeksiginfo(qtid, False) != own:
            raise OSError(errno.EIO, f"{PARTWAY}thread {qtid}'s own queue did not come back")
        if not shared or tgid in tracer.frozen:
            now = pt.peeksiginfo(qtid, shared)
            if now != expected:
                raise OSError(
                    errno.EIO,
                    f"{PARTWAY}the {what} queue holds {len(now)} siginfos "
                    f"({_names(_bits(now))}), not the {len(expected)} written: read it",
                )
    parts = []
    if take:
        parts.append(f"took out {sum(take.values())} ({_names(_mask_of(set(take)))})")
    if queue:
        parts.append(f"queued {len(queue)} ({_names(_bits(queue))})")
    return ", ".join(parts) + note


async def _put_back(
    inj: inject.Injection,
    put: Callable[[inject.Injection, bytes, bool], Awaitable[int]],
    shared: bool,
    done: list[bytes],
    out_queue: list[bytes],
    out_own: list[bytes],
    tid: int,
) -> bool:
    """After a failure: take out again what was queued (``done``: the queue
    then holds nothing else of those signals, everything having been taken
    out before), queue back what was taken out, the thread's own queue
    last.  True if every step went as planned."""
    ok = True
    try:
        if done:
            scratch: list[bytes] = []
            await _take_out(inj, _counts(done), done, tid, scratch)
        for raw in out_queue:
            ok = await put(inj, raw, shared) == 0 and ok
        for raw in out_own:
            ok = await put(inj, raw, False) == 0 and ok
    except Exception:
        return False
    return ok


async def _take_out(
    inj: inject.Injection, take: dict[int, int], old: list[bytes], tid: int, out: list[bytes]
) -> None:
    """rt_sigtimedwait(one signal, zero timeout) in the thread, as many times
    as ``take`` says for each signal; each siginfo taken must be the one
    ``old`` has next for it (none for a bit without a record).  What is
    taken is appended to ``out`` (the record as the queue showed it), in
    queue order, for putting back."""
    if not take:
        return
    set_at, ts_at, info_at = inj.scratch, inj.scratch + 16, inj.scratch + 64
    inj.write(ts_at, bytes(16))
    gone: dict[int, list[bytes]] = {}
    for k, n in take.items():
        records = [raw for raw in old if _signo(raw) == k]
        inj.write(set_at, (1 << (k - 1)).to_bytes(8, "little"))
        for i in range(n):
            r = await inj.syscall(inject.SYS["rt_sigtimedwait"], set_at, info_at, ts_at, 8)
            if r != k:
                _in_order(old, gone, out)  # what was taken before is put back
                raise OSError(
                    errno.EIO,
                    f"taking out {_names(1 << (k - 1))} in thread {tid} gave "
                    f"{os.strerror(-r) if -4096 < r < 0 else r}: the queue changed meanwhile",
                )
            got = inj.read(info_at, 128)
            if i < len(records):
                gone.setdefault(k, []).append(got)  # what came out is what goes back
                if not _same_siginfo(got, records[i]):
                    _in_order(old, gone, out)
                    raise OSError(
                        errno.EIO,
                        f"taking out {_names(1 << (k - 1))} in thread {tid} gave another "
                        "siginfo than the queue showed: it changed meanwhile",
                    )
    _in_order(old, gone, out)


def _in_order(old: list[bytes], gone: dict[int, list[bytes]], out: list[bytes]) -> None:
    """Append to ``out`` the siginfos taken out (``gone``, by signal, in the
    order they came out), placed where ``old`` has their signal's records."""
    left = {k: list(v) for k, v in gone.items()}
    for raw in old:
        taken = left.get(_signo(raw))
        if taken:
            out.append(taken.pop(0))


# Writing sig/altstack.
SS_ONSTACK, SS_DISABLE, SS_AUTODISARM = 1, 2, 1 << 31
ALTSTACK_FLAGS = SS_ONSTACK | SS_DISABLE | SS_AUTODISARM


def _rw_mapped(tgid: int, start: int, end: int) -> bool:
    """Whether [start, end) lies in read-write mappings of the process,
    side by side with no hole (/proc/PID/maps)."""
    at = start
    for lo, hi, perms, _path in procfs.mappings(tgid):
        if hi <= at:
            continue
        if lo > at or not perms.startswith("rw"):
            return False
        at = hi
        if at >= end:
            return True
    return False


async def set_altstack(
    tracer: Tracer,
    tgid: int,
    tid: int,
    new: AltStack,
    check: Callable[[], None] | None = None,
) -> tuple[AltStack, AltStack]:
    """Give thread ``tid`` the alternate signal stack ``new`` with an
    injected sigaltstack(&new, &old) and read it back; returns (old, now).

    SS_ONSTACK is what the thread is doing (running a handler on that
    stack), not a setting: it is ignored on input, and the stack of a
    thread on it cannot be changed (the kernel's EPERM, refused as EBUSY).
    A stack that is not disabled must lie in read-write memory of the
    process: a signal delivered on anything else would kill it.  The
    kernel's own refusals (a size under its minimum, ENOMEM) change
    nothing and come back as EINVAL."""
    flags = new.flags & ~SS_ONSTACK
    if new.flags & ~ALTSTACK_FLAGS:
        raise OSError(
            errno.EINVAL,
            f"flags {new.flags:#x}: only SS_DISABLE (2) and SS_AUTODISARM ({SS_AUTODISARM}) "
            "can be set",
        )
    disable = bool(flags & SS_DISABLE)
    if disable:
        # sp and size are dropped by the kernel; SS_AUTODISARM it keeps.
        flags &= SS_DISABLE | SS_AUTODISARM
    if not disable and (new.size == 0 or new.sp + new.size > 1 << 64):
        raise OSError(errno.EINVAL, f"a stack of {new.size} bytes at {new.sp:#x} is not a stack")
    async with tracer.stopped(tgid, tid) as att:
        _may_write(tracer, tid, check)
        async with inject.Injection(tracer, att) as inj:
            old = AltStack(*await inject.read_altstack(inj))
            want = (0, 0, flags) if disable else (new.sp, new.size, flags)
            if (old.sp, old.size, old.flags & ~SS_ONSTACK) == want:
                return old, old
            if not disable and not _rw_mapped(tgid, new.sp, new.sp + new.size):
                raise OSError(
                    errno.EINVAL,
                    f"{new.sp:#x}..{new.sp + new.size:#x} is not read-write memory of the "
                    "process (see its mm): a signal delivered there would kill it",
                )
            if old.flags & SS_ONSTACK:
                raise OSError(
                    errno.EBUSY,
                    f"thread {tid} is running a signal handler on its alternate stack, which "
                    "cannot be changed until it returns",
                )
            inj.write(
                inj.scratch,
                inject.STACK_T.pack(
                    new.sp if not disable else 0,
                    _s32(flags),
                    0,
                    new.size if not disable else 0,
                ),
            )
            r = await inj.syscall(inject.SYS["sigaltstack"], inj.scratch, 0)
            if r == -errno.ENOMEM:
                raise OSError(
                    errno.EINVAL, f"{new.size} bytes is less than the kernel's minimum for a stack"
                )
            if r == -errno.EPERM:
                raise OSError(errno.EBUSY, f"thread {tid} is on its alternate stack")
            if r != 0:
                raise OSError(
                    errno.EINVAL if r == -errno.EINVAL else errno.EIO,
                    f"sigaltstack in thread {tid}: {os.strerror(-r) if -4096 < r < 0 else r}",
                )
            now = AltStack(*await inject.read_altstack(inj))
            if (now.sp, now.size, now.flags & ~SS_ONSTACK) != want:
                raise OSError(
                    errno.EIO,
                    f"thread {tid}'s stack is {now.sp:#x} {now.size} {now.flags}, not what was "
                    "written",
                )
    return old, now


# Writing sig/action.
SA_RESTORER = 0x04000000
# The sa_flags bits the kernel keeps on x86-64 (UAPI_SA_FLAGS); it clears
# any other silently.
SA_KEPT = 0x1 | 0x2 | 0x4 | 0x800 | SA_RESTORER | 0x08000000 | 0x10000000 | 0x40000000 | 0x80000000


def _mapping_of(maps: list[tuple[int, int, str, str]], addr: int) -> str | None:
    """The permissions of the mapping holding ``addr``, or None."""
    return next((perms for lo, hi, perms, _path in maps if lo <= addr < hi), None)


def check_actions(tgid: int, acts: list[SigAction]) -> None:
    """Refuse (EINVAL) what the kernel would drop or change silently, or what
    would kill the process at the next delivery: SIGKILL and SIGSTOP other
    than their default, SIGKILL/SIGSTOP in a mask, flags the kernel does
    not keep, a handler without SA_RESTORER (a 64-bit handler returns only
    through it), a handler or restorer outside the process's executable
    mappings."""
    maps: list[tuple[int, int, str, str]] | None = None
    for a in acts:
        name = _names(1 << (a.signum - 1))
        if a.signum in (9, 19) and (a.handler, a.flags, a.restorer, a.mask) != (0, 0, 0, 0):
            raise OSError(errno.EINVAL, f"{name}'s action cannot be changed")
        if a.mask & UNBLOCKABLE:
            raise OSError(errno.EINVAL, f"{name}: SIGKILL and SIGSTOP cannot be in a mask")
        if a.flags & ~SA_KEPT:
            raise OSError(
                errno.EINVAL, f"{name}: flags {a.flags & ~SA_KEPT:#x} are not kept by the kernel"
            )
        if a.handler <= 1:
            continue  # SIG_DFL, SIG_IGN: the restorer is never used
        if not a.flags & SA_RESTORER:
            raise OSError(
                errno.EINVAL,
                f"{name}: a handler without SA_RESTORER (0x4000000) cannot return on x86-64; "
                "the kernel would kill the process at delivery",
            )
        if maps is None:
            maps = procfs.mappings(tgid)
        for what, addr in (("handler", a.handler), ("restorer", a.restorer)):
            if "x" not in (_mapping_of(maps, addr) or "---"):
                raise OSError(
                    errno.EINVAL,
                    f"{name}: {what} {addr:#x} is not in executable memory of the process "
                    "(see its mm): a delivery would kill it",
                )


async def set_actions(
    tracer: Tracer, tgid: int, acts: list[SigAction], check: Callable[[], None] | None = None
) -> list[tuple[SigAction, SigAction]]:
    """Give the process the sigactions ``acts`` (the other signals keep
    theirs), each with an injected rt_sigaction in one stop of a live
    thread, and read back; returns (old, new) for those that changed.  The
    addresses are checked against the mappings in the same stop
    (:func:`check_actions`).  Setting SIG_IGN discards what is pending of
    that signal, as it would for the process's own sigaction()."""
    tid = live_thread(tgid)
    changed: list[tuple[SigAction, SigAction]] = []
    async with tracer.stopped(tgid, tid) as att:
        _may_write(tracer, tid, check)
        # Shielded: a cancelled request must not stop before it has set back
        # what it set.
        with aio.shield():
            async with inject.Injection(tracer, att) as inj:
                current = await inject.read_sigactions(inj)
                for a in acts:
                    h, f, r, m = current[a.signum - 1]
                    old = SigAction(signum=a.signum, handler=h, flags=f, restorer=r, mask=m)
                    if old != a:
                        changed.append((old, a))
                # Only what changes is checked: a line written back as the
                # kernel holds it is accepted whatever it holds.
                check_actions(tgid, [new for _, new in changed])
                # Ignoring discards what is pending of the signal, which no
                # setting back restores: those go last.
                changed.sort(key=lambda pair: _discards(pair[1]))
                done: list[SigAction] = []
                try:
                    for old, new in changed:
                        await _sigaction(inj, new, done, old)
                except Exception as exc:
                    failed = []
                    for old in reversed(done):
                        try:
                            await _sigaction(inj, old, [], old)
                        except Exception:
                            failed.append(old.signum)
                    if failed:
                        raise OSError(
                            errno.EIO,
                            f"{PARTWAY}{exc}; and the actions of "
                            f"{_names(_mask_of(set(failed)))} could not be set back: read it",
                        ) from None
                    raise
    return changed


# Ignored by default: SIG_DFL discards them as SIG_IGN does (sig_kernel_ignore).
KERNEL_IGNORED = {17, 18, 23, 28}  # SIGCHLD SIGCONT SIGURG SIGWINCH


def _discards(a: SigAction) -> bool:
    return a.handler == 1 or (a.handler == 0 and a.signum in KERNEL_IGNORED)


async def _sigaction(
    inj: inject.Injection, a: SigAction, done: list[SigAction], old: SigAction
) -> None:
    """rt_sigaction(signum, &a, NULL) in the thread, and read back; ``old``
    goes into ``done`` as soon as the kernel took the call (for setting
    back), before the read back is checked."""
    put, got = inj.scratch, inj.scratch + 64
    inj.write(put, inject.KSIGACTION.pack(a.handler, a.flags, a.restorer, a.mask))
    r = await inj.syscall(inject.SYS["rt_sigaction"], a.signum, put, 0, 8)
    if r != 0:
        raise OSError(
            errno.EINVAL if r == -errno.EINVAL else errno.EIO,
            f"rt_sigaction({a.signum}): {os.strerror(-r) if -4096 < r < 0 else r}",
        )
    done.append(old)
    await inj.check(inject.SYS["rt_sigaction"], a.signum, 0, got, 8)
    h, f, rs, m = inject.KSIGACTION.unpack(inj.read(got, inject.KSIGACTION.size))
    if (h, f, rs, m) != (a.handler, a.flags, a.restorer, a.mask):
        raise OSError(
            errno.EIO,
            f"the kernel kept {h:#x} {f:#x} {rs:#x} {m:#x} for signal {a.signum}, not what "
            "was written",
        )


# Writing regs and fpu.
XSTATE_READ = 16384  # more than any xsave area (image.XSTATE_MAX)


ORIG_RAX_NONE = (1 << 64) - 1
USER_CS, USER32_CS, USER_SS = 0x33, 0x23, 0x2B
EFLAGS_TF = 0x100
# How far below [stack] a new rsp may point: the stack grows down there on
# first use (up to its rlimit; 8 MiB is the usual one).
STACK_GROWTH = 8 << 20


def _check_new_regs(tgid: int, old: pt.Regs, new: pt.Regs) -> None:
    """EINVAL for changed registers that would crash the thread at once:
    ``rip`` outside executable memory, ``rsp`` outside read-write memory
    (its end, or the growth area below ``[stack]``, included), ``cs``/``ss``
    other than the user segments (the kernel takes any selector of
    privilege 3), the trap flag (a SIGTRAP with no debugger)."""
    maps = procfs.mappings(tgid) if (new.rip, new.rsp) != (old.rip, old.rsp) else []
    if new.rip != old.rip and "x" not in (_mapping_of(maps, new.rip) or "---"):
        raise OSError(
            errno.EINVAL,
            f"rip {new.rip:#x} is not in executable memory of the process (see its mm)",
        )
    if new.rsp != old.rsp and not _stack_ok(maps, new.rsp):
        raise OSError(
            errno.EINVAL,
            f"rsp {new.rsp:#x} is not in read-write memory of the process (see its mm)",
        )
    if new.cs != old.cs and new.cs not in (USER_CS, USER32_CS):
        raise OSError(errno.EINVAL, f"cs {new.cs:#x}: a user thread runs with 0x33 (or 0x23)")
    if new.ss != old.ss and new.ss != USER_SS:
        raise OSError(errno.EINVAL, f"ss {new.ss:#x}: a user thread runs with 0x2b")
    if new.eflags & EFLAGS_TF and not old.eflags & EFLAGS_TF:
        raise OSError(
            errno.EINVAL, "eflags: the trap flag (0x100) would kill the thread with SIGTRAP"
        )


def _stack_ok(maps: list[tuple[int, int, str, str]], rsp: int) -> bool:
    for lo, hi, perms, path in maps:
        if not perms.startswith("rw"):
            continue
        if lo < rsp <= hi:  # the slot below rsp is in it: an empty stack is its end
            return True
        if path == "[stack]" and lo - STACK_GROWTH < rsp <= hi:
            return True
    return False


async def set_regs(
    tracer: Tracer,
    tgid: int,
    tid: int,
    values: dict[str, int],
    check: Callable[[], None] | None = None,
) -> tuple[pt.Regs, pt.Regs]:
    """Give thread ``tid`` the register values ``values`` (the others keep
    theirs) in one stop: PTRACE_GETREGS, the changes, PTRACE_SETREGS, and
    PTRACE_GETREGS again, which must hold exactly what was asked (the
    kernel refuses a bad segment selector or base, and keeps the eflags
    bits a user cannot set: either is refused, the registers set back).  A
    new ``rip`` must be in executable memory and a new ``rsp`` in
    read-write memory of the process (or the thread would crash at once).
    Returns (old, new) registers."""

    def apply(_att: object) -> tuple[pt.Regs, pt.Regs]:
        _may_write(tracer, tid, check)
        old = pt.getregs(tid)
        new = pt.copy_regs(old)
        for name, value in values.items():
            setattr(new, name, value)
        if new.rip != old.rip and "orig_rax" not in values and pt.regs_signed(old.orig_rax) >= 0:
            # Stopped inside a syscall, the kernel would still run its
            # restart step on the new rip (rip -= 2, rax = orig_rax) when the
            # thread goes on: as gdb does when it writes the pc, no restart.
            new.orig_rax = ORIG_RAX_NONE
        _check_new_regs(tgid, old, new)
        try:
            pt.setregs(tid, new)
        except pt.TraceError as exc:
            if exc.errno == errno.ESRCH:
                raise
            # The kernel writes register by register and stops at the one it
            # refuses: those before it are already written.
            pt.setregs(tid, old)
            raise OSError(
                errno.EINVAL,
                "the kernel refuses these registers (a segment selector or base it does not "
                f"allow): {os.strerror(exc.errno or 0)}",
            ) from None
        now = pt.getregs(tid)
        bad = [n for n in values if getattr(now, n) != getattr(new, n)]
        if bad:
            pt.setregs(tid, old)
            shown = ", ".join(f"{n} {getattr(now, n):#x} for {getattr(new, n):#x}" for n in bad)
            raise OSError(
                errno.EINVAL,
                f"the kernel keeps {shown} (eflags: only the flags a program may change)",
            )
        return old, now

    return await _with_stopped_write(tracer, tgid, tid, apply)


async def set_fpu(
    tracer: Tracer,
    tgid: int,
    tid: int,
    blob: bytes,
    check: Callable[[], None] | None = None,
) -> bool:
    """Give thread ``tid`` the xsave area ``blob`` (PTRACE_SETREGSET
    NT_X86_XSTATE) in one stop and read it back.  It must be this CPU's
    size (the kernel takes only a whole area); the kernel refuses a header
    or MXCSR it does not allow (refused, nothing changed).  Returns False
    when it already held ``blob``."""

    def apply(_att: object) -> bool:
        _may_write(tracer, tid, check)
        old = pt.getregset(tid, pt.NT_X86_XSTATE, max(XSTATE_READ, -(-len(blob) // 64) * 64))
        if old == blob:
            return False
        if len(old) != len(blob):
            raise OSError(
                errno.EINVAL,
                f"the xsave area written is {len(blob)} bytes; this CPU's is {len(old)} "
                "(an image from another machine?)",
            )
        try:
            pt.setregset(tid, pt.NT_X86_XSTATE, blob)
        except pt.TraceError as exc:
            if exc.errno == errno.ESRCH:
                raise
            raise OSError(
                errno.EINVAL,
                "the kernel refuses this xsave area (its header's feature bits, or reserved "
                f"MXCSR bits): {os.strerror(exc.errno or 0)}",
            ) from None
        now = pt.getregset(tid, pt.NT_X86_XSTATE, max(XSTATE_READ, -(-len(blob) // 64) * 64))
        if now != blob:
            pt.setregset(tid, pt.NT_X86_XSTATE, old)
            at = next(i for i in range(min(len(now), len(blob))) if now[i] != blob[i])
            raise OSError(
                errno.EINVAL,
                f"the kernel keeps another xsave area than the one written (first "
                f"difference at byte {at:#x}); set back as it was. A component whose "
                "bit is clear in the header's xstate_bv (byte 0x200) is in its initial "
                "state and not written: set the bit to give it values",
            )
        return True

    return await _with_stopped_write(tracer, tgid, tid, apply)


# Writing status: what the process can set for itself, set by it (injected),
# so that nothing gets more privilege than the process has.
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME = 1, 4, 15
PR_SET_TIMERSLACK, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 29, 36, 38
PR_SET_THP_DISABLE = 41
#: The keys of `status` a write can change.
STATUS_WRITABLE = (
    "comm",
    "umask",
    "personality",
    "pdeath_signal",
    "dumpable",
    "child_subreaper",
    "thp_disable",
    "timerslack_ns",
    "nice",
    "sched_policy",
    "sched_priority",
    "rlimit",
    "no_new_privs",
)
# The order the changes are made in: what can be set back first; then what
# the process may be unable to undo (a nice raised, a scheduling policy, a
# hard limit lowered: undoing them takes privileges it may lack), and
# no_new_privs, which nothing undoes, last.
STATUS_ORDER = (
    "comm",
    "umask",
    "personality",
    "pdeath_signal",
    "dumpable",
    "child_subreaper",
    "thp_disable",
    "rlimit",  # those that lower no hard limit
    "nice",
    "sched",
    "timerslack_ns",  # after sched: a real-time thread ignores it
    "rlimit lowered",  # those that lower a hard limit
    "no_new_privs",
)
REALTIME_POLICIES = {1, 2, 6}  # SCHED_FIFO SCHED_RR SCHED_DEADLINE
SCHED_RESET_ON_FORK = 0x40000000


def _realtime(values: dict[str, object], old: StatusModel) -> bool:
    """Whether the thread's policy once written is a real-time one (whose
    timer slack is the kernel's: 0, and not settable)."""
    policy = int(values.get("sched_policy", old.sched_policy))  # type: ignore[call-overload]
    return policy & ~SCHED_RESET_ON_FORK in REALTIME_POLICIES


def _status_refusals(old: StatusModel, values: dict[str, object]) -> None:
    """EOPNOTSUPP for a change to a key the process cannot make itself
    (or that sigfs does not make); EINVAL for values the kernel would not
    keep as written."""
    fixed = [k for k, v in values.items() if k not in STATUS_WRITABLE and getattr(old, k) != v]
    if fixed == ["cwd"]:
        # A chdir() injected into the process could sleep on a slow or hung
        # filesystem past the stop timeout, with the thread in sigfs's hands.
        raise OSError(
            errno.EOPNOTSUPP,
            "cwd: not set through status (an injected chdir could hang on the filesystem)",
        )
    if fixed:
        raise OSError(
            errno.EOPNOTSUPP,
            f"{', '.join(fixed)}: cannot be changed through status (only "
            f"{' '.join(k for k in STATUS_WRITABLE)})",
        )

    def changes(key: str) -> bool:
        return key in values and values[key] != getattr(old, key)

    if changes("no_new_privs") and values["no_new_privs"] == 0:
        raise OSError(errno.EINVAL, "no_new_privs cannot be cleared once set")
    if changes("dumpable") and values["dumpable"] not in (0, 1):
        raise OSError(errno.EINVAL, "dumpable: 0 or 1 (2 is the kernel's suid_dumpable)")
    if changes("thp_disable") and values["thp_disable"] not in (0, 1):
        raise OSError(errno.EINVAL, "thp_disable: 0 or 1 can be set")
    if changes("personality") and values["personality"] == 0xFFFFFFFF:
        raise OSError(errno.EINVAL, "personality 0xffffffff only asks; it sets nothing")
    if changes("timerslack_ns") and not _realtime(values, old):
        if values["timerslack_ns"] == 0:
            raise OSError(errno.EINVAL, "timerslack_ns 0 would mean the default, not 0")


async def set_status(
    tracer: Tracer,
    tgid: int,
    values: dict[str, object],
    rlimits: dict[str, tuple[int, int]],
    check: Callable[[], None] | None = None,
) -> list[str]:
    """Set the ``status`` keys written that differ from the process's, each
    by the process itself (an injected prctl, umask, chdir, personality,
    setpriority, sched_setscheduler or prlimit64 in the leader, which the
    per-thread settings are read from), so its own privileges decide, in
    one stop; then read back.  The writer's permission is checked before
    anything is read and again after (nothing of a process it may no longer
    trace is told, not even by "unchanged").  A step the kernel refuses
    sets back those made before it (in :data:`STATUS_ORDER`, what may not
    be undone comes last) and fails with the kernel's error.  Returns a
    note per change."""
    from sigfs.image import RLIMITS, read_status

    tid = live_thread(tgid)
    if tid != tgid:
        raise OSError(
            errno.EBUSY,
            "the thread group leader has exited: the settings status shows are its own",
        )

    def allowed(_att: object) -> None:
        _may_write(tracer, tid, check)

    await _with_stopped_write(tracer, tgid, tid, allowed)
    old = await read_status(tracer, tgid)
    with open(f"/proc/{tgid}/comm", "rb") as f:
        old_comm = f.read().rstrip(b"\n")  # as bytes: it need not be UTF-8
    await _with_stopped_write(tracer, tgid, tid, allowed)
    _status_refusals(old, values)
    current_rl = {name: (soft, hard) for name, soft, hard in old.rlimits}
    steps: dict[str, list[tuple[str, object, object]]] = {k: [] for k in STATUS_ORDER}
    for key in STATUS_WRITABLE:
        if key == "rlimit":
            for name, limits in rlimits.items():
                had = current_rl[name]
                if had != limits:
                    slot = "rlimit lowered" if limits[1] < had[1] else "rlimit"
                    steps[slot].append((f"rlimit {name}", limits, had))
        elif key in ("sched_policy", "sched_priority"):
            continue
        elif key in values and values[key] != getattr(old, key):
            before = old_comm if key == "comm" else getattr(old, key)
            steps[key].append((key, values[key], before))
    if _realtime(values, old):
        steps["timerslack_ns"] = []  # the kernel keeps none for a real-time thread
    policy = values.get("sched_policy", old.sched_policy)
    # A priority not written: 0 for a policy that is not real-time (the
    # kernel refuses another), the one it has otherwise.
    default_priority = old.sched_priority if _realtime(values, old) else 0
    want = (policy, values.get("sched_priority", default_priority))
    if want != (old.sched_policy, old.sched_priority):
        steps["sched"].append(("sched", want, (old.sched_policy, old.sched_priority)))
    todo = [step for key in STATUS_ORDER for step in steps[key]]
    if not todo:
        return []
    resources = dict(RLIMITS)
    try:
        async with tracer.stopped(tgid, tid) as att:
            _may_write(tracer, tid, check)
            with aio.shield():
                async with inject.Injection(tracer, att) as inj:
                    await _apply_status(inj, todo, resources)
    finally:
        # What the action stub found for status and mm while frozen is
        # not what it was any more.
        tracer.frozen_facts.pop(tgid, None)
    now = await read_status(tracer, tgid)
    now_rl = {name: (soft, hard) for name, soft, hard in now.rlimits}
    notes = []
    for key, new, was in todo:
        if key.startswith("rlimit "):
            got: object = now_rl[key.split()[1]]
        elif key == "sched":
            got = (now.sched_policy, now.sched_priority)
        else:
            got = getattr(now, key)
        if got != new:
            raise OSError(
                errno.EIO,
                f"{PARTWAY}{key} reads {got!r} after being set to {new!r}: read status",
            )
        if isinstance(was, bytes):
            was = was.decode("utf-8", "replace")
        notes.append(f"{key} {new!r} (was {was!r})")
    return notes


async def _apply_status(
    inj: inject.Injection,
    todo: list[tuple[str, object, object]],
    resources: dict[str, int],
) -> None:
    """Each step of ``todo`` in turn; on a refusal, those done are set back
    in reverse, and the refusal raised (EIO saying so if one could not be
    set back)."""
    done: list[tuple[str, object, object]] = []
    try:
        for key, new, was in todo:
            await _set_one(inj, key, new, resources)
            done.append((key, new, was))
    except Exception as exc:
        failed = []
        for key, _new, was in reversed(done):
            try:
                await _set_one(inj, key, was, resources)
            except Exception:
                failed.append(key)
        if failed:
            raise OSError(
                errno.EIO,
                f"{PARTWAY}{exc}; and {', '.join(failed)} could not be set back: read status",
            ) from None
        raise


async def _set_one(
    inj: inject.Injection, key: str, value: object, resources: dict[str, int]
) -> None:
    """One setting, by the process itself; raises OSError with the kernel's
    errno (EPERM for what it may not do) when refused."""
    buf = inj.scratch
    if key == "comm":
        assert isinstance(value, (str, bytes))
        raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        inj.write(buf, raw[:15] + b"\0")
        r = await inj.syscall(inject.SYS["prctl"], PR_SET_NAME, buf, 0, 0, 0)
    elif key == "umask":
        r = await inj.syscall(inject.SYS["umask"], int(value))  # type: ignore[call-overload]
        r = 0 if r >= 0 else r
    elif key == "personality":
        r = await inj.syscall(inject.SYS["personality"], int(value))  # type: ignore[call-overload]
        r = 0 if r >= 0 else r
    elif key == "nice":
        r = await inj.syscall(inject.SYS["setpriority"], 0, 0, int(value))  # type: ignore[call-overload]
    elif key == "sched":
        assert isinstance(value, tuple)
        policy, priority = (int(v) for v in value)
        inj.write(buf, priority.to_bytes(4, "little", signed=True))
        r = await inj.syscall(inject.SYS["sched_setscheduler"], 0, policy, buf)
    elif key.startswith("rlimit "):
        assert isinstance(value, tuple)
        soft, hard = (int(v) for v in value)
        inj.write(buf, soft.to_bytes(8, "little") + hard.to_bytes(8, "little"))
        r = await inj.syscall(inject.SYS["prlimit64"], 0, resources[key.split()[1]], buf, 0)
    else:
        option = {
            "pdeath_signal": PR_SET_PDEATHSIG,
            "dumpable": PR_SET_DUMPABLE,
            "child_subreaper": PR_SET_CHILD_SUBREAPER,
            "thp_disable": PR_SET_THP_DISABLE,
            "timerslack_ns": PR_SET_TIMERSLACK,
            "no_new_privs": PR_SET_NO_NEW_PRIVS,
        }[key]
        r = await inj.syscall(inject.SYS["prctl"], option, int(value), 0, 0, 0)  # type: ignore[call-overload]
    if -4096 < r < 0:
        raise OSError(-r, f"{key}: the process may not set it: {os.strerror(-r)}")
