"""Writing ``sig/pending`` and ``sig/shared_pending`` through a real mount:
signals queued by name as kill(2) would queue them, whole queues copied
from one process into another arriving byte for byte (checked against the
kernel's ``SigPnd``/``ShdPnd`` and against what the receiving process takes
out itself with sigtimedwait), and every refused write leaving both queues
exactly as they were."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest
from conftest import run_as
from conftest import write_file as write

from sigfs.formats.sigset import render_bitmap

pytestmark = pytest.mark.mount

SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGCONT, SIGTSTP = 1, 10, 12, 15, 18, 20
RTMIN = 34


def bit(*sigs: int) -> int:
    return sum(1 << (s - 1) for s in set(sigs))


def records(text: str) -> list[str]:
    """The record headers and detail lines of a pending file, bitmap dropped."""
    return text.splitlines()[1:]


def queues(mnt, t) -> tuple[str, str, int, int]:  # type: ignore[no-untyped-def]
    """Both files and both kernel bitmaps of the main thread."""
    f = t.sigmask_fields()
    return (
        mnt.read(f"{t.pid}/sig/pending"),
        mnt.read(f"{t.pid}/sig/shared_pending"),
        f["SigPnd"],
        f["ShdPnd"],
    )


def drained(t) -> list[str]:  # type: ignore[no-untyped-def]
    """What siginfo_zoo takes out of its queues itself (sigtimedwait)."""
    t.send("drain")
    out = []
    while True:
        line = t.readline()
        if line.startswith("drained"):
            return out
        out.append(line)


def test_names_are_queued_as_kill_from_the_writer_would_queue_them(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = queues(mnt, t)
    write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGRTMIN+5\n", append=True)
    write(f"{mnt.path}/{t.pid}/sig/shared_pending", b"rtmin+5 SIGRTMIN+5\n", append=True)
    private, shared, sigpnd, shdpnd = queues(mnt, t)
    assert sigpnd == before[2] | bit(RTMIN + 5)
    assert shdpnd == before[3]
    me = os.getpid()
    added = f"sig {RTMIN + 5}: user 0 flags 0 errno 0 code 0\n  kill spid {me} suid 0\n"
    assert private == render_bitmap(sigpnd) + "\n" + before[0].split("\n", 1)[1] + added
    assert shared == before[1] + added * 2
    errors = mnt.read(f"{t.pid}/errors")
    assert "sig/pending: changed: queued 1 (SIGRTMIN+5)\n" in errors
    assert "sig/shared_pending: changed: queued 2 (SIGRTMIN+5)\n" in errors


def test_a_standard_signal_already_pending_is_merged_as_kill_would(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = queues(mnt, t)
    write(f"{mnt.path}/{t.pid}/sig/shared_pending", b"SIGUSR2\n", append=True)
    assert queues(mnt, t) == before
    assert mnt.read(f"{t.pid}/errors").endswith(
        "sig/shared_pending: unchanged; already pending, merged as kill(2) would: SIGUSR2\n"
    )


def test_an_unblocked_signal_is_delivered_as_soon_as_it_runs(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGUSR1\n", append=True)
    assert t.command("counts") == "counts h1=1 h2=0 h3=0"
    write(f"{mnt.path}/{t.pid}/sig/shared_pending", b"SIGUSR1 SIGTERM\n", append=True)
    assert t.command("counts") == "counts h1=2 h2=0 h3=1"


def test_a_frozen_process_keeps_what_was_queued_until_the_thaw(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGUSR1\n", append=True)
        assert t.sigmask_fields()["SigPnd"] & bit(SIGUSR1)
        assert "sig 10: user 0 flags 0 errno 0 code 0\n" in mnt.read(f"{t.pid}/sig/pending")
        # The shared queue, emptied and given one SIGTERM (its handler, h3).
        write(f"{mnt.path}/{t.pid}/sig/shared_pending", b"SIGTERM\n")
        assert t.sigmask_fields()["ShdPnd"] == bit(SIGTERM)
        assert mnt.read(f"{t.pid}/ctl") == "frozen\n"
    finally:
        write(ctl, b"thaw\n")
    assert t.command("counts") == "counts h1=1 h2=0 h3=1"
    assert not t.sigmask_fields()["SigPnd"] & bit(SIGUSR1)
    assert int(t.status()["TracerPid"]) == 0


def test_a_spinning_process_gets_its_signals_and_notices_nothing_else(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The counter target checks its register and memory on every turn of
    its loop: queueing into it, stopped mid-instruction each time, changes
    nothing but the signals it handles."""
    t = spawn("counter")
    for i in range(20):
        file = "pending" if i % 2 == 0 else "shared_pending"
        write(f"{mnt.path}/{t.pid}/sig/{file}", b"SIGUSR1\n", append=True)
    deadline = time.monotonic() + 5
    while t.command("sigs").split()[1] == "0" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert 1 <= int(t.command("sigs").split()[1]) <= 20
    assert t.command("check").endswith(" ok")
    assert "refused" not in mnt.read(f"{t.pid}/errors")


