"""procfs.StatusFiles: /proc/PID/status through kept descriptors, checked
against a fresh read of the kernel's file: fresh content on every read, the
process's exit seen, and never more descriptors than its size."""

from __future__ import annotations

import os
import signal
import time

import pytest

from sigfs import procfs


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_every_read_is_fresh_and_an_exit_is_seen(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    files = procfs.StatusFiles(size=4)
    try:
        before = _fds()
        st = files.read(t.pid)
        assert st["Pid"] == str(t.pid)
        assert st["SigBlk"] == procfs.read_status(t.pid)["SigBlk"]
        assert _fds() == before + 1
        # The state changes: the kept descriptor shows the new one, not a copy.
        os.kill(t.pid, signal.SIGSTOP)
        try:
            deadline = time.monotonic() + 5
            while not procfs.read_status(t.pid)["State"].startswith("T"):
                assert time.monotonic() < deadline
                time.sleep(0.001)
            assert files.read(t.pid)["State"].startswith("T")
        finally:
            os.kill(t.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while procfs.read_status(t.pid)["State"].startswith("T"):
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert not files.read(t.pid)["State"].startswith("T")
        assert _fds() == before + 1
        t.proc.kill()
        t.proc.wait()
        with pytest.raises(ProcessLookupError):
            files.read(t.pid)
        assert _fds() == before  # the stale descriptor is closed
    finally:
        files.close()


def test_only_the_last_few_keep_a_descriptor(spawn) -> None:  # type: ignore[no-untyped-def]
    targets = [spawn("counter") for _ in range(3)]
    files = procfs.StatusFiles(size=2)
    try:
        before = _fds()
        for t in targets:
            assert files.read(t.pid)["Pid"] == str(t.pid)
        assert _fds() == before + 2
        assert files.read(targets[0].pid)["Pid"] == str(targets[0].pid)  # reopened
        assert _fds() == before + 2
    finally:
        files.close()
    assert _fds() == before


def test_mount_table_paths_are_unescaped_as_bytes() -> None:
    """mountinfo escapes space, tab, newline and backslash in octal; a path
    need not be UTF-8."""
    from sigfs.procfs import _unescape, mount_id_of

    assert _unescape(rb"/tmp/a\040b\011c\012d\134e") == b"/tmp/a b\tc\nd\\e"
    assert _unescape(b"/tmp/\xff\\04") == b"/tmp/\xff\\04"  # not an escape: kept
    assert mount_id_of("/") is not None
    assert mount_id_of("/no/such/mount/point") is None


def test_a_mount_point_that_is_not_utf8_anywhere_is_no_trouble(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Any user can mount (fusermount3) on a directory whose name is not
    UTF-8; reading the mount table as UTF-8 made `sigfs mount` and `umount`
    fail for everyone while it existed."""
    import subprocess

    odd = os.path.join(os.fsencode(tmp_path), b"mnt-\xff \\x")
    os.mkdir(odd)
    subprocess.run(["mount", "-t", "tmpfs", "none", odd], check=True)
    try:
        assert procfs.is_mounted(os.fsdecode(odd))
        assert not procfs.is_mounted(str(tmp_path))
    finally:
        subprocess.run(["umount", odd], check=True)
    assert not procfs.is_mounted(os.fsdecode(odd))
