"""The tracer: the one owner of every ptrace attachment sigfs makes.

The kernel answers ptrace requests only from the thread that attached, and
silently detaches when that thread exits.  So one long-lived thread must own
every attach, wait and request.  In the daemon that thread is the trio thread
itself: a ptrace request costs a few microseconds and no wait ever blocks
(``waitpid(WNOHANG)`` with a short spin, then an async back-off), so there is
no hand-off to another thread at all, and the event loop keeps serving other
requests while a slow target takes its time to stop.  The tracer checks that it
is always called from the thread that created it.

Reading must not change what the target sees: threads are attached with
PTRACE_SEIZE and stopped with PTRACE_INTERRUPT (no SIGSTOP, no signal the
process could observe), and a signal that happens to be delivered while we
stop the thread is passed on unchanged.  Every path detaches; trio
cancellation is shielded across each stop, so a SIGTERM of the daemon cannot
leave a thread half-restored.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sigfs import aio, procfs
from sigfs import ptrace_raw as pt
from sigfs.record import field, record

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import TypeVar

    T = TypeVar("T")

# How long a target may take to reach a ptrace stop before the request fails.
# A thread in uninterruptible sleep (D state) stops only when it leaves it.
STOP_TIMEOUT = 3.0
# waitpid(WNOHANG) polls with sched_yield before sleeping: most stops arrive
# within tens of microseconds, well inside this budget.
SPIN_SECONDS = 0.0005


async def acquire(lock: aio.Lock) -> None:
    """Take ``lock``, without a trip through trio's scheduler when it is free
    (each trip costs an epoll_wait; a read of a signal file would otherwise
    make several)."""
    if not aio.try_acquire(lock):
        await lock.acquire()


class KeyedLocks:
    """One lock per key (a process), made on demand and dropped when no
    one holds or waits for it; a free lock is taken with no scheduler pass."""

    def __init__(self) -> None:
        self._locks: dict[int, aio.Lock] = {}
        self._users: dict[int, int] = {}

    def get(self, key: int) -> aio.Lock | None:
        return self._locks.get(key)

    def hold(self, key: int) -> _Held:
        """``async with locks.hold(key):`` -- a plain class, not a generator
        context manager: this sits on every read's path."""
        return _Held(self, key)

    def _enter(self, key: int) -> aio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = aio.new_lock()
        self._users[key] = self._users.get(key, 0) + 1
        return lock

    def _leave(self, key: int) -> None:
        users = self._users[key] - 1
        if users:
            self._users[key] = users
        else:
            del self._users[key]
            del self._locks[key]


class _Held:
    __slots__ = ("_locks", "_key", "_lock")

    def __init__(self, locks: KeyedLocks, key: int) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        self._lock = self._locks._enter(self._key)
        try:
            await acquire(self._lock)
        except BaseException:
            self._locks._leave(self._key)
            raise

    async def __aexit__(self, *exc: object) -> None:
        try:
            self._lock.release()
        finally:
            self._locks._leave(self._key)


class TargetGone(ProcessLookupError):
    """The thread exited (or was reaped) while sigfs was working on it."""

    def __init__(self, tid: int) -> None:
        super().__init__(errno.ESRCH, f"thread {tid} exited")
        self.tid = tid


class TargetBusy(OSError):
    """The thread is already traced by someone else (gdb, strace, ...)."""

    def __init__(self, tid: int, tracer: int) -> None:
        who = f"{tracer}" if tracer > 0 else "another tracer"
        try:
            who_comm = procfs.comm(tracer, "replace") if tracer > 0 else ""
        except OSError:
            who_comm = ""
        who = f"{tracer} ({who_comm})" if who_comm else who
        super().__init__(errno.EBUSY, f"thread {tid} is already traced by {who}")
        self.tid = tid
        self.tracer = tracer


class StopTimeout(OSError):
    def __init__(self, tid: int, seconds: float) -> None:
        super().__init__(
            errno.EAGAIN,
            f"thread {tid} did not stop within {seconds:g} s (uninterruptible sleep?); try again",
        )


@record(frozen=False)
class Attachment:
    """One seized thread, stopped or about to be."""

    tid: int
    tgid: int
    # A signal caught in signal-delivery-stop that must be handed back.
    withheld_signal: int = 0
    # Stopped in a group stop (SIGSTOP and friends) rather than our trap.
    group_stop: bool = False
    # Held across requests (a frozen process) rather than for one request.
    held: bool = False
    saved_mask: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def _decode(status: int) -> tuple[str, int, int]:
    """(kind, signal, event) of a waitpid status."""
    if os.WIFEXITED(status) or os.WIFSIGNALED(status):
        return ("gone", 0, 0)
    if os.WIFSTOPPED(status):
        return ("stopped", os.WSTOPSIG(status), status >> 16)
    return ("other", 0, 0)


