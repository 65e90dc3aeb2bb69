"""The entry table: every file sigfs shows, and how each is rendered.

Loaders return the whole file as bytes; the FUSE layer renders once per open
(``direct_io``), so one ``cat`` sees one consistent moment.
"""

from __future__ import annotations

import errno
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from sigfs import access, image, procfs, state
from sigfs.formats import action as action_fmt
from sigfs.formats import altstack as altstack_fmt
from sigfs.formats import fds as fds_fmt
from sigfs.formats import fpu as fpu_fmt
from sigfs.formats import mm as mm_fmt
from sigfs.formats import pending as pending_fmt
from sigfs.formats import regs as regs_fmt
from sigfs.formats import sigset
from sigfs.formats import status as status_fmt
from sigfs.formats import waiters as waiters_fmt
from sigfs.formats.errors import FormatError, is_comment, numbered_lines
from sigfs.formats.siginfo import Siginfo, parse_located_records
from sigfs.formats.sigset import render_bitmap, signals_of
from sigfs.pages import PagesStream, StreamReader, dumpable_vmas
from sigfs.record import record
from sigfs.signals import SI_USER, SIGKILL, SIGSTOP, signal_name
from sigfs.tracer import TargetBusy, Tracer
from sigfs.tree import Entry, Scope, Tree

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import TypeAlias, TypeVar

    T = TypeVar("T")


class ErrorLog:
    """Recent error messages per process, newest last (the ``errors`` file)."""

    def __init__(self, per_process: int = 100, processes: int = 1024) -> None:
        self._logs: OrderedDict[int, deque[str]] = OrderedDict()
        self._per_process = per_process
        self._processes = processes
        self._started: dict[int, int] = {}

    def _instance(self, pid: int) -> int:
        try:
            return procfs.start_time(pid)
        except (ProcessLookupError, ValueError, IndexError):
            return -1

    def add(self, pid: int, where: str, message: str) -> None:
        started = self._instance(pid)
        if self._started.get(pid) != started:
            self._logs.pop(pid, None)  # a new process with a reused pid
            self._started[pid] = started
        log = self._logs.get(pid)
        if log is None:
            log = self._logs[pid] = deque(maxlen=self._per_process)
            while len(self._logs) > self._processes:
                old, _ = self._logs.popitem(last=False)
                self._started.pop(old, None)
        self._logs.move_to_end(pid)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        # A message may quote a name that is not UTF-8 (surrogates): kept as
        # \udcXX escapes, so the file stays UTF-8 and reading it never fails.
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        log.append(f"{stamp} {where}: {message}")

    def text(self, pid: int) -> str:
        if pid in self._started and self._started[pid] != self._instance(pid):
            self.forget(pid)
        log = self._logs.get(pid)
        return "".join(line + "\n" for line in log) if log else ""

    def forget(self, pid: int) -> None:
        self._logs.pop(pid, None)
        self._started.pop(pid, None)


@record(frozen=False)
class FileContext:
    tracer: Tracer
    errors: ErrorLog
    pid: int  # the process (thread group)
    tid: int  # the thread the file is about (the leader under <pid>/)
    path: str  # for messages: "sig/pending" or "task/123/sig/pending"
    # The leader's status as read by the permission check just before, when
    # the file is about the leader: saves reading it again.
    status: procfs.Status | None = None
    # The ranges `checkpoint --pre-copy` registered for write tracking (in
    # address order): the `uw` VmFlag of a mapping in one is sigfs's, not
    # the process's, and is not shown.
    tracked: tuple[tuple[int, int], ...] = ()
    # A writer opened the file with O_APPEND (``>>``): add, not replace.
    append: bool = False
    # Who opened the file for writing, (uid, gid, has CAP_SYS_PTRACE, tgid)
    # as they were at the open, and the process's start time then: a write
    # is made only if they could still trace this same process (see
    # check_opener).  None: not opened through the mount (no check).
    opener: tuple[int, int, bool, int] | None = None
    started: int = 0
    # Writes through this open so far ended with a whole line (a write that
    # carries on a line FUSE split mid-way is refused).
    line_done: bool = True

    def log(self, message: str) -> None:
        self.errors.add(self.pid, self.path, message)

    def check_opener(self) -> None:
        """Refuse a write unless whoever opened the file could still ptrace
        the process: it is the process of the open (not a later one with
        its pid; for a thread's file, the thread is still its), and it has
        not since become another user's, as an exec of a set-user-ID program
        makes it.  Called with the process stopped, where it cannot exec:
        so the check and the change see the same credentials."""
        if self.opener is None:
            return
        try:
            if procfs.start_time(self.pid) != self.started or (
                self.tid != self.pid and procfs.tgid_of(self.tid) != self.pid
            ):
                raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has exited")
            st = procfs.read_status(self.pid)
        except (ValueError, IndexError, KeyError):
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has exited") from None
        uid, gid, privileged, tgid = self.opener
        if not access.traceable(access.Caller(0, uid, gid, privileged, tgid), self.pid, st):
            if (st.get("State") or "").startswith(("Z", "X")):
                raise ProcessLookupError(errno.ESRCH, f"process {self.pid} is exiting")
            raise OSError(
                errno.EPERM,
                "the process is no longer the opener's to trace (its credentials changed "
                "since the open: a set-user-ID program?)",
            )


