"""Injected code (Injection.run_stub), against real C targets: the stub's
bytes are its assembly, its results equal one injected syscall per signal
and what the target itself installed, nothing of it is left in the process
(mappings, registers, mask, FPU state, memory), and a process that refuses
such code (a seccomp filter, a W^X policy) is read the slow way instead."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from sigfs import inject, procfs, state
from sigfs import ptrace_raw as pt
from sigfs.tracer import Tracer


def _regs(tid: int) -> tuple[int, ...]:
    regs = pt.getregs(tid)
    return tuple(getattr(regs, name) for name in pt.REGISTER_NAMES)


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def _vm(pid: int) -> dict[str, str | None]:
    st = procfs.read_status(pid)
    return {k: st.get(k) for k in ("VmSize", "VmRSS", "VmData", "VmExe")}


@pytest.mark.skipif(shutil.which("as") is None, reason="no assembler (binutils)")
def test_sigactions_stub_is_its_assembly(tmp_path: Path) -> None:
    src = tmp_path / "stub.s"
    src.write_text("    .intel_syntax noprefix\n    .text\n" + inject.SIGACTIONS_STUB_ASM)
    obj, raw = tmp_path / "stub.o", tmp_path / "stub.bin"
    subprocess.run(["as", "-o", str(obj), str(src)], check=True)
    subprocess.run(["objcopy", "-O", "binary", "-j", ".text", str(obj), str(raw)], check=True)
    assert raw.read_bytes() == inject.SIGACTIONS_STUB


def test_stub_and_single_syscalls_agree_and_leave_nothing(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")

    async def main() -> None:
        tracer = Tracer()
        async with tracer.stopped(t.pid, t.pid) as att:
            # A first injected syscall can add a page to the RSS (the vdso
            # page it runs from): any injection does. The stub adds nothing.
            async with inject.Injection(tracer, att) as inj:
                await inj.check(inject.SYS["getpid"])
            maps, vm = _maps(t.pid), _vm(t.pid)
            regs = _regs(t.pid)
            mask = pt.getsigmask(t.pid)
            xstate = pt.getregset(t.pid, pt.NT_X86_XSTATE, 4096)
            async with inject.Injection(tracer, att) as inj:
                with open(f"/proc/{t.pid}/mem", "rb", buffering=0) as mem:
                    mem.seek(inj.scratch)
                    stack = mem.read(inj.scratch_size)
                data = await inj.run_stub(inject.SIGACTIONS_STUB)  # not refused
                assert data[inject.STUB_DONE : inject.STUB_DONE + 8] == (1).to_bytes(8, "little")
                fast = await inject.read_sigactions(inj)
                slow = await inject.read_sigactions_one_by_one(inj)
                assert fast == slow
                assert pt.getsigmask(t.pid) == mask  # between steps: its own
            assert _regs(t.pid) == regs
            assert pt.getsigmask(t.pid) == mask
            assert pt.getregset(t.pid, pt.NT_X86_XSTATE, 4096) == xstate
            with open(f"/proc/{t.pid}/mem", "rb", buffering=0) as mem:
                mem.seek(inj.scratch)
                assert mem.read(inj.scratch_size) == stack
            # Still stopped: the stub's pages are gone again.
            assert _maps(t.pid) == maps
            assert _vm(t.pid) == vm

    trio.run(main)
    # The target runs on and its own view of its signals is unchanged.
    t.send("dump")
    lines = []
    while (line := t.readline()).strip() != "end":
        lines.append(line.strip())
    assert [ln for ln in lines if ln.startswith("act ")] == t.act_lines
    t.send("counts")
    assert t.readline().split() == ["counts", "h1=0", "h2=0", "h3=0"]


@pytest.mark.parametrize("how", ["seccomp", "mdwe"])
def test_a_process_that_refuses_injected_code_is_read_one_syscall_at_a_time(
    spawn,  # type: ignore[no-untyped-def]
    how: str,
) -> None:
    t = spawn("handlers", how)
    if how == "seccomp":
        assert procfs.read_status(t.pid)["Seccomp"] == "2"
    maps = _maps(t.pid)
    expected = {int(ln.split()[1]): ln for ln in t.act_lines}

    async def main() -> list[state.SigAction]:
        tracer = Tracer()
        async with tracer.stopped(t.pid, t.pid) as att:
            async with inject.Injection(tracer, att) as inj:
                with pytest.raises(inject.StubUnavailable):
                    await inj.run_stub(inject.SIGACTIONS_STUB)
        return list((await state.read_actions(tracer, t.pid)).actions)

    actions = trio.run(main)
    assert _maps(t.pid) == maps
    assert len(actions) == 64
    for act in actions:
        fields = dict(kv.split("=", 1) for kv in expected[act.signum].split()[2:])
        assert act.handler == int(fields["handler"], 16)
        assert act.flags == int(fields["flags"], 16)
        assert act.mask == int(fields["mask"][::-1], 2)
    t.send("counts")
    assert t.readline().split() == ["counts", "h1=0", "h2=0", "h3=0"]


def test_the_action_stub_answers_status_and_mm_while_frozen(spawn) -> None:  # type: ignore[no-untyped-def]
    """While frozen, `action`'s stub also asks the four prctl values of
    `status` and `mm`'s brk(0): those files then inject nothing, and show
    exactly what their own injections showed.  The thaw forgets them."""
    from sigfs import image
    from sigfs.formats import status as status_fmt

    t = spawn("handlers")

    async def main() -> None:
        tracer = Tracer()
        await tracer.freeze(t.pid)
        try:
            injected = status_fmt.render(await image.read_status(tracer, t.pid))
            brk = await image.read_brk(tracer, t.pid)
            await state.read_actions(tracer, t.pid)
            assert set(tracer.frozen_facts[t.pid]) == set(inject.STUB_EXTRAS)
            before = tracer.injected
            assert status_fmt.render(await image.read_status(tracer, t.pid)) == injected
            assert await image.read_brk(tracer, t.pid) == brk
            assert tracer.injected == before  # nothing injected for them
        finally:
            await tracer.thaw(t.pid)
        assert t.pid not in tracer.frozen_facts
        # Running again: asked by injection, as before.
        before = tracer.injected
        await image.read_brk(tracer, t.pid)
        assert tracer.injected == before + 1

    trio.run(main)
    assert t.status()["TracerPid"] == "0"


@pytest.mark.parametrize("target", ["counter", "handlers"])
def test_a_syscall_that_sleeps_past_the_timeout_is_put_back_when_it_returns(spawn, target) -> None:  # type: ignore[no-untyped-def]
    """An injected syscall that outlasts the stop timeout (one that waits
    for a lock held by a thread stuck on a hung filesystem, say): the
    request fails with EAGAIN at once, and the thread, let go then, would
    return to user mode with sigfs's registers and every signal blocked.  It
    is handed to the tracer's clean-up, which puts it back when the call
    returns, and only then lets it go: the target's own checks (counter:
    its registers and memory; handlers: blocked in read, no handler run)
    see nothing.  Both a spinning thread and one asleep in a syscall (sent
    back through get_signal())."""
    import errno
    import struct
    import time

    t = spawn(target)
    mask_before = t.sigmask_fields()["SigBlk"]

    async def main() -> None:
        tracer = Tracer(stop_timeout=0.1)
        async with tracer.stopped(t.pid, t.pid) as att:
            with pytest.raises(inject.InjectionError) as info:
                async with inject.Injection(tracer, att) as inj:
                    inj.write(inj.scratch, struct.pack("<qq", 0, 600_000_000))
                    await inj.syscall(35, inj.scratch, 0)  # nanosleep(600 ms)
            assert info.value.errno == errno.EAGAIN
        assert t.pid not in tracer.attached
        # Meanwhile: still traced, and a request for it is told to try again.
        assert t.status()["TracerPid"] != "0"
        with pytest.raises(OSError) as again:
            await tracer.with_stopped(t.pid, t.pid, lambda _att: None)
        assert again.value.errno == errno.EAGAIN
        assert state.blocked_mask(tracer, t.pid, t.pid) == mask_before  # its own, not ours
        notes: list[str] = []
        with trio.fail_after(5):
            await tracer.finish_handed_over(notes.append)  # what checkpoint and show do
        assert not tracer._stuck and not notes  # back within the second: nothing said

    trio.run(main)
    assert t.status()["TracerPid"] == "0"
    assert t.sigmask_fields()["SigBlk"] == mask_before
    if target == "counter":
        assert t.command("check").endswith(" ok")
    else:
        assert t.command("counts") == "counts h1=0 h2=0 h3=0"
        deadline = time.monotonic() + 2  # back in its read once it has answered
        while procfs.current_syscall(t.pid, t.pid)[0] != "0" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procfs.current_syscall(t.pid, t.pid)[0] == "0"


@pytest.mark.parametrize("all_slow", [False, True])
def test_threads_stepped_together_when_one_outlasts_the_timeout(spawn, all_slow) -> None:  # type: ignore[no-untyped-def]
    """syscall_in_threads (the frozen `altstack` batch) with one thread whose
    syscall outlasts the timeout: that one is handed off, every other one is
    waited for and put back, the request fails with EAGAIN, and the session
    refuses to inject again into the handed-off thread (a rollback that did
    would take the statuses the clean-up waits for).  Each thread ends as it
    began: its own mask, its own signal pending, asleep in its own call."""
    import errno
    import struct
    import time

    t = spawn("threads", "8" if all_slow else "2")
    tids = t.tids()
    deadline = time.monotonic() + 5  # every thread asleep (the main one may still print)
    while time.monotonic() < deadline and any(
        procfs.current_syscall(t.pid, tid)[0] == "running" for tid in tids
    ):
        time.sleep(0.005)
    before = {tid: (t.sigmask_fields(tid), procfs.current_syscall(t.pid, tid)[0]) for tid in tids}
    slow = tids[1]
    slow_ones = set(tids) if all_slow else {slow}

    async def main() -> None:
        tracer = Tracer(stop_timeout=0.1)
        await tracer.freeze(t.pid)
        try:
            atts = list(tracer.frozen[t.pid])

            def args(inj: inject.Injection) -> tuple[int, ...]:
                ns = 600_000_000 if inj.tid in slow_ones else 0
                inj.write(inj.scratch, struct.pack("<qq", 0, ns))
                return (inj.scratch, 0)

            with pytest.raises(inject.InjectionError) as info:
                async with inject.sessions(tracer, atts) as injs:
                    began = time.monotonic()
                    try:
                        await inject.syscall_in_threads(injs, 35, args)  # nanosleep
                    finally:
                        # One deadline for all, not a timeout per thread
                        # (nine threads: 0.9 s at least, one after another).
                        took = time.monotonic() - began
                        assert took < 0.6, took
                        stuck = next(inj for inj in injs if inj.tid == slow)
                        with pytest.raises(inject.InjectionError) as again:
                            await stuck.syscall(inject.SYS["getpid"])
                        assert again.value.errno == errno.EAGAIN
            assert info.value.errno == errno.EAGAIN
            held = [a.tid for a in tracer.frozen.get(t.pid, [])]
            assert held == [x for x in tids if x not in slow_ones]
            # A thread runs free now: nothing is taken as fixed until the thaw.
            assert t.pid in tracer.loosened and tracer.facts(t.pid) == {}
        finally:
            await tracer.thaw(t.pid)
        assert t.pid not in tracer.loosened
        with trio.fail_after(5):
            await tracer.finish_handed_over(lambda _m: None)
        assert not tracer.masked

    trio.run(main)
    for tid in tids:
        assert t.status(tid)["TracerPid"] == "0"
        fields, call = before[tid]
        assert t.sigmask_fields(tid) == fields
        deadline = time.monotonic() + 2  # back in its call once it has restarted it
        while procfs.current_syscall(t.pid, tid)[0] != call and time.monotonic() < deadline:
            time.sleep(0.005)
        assert procfs.current_syscall(t.pid, tid)[0] == call
