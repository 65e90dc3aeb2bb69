"""Syscall injection: make a stopped thread run one syscall, then put it back.

Handlers, the altstack and most restore steps are visible or changeable only
from inside the process.  An :class:`Injection` session borrows a thread that
the tracer holds in a ptrace stop:

* on entry it saves every register, the signal mask and a scratch area just
  below the stack's red zone, and blocks every signal (PTRACE_SETSIGMASK) so
  nothing is delivered between our steps;
* each :meth:`Injection.syscall` points rip at a ``syscall`` instruction found
  in the vdso, sets ``orig_rax = -1`` (else the kernel's syscall-restart fix-up
  would rewrite rip and rax, see arch_do_signal_or_restart()), and steps over
  the syscall with two PTRACE_SYSCALL stops (entry and exit).  Single-stepping
  is not used: its SIGTRAP is a forced signal, and force_sig_info_to_task()
  resets the target's SIGTRAP handler when the signal is blocked;
* on exit it writes the scratch bytes, registers and mask back.  A thread that
  was stopped inside a syscall (``orig_rax >= 0``, typically with rax =
  -ERESTARTSYS or -ERESTART_RESTARTBLOCK) must pass through the kernel's
  signal path once more for its syscall to be restarted, as the RFC patches'
  ``restore_retval`` comment describes; so the session re-traps it with
  PTRACE_INTERRUPT, and it is left in the same kind of stop it started in.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from types import TracebackType

from sigfs import aio, procfs
from sigfs import ptrace_raw as pt
from sigfs.tracer import SPIN_SECONDS, Attachment, StopTimeout, TargetGone, Tracer

SYSCALL_INSN = b"\x0f\x05"
RED_ZONE = 128
SCRATCH_SIZE = 512
# Stops other than ours tolerated while stepping one syscall (a SIGSTOP, a
# fault): past this the instruction is not what we thought.
MAX_STRAY_STOPS = 16
# Every signal; the kernel silently keeps SIGKILL and SIGSTOP deliverable.
ALL_SIGNALS = 0xFFFFFFFFFFFFFFFF & ~((1 << (signal.SIGKILL - 1)) | (1 << (signal.SIGSTOP - 1)))
ORIG_RAX_NONE = 0xFFFFFFFFFFFFFFFF

# x86-64 syscall numbers used by sigfs.
SYS = {
    "read": 0,
    "write": 1,
    "close": 3,
    "mmap": 9,
    "munmap": 11,
    "rt_sigaction": 13,
    "rt_sigprocmask": 14,
    "umask": 95,
    "rt_sigtimedwait": 128,
    "rt_sigqueueinfo": 129,
    "personality": 135,
    "setpriority": 141,
    "sched_setscheduler": 144,
    "prctl": 157,
    "getpid": 39,
    "kill": 62,
    "sigaltstack": 131,
    "gettid": 186,
    "tgkill": 234,
    "rt_tgsigqueueinfo": 297,
    "prlimit64": 302,
}

PAGE = 4096
PROT_RWX = 7
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
# Where a stub sets its "done" flag, from the start of its data page.
STUB_DONE = PAGE - 8
# How long a stub may run before it is stopped and the read fails.
STUB_TIMEOUT = 3.0

# tgid -> address of a syscall instruction in its vdso (checked before use).
_insn_cache: dict[int, int] = {}


class InjectionError(OSError):
    pass


class StubUnavailable(InjectionError):
    """The process cannot run injected code (see :meth:`Injection.run_stub`)."""


AT_SYSINFO_EHDR = 33  # auxv: where the kernel mapped the vdso


def _vdso_start(tgid: int) -> int | None:
    """The vdso's address from the process's auxv (a few hundred bytes,
    where ``/proc/PID/maps`` of a process with thousands of mappings is
    hundreds of KiB to read and parse), or None."""
    try:
        return dict(procfs.read_auxv(tgid)).get(AT_SYSINFO_EHDR)
    except OSError:
        return None


def _find_syscall_insn(tgid: int, mem_fd: int) -> int:
    cached = _insn_cache.get(tgid)
    if cached is not None:
        try:
            if os.pread(mem_fd, 2, cached) == SYSCALL_INSN:
                return cached
        except OSError:
            pass
    # The vdso where auxv says it is (a process may have moved its vdso:
    # then /proc/PID/maps says where).
    found = _syscall_in_vdso_image(tgid, mem_fd)
    if found is None:
        vdso = procfs.find_mapping(tgid, "[vdso]")
        if vdso is None:
            raise InjectionError(
                0, f"process {tgid} has no [vdso] mapping to borrow a syscall from"
            )
        start, end = vdso
        at = os.pread(mem_fd, end - start, start).find(SYSCALL_INSN)
        if at < 0:
            raise InjectionError(0, f"no syscall instruction in the vdso of {tgid}")
        found = start + at
    _insn_cache[tgid] = found
    return found


def _syscall_in_vdso_image(tgid: int, mem_fd: int) -> int | None:
    """A syscall instruction in the executable segment of the vdso ELF
    image at auxv's AT_SYSINFO_EHDR, or None (no auxv entry, not an ELF
    image there, no instruction)."""
    start = _vdso_start(tgid)
    if not start:
        return None
    try:
        head = os.pread(mem_fd, PAGE, start)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            return None
        (phoff,) = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        for i in range(phnum):
            off = phoff + i * phentsize
            if off + 56 > len(head):
                return None
            p_type, p_flags, _o, p_vaddr, _p, _f, p_memsz = struct.unpack_from(
                "<IIQQQQQ", head, off
            )
            if p_type == 1 and p_flags & 1:  # PT_LOAD, executable
                text = os.pread(mem_fd, min(p_memsz, 1 << 20), start + p_vaddr)
                at = text.find(SYSCALL_INSN)
                return start + p_vaddr + at if at >= 0 else None
    except (OSError, struct.error):
        return None
    return None


class Injection:
    """A syscall-injection session on one thread held stopped by ``tracer``."""

    def __init__(self, tracer: Tracer, att: Attachment, scratch_size: int = SCRATCH_SIZE) -> None:
        self.tracer = tracer
        self.att = att
        self.tid = att.tid
        self.scratch_size = scratch_size
        self.scratch = 0
        self.count = 0
        self._mem_fd = -1
        self._saved_regs: pt.Regs | None = None
        self._saved_mask = 0
        self._saved_scratch = b""
        self._insn = 0
        self._dirty = False
        self._safe_regs: pt.Regs | None = None
        # Still inside an injected syscall past the stop timeout: the thread
        # was handed to the tracer's clean-up (see _hand_off).
        self._handed_off = False

    async def __aenter__(self) -> Injection:
        self._saved_regs = pt.getregs(self.tid)
        self._saved_mask = pt.getsigmask(self.tid)
        try:
            self._mem_fd = os.open(f"/proc/{self.tid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise TargetGone(self.tid) from None
        try:
            self._insn = _find_syscall_insn(self.att.tgid, self._mem_fd)
            sp = self._saved_regs.rsp
            self.scratch = (sp - RED_ZONE - self.scratch_size) & ~0x3F
            self._saved_scratch = os.pread(self._mem_fd, self.scratch_size, self.scratch)
            self._safe_regs = released_regs(self._saved_regs)
        except BaseException:
            os.close(self._mem_fd)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with aio.shield():
            try:
                await self._restore()
            finally:
                os.close(self._mem_fd)

    async def _restore(self) -> None:
        if self._handed_off:
            return
        if self._put_back():
            await self.tracer.wait_trap(self.att)

    def _put_back(self) -> bool:
        """Write the scratch bytes, registers and mask back.  True when the
        thread has been sent back through get_signal() (see the module
        docstring) and its trap must still be waited for."""
        assert self._saved_regs is not None
        if self._handed_off:
            return False
        try:
            os.pwrite(self._mem_fd, self._saved_scratch, self.scratch)
            pt.setregs(self.tid, self._saved_regs)
            pt.setsigmask(self.tid, self._saved_mask)
        except pt.TraceError as exc:
            raise TargetGone(self.tid) from exc
        finally:
            self.tracer.masked.pop(self.tid, None)
        if self._dirty and (pt.regs_signed(self._saved_regs.orig_rax) >= 0 or self.att.group_stop):
            # Back through get_signal(): the restart fix-up runs on our saved
            # registers when the thread is finally let go.
            pt.interrupt(self.tid)
            pt.cont(self.tid, 0)
            return True
        return False

    # -- memory --------------------------------------------------------------

    def read(self, addr: int, size: int) -> bytes:
        data = os.pread(self._mem_fd, size, addr)
        if len(data) != size:
            raise InjectionError(0, f"short read of {size} bytes at {addr:#x} in {self.tid}")
        return data

    def write(self, addr: int, data: bytes) -> None:
        self._check_usable()
        if os.pwrite(self._mem_fd, data, addr) != len(data):
            raise InjectionError(0, f"short write of {len(data)} bytes at {addr:#x}")

    # -- syscalls ------------------------------------------------------------

    async def _step_to_syscall_stop(self) -> None:
        pt.syscall(self.tid, 0)
        await self._syscall_stop()

    async def _syscall_stop(self, deadline: float | None = None) -> None:
        """Wait for the syscall stop a PTRACE_SYSCALL just sent the thread
        to, noting (and stepping past) any other stop on the way; by
        ``deadline`` (monotonic) if given, else within the stop timeout."""
        for _ in range(MAX_STRAY_STOPS):
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                status = await self.tracer.wait(self.tid, left)
            except StopTimeout:
                self._hand_off()
                raise self._late("the syscall", "the call returns") from None
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                self.tracer.attached.pop(self.tid, None)
                raise TargetGone(self.tid)
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            event = status >> 16
            if event == 0 and sig == (signal.SIGTRAP | 0x80):
                return
            if event == pt.PTRACE_EVENT_STOP:
                if sig != signal.SIGTRAP:
                    self.att.group_stop = True  # a SIGSTOP arrived meanwhile
            elif event == 0 and sig == signal.SIGSTOP:
                # Unblockable, so dequeued here: delivered, as the kernel
                # would (its group stop, reported next, is noted above and
                # stays in force at the detach; a SIGCONT cancels it).
                # Withheld until the detach it would be lost: the thread is
                # in its interrupt trap by then, an event stop, where the
                # kernel ignores a detach's signal.
                pt.syscall(self.tid, signal.SIGSTOP)
                continue
            elif event == 0 and not self.att.withheld_signal:
                self.att.withheld_signal = sig  # hand it back on detach
            pt.syscall(self.tid, 0)
        raise InjectionError(0, f"thread {self.tid} never reached the injected syscall's stop")

    @contextmanager
    def _unsafe(self, regs: pt.Regs) -> Iterator[None]:
        """The unsafe window: in the block the thread holds ``regs`` and
        every signal blocked (its own mask kept in ``Tracer.masked``); after
        it, the released registers and its own mask again, so that were the
        tracer killed then, the kernel would let the thread go with registers
        that continue it correctly.  A ptrace failure is the thread gone."""
        assert self._safe_regs is not None
        self._dirty = True
        try:
            pt.setsigmask(self.tid, ALL_SIGNALS)
            self.tracer.masked[self.tid] = self._saved_mask
            pt.setregs(self.tid, regs)
            yield
            pt.setregs(self.tid, self._safe_regs)
            pt.setsigmask(self.tid, self._saved_mask)
        except pt.TraceError as exc:
            raise TargetGone(self.tid) from exc
        finally:
            if not self._handed_off:  # else kept until the thread is put back
                self.tracer.masked.pop(self.tid, None)

    def _late(self, what: str, when: str) -> InjectionError:
        """The request's error once the thread has been handed off."""
        return InjectionError(
            errno.EAGAIN,
            f"thread {self.tid} is still inside {what} sigfs injected after "
            f"{self.tracer.stop_timeout:g} s (it sleeps); it is put back as it was "
            f"when {when}: try again then",
        )

    def _hand_off(self, at_trap: bool = False) -> None:
        """The thread sleeps inside the injected syscall past the stop
        timeout (a mmap behind a lock held by a thread stuck on a hung
        filesystem, say).  Let go now, it would return to user mode with
        sigfs's registers and every signal blocked, and crash.  So it is
        handed to the tracer's clean-up (:meth:`Tracer.reap_stuck`, every
        50 ms), which, when the call returns, puts its scratch bytes,
        registers and mask back, sends it through get_signal() if it must
        (as :meth:`_put_back`), and only then detaches it.  Until then a
        request for it gets EAGAIN, and a freeze no longer holds it."""
        assert self._saved_regs is not None
        self._handed_off = True
        tracer, att = self.tracer, self.att
        tracer.attached.pop(self.tid, None)
        held = tracer.frozen.get(att.tgid)
        if held is not None and att in held:
            held.remove(att)
        if held is not None:
            tracer.loosened.add(att.tgid)  # it runs on: no facts kept from now
        tracer.frozen_facts.pop(att.tgid, None)
        retrap = pt.regs_signed(self._saved_regs.orig_rax) >= 0 or att.group_stop
        att.extra["finish"] = _Finisher(
            tracer,
            att,
            self._saved_regs,
            self._saved_mask,
            self.scratch,
            self._saved_scratch,
            retrap,
            "trap" if at_trap else "syscall",
        )
        tracer.hand_over(att)

    def _syscall_regs(self, nr: int, args: tuple[int, ...]) -> pt.Regs:
        if len(args) > 6:
            raise ValueError("at most six syscall arguments")
        assert self._saved_regs is not None
        regs = pt.copy_regs(self._saved_regs)
        regs.rax = nr
        regs.orig_rax = ORIG_RAX_NONE
        regs.rip = self._insn
        full = list(args) + [0] * (6 - len(args))
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = (
            pt.regs_unsigned(a) for a in full
        )
        return regs

    def _check_usable(self) -> None:
        """Nothing more once the thread has been handed off (a rollback that
        tried would take the statuses the clean-up waits for)."""
        if self._handed_off:
            raise InjectionError(
                errno.EAGAIN,
                f"thread {self.tid} is still inside a syscall sigfs injected; try again",
            )

    async def syscall(self, nr: int, *args: int) -> int:
        """Run syscall ``nr`` with up to six arguments; returns the raw result
        (negative errno on failure, as the kernel returns it)."""
        self._check_usable()
        regs = self._syscall_regs(nr, args)
        with aio.shield(), self._unsafe(regs):
            # Kept to the syscall itself.
            await self._step_to_syscall_stop()  # entry
            await self._step_to_syscall_stop()  # exit
            result = pt.regs_signed(pt.getregs(self.tid).rax)
        self.count += 1
        self.tracer.injected += 1
        return result

    async def run_stub(self, code: bytes, timeout: float = STUB_TIMEOUT) -> bytes:
        """Run machine code ``code`` in the thread and return the data page
        it wrote: for work that would otherwise take many injected syscalls,
        each costing two ptrace stops (one pass here, whatever the count).

        Two pages are mapped read-write-execute in the process with an
        injected mmap: ``code`` goes in the first; ``r15`` points at the
        second when it starts.  The code must write a nonzero qword at
        ``r15 + STUB_DONE`` when it is done and then park itself in
        ``pause()``; the thread is then interrupted and the pages unmapped.
        Every signal stays blocked throughout, as for any injected syscall.
        Raises :class:`StubUnavailable` when the process will not map the
        pages (a seccomp filter or a W^X policy): the caller falls back to
        single syscalls.
        """
        self._check_usable()
        if len(code) > PAGE:
            raise ValueError("a stub is at most one page")
        if procfs.read_status(self.att.tgid, self.tid).get("Seccomp", "0") != "0":
            # A filter might kill the process for an mmap with PROT_EXEC.
            raise StubUnavailable(0, f"process {self.att.tgid} runs under a seccomp filter")
        # Shielded from the mmap to the munmap: an interrupt (Ctrl-C in a
        # checkpoint) between the two would leave the pages mapped in the
        # process.  The whole run takes about a millisecond.
        with aio.shield():
            base = await self.syscall(
                SYS["mmap"], 0, 2 * PAGE, PROT_RWX, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0
            )
            if -4096 < base < 0:
                raise StubUnavailable(
                    -base, f"cannot map a stub in {self.tid}: {os.strerror(-base)}"
                )
            try:
                self.write(base, code)
                data = base + PAGE
                assert self._saved_regs is not None
                regs = pt.copy_regs(self._saved_regs)
                regs.rip = base
                regs.r15 = data
                regs.orig_rax = ORIG_RAX_NONE
                with self._unsafe(regs):
                    pt.cont(self.tid, 0)
                    await self._wait_done(data + STUB_DONE, timeout)
                    pt.interrupt(self.tid)
                    await self._stub_trap()
                    out = self.read(data, PAGE)
            finally:
                if not self._handed_off:  # else its pages stay: see _stub_trap
                    await self.check(SYS["munmap"], base, 2 * PAGE)
        self.tracer.injected += 1
        return out

    async def _stub_trap(self) -> None:
        """The interrupt's trap of a thread running the stub; one that does
        not come within the stop timeout (the stub's brk waiting for a lock)
        is handed off, to be put back at that trap (the stub's pages stay
        mapped then: a leak of two pages)."""
        try:
            await self.tracer.wait_trap(self.att)
        except StopTimeout:
            self._hand_off(at_trap=True)
            raise self._late("code", "it stops") from None

    async def _wait_done(self, flag: int, timeout: float) -> None:
        """Until the stub sets its flag: spin briefly (it usually takes tens
        of microseconds), then back off.  A stop on the way (a SIGSTOP
        arriving) is noted and the thread sent on, as in
        :meth:`Tracer.wait_trap`."""
        deadline = time.monotonic() + timeout
        spin_end = time.monotonic() + SPIN_SECONDS
        delay = 0.0001
        while True:
            if os.pread(self._mem_fd, 8, flag) != bytes(8):
                return
            status = self.tracer.poll(self.tid)
            if status is not None and self.tracer.trap_seen(self.att, status):
                pt.cont(self.tid, 0)  # a group stop: the stub finishes first
            now = time.monotonic()
            if now > deadline:
                pt.interrupt(self.tid)
                await self._stub_trap()
                raise InjectionError(0, f"thread {self.tid} did not finish the injected code")
            if now < spin_end:
                os.sched_yield()
            else:
                await aio.sleep(delay)
                delay = min(delay * 2, 0.01)

    async def check(self, nr: int, *args: int) -> int:
        """Like :meth:`syscall`, raising ``OSError`` on a negative result."""
        result = await self.syscall(nr, *args)
        if -4096 < result < 0:
            raise OSError(-result, f"injected syscall {nr} in {self.tid}: {os.strerror(-result)}")
        return result


