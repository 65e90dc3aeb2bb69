"""What every writable file does alike, through a real mount: a write to a
process that has gone fails with ESRCH, one to a process another tracer
holds fails with EBUSY and changes nothing, and neither leaves a traceback
in the daemon's log."""

from __future__ import annotations

import errno
import os
import subprocess
import time

import pytest

pytestmark = pytest.mark.mount

# (file, a write that would change something, appended?)
WRITES = [
    ("sig/blocked", b"+SIGUSR1\n", False),
    ("sig/pending", b"SIGRTMIN+5\n", True),
    ("sig/shared_pending", b"SIGRTMIN+5\n", True),
    ("sig/action", b"SIGUSR1 ignore\n", False),
    ("sig/altstack", b"0x0 0 2\n", False),
    ("regs", b"rax 0\n", False),
    ("fpu", None, False),  # the file itself, read first
    ("status", b"umask 0077\n", False),
    ("ctl", b"freeze\n", False),
]
IDS = [w[0] for w in WRITES]


def _payload(mnt, t, rel: str, data: bytes | None) -> bytes:  # type: ignore[no-untyped-def]
    return data if data is not None else mnt.read(f"{t.pid}/{rel}").encode()


@pytest.mark.parametrize(("rel", "data", "append"), WRITES, ids=IDS)
def test_a_process_gone_before_the_write(mnt, spawn, rel, data, append) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    payload = _payload(mnt, t, rel, data)
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(f"{mnt.path}/{t.pid}/{rel}", flags)
    try:
        t.proc.kill()
        t.proc.wait()
        with pytest.raises(OSError) as info:
            os.write(fd, payload)
        assert info.value.errno == errno.ESRCH
    finally:
        os.close(fd)
    assert "Traceback" not in mnt.log()


@pytest.mark.parametrize(("rel", "data", "append"), WRITES, ids=IDS)
def test_a_process_traced_by_someone_else_is_left_alone(mnt, spawn, rel, data, append) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    payload = _payload(mnt, t, rel, data)
    before = mnt.read(f"{t.pid}/{rel}"), t.status()
    strace = subprocess.Popen(
        ["strace", "-p", str(t.pid), "-o", "/dev/null"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while int(t.status()["TracerPid"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        fd = os.open(f"{mnt.path}/{t.pid}/{rel}", flags)
        try:
            with pytest.raises(OSError) as info:
                os.write(fd, payload)
        finally:
            os.close(fd)
        assert info.value.errno == errno.EBUSY
        assert "already traced by" in mnt.read(f"{t.pid}/errors")
    finally:
        strace.terminate()
        strace.wait()
    deadline = time.monotonic() + 5
    while int(t.status()["TracerPid"]) != 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    after = mnt.read(f"{t.pid}/{rel}"), t.status()
    assert after[0] == before[0]
    keys = ("SigBlk", "SigPnd", "ShdPnd", "Umask", "Name", "NoNewPrivs")
    assert {k: after[1][k] for k in keys} == {k: before[1][k] for k in keys}
    assert "Traceback" not in mnt.log()


def test_writes_that_come_line_by_line(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """bash's printf writes each line with its own write(2): a queue takes
    the later lines as added to what the first line set, a settings file
    takes each line; a piece that carries on a cut line is refused."""
    t = spawn("handlers")
    d = f"{mnt.path}/{t.pid}"
    res = subprocess.run(  # SIGRTMIN+5 is blocked there
        ["bash", "-c", f"printf 'SIGRTMIN+5\\nSIGRTMIN+5\\n' > {d}/sig/pending"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert res.returncode == 0, res.stderr
    pending = mnt.read(f"{t.pid}/sig/pending")
    # `>` emptied the thread's queue with the first line; the second added.
    assert pending.count("sig 39: ") == 2 and "sig 12: " not in pending, pending
    res = subprocess.run(
        ["bash", "-c", f"printf 'comm two-lines\\numask 0027\\n' > {d}/status"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert res.returncode == 0, res.stderr
    assert t.status()["Name"] == "two-lines" and t.status()["Umask"] == "0027"
    fd = os.open(f"{d}/sig/blocked", os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, b"+SIGHUP")  # no newline: the next piece would carry it on
        with pytest.raises(OSError) as info:
            os.write(fd, b" +SIGINT\n")
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert "cut inside a line" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert t.sigmask_fields()["SigBlk"] & 1 and not t.sigmask_fields()["SigBlk"] & 2
