"""Writing ``sig/blocked`` through a real mount: each write checked against
the kernel's view (``SigBlk`` in /proc) and the process's own (sigprocmask
inside the target), and every refused write leaving the mask as it was."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import run_as, stop_process
from conftest import write_file as write

from sigfs.formats.sigset import parse_bitmap, render_bitmap

pytestmark = pytest.mark.mount

SIGUSR1, SIGUSR2, SIGINT, SIGTERM = 10, 12, 2, 15
RTMIN = 34


def bit(*sigs: int) -> int:
    return sum(1 << (s - 1) for s in set(sigs))


def own_view(t) -> int:  # type: ignore[no-untyped-def]
    """The handlers target's own sigprocmask, as it prints it."""
    t.send("dump")
    while True:
        line = t.readline()
        if line.startswith("blocked mask="):
            mask = parse_bitmap(line.split("=", 1)[1])
        if line == "end":
            return mask


def test_edits_change_the_mask_the_kernel_and_the_process_see(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/blocked"
    start = t.sigmask_fields()["SigBlk"]
    assert start == bit(SIGUSR2, RTMIN + 5)
    # SIGRTMIN+5 stays blocked throughout: two are pending, and its default
    # action would end the target.
    rt5 = bit(RTMIN + 5)
    steps = [
        (b"+SIGUSR1\n", False, start | bit(SIGUSR1)),
        (b"-usr2\n", False, rt5 | bit(SIGUSR1)),
        (b"SIGINT 15 SIGRTMIN+5\n", False, rt5 | bit(SIGINT, SIGTERM)),  # `>`: exactly these
        (b"SIGRTMIN+3,SIGUSR1\n", True, rt5 | bit(SIGINT, SIGTERM, RTMIN + 3, SIGUSR1)),  # `>>`
        (b"# a comment\n-SIGINT -15\n", False, rt5 | bit(RTMIN + 3, SIGUSR1)),
        (
            (render_bitmap(bit(SIGUSR2)) + "\n").encode(),
            True,
            rt5 | bit(RTMIN + 3, SIGUSR1, SIGUSR2),
        ),
        ((render_bitmap(start) + "\n").encode(), False, start),  # the file's own text
        (b"+SIGUSR2", False, start),  # no newline; already blocked
    ]
    for data, append, want in steps:
        write(path, data, append)
        assert t.sigmask_fields()["SigBlk"] == want, data
        assert parse_bitmap(mnt.read(f"{t.pid}/sig/blocked").strip()) == want
    assert own_view(t) == start
    errors = mnt.read(f"{t.pid}/errors")
    assert "sig/blocked: changed: +SIGUSR1\n" in errors
    assert "sig/blocked: changed: -SIGUSR2\n" in errors
    # Copied out, changed, copied back: the mask copied out.
    subprocess.run(["cp", path, str(tmp_path / "blocked")], check=True)
    write(path, b"+SIGTERM\n")
    subprocess.run(["cp", str(tmp_path / "blocked"), path], check=True)
    assert t.sigmask_fields()["SigBlk"] == start
    assert t.alive()


def test_an_empty_write_blocks_nothing(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """`echo > blocked`: `>` replaces, with nothing."""
    t = spawn("counter")
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"+SIGUSR1 +SIGHUP\n")
    assert t.sigmask_fields()["SigBlk"] == bit(SIGUSR1, 1)
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"\n")
    assert t.sigmask_fields()["SigBlk"] == 0
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"-SIGUSR1\n")
    assert mnt.read(f"{t.pid}/errors").endswith("sig/blocked: unchanged\n")