class _Finisher:
    """Puts back a thread handed off inside an injected syscall (see
    :meth:`Injection._hand_off`), one waitpid status at a time, from
    :meth:`Tracer.reap_stuck`.  Called with each status; True once the
    thread is detached (or gone)."""

    def __init__(
        self,
        tracer: Tracer,
        att: Attachment,
        regs: pt.Regs,
        mask: int,
        scratch: int,
        saved_scratch: bytes,
        retrap: bool,
        phase: str = "syscall",
    ) -> None:
        self.tracer, self.att = tracer, att
        self.regs, self.mask, self.retrap = regs, mask, retrap
        self.scratch, self.saved_scratch = scratch, saved_scratch
        # "syscall": inside the injected syscall, put back at its exit stop;
        # "trap": in the stub, interrupted, put back at the interrupt's trap;
        # then "retrap" (on the way back through get_signal()), then done.
        self.phase = phase

    def __call__(self, status: int) -> bool:
        tid = self.att.tid
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self.tracer.masked.pop(tid, None)
            return True
        if not os.WIFSTOPPED(status):
            return False
        sig, event = os.WSTOPSIG(status), status >> 16
        try:
            if self.phase == "syscall":
                if event == 0 and sig == (signal.SIGTRAP | 0x80):
                    if pt.get_syscall_info(tid)[0] == 1:  # PTRACE_SYSCALL_INFO_ENTRY
                        pt.syscall(tid, 0)
                        return False
                    return self._put_back()
                if event == 0 and sig == signal.SIGSTOP:
                    pt.syscall(tid, signal.SIGSTOP)  # delivered, as in _syscall_stop
                elif event == 0:
                    if not self.att.withheld_signal:
                        self.att.withheld_signal = sig
                    pt.syscall(tid, 0)
                else:
                    if event == pt.PTRACE_EVENT_STOP and sig != signal.SIGTRAP:
                        self.att.group_stop = True
                    pt.syscall(tid, 0)
                return False
            if self.phase == "trap":  # trap_seen passes on a signal on the way
                if self.tracer.trap_seen(self.att, status):
                    return self._put_back()
                return False
            # "retrap": on the way back through get_signal() to our trap.
            if self.tracer.trap_seen(self.att, status):
                return self._detach()
            return False
        except pt.TraceError:
            # Killed meanwhile (its exit is the next status), or not in a
            # stop: kept, and the next status decides.
            return False

    def _put_back(self) -> bool:
        tid = self.att.tid
        try:
            fd = os.open(f"/proc/{tid}/mem", os.O_RDWR | os.O_CLOEXEC)
            try:
                os.pwrite(fd, self.saved_scratch, self.scratch)
            finally:
                os.close(fd)
        except OSError:
            pass
        pt.setregs(tid, self.regs)
        pt.setsigmask(tid, self.mask)
        self.tracer.masked.pop(tid, None)
        if self.retrap or self.att.group_stop:
            pt.interrupt(tid)
            pt.cont(tid, 0)
            self.phase = "retrap"
            return False
        return self._detach()

    def _detach(self) -> bool:
        try:
            pt.detach(self.att.tid, self.att.withheld_signal)
        except pt.TraceError:
            return False  # killed meanwhile: its exit, collected next, ends it
        return True


