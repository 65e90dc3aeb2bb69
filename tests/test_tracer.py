"""Tracer and injection engine against real C targets (no FUSE)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

import pytest
import trio

from sigfs import inject, procfs, state
from sigfs import ptrace_raw as pt
from sigfs.tracer import TargetBusy, TargetGone, Tracer


def run(fn, *args):  # type: ignore[no-untyped-def]
    return trio.run(fn, *args)


def regs_tuple(regs: pt.Regs) -> tuple[int, ...]:
    return tuple(getattr(regs, name) for name in pt.REGISTER_NAMES)


def test_seize_interrupt_detach_leaves_thread_running(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")

    async def main() -> None:
        tracer = Tracer()
        for _ in range(50):
            async with tracer.stopped(t.pid, t.pid) as att:
                assert procfs.read_status(t.pid)["State"].startswith("t")
                assert att.tid == t.pid
        assert not tracer.attached

    run(main)
    st = procfs.read_status(t.pid)
    assert st["TracerPid"] == "0"
    assert not st["State"].startswith("t")
    t.send("check")
    assert "ok" in t.readline()


def test_injection_restores_every_register_mask_and_byte(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")

    async def main() -> None:
        tracer = Tracer()
        async with tracer.stopped(t.pid, t.pid) as att:
            before = regs_tuple(pt.getregs(t.pid))
            mask = pt.getsigmask(t.pid)
            xstate = pt.getregset(t.pid, pt.NT_X86_XSTATE, 4096)
            async with inject.Injection(tracer, att) as inj:
                scratch = inj.scratch
                with open(f"/proc/{t.pid}/mem", "rb", buffering=0) as mem:
                    mem.seek(scratch)
                    stack_before = mem.read(inj.scratch_size)
                pid = await inj.check(inject.SYS["getpid"])
                assert pid == t.pid
                await inject.read_sigactions(inj)
                # Between injected syscalls the thread is in its own state.
                assert pt.getsigmask(t.pid) == mask
            assert regs_tuple(pt.getregs(t.pid)) == before
            assert pt.getsigmask(t.pid) == mask
            assert pt.getregset(t.pid, pt.NT_X86_XSTATE, 4096) == xstate
            with open(f"/proc/{t.pid}/mem", "rb", buffering=0) as mem:
                mem.seek(scratch)
                assert mem.read(inj.scratch_size) == stack_before

    run(main)


def test_sigactions_match_what_the_target_installed(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    expected = {}
    for line in t.act_lines:
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        expected[int(line.split()[1])] = fields

    async def main():  # type: ignore[no-untyped-def]
        return await state.read_actions(Tracer(), t.pid)

    actions = run(main)
    for act in actions:
        want = expected[act.signum]
        assert act.handler == int(want["handler"], 16), act
        assert act.flags == int(want["flags"], 16), act
        assert act.restorer == int(want["restorer"], 16), act
        bitmap = "".join("1" if act.mask >> k & 1 else "0" for k in range(64))
        assert bitmap == want["mask"], act


def test_altstack_matches_target(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    alt = dict(kv.split("=", 1) for kv in t.altstack_line.split()[1:])

    async def main():  # type: ignore[no-untyped-def]
        return await state.read_altstack(Tracer(), t.pid, t.pid)

    got = run(main)
    assert got.sp == int(alt["sp"], 16)
    assert got.size == int(alt["size"])
    assert got.flags == int(alt["flags"])


@pytest.mark.parametrize("mode", ["nanosleep", "read", "wait4", "waitid"])
def test_reads_do_not_disturb_blocked_syscalls(spawn, mode) -> None:  # type: ignore[no-untyped-def]
    args = ["nanosleep", "1500"] if mode == "nanosleep" else [mode]
    t = spawn("sleeper", *args)

    async def main() -> None:
        tracer = Tracer()
        deadline = time.monotonic() + 1.2
        n = 0
        while n < 1000 and time.monotonic() < deadline:
            await state.read_pending(tracer, t.pid, t.pid, False)
            async with tracer.stopped(t.pid, t.pid):
                pass
            n += 1
        # Injection too: the thread is inside a syscall, the hardest case.
        await state.read_altstack(tracer, t.pid, t.pid)
        await state.read_actions(tracer, t.pid)

    run(main)
    if mode == "nanosleep":
        line = t.readline(timeout=10)
        assert "rc=0" in line, line
        slept = int(line.split("ms=")[1].split()[0])
        assert 1490 <= slept <= 1700, line
    elif mode == "read":
        t.send("write")
        line = t.readline()
        assert "rc=1" in line, line
    else:
        t.send("release")
        line = t.readline()
        assert "errno=0" in line and "rc=-1" not in line, line


def test_signal_arriving_while_stopped_is_delivered_once(spawn) -> None:  # type: ignore[no-untyped-def]
    """A signal sent while sigfs holds the thread (plain stop, or mid-injection
    with everything blocked) is delivered exactly once after.  Standard
    signals merge while pending, so each round waits for the delivery."""
    t = spawn("counter")

    def delivered() -> int:
        t.send("sigs")
        return int(t.readline().split()[1])

    def wait_for(n: int) -> int:
        deadline = time.monotonic() + 5
        got = delivered()
        while got < n and time.monotonic() < deadline:
            time.sleep(0.001)
            got = delivered()
        return got

    async def main() -> None:
        tracer = Tracer()
        expected = 0
        for _ in range(30):
            async with tracer.stopped(t.pid, t.pid):
                os.kill(t.pid, signal.SIGUSR1)
            expected += 1
            assert wait_for(expected) == expected
            async with tracer.stopped(t.pid, t.pid) as att:
                async with inject.Injection(tracer, att) as inj:
                    os.kill(t.pid, signal.SIGUSR1)
                    await inj.check(inject.SYS["getpid"])
            expected += 1
            assert wait_for(expected) == expected

    run(main)
    time.sleep(0.05)
    assert delivered() == 60


def test_busy_when_traced_by_another(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    strace = subprocess.Popen(
        ["strace", "-p", str(t.pid), "-o", "/dev/null"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while procfs.tracer_pid(t.pid) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

        async def main() -> None:
            with pytest.raises(TargetBusy) as info:
                async with Tracer().stopped(t.pid, t.pid):
                    pass
            assert "strace" in str(info.value)

        run(main)
    finally:
        strace.terminate()
        strace.wait()


def test_exited_process_is_reported_gone(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    t.kill()

    async def main() -> None:
        with pytest.raises((TargetGone, ProcessLookupError)):
            await state.read_actions(Tracer(), t.pid)

    run(main)


def test_peeksiginfo_private_and_shared_queues(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("forker")
    os.kill(t.pid, signal.SIGUSR1)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(234, t.pid, t.pid, signal.SIGUSR2) == 0  # tgkill: private queue

    async def main():  # type: ignore[no-untyped-def]
        tracer = Tracer()
        return (
            await state.read_pending(tracer, t.pid, t.pid, False),
            await state.read_pending(tracer, t.pid, t.pid, True),
        )

    private, shared = run(main)
    kernel = t.sigmask_fields()
    assert private.mask == kernel["SigPnd"]
    assert shared.mask == kernel["ShdPnd"]
    assert [si.signo for si in private.queue] == [signal.SIGUSR2]
    assert signal.SIGUSR1 in [si.signo for si in shared.queue]
    assert signal.SIGCHLD in [si.signo for si in shared.queue]


def test_syscall_info_and_rseq_configuration(spawn) -> None:  # type: ignore[no-untyped-def]
    """PTRACE_GET_SYSCALL_INFO at an interrupt stop reports no syscall (op
    NONE) with the arch and the instruction and stack pointers; the rseq
    registration matches what /proc shows for the thread."""
    import struct

    t = spawn("sleeper", "read")

    async def main():  # type: ignore[no-untyped-def]
        tracer = Tracer()

        def look(_att):  # type: ignore[no-untyped-def]
            return pt.get_syscall_info(t.pid), pt.getregs(t.pid), pt.get_rseq_configuration(t.pid)

        return await tracer.with_stopped(t.pid, t.pid, look)

    info, regs, rseq = run(main)
    op, arch, ip, sp = struct.unpack_from("<B3xIQQ", info)
    assert op == pt.SYSCALL_INFO_NONE
    assert arch == 0xC000003E  # AUDIT_ARCH_X86_64
    assert (ip, sp) == (regs.rip, regs.rsp)
    abi, size, sig, flags = rseq
    with open(f"/proc/{t.pid}/task/{t.pid}/maps") as f:
        maps = f.read()
    if abi:  # glibc registered rseq: the area lies in a mapping of the process
        assert any(
            int(a, 16) <= abi < int(b, 16)
            for a, b in (line.split()[0].split("-") for line in maps.splitlines())
        )
        assert size >= 20 and sig != 0 and flags == 0


def test_the_borrowed_syscall_instruction_is_in_the_vdso(spawn) -> None:  # type: ignore[no-untyped-def]
    """Found from auxv's AT_SYSINFO_EHDR and the vdso's ELF header (not by
    reading /proc/PID/maps, which is long for big processes): inside the
    [vdso] mapping, in its executable part, and a syscall instruction."""
    t = spawn("handlers")
    start, end = procfs.find_mapping(t.pid, "[vdso]") or (0, 0)
    fd = os.open(f"/proc/{t.pid}/mem", os.O_RDONLY)
    try:
        at = inject._syscall_in_vdso_image(t.pid, fd)
        assert at is not None and start <= at < end - 1
        assert os.pread(fd, 2, at) == inject.SYSCALL_INSN
        inject._insn_cache.pop(t.pid, None)
        assert inject._find_syscall_insn(t.pid, fd) == at
    finally:
        os.close(fd)
    with open(f"/proc/{t.pid}/maps") as f:
        line = next(ln for ln in f if ln.rstrip().endswith("[vdso]"))
    assert line.split()[1].startswith("r-x")


def test_python_ptrace_is_imported_without_searching_for_libc(spawn) -> None:  # type: ignore[no-untyped-def]
    """python-ptrace's own search runs `ldconfig -p` in a subprocess on
    import; sigfs hands it glibc by name instead. Its ptrace() still works:
    a fresh interpreter seizes and detaches a real target with it."""
    t = spawn("counter")
    code = (
        "import sys\n"
        "from sigfs import ptrace_raw as pt\n"
        "assert 'ctypes.util' not in sys.modules, 'find_library was imported'\n"
        "from ptrace.binding import func\n"
        "import ptrace.ctypes_libc as lib\n"
        "assert lib.LIBC_FILENAME == 'libc.so.6'\n"
        "import os\n"
        f"pt.seize({t.pid})\n"
        f"pt.interrupt({t.pid})\n"
        f"os.waitpid({t.pid}, pt.WALL)\n"
        f"assert pt.getregs({t.pid}).rip\n"
        f"pt.detach({t.pid})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert procfs.read_status(t.pid)["TracerPid"] == "0"