def test_a_queue_copied_into_another_process_arrives_byte_for_byte(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """Every siginfo layout the zoo makes (kill, tgkill, sigqueue, a POSIX
    timer's, a child's exit, SIGPOLL, a fault, SIGSYS), kernel-coded ones
    included, copied with `>` from one process's files into another's."""
    a = spawn("siginfo_zoo")
    b = spawn("siginfo_zoo")
    a_private, a_shared, a_sigpnd, a_shdpnd = queues(mnt, a)
    assert records(a_private) != records(mnt.read(f"{b.pid}/sig/pending"))  # pids, fds
    write(f"{mnt.path}/{b.pid}/sig/pending", a_private.encode())
    write(f"{mnt.path}/{b.pid}/sig/shared_pending", a_shared.encode())
    assert queues(mnt, b) == (a_private, a_shared, a_sigpnd, a_shdpnd)
    # What the process itself takes out: the same siginfos, in the same order.
    assert drained(b) == drained(a)
    assert b.sigmask_fields()["SigPnd"] == b.sigmask_fields()["ShdPnd"] == 0


def test_replacing_keeps_what_the_queue_starts_with(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/shared_pending"
    original = mnt.read(f"{t.pid}/sig/shared_pending")
    one_more = f"sig {RTMIN + 5}: user 0 flags 0 errno 0 code -1\n  queue spid 1 suid 0 value 42\n"
    write(path, (original + one_more).encode())
    assert mnt.read(f"{t.pid}/sig/shared_pending") == original + one_more
    assert mnt.read(f"{t.pid}/errors").endswith(
        "sig/shared_pending: changed: queued 1 (SIGRTMIN+5)\n"
    )
    # `echo > file`: nothing queued.
    write(path, b"\n")
    assert t.sigmask_fields()["ShdPnd"] == 0
    assert mnt.read(f"{t.pid}/sig/shared_pending") == render_bitmap(0) + "\n"
    # And back, the order kept.
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/sig/shared_pending") == original
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def test_each_thread_has_its_own_queue(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("threads", "3")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/blocked", b"+SIGUSR1\n", append=True)
    before = {tid: t.sigmask_fields(tid)["SigPnd"] for tid in [t.pid, *tids]}
    original = mnt.read(f"{t.pid}/task/{tids[1]}/sig/pending")
    write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/pending", b"SIGUSR1\n", append=True)
    after = {tid: t.sigmask_fields(tid)["SigPnd"] for tid in [t.pid, *tids]}
    assert after == {**before, tids[1]: before[tids[1]] | bit(SIGUSR1)}
    assert t.sigmask_fields()["ShdPnd"] == 0
    text = mnt.read(f"{t.pid}/task/{tids[1]}/sig/pending")
    assert f"sig 10: user 0 flags 0 errno 0 code 0\n  kill spid {os.getpid()} suid 0\n" in text
    write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/pending", b"\n")
    assert t.sigmask_fields(tids[1])["SigPnd"] == 0
    write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/pending", original.encode())
    assert mnt.read(f"{t.pid}/task/{tids[1]}/sig/pending") == original
    assert {tid: t.sigmask_fields(tid)["SigPnd"] for tid in [t.pid, *tids]} == before
    assert t.alive()


def _record(sig: int, code: int = -1, value: int = 1) -> str:
    return f"sig {sig}: user 0 flags 0 errno 0 code {code}\n  queue spid 1 suid 0 value {value}\n"


BAD = [
    (b"SIGFOO\n", False, "unknown signal 'SIGFOO'"),
    (b"65\n", True, "out of range 1..64"),
    (b"SIGKILL\n", True, "SIGKILL is never left pending"),
    (b"SIGUSR1 SIGSTOP\n", True, "SIGSTOP is never left pending"),
    (b"0" * 63 + b"\n", False, "got 63"),
    ((render_bitmap(bit(SIGUSR1)) + "\n").encode(), False, "SIGUSR1 set in the bitmap without"),
    (
        (render_bitmap(bit(SIGUSR1)) + "\n" + _record(SIGTERM)).encode(),
        False,
        "its bit is not set in the mask",
    ),
    (b"sig 10: user 0 flags 0 errno 0 code -1\n", True, "no detail line"),
    (b"sig 10: user 0 flags 0 errno 0 code -1\n  kill spid 1\n", True, "line 2"),
    (b"sig 10 user 0\n", True, "line 1"),
    (
        (render_bitmap(bit(SIGHUP)) + "\n" + _record(SIGHUP) + _record(SIGHUP)).encode(),
        False,
        "two records of SIGHUP",
    ),
    (b"SIGUSR1\n\xff\n", True, "not UTF-8 text (byte 9)"),
    (
        (_record(RTMIN + 5) + "  raw " + "00" * 100 + "01" + "00" * 27 + "\n").encode(),
        True,
        "line",
    ),
    (b"SIGUSR1 " * 100 + b"x" * 2000 + b"\n", True, "line 1"),
]


@pytest.mark.parametrize("file", ["pending", "shared_pending"])
@pytest.mark.parametrize(("data", "append", "message"), BAD, ids=[repr(d[:24]) for d, _, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(mnt, spawn, file, data, append, message) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = queues(mnt, t)
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/sig/{file}", data, append)
    assert info.value.errno == errno.EINVAL
    assert queues(mnt, t) == before
    last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert f"sig/{file}: write refused:" in last and message in last, last
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def test_writes_the_kernel_would_not_keep_as_written_are_refused(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/shared_pending"
    before = queues(mnt, t)
    cases = [
        # A record of a standard signal already pending: the kernel keeps one.
        (
            _record(SIGUSR2, code=0).replace("queue spid 1 suid 0 value 1", "kill spid 1 suid 0"),
            "SIGUSR2 is already pending",
        ),
        # Queueing SIGCONT drops every pending stop signal, and the reverse.
        ("SIGTSTP SIGCONT\n", "would make the kernel drop the pending stop signals"),
    ]
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"+SIGTSTP +SIGCONT\n", append=True)
    for data, message in cases:
        with pytest.raises(OSError) as info:
            write(path, data.encode(), append=True)
        assert info.value.errno == errno.EBUSY
        assert message in mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert queues(mnt, t) == before


def test_the_user_s_pending_signal_limit_is_checked_first(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    queued = int(t.status()["SigQ"].split("/")[0])
    subprocess.run(
        ["prlimit", f"--pid={t.pid}", f"--sigpending={queued + 2}:{queued + 2}"], check=True
    )
    before = queues(mnt, t)
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGRTMIN+5 " * 5 + b"\n", append=True)
    assert info.value.errno == errno.EAGAIN
    assert queues(mnt, t) == before
    assert "RLIMIT_SIGPENDING" in mnt.read(f"{t.pid}/errors").splitlines()[-1]


def test_only_whoever_may_trace_it_queues(spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    from mounting import start_mount, stop_mount

    name, uid, gid = unpriv_user
    m = start_mount(options=("allow_other",))
    try:
        mine = spawn("handlers", user=name)
        roots = spawn("handlers")
        ok = run_as(uid, gid, f"echo SIGRTMIN+5 >> {m.path}/{mine.pid}/sig/pending")
        assert ok.returncode == 0, ok.stderr
        text = m.read(f"{mine.pid}/sig/pending")
        # The writer as kill(2) would record it: its own uid.
        assert f"suid {uid}\n" in text
        before = roots.sigmask_fields()
        refused = run_as(uid, gid, f"echo SIGRTMIN+5 >> {m.path}/{roots.pid}/sig/pending")
        assert refused.returncode != 0
        assert roots.sigmask_fields() == before
    finally:
        stop_mount(m)
    assert "Traceback" not in m.log()


def test_a_record_with_bytes_the_kernel_drops_is_refused(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The kernel keeps 48 bytes of a queued siginfo: a raw line with others
    set could not arrive as written."""
    from sigfs.formats.siginfo import Siginfo, render_record

    t = spawn("handlers")
    before = queues(mnt, t)
    raw = bytearray(Siginfo.build(RTMIN + 5, 0, -1, spid=1, suid=0, value=7).raw)
    raw[100] = 1
    text = render_record(Siginfo(bytes(raw)))
    assert "  raw " in text
    for file in ("pending", "shared_pending"):
        with pytest.raises(OSError) as info:
            write(f"{mnt.path}/{t.pid}/sig/{file}", text.encode(), append=True)
        assert info.value.errno == errno.EINVAL
        assert "bytes past the first 48" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert queues(mnt, t) == before


def test_sigcont_against_a_stop_signal_in_another_queue(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    d = f"{mnt.path}/{t.pid}/sig"
    write(f"{d}/blocked", b"+SIGTSTP +SIGCONT\n")
    write(f"{d}/pending", b"SIGTSTP\n", append=True)
    before = queues(mnt, t)
    with pytest.raises(OSError) as info:
        write(f"{d}/shared_pending", b"SIGCONT\n", append=True)
    assert info.value.errno == errno.EBUSY
    assert "drop the pending stop signals" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert queues(mnt, t) == before


def test_standard_signals_from_kill_pass_the_limit_as_the_kernel_lets_them(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """A standard signal with SI_USER is queued, siginfo and all, over
    RLIMIT_SIGPENDING (the kernel's override_rlimit): not refused."""
    t = spawn("handlers")
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"+SIGHUP\n", append=True)
    queued = int(t.status()["SigQ"].split("/")[0])
    subprocess.run(["prlimit", f"--pid={t.pid}", f"--sigpending={queued}:{queued}"], check=True)
    write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGHUP\n", append=True)
    assert "sig 1: user 0 flags 0 errno 0 code 0\n" in mnt.read(f"{t.pid}/sig/pending")
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/sig/pending", b"SIGRTMIN+5\n", append=True)
    assert info.value.errno == errno.EAGAIN


def test_a_process_in_its_own_pid_namespace(mnt, target_bin) -> None:  # type: ignore[no-untyped-def]
    """The ids the injected calls take are the process's own (it is pid 1
    in its namespace), and the writer, outside it, is recorded as pid 0,
    as kill(2) from there would be."""
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", target_bin("handlers")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while not (line := proc.stdout.readline()).startswith("ready"):
            assert line, "the target ended"
        assert line.startswith("ready pid=1 "), line
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            (pid,) = (int(x) for x in f.read().split())
        d = f"{mnt.path}/{pid}/sig"
        write(f"{d}/pending", b"SIGRTMIN+5\n", append=True)
        assert f"sig {RTMIN + 5}: user 0 flags 0 errno 0 code 0\n  kill spid 0 suid 0\n" in (
            mnt.read(f"{pid}/sig/pending")
        )
        chld = (
            "sig 17: user 0 flags 0 errno 0 code 1\n  chld pid 5 uid 0 status 3 utime 0 stime 0\n"
        )
        write(f"{d}/blocked", b"+SIGCHLD\n", append=True)
        write(f"{d}/shared_pending", chld.encode(), append=True)
        assert mnt.read(f"{pid}/sig/shared_pending").endswith(chld)
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def test_a_pending_sigstop_cannot_be_replaced_and_nothing_is_lost(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """A frozen process with SIGSTOP and SIGUSR2 in its shared queue: `>`
    would have to take SIGSTOP out, which rt_sigtimedwait never returns, and
    any change runs code that would take it.  Refused first, with the queues
    as they were (SIGUSR2 not lost)."""
    import signal as sig

    t = spawn("sleeper", "read")
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        os.kill(t.pid, sig.SIGSTOP)
        os.kill(t.pid, sig.SIGUSR2)
        deadline = time.monotonic() + 5
        while t.sigmask_fields()["ShdPnd"] != bit(19, SIGUSR2) and time.monotonic() < deadline:
            time.sleep(0.01)
        before = mnt.read(f"{t.pid}/sig/shared_pending")
        # `>` and `>>`, to either queue: the injected code that changes the
        # queue would take the SIGSTOP (it cannot be blocked) and stop the
        # process in the middle of the write.
        for file in ("shared_pending", "pending"):
            for append in (False, True):
                with pytest.raises(OSError) as info:
                    write(f"{mnt.path}/{t.pid}/sig/{file}", b"SIGUSR1\n", append=append)
                assert info.value.errno == errno.EBUSY
                assert "SIGSTOP is pending" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert mnt.read(f"{t.pid}/sig/shared_pending") == before
        assert t.sigmask_fields()["ShdPnd"] == bit(19, SIGUSR2)
        assert t.sigmask_fields()["SigPnd"] == 0
    finally:
        t.proc.kill()
        t.proc.wait()