@asynccontextmanager
async def sessions(tracer: Tracer, atts: list[Attachment]) -> AsyncIterator[list[Injection]]:
    """An :class:`Injection` session in each of several held threads, for
    :func:`syscall_in_threads`; on the way out every thread is put back, and
    those that must pass through get_signal() again are sent there together
    before any is waited for."""
    opened: list[Injection] = []
    try:
        for att in atts:
            if "finish" in att.extra or tracer.attached.get(att.tid) is not att:
                raise InjectionError(
                    errno.EAGAIN,
                    f"thread {att.tid} is no longer held (still inside a "
                    "syscall sigfs injected?); try again",
                )
            inj = Injection(tracer, att)
            await inj.__aenter__()
            opened.append(inj)
        yield opened
    finally:
        with aio.shield():
            waiting: list[Injection] = []
            error: BaseException | None = None
            for inj in opened:
                try:
                    if inj._put_back():
                        waiting.append(inj)
                except BaseException as exc:  # put the others back all the same
                    error = error or exc
            for inj in waiting:
                try:
                    await tracer.wait_trap(inj.att)
                except BaseException as exc:
                    error = error or exc
            for inj in opened:
                os.close(inj._mem_fd)
            if error is not None:
                raise error


async def syscall_in_threads(
    sessions: list[Injection], nr: int, args: Callable[[Injection], tuple[int, ...]]
) -> list[int]:
    """:meth:`Injection.syscall` in several threads of one process at once
    (``args(session)`` gives each its arguments): each step is sent to every
    thread before any is waited for, so their stops overlap instead of
    adding up (a hundred threads: a couple of milliseconds, not twenty).
    Returns the raw results in the order of ``sessions``."""
    for inj in sessions:
        inj._check_usable()
    regs = [inj._syscall_regs(nr, args(inj)) for inj in sessions]
    with aio.shield(), ExitStack() as unsafe:
        for inj, r in zip(sessions, regs, strict=True):
            unsafe.enter_context(inj._unsafe(r))
        handed_off: InjectionError | None = None
        failed: BaseException | None = None
        for _step in ("entry", "exit"):
            going = [inj for inj in sessions if not inj._handed_off]
            for inj in going:
                pt.syscall(inj.tid, 0)
            # Every thread sent on is waited for, each handed off if it
            # outlasts the timeout (one deadline for them all: a frozen
            # container's hundred threads fail in 3 s, not 300), so that
            # none is left running with sigfs's registers while the others
            # are put back; the first error is raised after.
            deadline = time.monotonic() + (sessions[0].tracer.stop_timeout if sessions else 0)
            for inj in going:
                try:
                    await inj._syscall_stop(deadline)
                except InjectionError as exc:
                    if inj._handed_off:
                        handed_off = handed_off or exc
                    else:
                        failed = failed or exc
                except (OSError, pt.TraceError) as exc:
                    failed = failed or exc
            if failed is not None:
                raise failed
        if handed_off is not None:
            raise handed_off
        results = [pt.regs_signed(pt.getregs(inj.tid).rax) for inj in sessions]
    for inj in sessions:
        inj.count += 1
        inj.tracer.injected += 1
    return results


