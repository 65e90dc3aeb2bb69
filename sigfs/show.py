"""``sigfs show PID``: a process's signal state decoded for people.

Reads the same state the mount shows (through the same readers, in-process,
no mount needed) and prints it with signal names, SA_* flag names, si_code
names and handler symbols.
"""

from __future__ import annotations

import errno
import sys

from sigfs import aio, procfs, signals, state, symbols
from sigfs.formats.pending import Pending
from sigfs.formats.sigset import signals_of
from sigfs.tracer import TargetBusy, Tracer


def _names(mask: int) -> str:
    sigs = signals_of(mask)
    return " ".join(signals.signal_name(s) for s in sigs) if sigs else "-"


def _handler(pid: int, addr: int) -> str:
    if addr == 0:
        return "SIG_DFL"
    if addr == 1:
        return "SIG_IGN"
    sym = symbols.resolve(pid, addr)
    return f"{addr:#x} {sym}" if sym else f"{addr:#x}"


def _queue(pending: Pending) -> list[str]:
    lines = []
    for si in pending.queue:
        fields = " ".join(
            f"{k}={v:#x}" if k in ("addr", "call_addr", "lower", "upper", "arch") else f"{k}={v}"
            for k, v in si.fields().items()
        )
        lines.append(
            f"    {signals.signal_name(si.signo):<12} {signals.code_name(si.signo, si.code):<12} "
            f"{fields}" + (f" errno={si.errno}" if si.errno else "")
        )
    return lines


async def _collect(pid: int, tid: int) -> list[str]:
    tracer = Tracer()
    try:
        return await _collect_with(tracer, pid, tid)
    finally:
        with aio.shield():
            await tracer.finish_handed_over(
                lambda message: print(f"sigfs: {message}", file=sys.stderr, flush=True)
            )


async def _collect_with(tracer: Tracer, pid: int, tid: int) -> list[str]:
    out: list[str] = []
    st = procfs.read_status(pid)
    thread = st if tid == pid else procfs.read_status(pid, tid)
    out.append(
        f"process {pid} ({st.get('Name', '?')}), thread {tid}, state {thread.get('State', '?')}"
    )
    blocked = state.blocked_mask(tracer, pid, tid)
    out.append(f"  blocked:        {_names(blocked)}")
    for label, shared in (("pending", False), ("shared pending", True)):
        try:
            pend = await state.read_pending(tracer, pid, tid, shared)
        except TargetBusy as exc:
            mask = state.pending_bitmap_only(pid, tid, shared)
            out.append(f"  {label + ':':<15} {_names(mask)}  (queue unavailable: {exc.strerror})")
            continue
        out.append(f"  {label + ':':<15} {_names(pend.mask)}")
        out.extend(_queue(pend))
    ign = procfs.hex_field(st, "SigIgn")
    try:
        actions = await state.read_actions(tracer, pid)
        alt = await state.read_altstack(tracer, pid, tid)
    except TargetBusy as exc:
        out.append(f"  ignored:        {_names(ign)}")
        out.append(f"  handlers and altstack unavailable: {exc.strerror}")
        return out
    out.append("  handlers:")
    for act in actions.actions:
        if act.handler == 0 and act.flags == 0 and act.mask == 0:
            continue
        flags = "|".join(signals.flag_names(act.flags)) or "0"
        line = (
            f"    {signals.signal_name(act.signum):<12} {_handler(pid, act.handler)}  flags {flags}"
        )
        if act.mask:
            line += f"  mask {_names(act.mask)}"
        out.append(line)
    if alt.flags & 2:  # SS_DISABLE
        out.append("  altstack:       disabled")
    else:
        flags = "|".join(signals.ss_flag_names(alt.flags)) or "0"
        out.append(f"  altstack:       {alt.sp:#x} size {alt.size} flags {flags}")
    waiters = state.read_waiters(pid)
    for w in waiters:
        opts = "|".join(signals.wait_option_names(w.options)) or "0"
        out.append(f"  waiting:        thread {w.tid} waits for {w.awaited} ({opts})")
    return out


def run_show(pid: int, tid: int | None) -> int:
    try:
        if procfs.tgid_of(pid) != pid:
            print(f"sigfs: {pid} is a thread, not a process; use --tid", file=sys.stderr)
            return 1
        # The leader's thread, unless it has exited while others live on.
        lines = aio.run(_collect, pid, tid or state.live_thread(pid))
    except ProcessLookupError:
        print(f"sigfs: no such process: {pid}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno == errno.EPERM:
            print(
                f"sigfs: not permitted to trace {pid} (need CAP_SYS_PTRACE or the same uid)",
                file=sys.stderr,
            )
        else:
            print(f"sigfs: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