def test_unblocking_delivers_what_was_pending(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The target starts with SIGUSR2 blocked and pending (once process-wide,
    once for the thread): unblocking it through the file runs its handler
    for both, as sigprocmask inside the process would."""
    t = spawn("handlers")
    t.send("counts")
    assert t.readline() == "counts h1=0 h2=0 h3=0"
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"-SIGUSR2\n")
    deadline = time.monotonic() + 5
    while True:
        t.send("counts")
        line = t.readline()
        if line == "counts h1=0 h2=2 h3=0" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert line == "counts h1=0 h2=2 h3=0"
    fields = t.sigmask_fields()
    assert fields["SigBlk"] == bit(RTMIN + 5)
    assert not (fields["SigPnd"] | fields["ShdPnd"]) & bit(SIGUSR2)


def test_each_thread_has_its_own_mask(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("threads", "3")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    before = {tid: t.sigmask_fields(tid)["SigBlk"] for tid in [t.pid, *tids]}
    write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/blocked", b"+SIGUSR1\n")
    after = {tid: t.sigmask_fields(tid)["SigBlk"] for tid in [t.pid, *tids]}
    assert after[tids[1]] == before[tids[1]] | bit(SIGUSR1)
    assert {k: v for k, v in after.items() if k != tids[1]} == {
        k: v for k, v in before.items() if k != tids[1]
    }
    # <pid>/sig/blocked is the main thread's.
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"+SIGTERM\n")
    assert t.sigmask_fields()["SigBlk"] == before[t.pid] | bit(SIGTERM)
    assert t.sigmask_fields(tids[0])["SigBlk"] == before[tids[0]]


def test_a_frozen_process_gets_the_mask_and_keeps_it_after_the_thaw(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        write(f"{mnt.path}/{t.pid}/sig/blocked", b"+SIGTERM\n")
        assert t.sigmask_fields()["SigBlk"] == bit(SIGUSR2, RTMIN + 5, SIGTERM)
        assert mnt.read(f"{t.pid}/ctl") == "frozen\n"
    finally:
        write(ctl, b"thaw\n")
    assert t.sigmask_fields()["SigBlk"] == bit(SIGUSR2, RTMIN + 5, SIGTERM)
    assert own_view(t) == bit(SIGUSR2, RTMIN + 5, SIGTERM)
    assert int(t.status()["TracerPid"]) == 0


BAD = [
    (b"SIGFOO\n", "unknown signal 'SIGFOO'"),
    (b"+\n", "expected a signal name or number after it"),
    (b"65\n", "out of range 1..64"),
    (b"0\n", "out of range 1..64"),
    (b"+SIGRTMAX+1\n", "not a real-time signal"),
    (b"0" * 63 + b"\n", "for a bitmap, got 63"),
    (b"2" * 64 + b"\n", "out of range 1..64"),
    (b"0" * 64 + b" +SIGUSR1\n", "a bitmap cannot be combined with other tokens"),
    (b"+SIGUSR1\n" + b"0" * 2000 + b"\n", "line"),
    (b"+SIGUSR1\n+\xff\xfe\n", "not UTF-8 text (byte 11)"),
    (b"+SIGUSR1 " * 10000, "more than a mask takes"),
    (b"+SIGKILL\n", "SIGKILL and SIGSTOP cannot be blocked"),
    (b"SIGSTOP SIGUSR1\n", "SIGKILL and SIGSTOP cannot be blocked"),
    ((render_bitmap(bit(9)) + "\n").encode(), "SIGKILL and SIGSTOP cannot be blocked"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[repr(d[:20]) for d, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(mnt, spawn, data, message) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = t.sigmask_fields()
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/sig/blocked", data)
    assert info.value.errno == errno.EINVAL
    assert t.sigmask_fields() == before
    errors = mnt.read(f"{t.pid}/errors").splitlines()
    assert "sig/blocked: write refused:" in errors[-1] and message in errors[-1], errors[-1]
    assert own_view(t) == before["SigBlk"]
    assert int(t.status()["TracerPid"]) == 0


SIGSUSPENDER = """
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
signal.signal(signal.SIGHUP, lambda *args: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
empty = ctypes.create_string_buffer(128)
print("ready", flush=True)
libc.sigsuspend(empty)  # sleeps with nothing blocked; its own mask is {SIGUSR1}
mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
print("mask", *sorted(int(s) for s in mask), flush=True)
sys.stdin.readline()
"""


def wait_in_syscall(pid: int, nr: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().split()[0] == str(nr):
                return
        assert time.monotonic() < deadline, f"{pid} never entered syscall {nr}"
        time.sleep(0.01)


def test_relative_edits_of_a_thread_in_sigsuspend_are_refused(mnt) -> None:  # type: ignore[no-untyped-def]
    """In sigsuspend the mask one can read is the call's temporary one (here
    empty); the thread's own ({SIGUSR1}) is out of sight.  `+SIG` would be
    computed from the wrong mask and silently unblock SIGUSR1: refused.  A
    whole mask can still be written, and it is the one the thread has when
    sigsuspend returns."""
    from conftest import start_python

    proc, _ = start_python(SIGSUSPENDER)
    try:
        assert proc.stdout is not None
        path = f"{mnt.path}/{proc.pid}/sig/blocked"
        wait_in_syscall(proc.pid, 130)  # rt_sigsuspend
        for data, append in ((b"+SIGUSR2\n", False), (b"SIGUSR2\n", True)):
            with pytest.raises(OSError) as info:
                write(path, data, append)
            assert info.value.errno == errno.EBUSY
        assert "sleeps in rt_sigsuspend() with a temporary mask" in mnt.read(f"{proc.pid}/errors")
        write(path, b"SIGUSR2 SIGTERM\n")  # a whole mask
        os.kill(proc.pid, signal.SIGHUP)  # sigsuspend returns; the process tells its mask
        assert proc.stdout.readline().split() == ["mask", "12", "15"]
    finally:
        stop_process(proc)


def test_refused_relative_edits_leave_the_own_mask(mnt) -> None:  # type: ignore[no-untyped-def]
    """The refused edits above changed nothing: the mask after sigsuspend is
    the thread's own, {SIGUSR1}."""
    from conftest import start_python

    proc, _ = start_python(SIGSUSPENDER)
    try:
        assert proc.stdout is not None
        path = f"{mnt.path}/{proc.pid}/sig/blocked"
        wait_in_syscall(proc.pid, 130)  # rt_sigsuspend
        with pytest.raises(OSError):
            write(path, b"+SIGUSR2\n")
        os.kill(proc.pid, signal.SIGHUP)
        assert proc.stdout.readline().split() == ["mask", "10"]
    finally:
        stop_process(proc)


def test_a_process_writing_its_own_mask_is_refused_not_hung(mnt) -> None:  # type: ignore[no-untyped-def]
    res = subprocess.run(
        ["bash", "-c", f"echo +SIGUSR1 > {mnt.path}/$$/sig/blocked"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert res.returncode != 0
    assert "Resource deadlock avoided" in res.stderr, res.stderr


FD_TAKER = """
import os, socket, sys
sock = socket.socket(fileno=int(sys.argv[1]))
print("ready", flush=True)
_, fds, _, _ = socket.recv_fds(sock, 16, 1)
try:
    os.write(fds[0], b"+SIGUSR1\\n")
    print("written", flush=True)
except OSError as exc:
    print("errno", exc.errno, flush=True)
sys.stdin.readline()
"""


def test_a_process_writing_its_own_file_through_a_passed_descriptor_is_refused(mnt) -> None:  # type: ignore[no-untyped-def]
    """The open is someone else's, so the open's guard cannot see it: the
    write finds the process's own thread inside this very write and refuses
    at once (EDEADLK), instead of waiting out the stop timeout."""
    import socket

    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-c", FD_TAKER, str(theirs.fileno())],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(theirs.fileno(),),
    )
    theirs.close()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        fd = os.open(f"{mnt.path}/{proc.pid}/sig/blocked", os.O_WRONLY | os.O_TRUNC)
        try:
            started = time.monotonic()
            socket.send_fds(ours, [b"x"], [fd])
            assert proc.stdout.readline().split() == ["errno", str(errno.EDEADLK)]
            assert time.monotonic() - started < 2  # not the 3 s stop timeout
        finally:
            os.close(fd)
        with open(f"/proc/{proc.pid}/status") as f:
            assert "SigBlk:\t0000000000000000" in f.read()
        assert "writing this file itself" in mnt.read(f"{proc.pid}/errors")
    finally:
        ours.close()
        stop_process(proc)


def test_only_whoever_may_trace_it_writes(spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    """A user writes the masks of their own processes, not root's."""
    from mounting import start_mount, stop_mount

    name, uid, gid = unpriv_user
    m = start_mount(options=("allow_other",))
    try:
        mine = spawn("handlers", user=name)
        roots = spawn("handlers")

        ok = run_as(uid, gid, f"echo +SIGUSR1 > {m.path}/{mine.pid}/sig/blocked")
        assert ok.returncode == 0, ok.stderr
        assert mine.sigmask_fields()["SigBlk"] & bit(SIGUSR1)
        before = roots.sigmask_fields()["SigBlk"]
        refused = run_as(uid, gid, f"echo +SIGUSR1 > {m.path}/{roots.pid}/sig/blocked")
        assert refused.returncode != 0
        assert roots.sigmask_fields()["SigBlk"] == before
    finally:
        stop_mount(m)
    assert "Traceback" not in m.log()


def test_signals_sent_meanwhile_are_not_lost(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """Blocking and unblocking SIGUSR1 over and over while it is being sent:
    every signal is either handled or still pending at the end, never
    dropped by the read-modify-write of the mask."""
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/blocked"
    for i in range(40):
        write(path, b"+SIGUSR1\n" if i % 2 == 0 else b"-SIGUSR1\n")
        os.kill(t.pid, signal.SIGUSR1)
    write(path, b"-SIGUSR1\n")
    t.send("counts")
    h1 = int(t.readline().split()[1].split("=")[1])
    # Standard signals do not queue: while blocked, the ones sent coalesce.
    assert 20 <= h1 <= 40, h1
    assert t.alive()