ERESTARTSYS = -512
ERESTARTNOINTR = -513
ERESTARTNOHAND = -514
ERESTART_RESTARTBLOCK = -516
NR_RESTART_SYSCALL = 219


def released_regs(saved: pt.Regs) -> pt.Regs:
    """The registers a thread should hold if it were let go from a syscall
    stop of ours: ``saved`` with the kernel's no-handler restart fix-up
    (arch_do_signal_or_restart()) already applied, since returning from our
    syscall's exit stop skips it.  Used between injected syscalls so that a
    daemon killed at that moment leaves the thread correct."""
    regs = pt.copy_regs(saved)
    if pt.regs_signed(saved.orig_rax) < 0:
        return regs
    rax = pt.regs_signed(saved.rax)
    if rax in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND):
        regs.rax = saved.orig_rax
        regs.rip = saved.rip - 2
    elif rax == ERESTART_RESTARTBLOCK:
        regs.rax = NR_RESTART_SYSCALL
        regs.rip = saved.rip - 2
    else:
        return regs
    regs.orig_rax = ORIG_RAX_NONE
    return regs


# -- readers built on injection ---------------------------------------------

KSIGACTION = struct.Struct("<QQQQ")  # handler, flags, restorer, mask
STACK_T = struct.Struct("<QiiQ")  # ss_sp, ss_flags, pad, ss_size


