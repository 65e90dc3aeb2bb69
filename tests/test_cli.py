"""The sigfs command: daemon mounting, mount(8) and fstab forms, umount, show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mounting import SIGFS

from sigfs.procfs import is_mounted

pytestmark = pytest.mark.mount


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def mounted(path: str) -> bool:
    return is_mounted(path)


def daemon_pids(path: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a == path.encode() for a in argv) and any(b"sigfs" in a for a in argv[:3]):
            out.append(int(p))
    return out


@pytest.fixture
def mountpoint():  # type: ignore[no-untyped-def]
    path = tempfile.mkdtemp(prefix="sigfs-cli-")
    yield path
    if mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
    deadline = time.monotonic() + 5
    while daemon_pids(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.rmdir(path)


def test_mount_daemonizes_once_the_mount_answers(mountpoint, spawn) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    res = run(SIGFS, "mount", mountpoint)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 15
    assert mounted(mountpoint)  # answered before the command returned
    t = spawn("counter")
    assert len(Path(mountpoint, str(t.pid), "sig", "blocked").read_text()) == 65
    with open("/proc/mounts") as f:
        line = next(x for x in f if x.split()[1] == mountpoint)
    assert line.split()[0] == "sigfs" and line.split()[2] == "fuse.sigfs"
    res = run(SIGFS, "umount", mountpoint)
    assert res.returncode == 0, res.stderr
    assert not mounted(mountpoint)


HELPER_PATH = Path("/usr/local/sbin/sigfs")


@pytest.fixture
def installed_helper():  # type: ignore[no-untyped-def]
    """The mount helper as `make install-helper` installs it (mount(8) runs
    helpers with a fixed PATH, so it must really be there); whatever was
    installed before is put back."""
    helper = Path(__file__).resolve().parent.parent / "mount-helper" / "sigfs"
    text = helper.read_text().replace("@VENV@", str(Path(sys.executable).parent.parent))
    before = HELPER_PATH.read_bytes() if HELPER_PATH.exists() else None
    HELPER_PATH.parent.mkdir(parents=True, exist_ok=True)
    HELPER_PATH.write_text(text)
    HELPER_PATH.chmod(0o755)
    yield HELPER_PATH
    if before is None:
        HELPER_PATH.unlink()
    else:
        HELPER_PATH.write_bytes(before)


def test_mount_helper_form_and_mount_t_fuse(mountpoint, installed_helper, spawn) -> None:  # type: ignore[no-untyped-def]
    """mount -t fuse sigfs MNT runs `sigfs MNT -o OPTS` through mount.fuse3."""
    res = subprocess.run(
        ["mount", "-t", "fuse", "sigfs", mountpoint, "-o", "allow_other"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert mounted(mountpoint)
    with open("/proc/mounts") as f:
        line = next(x for x in f if x.split()[1] == mountpoint)
    assert "allow_other" in line
    t = spawn("counter")
    assert str(t.pid) in os.listdir(mountpoint)
    res = subprocess.run(["umount", mountpoint], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_fstab_line(mountpoint, installed_helper, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The fstab form: `sigfs MNT fuse defaults,allow_other 0 0`."""
    fstab = tmp_path / "fstab"
    fstab.write_text(f"sigfs  {mountpoint}  fuse  defaults,allow_other  0 0\n")
    res = subprocess.run(
        ["mount", "-T", str(fstab), mountpoint],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert mounted(mountpoint)
    assert Path(mountpoint, "version").read_text().startswith("sigfs ")
    assert run("umount", mountpoint).returncode == 0


def test_mount_failure_is_one_line_and_leaves_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    missing = str(tmp_path / "nope")
    res = run(SIGFS, "mount", missing)
    assert res.returncode != 0
    assert res.stderr.count("\n") == 1 and "not a directory" in res.stderr
    # An unknown FUSE option: libfuse refuses, nothing is left mounted.
    target = tmp_path / "mnt"
    target.mkdir()
    res = run(SIGFS, "mount", str(target), "-o", "no_such_option_xyz")
    assert res.returncode != 0
    assert "cannot mount" in res.stderr
    assert not mounted(str(target))
    # Already mounted.
    res = run(SIGFS, "mount", str(target))
    assert res.returncode == 0, res.stderr
    try:
        again = run(SIGFS, "mount", str(target))
        assert again.returncode != 0 and "already" in again.stderr
    finally:
        run(SIGFS, "umount", str(target))


def test_umount_of_something_not_mounted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = run(SIGFS, "umount", str(tmp_path))
    assert res.returncode == 1 and "not mounted" in res.stderr


def test_show_decodes_names(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    res = run(SIGFS, "show", str(t.pid))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "blocked:        SIGUSR2 SIGRTMIN+5" in out
    assert "SA_SIGINFO" in out and "SA_RESTART" in out and "SA_ONSTACK" in out
    assert " h1 (handlers)" in out  # handler symbol resolved from the ELF
    assert "SIGINT       SIG_IGN" in out
    assert "value=1234" in out and "value=5678" in out
    assert "size 65536" in out


def test_show_errors(spawn) -> None:  # type: ignore[no-untyped-def]
    res = run(SIGFS, "show", "999999999")
    assert res.returncode == 1 and "no such process" in res.stderr
    t = spawn("threads", "1")
    tid = int(t.ready_info["tids"].split(",")[0])
    res = run(SIGFS, "show", str(tid))
    assert res.returncode == 1 and "thread" in res.stderr


def test_help_and_version() -> None:
    res = run(SIGFS, "--help")
    assert res.returncode == 0 and "mount" in res.stdout and "show" in res.stdout
    res = run(SIGFS, "--version")
    assert res.returncode == 0 and res.stdout.startswith("sigfs ")
    assert shutil.which("fusermount3")


def test_output_that_cannot_be_written(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The one-shot commands end without the interpreter's teardown: what
    they print must still arrive, or its failure be told, and a closed
    stdout must not turn a done checkpoint into a failure."""
    t = spawn("handlers")
    # A reader that went away: no traceback, status 1.
    r, w = os.pipe()
    os.close(r)
    res = subprocess.run(
        [SIGFS, "show", str(t.pid)], stdout=w, stderr=subprocess.PIPE, text=True, timeout=30
    )
    os.close(w)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    # A full disk: said on stderr, status 1.
    with open("/dev/full", "w") as full:
        res = subprocess.run(
            [SIGFS, "show", str(t.pid)], stdout=full, stderr=subprocess.PIPE, text=True, timeout=30
        )
    assert res.returncode == 1, res.stderr
    assert "sigfs: show: cannot write the output: No space left on device" in res.stderr
    # stdout closed (as under some daemons): the checkpoint is done, status 0.
    img = tmp_path / "img"
    res = subprocess.run(
        f"{SIGFS} checkpoint {t.pid} {img} --leave-running >&-",
        shell=True,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert (img / "MANIFEST").exists()
    # And a normal run prints all of it.
    res = subprocess.run([SIGFS, "show", str(t.pid)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0 and res.stdout.count("\n") > 10, res.stdout


def test_make_demo_shows_a_live_change_and_a_checkpoint() -> None:
    """`make demo` (sigfs.demo) end to end: it mounts, changes the target's
    mask live (the unblocked SIGUSR2s reach their handler), queues signals,
    checkpoints and
    verifies, and cleans up."""
    res = subprocess.run(
        [sys.executable, "-m", "sigfs.demo"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert "the target says: counts h1=0 h2=2 h3=0" in out, out
    assert "sig/blocked: write refused: SIGKILL and SIGSTOP cannot be blocked" in out
    # A queued SIGUSR2 reached its handler; the shared queue went out and back.
    assert "the target says: counts h1=0 h2=3 h3=0" in out, out
    assert "sig/shared_pending: changed: took out 2 (SIGRTMIN+5)" in out
    assert "sig/shared_pending: changed: queued 2 (SIGRTMIN+5)" in out
    assert "image matches the live files" in out
    assert "== unmounted" in out
    with open("/proc/mounts") as f:
        assert "sigfs-demo-" not in f.read()