def _parsed(
    ctx: FileContext,
    data: bytes,
    limit: int,
    takes: str,
    parse: Callable[[str], T],
    replaced: str | None = None,
) -> T:
    """One write's text, parsed before anything is stopped: EINVAL for
    ``>>`` where the file is only ever replaced (``replaced`` names what
    it holds), more than ``limit`` bytes (``takes``: "a mask takes"), text
    that is not UTF-8, or what ``parse`` refuses."""
    if replaced is not None and ctx.append:
        raise OSError(errno.EINVAL, f"{replaced} replaced, not added to: use >")
    if len(data) > limit:
        raise OSError(errno.EINVAL, f"{len(data)} bytes is more than {takes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OSError(errno.EINVAL, f"not UTF-8 text (byte {exc.start + 1})") from None
    try:
        return parse(text)
    except FormatError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None


async def load_blocked(ctx: FileContext) -> bytes:
    mask = state.blocked_mask(ctx.tracer, ctx.pid, ctx.tid, ctx.status)
    return (render_bitmap(mask) + "\n").encode()


def _describe_change(old: int, new: int) -> str:
    """``+SIGUSR1 -SIGINT``: what a write to a mask changed, for ``errors``."""
    added = [f"+{signal_name(k)}" for k in signals_of(new & ~old)]
    removed = [f"-{signal_name(k)}" for k in signals_of(old & ~new)]
    return " ".join(added + removed)


async def store_blocked(ctx: FileContext, data: bytes) -> None:
    """A new blocked mask for the thread: the file's own bitmap, or signal
    names and numbers, ``+SIG`` to add and ``-SIG`` to remove
    (:func:`sigset.parse_mask_edit`); ``>`` replaces, ``>>`` adds.  The text
    is checked before the thread is stopped, and the mask is read and set in
    one stop (:func:`state.set_blocked`)."""
    text = _parsed(ctx, data, sigset.MAX_TEXT, f"a mask takes ({sigset.MAX_TEXT})", str)
    replace = not ctx.append
    try:
        # Applied to no mask and to all of them before any stop: a mistake is
        # refused here, and the two differ when the result depends on the
        # mask the thread has now.
        from_none = sigset.parse_mask_edit(text, 0, replace)
        from_all = sigset.parse_mask_edit(text, sigset.FULL & ~state.UNBLOCKABLE, replace)
    except FormatError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    relative = from_none != from_all
    old, new = await state.set_blocked(
        ctx.tracer,
        ctx.pid,
        ctx.tid,
        lambda current: sigset.parse_mask_edit(text, current, replace),
        ctx.check_opener,
        relative,
    )
    ctx.log(f"changed: {_describe_change(old, new)}" if old != new else "unchanged")


async def _load_pending(ctx: FileContext, shared: bool) -> bytes:
    try:
        pending = await state.read_pending(ctx.tracer, ctx.pid, ctx.tid, shared, ctx.status)
    except TargetBusy as exc:
        # What /proc can still tell: the bitmap.  Say why the queue is missing.
        ctx.log(f"{exc.strerror}; siginfo records not shown")
        mask = state.pending_bitmap_only(ctx.pid, ctx.tid, shared)
        note = f"# siginfo records not shown: {exc.strerror}\n"
        return (render_bitmap(mask) + "\n" + note).encode()
    return pending_fmt.render(pending).encode()


async def load_pending(ctx: FileContext) -> bytes:
    return await _load_pending(ctx, shared=False)


async def load_shared_pending(ctx: FileContext) -> bytes:
    return await _load_pending(ctx, shared=True)


# The bytes of a siginfo the kernel keeps once queued (sizeof(struct
# kernel_siginfo) on x86-64): a record with others set cannot be queued.
KERNEL_SIGINFO = 48
# What the kernel puts in si_uid for a sender it cannot map (overflowuid).
OVERFLOW_UID = 65534


def _sender(ctx: FileContext) -> tuple[int, int]:
    """(pid, uid) of whoever opened the file, as kill(2) from it would have
    recorded them in the process: its pid in the process's pid namespace (0
    when it is not in it or the daemon's), its real uid (the overflow uid
    when the process is in another user namespace)."""
    if ctx.opener is not None:
        uid, _gid, _privileged, pid = ctx.opener
    else:
        uid, pid = os.getuid(), os.getpid()
    try:
        st = procfs.read_status(pid)
        uid = int((st.get("Uid") or str(uid)).split()[0])  # real, not the FUSE fsuid
        same = procfs.same_namespace(pid, "pid", ctx.pid)
        ns_pid = int((st.get("NSpid") or str(pid)).split()[-1])
    except (OSError, ValueError):
        same, ns_pid = False, pid
    if same:
        pid = ns_pid
    elif not procfs.same_namespace(ctx.pid, "pid"):
        pid = 0
    if not procfs.same_namespace(ctx.pid, "user"):
        uid = OVERFLOW_UID
    return pid, uid


def _looks_like_bitmap(line: str) -> bool:
    """A line of 0/1 longer than any signal number: meant as the bitmap
    (so a short or long one is told so, not taken for signal numbers)."""
    stripped = line.strip()
    return len(stripped) >= 8 and not stripped.strip("01")


def parse_pending_write(
    text: str, replace: bool, sender: tuple[int, int]
) -> tuple[list[bytes], bool]:
    """The siginfos a write to ``pending`` or ``shared_pending`` queues, and
    whether they are to be kept exactly (records) rather than sent the way
    kill(2) would (signal names).  Three forms: the file itself (the
    bitmap line, then records), records alone, or signal names and
    numbers, each then queued as sent by ``sender`` with SI_USER.  Raises
    FormatError for what cannot be written as it says."""
    first = next((line for _, line in numbered_lines(text) if not is_comment(line)), None)
    if first is None:
        return [], True  # nothing: with ">", an empty queue
    word = first.split(None, 1)[0]
    if _looks_like_bitmap(first):
        pending = pending_fmt.parse(text)
        missing = pending.mask & ~sigset.mask_of(si.signo for si in pending.queue)
        if missing:
            names = " ".join(signal_name(k) for k in signals_of(missing))
            raise FormatError(
                None,
                f"{names} set in the bitmap without a record: the kernel keeps a pending "
                "bit without its siginfo only when it could not allocate one, and sigfs "
                "cannot make that; write a record for it",
            )
        entries, exact = [si.raw for si in pending.queue], True
    elif word == "sig":
        entries = [si.raw for _, si in parse_located_records(numbered_lines(text))]
        exact = True
    else:
        pid, uid = sender
        entries = [
            Siginfo.build(k, 0, SI_USER, spid=pid, suid=uid).raw
            for k in pending_fmt.parse_signal_list(text)
        ]
        if not entries:
            raise FormatError(None, "no signals named")
        exact = False
    seen: set[int] = set()
    for raw in entries:
        k = int.from_bytes(raw[0:4], "little", signed=True)
        if any(raw[KERNEL_SIGINFO:]):
            raise FormatError(
                None,
                f"a {signal_name(k)} record has bytes past the first {KERNEL_SIGINFO}: the "
                "kernel keeps only those of a queued siginfo (its kernel_siginfo)",
            )
        if k in (SIGKILL, SIGSTOP):
            raise FormatError(
                None,
                f"{signal_name(k)} is never left pending: the kernel acts on it at once "
                "(use kill(1))",
            )
        if replace and exact and k < state.SIGRTMIN and k in seen:
            raise FormatError(
                None,
                f"two records of {signal_name(k)}: the kernel keeps one of each standard "
                "signal (1-31)",
            )
        seen.add(k)
    return entries, exact


async def _store_pending(ctx: FileContext, data: bytes, shared: bool) -> None:
    """Queue signals, or with ``>`` set the whole queue (see
    :func:`parse_pending_write` and :func:`state.write_pending`).  The text
    is checked before the process is stopped."""
    text = _parsed(ctx, data, pending_fmt.MAX_TEXT, "a queue takes", str)
    replace = not ctx.append
    try:
        entries, exact = parse_pending_write(text, replace, _sender(ctx))
    except FormatError as exc:
        raise OSError(errno.EINVAL, str(exc)) from None
    if not entries and not replace:
        ctx.log("unchanged")
        return
    done = await state.write_pending(
        ctx.tracer, ctx.pid, ctx.tid, shared, entries, replace, exact, ctx.check_opener
    )
    ctx.log(f"changed: {done}" if not done.startswith("unchanged") else done)


async def store_pending(ctx: FileContext, data: bytes) -> None:
    await _store_pending(ctx, data, shared=False)


async def store_shared_pending(ctx: FileContext, data: bytes) -> None:
    await _store_pending(ctx, data, shared=True)


async def store_altstack(ctx: FileContext, data: bytes) -> None:
    """A new alternate signal stack for the thread: the file's own
    ``sp size flags`` line, set with an injected sigaltstack and read back
    (:func:`state.set_altstack`).  Checked before the thread is stopped."""
    new = _parsed(
        ctx,
        data,
        altstack_fmt.MAX_TEXT,
        "a stack line takes",
        altstack_fmt.parse,
        replaced="an alternate stack is",
    )
    old, now = await state.set_altstack(ctx.tracer, ctx.pid, ctx.tid, new, ctx.check_opener)
    if old == now:
        ctx.log("unchanged")
    else:
        was = altstack_fmt.render(old).strip()
        ctx.log(f"changed: {altstack_fmt.render(now).strip()} (was {was})")


async def store_action(ctx: FileContext, data: bytes) -> None:
    """New sigactions: lines of the file (all 64, as ``cp`` of the file
    back writes them, or some: the others keep theirs), each set with an
    injected rt_sigaction and read back (:func:`state.set_actions`)."""
    acts = _parsed(
        ctx,
        data,
        action_fmt.MAX_TEXT,
        "the sigactions take",
        action_fmt.parse_some,
        replaced="sigactions are",
    )
    changed = await state.set_actions(ctx.tracer, ctx.pid, acts, ctx.check_opener)
    if not changed:
        ctx.log("unchanged")
    for old, new in changed:
        ctx.log(f"changed: {action_fmt.render_line(new)} (was {action_fmt.render_line(old)})")


async def store_regs(ctx: FileContext, data: bytes) -> None:
    """New register values for the thread: lines of the file (all 27, as
    ``cp`` of the file back writes them, or some: the others keep theirs),
    set in one stop and read back (:func:`state.set_regs`)."""
    values = _parsed(
        ctx,
        data,
        regs_fmt.MAX_TEXT,
        "the registers take",
        regs_fmt.parse_some,
        replaced="registers are",
    )
    old, new = await state.set_regs(ctx.tracer, ctx.pid, ctx.tid, values, ctx.check_opener)
    changes = [
        f"{n} {getattr(new, n):#x} (was {getattr(old, n):#x})"
        for n in regs_fmt.REGISTER_NAMES
        if getattr(old, n) != getattr(new, n)
    ]
    ctx.log("changed: " + ", ".join(changes) if changes else "unchanged")


async def store_fpu(ctx: FileContext, data: bytes) -> None:
    """A new xsave area for the thread: the whole file, as it reads (its
    ``xsave`` lines are the state; the decoded lines must agree with them),
    set with PTRACE_SETREGSET and read back (:func:`state.set_fpu`)."""
    fpu = _parsed(
        ctx,
        data,
        fpu_fmt.MAX_TEXT,
        "the FPU state takes",
        fpu_fmt.parse,
        replaced="the FPU state is",
    )
    changed = await state.set_fpu(ctx.tracer, ctx.pid, ctx.tid, fpu.xsave, ctx.check_opener)
    ctx.log(f"changed: xsave area ({len(fpu.xsave)} bytes)" if changed else "unchanged")


async def store_status(ctx: FileContext, data: bytes) -> None:
    """New settings: ``key value`` lines of the file (all of it, as ``cp``
    of the file back writes it, or some: the rest stay).  Keys the process
    cannot set itself must be written as they are; the others are set by
    the process (:func:`state.set_status`), with its own privileges."""
    parsed = _parsed(
        ctx,
        data,
        status_fmt.MAX_TEXT,
        "the settings take",
        status_fmt.parse_some,
        replaced="settings are",
    )
    values, rlimits = parsed
    notes = await state.set_status(ctx.tracer, ctx.pid, values, rlimits, ctx.check_opener)
    ctx.log("changed: " + ", ".join(notes) if notes else "unchanged")


# The second step of a two-step loader: the file's bytes, rendered.
Render: TypeAlias = Callable[[], bytes]


def _two_steps(
    collect: Callable[[FileContext], Awaitable[Render]],
) -> Callable[[FileContext], Awaitable[bytes]]:
    """A loader made of a collector (see ``Entry.collect``) run at once."""

    async def load(ctx: FileContext) -> bytes:
        return (await collect(ctx))()

    return load


async def collect_action(ctx: FileContext) -> Render:
    actions = await state.read_actions(ctx.tracer, ctx.pid)
    return lambda: action_fmt.render(actions).encode()


async def load_altstack(ctx: FileContext) -> bytes:
    return altstack_fmt.render(await state.read_altstack(ctx.tracer, ctx.pid, ctx.tid)).encode()


async def batch_altstack(ctx: FileContext) -> dict[int, bytes]:
    found = await state.read_altstacks_frozen(ctx.tracer, ctx.pid)
    return {tid: altstack_fmt.render(alt).encode() for tid, alt in found.items()}


async def load_waiters(ctx: FileContext) -> bytes:
    return waiters_fmt.render(state.read_waiters(ctx.pid)).encode()


async def load_errors(ctx: FileContext) -> bytes:
    return ctx.errors.text(ctx.pid).encode()


async def load_regs(ctx: FileContext) -> bytes:
    return regs_fmt.render(await image.read_regs(ctx.tracer, ctx.pid, ctx.tid)).encode()


async def collect_fpu(ctx: FileContext) -> Render:
    fpu = await image.read_fpu(ctx.tracer, ctx.pid, ctx.tid)
    return lambda: fpu_fmt.render(fpu).encode()


async def load_status(ctx: FileContext) -> bytes:
    return status_fmt.render(await image.read_status(ctx.tracer, ctx.pid)).encode()


async def collect_fds(ctx: FileContext) -> Render:
    raw = image.read_fds_raw(ctx.pid)
    return lambda: fds_fmt.render(image.fds_from_raw(*raw)).encode()


async def collect_mm(ctx: FileContext) -> Render:
    raw = await image.read_mm_raw(ctx.tracer, ctx.pid, ctx.tracked)
    return lambda: mm_fmt.render(image.mm_from_raw(raw)).encode()


async def load_none(ctx: FileContext) -> bytes:
    raise OSError(errno.EINVAL, "this file is a stream")


async def open_pages(ctx: FileContext) -> StreamReader:
    maps = procfs.read_maps(ctx.pid)
    stream = PagesStream(ctx.pid, dumpable_vmas(maps))
    return StreamReader(stream.chunks(), on_close=stream)


async def load_ctl(ctx: FileContext) -> bytes:
    return b"frozen\n" if ctx.tracer.is_frozen(ctx.pid) else b"running\n"


CTL_MAX = 64


async def store_ctl(ctx: FileContext, data: bytes) -> None:
    """``freeze`` stops every thread (no signal the process can see);
    ``thaw`` lets them run on exactly where they were."""
    if len(data) > CTL_MAX:
        raise OSError(errno.EINVAL, f"ctl takes one word (freeze or thaw), got {len(data)} bytes")
    words = data.decode("utf-8", "replace").split()
    if len(words) != 1 or words[0] not in ("freeze", "thaw"):
        shown = data[:32].decode("utf-8", "replace").strip()
        raise OSError(errno.EINVAL, f"ctl: expected 'freeze' or 'thaw', got {shown!r}")
    if words[0] == "freeze":
        was_frozen = ctx.tracer.is_frozen(ctx.pid)
        tids = await ctx.tracer.freeze(ctx.pid)
        try:
            ctx.check_opener()  # every thread stopped: none can exec now
        except BaseException:
            if not was_frozen:
                await ctx.tracer.thaw(ctx.pid)
            raise
        ctx.log(f"frozen ({len(tids)} threads)")
    else:
        if ctx.tracer.is_frozen(ctx.pid):
            # Held, so no exec can change hands under the check: a writer
            # whose process this no longer is (a set-user-ID exec before
            # someone else froze it, a reused pid) does not let it run.
            ctx.check_opener()
        n = await ctx.tracer.thaw(ctx.pid)
        ctx.log(f"thawed ({n} threads)" if n else "thaw: was not frozen")


ENTRIES: list[Entry] = [
    Entry(
        "sig/action",
        Scope.PROCESS,
        _two_steps(collect_action),
        True,
        "the 64 sigactions: signum flags mask handler restorer; write lines to change them",
        mode=0o644,
        store=store_action,
        injects=True,
        collect=collect_action,
    ),
    Entry(
        "sig/altstack",
        Scope.THREAD,
        load_altstack,
        True,
        "sigaltstack: sp size flags; write one to change it",
        mode=0o644,
        store=store_altstack,
        injects=True,
        batch=batch_altstack,
    ),
    Entry(
        "sig/blocked",
        Scope.THREAD,
        load_blocked,
        False,
        "blocked mask, 64 0/1 characters; write a mask, SIG names, +SIG or -SIG",
        mode=0o644,
        store=store_blocked,
        adds=True,
    ),
    Entry(
        "sig/pending",
        Scope.THREAD,
        load_pending,
        True,
        "thread-private pending signals and their siginfo; write records or SIG names",
        mode=0o644,
        store=store_pending,
        adds=True,
    ),
    Entry(
        "sig/shared_pending",
        Scope.PROCESS,
        load_shared_pending,
        True,
        "process-wide pending signals and their siginfo; write records or SIG names",
        mode=0o644,
        store=store_shared_pending,
        adds=True,
    ),
    Entry(
        "sig/waiters",
        Scope.PROCESS,
        load_waiters,
        False,
        "threads blocked in wait4/waitid: options tid awaited-pid",
    ),
    Entry(
        "errors",
        Scope.PROCESS,
        load_errors,
        False,
        "recent error messages about this process, newest last",
    ),
    Entry(
        "regs",
        Scope.THREAD,
        load_regs,
        True,
        "general registers and syscall state; write 'name value' lines to change them",
        mode=0o644,
        store=store_regs,
    ),
    Entry(
        "fpu",
        Scope.THREAD,
        _two_steps(collect_fpu),
        True,
        "FPU/SSE/AVX state and the whole xsave area; write the file back to set it",
        mode=0o644,
        store=store_fpu,
        collect=collect_fpu,
    ),
    Entry(
        "status",
        Scope.PROCESS,
        load_status,
        True,
        "ids, credentials, limits, settings; write 'key value' lines to change settings",
        mode=0o644,
        store=store_status,
        injects=True,
    ),
    Entry(
        "fds",
        Scope.PROCESS,
        _two_steps(collect_fds),
        False,
        "open file descriptors, cwd and root",
        collect=collect_fds,
    ),
    Entry(
        "mm",
        Scope.PROCESS,
        _two_steps(collect_mm),
        True,
        "mm fields, auxv and every VMA",
        injects=True,
        collect=collect_mm,
    ),
    Entry(
        "pages",
        Scope.PROCESS,
        load_none,
        True,
        "memory contents (binary stream)",
        open_stream=open_pages,
    ),
    Entry(
        "ctl",
        Scope.PROCESS,
        load_ctl,
        True,
        "running or frozen; write freeze or thaw",
        mode=0o644,
        store=store_ctl,
        injects=True,
    ),
]

TREE = Tree(ENTRIES)