# rt_sigaction(sig, NULL, r15 + 40 * (sig - 1), 8) for sig 1..64, each
# result stored after its struct; then, for `status` and `mm` while the
# process is frozen (state.read_actions), the four prctl values and brk(0)
# those files need, each result at its STUB_EXTRAS offset (the two prctl
# that write an int write it at the offset before); then the done flag and
# park in pause().  tests/test_inject_stub.py assembles this text and
# compares the bytes.
SIGACTIONS_STUB_ASM = """
    mov r12d, 1
    mov r13, r15
1:
    mov eax, 13
    mov edi, r12d
    xor esi, esi
    mov rdx, r13
    mov r10d, 8
    syscall
    mov [r13+32], rax
    add r13, 40
    inc r12d
    cmp r12d, 65
    jne 1b
    xor edx, edx
    xor r10d, r10d
    xor r8d, r8d
    mov eax, 157
    mov edi, 2
    lea rsi, [r15+2560]
    syscall
    mov [r15+2568], rax
    mov eax, 157
    mov edi, 3
    xor esi, esi
    syscall
    mov [r15+2576], rax
    mov eax, 157
    mov edi, 37
    lea rsi, [r15+2584]
    syscall
    mov [r15+2592], rax
    mov eax, 157
    mov edi, 42
    xor esi, esi
    syscall
    mov [r15+2600], rax
    mov eax, 12
    xor edi, edi
    syscall
    mov [r15+2608], rax
    mov qword ptr [r15+4088], 1
2:
    mov eax, 34
    syscall
    jmp 2b
"""
SIGACTIONS_STUB = bytes.fromhex(
    "41bc010000004d89fdb80d0000004489e731f64c89ea41ba080000000f05498945204983c528"
    "41ffc44183fc4175da31d24531d24531c0b89d000000bf02000000498db7000a00000f054989"
    "87080a0000b89d000000bf0300000031f60f05498987100a0000b89d000000bf25000000498d"
    "b7180a00000f05498987200a0000b89d000000bf2a00000031f60f05498987280a0000b80c00"
    "000031ff0f05498987300a000049c787f80f000001000000b8220000000f05ebf7"
)
SIGACTION_RECORD = struct.Struct("<QQQQq")  # struct k_sigaction, then the result
# What the stub asks besides the sigactions: name -> (offset of the
# syscall's result, offset of the int it wrote or None).
STUB_EXTRAS = {
    "pdeath_signal": (2568, 2560),  # prctl(PR_GET_PDEATHSIG, &int)
    "dumpable": (2576, None),  # prctl(PR_GET_DUMPABLE)
    "child_subreaper": (2592, 2584),  # prctl(PR_GET_CHILD_SUBREAPER, &int)
    "thp_disable": (2600, None),  # prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)
    "brk": (2608, None),  # brk(0)
}