class Tracer:
    """Owns all attachments; must be used from the thread that created it."""

    def __init__(self, stop_timeout: float = STOP_TIMEOUT) -> None:
        self._owner = threading.get_ident()
        self.stop_timeout = stop_timeout
        self.locks = KeyedLocks()
        self.attached: dict[int, Attachment] = {}
        # Threads that did not stop in time: still seized, detached when they stop.
        self._stuck: dict[int, Attachment] = {}
        # Measured time threads spent stopped, for benchmarks: (count, seconds).
        self.stopped_stats: list[float] = [0, 0.0]
        # Time from PTRACE_INTERRUPT until the thread was seen stopped, summed.
        self.stop_wait_seconds = 0.0
        self.injected = 0
        # tid -> the thread's own mask while an injection has everything blocked.
        self.masked: dict[int, int] = {}
        # Frozen processes: tgid -> the threads held stopped.
        self.frozen: dict[int, list[Attachment]] = {}
        # Values read while frozen that cannot change until the thaw (see
        # state.read_actions): tgid -> name -> value.
        self.frozen_facts: dict[int, dict[str, int]] = {}
        # Frozen processes that lost a thread to a hand-off (it runs until
        # its injected syscall returns): no facts are kept for them.
        self.loosened: set[int] = set()

    # -- bookkeeping ---------------------------------------------------------

    def _check_owner(self) -> None:
        if threading.get_ident() != self._owner:
            raise RuntimeError("ptrace used from a thread that does not own the attachments")

    def process_lock(self, tgid: int) -> _Held:
        """Serialise everything sigfs does to one process."""
        return self.locks.hold(tgid)

    # -- waiting -------------------------------------------------------------

    def _poll(self, tid: int) -> int | None:
        try:
            pid, status = os.waitpid(tid, os.WNOHANG | pt.WALL)
        except ChildProcessError:
            raise TargetGone(tid) from None
        return status if pid else None

    async def wait(self, tid: int, timeout: float | None = None) -> int:
        """The next waitpid status of a traced thread, without blocking trio."""
        self._check_owner()
        status = self._poll(tid)
        if status is not None:
            return status
        spin_end = time.monotonic() + SPIN_SECONDS
        while time.monotonic() < spin_end:
            os.sched_yield()
            status = self._poll(tid)
            if status is not None:
                return status
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        delay = 0.0001
        while True:
            await aio.sleep(delay)
            status = self._poll(tid)
            if status is not None:
                return status
            if time.monotonic() > deadline:
                raise StopTimeout(tid, self.stop_timeout if timeout is None else timeout)
            delay = min(delay * 2, 0.01)

    def _trap_seen(self, att: Attachment, status: int) -> bool:
        """Handle one waitpid status on the way to an interrupt's trap: True
        once the thread sits in it; False after passing on a signal that was
        being delivered (exactly as the kernel would have), or a stray stop."""
        kind, sig, event = _decode(status)
        if kind == "gone":
            self.attached.pop(att.tid, None)
            raise TargetGone(att.tid)
        if kind != "stopped":
            return False
        if event == pt.PTRACE_EVENT_STOP:
            # SIGTRAP: our interrupt; a stop signal: the process is in group stop.
            att.group_stop = sig in (
                signal.SIGSTOP,
                signal.SIGTSTP,
                signal.SIGTTIN,
                signal.SIGTTOU,
            )
            return True
        if event == 0 and sig != (signal.SIGTRAP | 0x80):
            # Signal-delivery-stop that raced with our interrupt: let the
            # signal through untouched; the interrupt trap follows.
            pt.cont(att.tid, sig)
            return False
        # Any other event or a stray syscall stop: keep going to the trap.
        pt.cont(att.tid, 0)
        return False

    def poll(self, tid: int) -> int | None:
        """A waitpid status of a traced thread if one is ready, else None."""
        self._check_owner()
        return self._poll(tid)

    def trap_seen(self, att: Attachment, status: int) -> bool:
        """One step towards an interrupt's trap (see :meth:`wait_trap`)."""
        return self._trap_seen(att, status)

    async def wait_trap(self, att: Attachment) -> None:
        """Wait for the PTRACE_EVENT_STOP of an interrupt, passing on any
        signal delivered meanwhile exactly as the kernel would have."""
        while not self._trap_seen(att, await self.wait(att.tid)):
            pass

    # -- attaching -----------------------------------------------------------

    def _seize(self, tgid: int, tid: int) -> Attachment:
        if tid in self._stuck:
            self.reap_stuck()
            if tid in self._stuck:
                # Still seized by us from a request that gave up: not "busy".
                raise StopTimeout(tid, self.stop_timeout)
        try:
            pt.seize(tid, pt.PTRACE_O_TRACESYSGOOD)
        except pt.TraceError as exc:
            if exc.errno == errno.ESRCH:
                raise TargetGone(tid) from None
            if exc.errno == errno.EPERM:
                try:
                    st = procfs.read_status(tgid, tid)
                    other = int(st.get("TracerPid") or "0")
                except ProcessLookupError:
                    raise TargetGone(tid) from None
                if other:
                    raise TargetBusy(tid, other) from None
                if (st.get("State") or "").startswith(("Z", "X")):
                    # A thread that has exited (a zombie leader whose other
                    # threads live on) cannot be seized: gone, not forbidden.
                    raise TargetGone(tid) from None
            raise
        att = Attachment(tid=tid, tgid=tgid)
        self.attached[tid] = att
        return att

    async def _attach(self, tgid: int, tid: int) -> Attachment:
        """Seize and stop a thread: a short spin first, then, for a thread
        slow to reach the trap, an async wait that does not block trio."""
        att = self._attach_quick(tgid, tid)
        if att.extra.get("stopped_at") is None:
            await self._finish_attach(att)
        return att

    def _detach(self, att: Attachment) -> None:
        if "finish" in att.extra:
            return  # handed over: reap_stuck puts it back and detaches it
        self.attached.pop(att.tid, None)
        started = att.extra.get("stopped_at")
        if isinstance(started, float):
            self.stopped_stats[0] += 1
            self.stopped_stats[1] += time.monotonic() - started
        try:
            pt.detach(att.tid, att.withheld_signal)
        except pt.TraceError as exc:
            if exc.errno != errno.ESRCH:
                raise
            # ESRCH: it died (a SIGKILL); reap the exit so its parent sees it.
            try:
                self._poll(att.tid)
            except TargetGone:
                pass

    @asynccontextmanager
    async def stopped(self, tgid: int, tid: int) -> AsyncIterator[Attachment]:
        """Hold thread ``tid`` of process ``tgid`` in a ptrace stop for the
        duration of the block, then put it back exactly as it was.

        A thread already held (frozen process) is used as it is and stays held.
        """
        self._check_owner()
        async with self.process_lock(tgid):
            async with self._stopped_unlocked(tgid, tid) as att:
                yield att

    @asynccontextmanager
    async def _stopped_unlocked(self, tgid: int, tid: int) -> AsyncIterator[Attachment]:
        held = self.attached.get(tid)
        if held is not None:
            yield held
            return
        with aio.shield():
            att = await self._attach(tgid, tid)
        try:
            yield att
        finally:
            with aio.shield():
                self._detach(att)

    async def with_stopped(self, tgid: int, tid: int, fn: Callable[[Attachment], T]) -> T:
        """Run ``fn`` (synchronous, quick) while thread ``tid`` is stopped.

        The same as ``async with stopped(...)`` for a short read.  Most
        threads reach the trap within the spin, so the common case runs with
        no pass through the scheduler: seize, interrupt, poll, ``fn``, detach.
        """
        self._check_owner()
        held = self.attached.get(tid)
        if held is not None and self.locks.get(tgid) is None:
            # Held by a freeze, and no one at work in the process (another
            # task's stop or injection, with the thread maybe running
            # between its steps, takes the lock): use the stop as it is.
            return fn(held)
        async with self.process_lock(tgid):
            held = self.attached.get(tid)
            if held is not None:
                return fn(held)
            att = self._attach_quick(tgid, tid)
            if att.extra.get("stopped_at") is None:
                # Slow to reach the trap: wait for it without blocking trio.
                # Shielded: a seized thread is always seen through to detach.
                with aio.shield():
                    await self._finish_attach(att)
            # From here on there is no await, so no cancellation: the thread
            # is detached before anything else can run.
            try:
                return fn(att)
            finally:
                self._detach(att)

    def _attach_quick(self, tgid: int, tid: int) -> Attachment:
        """Seize and interrupt, then poll for the trap for SPIN_SECONDS without
        yielding.  The attachment comes back stopped (``stopped_at`` set) or
        still on its way (to be finished by :meth:`_finish_attach`)."""
        att = self._seize(tgid, tid)
        asked = time.monotonic()
        att.extra["asked"] = asked
        try:
            pt.interrupt(tid)
            spin_end = asked + SPIN_SECONDS
            while True:
                status = self._poll(tid)
                if status is not None:
                    if self._trap_seen(att, status):
                        now = time.monotonic()
                        att.extra["stopped_at"] = now
                        self.stop_wait_seconds += now - asked
                        return att
                    continue
                if time.monotonic() > spin_end:
                    return att
                os.sched_yield()
        except BaseException:
            self.attached.pop(tid, None)
            raise

    async def _finish_attach(self, att: Attachment) -> None:
        try:
            await self.wait_trap(att)
        except StopTimeout:
            self.attached.pop(att.tid, None)
            self._stuck[att.tid] = att
            raise
        except BaseException:
            self.attached.pop(att.tid, None)
            raise
        now = time.monotonic()
        att.extra["stopped_at"] = now
        asked = att.extra.get("asked")
        if isinstance(asked, float):
            self.stop_wait_seconds += now - asked

    def release(self, att: Attachment) -> None:
        """Detach a held thread; it runs on from where it stopped."""
        self._check_owner()
        self._detach(att)

    # -- whole processes -----------------------------------------------------

    def facts(self, tgid: int) -> dict[str, int]:
        """What was read of ``tgid`` in its current freeze that cannot
        change until the thaw (``frozen_facts``); empty unless frozen."""
        if tgid not in self.frozen or tgid in self.loosened:
            return {}
        return self.frozen_facts.get(tgid, {})

    def is_frozen(self, tgid: int) -> bool:
        return tgid in self.frozen

    async def freeze(self, tgid: int) -> list[int]:
        """Stop every thread of ``tgid`` and keep them stopped, with no signal
        the process could see.  Threads born while freezing are caught: the
        thread list is read again until a pass finds no new thread (once all
        known threads are stopped, none can clone).  All or nothing: on any
        failure the threads already held are let go."""
        self._check_owner()
        async with self.process_lock(tgid):
            if tgid in self.frozen:
                return [a.tid for a in self.frozen[tgid]]
            held: list[Attachment] = []
            skipped: set[int] = set()
            try:
                while True:
                    new = [
                        t
                        for t in procfs.list_tids(tgid)
                        if t not in self.attached and t not in skipped
                    ]
                    if not new:
                        break
                    live = []
                    for tid in new:
                        try:
                            state = procfs.read_status(tgid, tid).get("State") or ""
                        except ProcessLookupError:
                            state = "X"
                        if state.startswith(("Z", "X")):
                            skipped.add(tid)  # an exited thread: nothing to stop
                        else:
                            live.append(tid)
                    await self._hold_many(tgid, live, held, skipped)
            except BaseException:
                with aio.shield():
                    for att in held:
                        try:
                            self._detach(att)
                        except OSError:
                            pass
                raise
            self.frozen[tgid] = held
            self.frozen_facts.pop(tgid, None)
            self.loosened.discard(tgid)
            return [a.tid for a in held]

    async def _hold_many(
        self, tgid: int, tids: list[int], held: list[Attachment], skipped: set[int]
    ) -> None:
        """Seize and interrupt every thread of ``tids`` first, then wait for
        each one's trap, so that their stops overlap (a hundred threads stop
        in a few milliseconds, not tens).  Each stopped thread is appended to
        ``held``; one that turns out to be gone to ``skipped`` (the leader's
        exit raises).  On a failure, a thread asked to stop but not yet seen
        stopped is left to :meth:`reap_stuck`, which lets it go once it
        stops."""
        waiting: list[Attachment] = []  # asked to stop, not yet seen stopped
        with aio.shield():
            try:
                for tid in tids:
                    try:
                        att = self._seize(tgid, tid)
                        att.extra["asked"] = time.monotonic()
                        try:
                            pt.interrupt(tid)
                        except pt.TraceError as exc:
                            self.attached.pop(tid, None)
                            raise TargetGone(tid) from exc
                    except TargetGone:
                        if tid == tgid:
                            raise
                        skipped.add(tid)  # exited meanwhile
                        continue
                    waiting.append(att)
                while waiting:
                    att = waiting[0]
                    try:
                        await self._finish_attach(att)
                    except TargetGone:
                        waiting.pop(0)
                        if att.tid == tgid:
                            raise
                        skipped.add(att.tid)
                        continue
                    waiting.pop(0)
                    att.held = True
                    held.append(att)
            except BaseException:
                for att in waiting:
                    if self.attached.pop(att.tid, None) is not None:
                        self._stuck[att.tid] = att
                self.reap_stuck()  # those already in their trap go at once
                raise

    async def thaw(self, tgid: int) -> int:
        """Let every thread of a frozen process run on, exactly where it was."""
        self._check_owner()
        async with self.process_lock(tgid):
            held = self.frozen.pop(tgid, None)
            self.frozen_facts.pop(tgid, None)
            self.loosened.discard(tgid)
            if held is None:
                return 0
            with aio.shield():
                for att in held:
                    self._detach(att)
            return len(held)

    # -- clean-up ------------------------------------------------------------

    async def tend_stuck(self) -> None:
        """Background task: detach threads that stopped after their request
        gave up, and collect the exits of frozen threads (reap_frozen)."""
        while True:
            await aio.sleep(0.05)
            self.reap_stuck()
            self.reap_frozen()

    def reap_frozen(self) -> None:
        """Frozen threads killed from outside (SIGKILL): their exit is
        reported to us, their tracer, first, and until we collect it their
        parent's wait() does not return.  Collected here, and a process with
        no thread left is no longer frozen.  A process someone is working on
        (its lock taken) is left to that work, whose own waits see the exit."""
        for tgid, held in list(self.frozen.items()):
            if self.locks.get(tgid) is not None:
                continue
            alive = []
            for att in held:
                try:
                    status = self._poll(att.tid)
                except TargetGone:  # already collected: gone
                    self.attached.pop(att.tid, None)
                    continue
                if status is not None and _decode(status)[0] == "gone":
                    self.attached.pop(att.tid, None)
                    continue
                # Still in its stop (a stop's status collected changes
                # nothing: ptrace requests need the stop, not our wait).
                alive.append(att)
            if alive:
                held[:] = alive
            else:
                del self.frozen[tgid]
                self.frozen_facts.pop(tgid, None)
                self.loosened.discard(tgid)

    def hand_over(self, att: Attachment) -> None:
        """Leave a thread to :meth:`reap_stuck`, with its own way of being
        put back (``att.extra["finish"]``: called with each waitpid status,
        True once it has detached the thread): an injection that timed out."""
        self.attached.pop(att.tid, None)
        self._stuck[att.tid] = att

    async def finish_handed_over(self, note: Callable[[str], None]) -> None:
        """Before a one-shot command (checkpoint, show) exits: wait until
        every thread handed over inside an injected syscall is put back
        (its exit would let the kernel release it with sigfs's registers).
        ``note`` is told once if that takes more than a second."""
        told = False
        started = time.monotonic()
        while any("finish" in att.extra for att in self._stuck.values()):
            self.reap_stuck()
            if not told and time.monotonic() - started > 1.0:
                tids = " ".join(str(t) for t, a in self._stuck.items() if "finish" in a.extra)
                note(
                    f"waiting for thread {tids} to return from a syscall sigfs injected, to "
                    "put it back as it was (an interrupt now would leave it with sigfs's "
                    "registers)"
                )
                told = True
            await aio.sleep(0.02)

    def reap_stuck(self) -> None:
        for tid, att in list(self._stuck.items()):
            try:
                status = self._poll(tid)
            except TargetGone:
                del self._stuck[tid]
                self.masked.pop(tid, None)
                continue
            if status is None:
                continue
            finish = att.extra.get("finish")
            if finish is not None:
                if finish(status):  # type: ignore[operator]
                    del self._stuck[tid]
                continue
            kind, sig, event = _decode(status)
            if kind == "gone":
                del self._stuck[tid]
                continue
            if kind == "stopped" and event == 0 and sig != (signal.SIGTRAP | 0x80):
                att.withheld_signal = sig  # a real signal: hand it back at detach
            try:
                pt.detach(tid, att.withheld_signal)
            except pt.TraceError:
                pass
            del self._stuck[tid]

    def detach_all(self, timeout: float = 1.0) -> list[int]:
        """Put every attached thread back (shutdown).  Returns the tids that
        could not be detached cleanly (they are released by the kernel when
        this thread exits)."""
        self._check_owner()
        failed: list[int] = []
        self.frozen.clear()
        self.frozen_facts.clear()
        self.loosened.clear()
        for att in list(self.attached.values()):
            try:
                self._detach(att)
            except OSError:
                failed.append(att.tid)
        deadline = time.monotonic() + timeout
        while self._stuck and time.monotonic() < deadline:
            self.reap_stuck()
            time.sleep(0.005)
        failed.extend(self._stuck)
        return failed