async def read_sigactions(
    inj: Injection, extras: dict[str, int] | None = None
) -> list[tuple[int, int, int, int]]:
    """(handler, flags, restorer, mask) for signals 1..64, via
    rt_sigaction(sig, NULL, &old): all 64 in one injected stub where the
    process allows it, else one injected syscall each.  With the stub,
    ``extras`` (if given) gets the STUB_EXTRAS values that succeeded."""
    try:
        data = await inj.run_stub(SIGACTIONS_STUB)
    except StubUnavailable:
        return await read_sigactions_one_by_one(inj)
    out = []
    for i in range(64):
        handler, flags, restorer, mask, result = SIGACTION_RECORD.unpack_from(
            data, i * SIGACTION_RECORD.size
        )
        if result != 0:
            raise OSError(-result, f"rt_sigaction({i + 1}) in {inj.tid}: {os.strerror(-result)}")
        out.append((handler, flags, restorer, mask))
    if extras is not None:
        for name, (at, written) in STUB_EXTRAS.items():
            (result,) = struct.unpack_from("<q", data, at)
            if -4096 < result < 0:
                continue  # refused: the file's reader asks again itself
            extras[name] = result if written is None else struct.unpack_from("<i", data, written)[0]
    return out


async def read_sigactions_one_by_one(inj: Injection) -> list[tuple[int, int, int, int]]:
    """:func:`read_sigactions` with one injected syscall per signal."""
    out = []
    buf = inj.scratch
    for sig in range(1, 65):
        await inj.check(SYS["rt_sigaction"], sig, 0, buf, 8)
        out.append(KSIGACTION.unpack(inj.read(buf, KSIGACTION.size)))
    return out


async def read_altstack(inj: Injection) -> tuple[int, int, int]:
    """(sp, size, flags) of the thread's sigaltstack, via sigaltstack(NULL, &old)."""
    buf = inj.scratch
    await inj.check(SYS["sigaltstack"], 0, buf)
    return unpack_altstack(inj.read(buf, STACK_T.size))


def unpack_altstack(raw: bytes) -> tuple[int, int, int]:
    """(sp, size, flags) from a ``stack_t``."""
    sp, flags, _pad, size = STACK_T.unpack(raw)
    return sp, size, flags & 0xFFFFFFFF
