"""Odd but legal processes, the kind a real system has: weird and deleted
paths, odd descriptors and mappings, zombie leaders, orphans, pid
namespaces, stopped, traced and vforking processes.

For each, every file of the process must read through the mount without a
hang and without EIO (or refuse with the documented errno), ``sigfs show``
must work, ``sigfs checkpoint --leave-running`` must succeed or fail with one
line and no traceback, and the process must be left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mounting import SIGFS, Mount, start_mount, stop_mount

from sigfs import procfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (ptrace of any process)")

Spawn = Callable[..., Any]


def _has_cap(bit: int) -> bool:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    return False


PROC_FILES = (
    "sig/action",
    "sig/altstack",
    "sig/blocked",
    "sig/pending",
    "sig/shared_pending",
    "sig/waiters",
    "regs",
    "fpu",
    "status",
    "fds",
    "mm",
    "pages",
    "ctl",
    "errors",
)
# Above a million where this process may raise RLIMIT_NOFILE that far (it
# needs CAP_SYS_RESOURCE beyond the hard limit), else just under the hard limit.
HIGH_FD = (
    1_000_000
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] > 1_000_000
    or (os.geteuid() == 0 and _has_cap(24))
    else resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 1
)
THREAD_FILES = ("sig/altstack", "sig/blocked", "sig/pending", "regs", "fpu")

# Reads each path given, whole, and prints one JSON line per file as it
# goes ("start" first, so a hang shows where it hung).
_READER = r"""
import errno, json, os, sys
for path in sys.argv[1:]:
    print(json.dumps(["start", path]), flush=True)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            data = bytearray()
            while chunk := os.read(fd, 1 << 20):
                data += chunk
        finally:
            os.close(fd)
        text = path.endswith(("/fds", "/mm", "/status"))
        out = ["ok", path, data.decode("utf-8", "surrogateescape") if text else len(data)]
    except OSError as e:
        out = ["err", path, errno.errorcode.get(e.errno, str(e.errno))]
    print(json.dumps(out), flush=True)
"""


def read_files(
    paths: list[str], timeout: float = 15.0, on_hang: Callable[[], None] | None = None
) -> dict[str, Any]:
    """{path: ("ok", text or size) | ("err", "EIO") | ("hang", None)}, read
    in a child process that is killed if it hangs.  A reader stuck in a FUSE
    request the daemon has taken cannot die before the daemon answers or
    dies: ``on_hang`` (kill the daemon) runs first."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _READER, *paths], stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        if on_hang is not None:
            on_hang()
        proc.kill()
        out, _ = proc.communicate(timeout=20)
        hung = True
    results: dict[str, Any] = {}
    last = None
    for line in out.splitlines():
        kind, path, *rest = json.loads(line)
        if kind == "start":
            last = path
        else:
            results[path] = (kind, rest[0])
            last = None
    if hung and last is not None:
        results[last] = ("hang", None)
    return results


def process_paths(mnt: Mount, pid: int, tids: list[int] | None = None) -> list[str]:
    base = os.path.join(mnt.path, str(pid))
    paths = [os.path.join(base, f) for f in PROC_FILES]
    for tid in tids or []:
        paths += [os.path.join(base, "task", str(tid), f) for f in THREAD_FILES]
    return paths


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    return text[text.rindex(b")") + 2 :].split()[0].decode()


def threads_state(pid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{name}/stat", "rb") as f:
                text = f.read()
            state = text[text.rindex(b")") + 2 :].split()[0].decode()
            # Running or sleeping is one thing here: whether it runs on.
            out[int(name)] = "S" if state == "R" else state
    return out


def tracer_of(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"TracerPid:"):
                return int(line.split()[1])
    return 0


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SIGFS, *args], capture_output=True, text=True, errors="replace", timeout=timeout
    )


class Report:
    """What went wrong with one process, collected so that one failure shows
    every symptom."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.problems: list[str] = []
        self.results: dict[str, Any] = {}
        self.show: subprocess.CompletedProcess[str] | None = None
        self.checkpoint: subprocess.CompletedProcess[str] | None = None
        self.image: Path | None = None

    def text(self, rel: str) -> str:
        """The text of a file read through the mount (fds, mm, status)."""
        key = next(k for k in self.results if k.endswith(f"/{self.pid}/{rel}"))
        kind, value = self.results[key]
        assert kind == "ok", (rel, kind, value)
        return value

    def ok(self) -> None:
        assert not self.problems, f"process {self.pid}:\n  " + "\n  ".join(self.problems)


def examine(
    mnt: Mount,
    pid: int,
    tmp_path: Path,
    *,
    tids: list[int] | None = None,
    allowed: dict[str, set[str]] | None = None,
    allowed_all: set[str] = frozenset(),  # type: ignore[assignment]
    checkpoint_may_fail: bool = False,
    show: bool = True,
    checkpoint: bool = True,
) -> Report:
    """Read every file of ``pid`` (and of the threads ``tids``), run ``sigfs
    show`` and ``sigfs checkpoint --leave-running``, and check the process is
    as it was.  ``allowed`` maps a file name (relative to the process) to the
    errno names it may refuse with; ``allowed_all`` applies to every file."""
    allowed = allowed or {}
    rep = Report(pid)
    before_state = threads_state(pid)
    before_tracer = tracer_of(pid)
    rep.results = read_files(process_paths(mnt, pid, tids))
    base = os.path.join(mnt.path, str(pid)) + "/"
    for path in process_paths(mnt, pid, tids):
        rel = path[len(base) :]
        kind, value = rep.results.get(path, ("missing", None))
        if kind == "ok":
            continue
        if kind == "err" and (value in allowed.get(rel, set()) or value in allowed_all):
            continue
        rep.problems.append(f"{rel}: {kind} {value}")
    if show:
        rep.show = run_cli("show", str(pid))
        if rep.show.returncode != 0 or "Traceback" in rep.show.stderr:
            rep.problems.append(
                f"sigfs show: exit {rep.show.returncode}: {rep.show.stderr.strip()[-600:]}"
            )
    if checkpoint:
        img = tmp_path / f"img-{pid}"
        rep.checkpoint = run_cli("checkpoint", str(pid), str(img), "--leave-running", "--quiet")
        err = rep.checkpoint.stderr.strip()
        if rep.checkpoint.returncode == 0:
            rep.image = img
            if err:
                rep.problems.append(f"checkpoint succeeded but said: {err[-600:]}")
        elif "Traceback" in err or len(err.splitlines()) != 1 or not checkpoint_may_fail:
            rep.problems.append(f"checkpoint: exit {rep.checkpoint.returncode}: {err[-900:]}")
    # The process is left as it was.
    time.sleep(0.05)
    after_state = threads_state(pid)
    if after_state != before_state:
        rep.problems.append(f"thread states were {before_state}, now {after_state}")
    if tracer_of(pid) != before_tracer:
        rep.problems.append(f"TracerPid was {before_tracer}, now {tracer_of(pid)}")
    try:
        errs = mnt.read(f"{pid}/errors")
    except OSError as exc:
        errs = ""
        rep.problems.append(f"errors: {exc}")
    if "Traceback" in errs:
        rep.problems.append(f"errors: {errs}")
    return rep


@pytest.fixture(scope="module")
def mnt() -> Iterator[Mount]:
    """A mount of this module's own (the log is checked for tracebacks)."""
    m = start_mount()
    yield m
    stop_mount(m)
    assert "Traceback" not in m.log(), m.log()


@pytest.fixture
def private_mnt() -> Iterator[Mount]:
    """A mount of one test's own, for a test whose bug logs a traceback in
    the daemon's log (which would fail the module mount's teardown)."""
    m = start_mount()
    yield m
    stop_mount(m)


def fsenc(path: Path | str, name: bytes) -> str:
    """A path with raw bytes in its last part, as a str argv item."""
    return os.fsdecode(os.fsencode(str(path)) + b"/" + name)


# --------------------------------------------------------------------------- paths


def test_weird_file_names_opened_mapped_and_cwd(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: descriptors, mappings and a cwd whose names hold a newline, a
    tab, a backslash, leading/trailing spaces, bytes that are not UTF-8 and a
    literal " (deleted)" read and checkpoint cleanly, and fds/status escape
    them exactly."""
    names = [b"new\nline", b"tab\there", b"back\\slash", b" lead", b"trail ", b"bad\xff\xfe"]
    names.append(b"fake (deleted)")
    args: list[str] = []
    for i, n in enumerate(names):
        args += [
            f"open:{fsenc(tmp_path, n + b'.o')}",
            f"map:{fsenc(tmp_path, n + f'.m{i}'.encode())}",
        ]
    wd = fsenc(tmp_path, b"cwd\n\xff \\")
    args += [f"mkdir:{wd}", f"chdir:{wd}"]
    t = spawn("odd_files", *args)
    rep = examine(mnt, t.pid, tmp_path)
    rep.ok()
    fds = rep.text("fds")
    assert "path=" + str(tmp_path) + "/new\\x0aline.o" in fds
    assert "/bad\\xff\\xfe.o" in fds
    assert "/back\\\\slash.o" in fds
    assert "/\\x20lead.o" not in fds  # the space is not at the start of the path
    assert f"cwd {tmp_path}/cwd\\x0a\\xff \\\\\n" in fds
    status = rep.text("status")
    assert f"cwd {tmp_path}/cwd\\x0a\\xff \\\\\n" in status


def test_mapping_of_non_utf8_file_is_escaped_in_mm(
    mnt: Mount, spawn: Spawn, tmp_path: Path
) -> None:
    """A mapping of a file whose name is not UTF-8 shows its bytes as \\xHH in
    mm, as exe and fds do (FORMAT.md "General rules": paths)."""
    t = spawn("odd_files", "map:" + fsenc(tmp_path, b"bad-\xff-map"))
    rep = examine(mnt, t.pid, tmp_path)
    rep.ok()
    mm = rep.text("mm")
    assert "\ufffd" not in mm
    assert "/bad-\\xff-map\n" in mm


@pytest.mark.parametrize("sep", [b"\r", b"\x0b", b"\x0c", b"\x1c", b"\xc2\x85"])
def test_mapping_of_file_with_line_separator_in_name(
    private_mnt: Mount, spawn: Spawn, tmp_path: Path, sep: bytes
) -> None:
    """A mapped file whose name holds a character Python's str.splitlines()
    splits on (the kernel escapes only a newline in maps): pages reads and
    the checkpoint works."""
    t = spawn("odd_files", f"mapw:{fsenc(tmp_path, b'a' + sep + b'zz-zz r--p 0 0 0')}")
    examine(private_mnt, t.pid, tmp_path).ok()


def test_deleted_executable_and_deleted_cwd(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a process whose executable (at an odd path) and cwd were
    deleted, with a mapping of a file deleted after it was mapped."""
    exe = fsenc(tmp_path, b"exe \\ \xff\n(deleted)")
    wd = str(tmp_path / "gone dir")
    gone = str(tmp_path / "mapped-then-deleted")
    t = spawn(
        "odd_files",
        f"exec:{exe}",
        f"unlink:{exe}",
        f"mkdir:{wd}",
        f"chdir:{wd}",
        f"rmdir:{wd}",
        f"mapw:{gone}",
        f"maps:{gone}.shared",
        f"unlink:{gone}",
        f"unlink:{gone}.shared",
    )
    rep = examine(mnt, t.pid, tmp_path)
    rep.ok()
    mm = rep.text("mm")
    assert "exe " + str(tmp_path) + "/exe \\\\ \\xff\\x0a(deleted) (deleted)\n" in mm
    assert f"cwd {wd} (deleted)\n" in rep.text("fds")


# --------------------------------------------------------------------------- descriptors


def test_many_kinds_of_descriptors(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: sockets of several families, /proc/self/mem, an O_PATH
    descriptor, a memfd with an odd name, a pidfd, a userfaultfd, an
    io_uring, epoll/eventfd/signalfd/timerfd/inotify and a descriptor above
    1,000,000."""
    socks = ["unix", "unixpair", "inet", "inet6", "tcplisten", "udp6", "netlink", "packet"]
    socks += ["vsock", "alg"]
    t = spawn(
        "odd_files",
        *(f"sock:{k}" for k in socks),
        "procmem",
        f"opath:{tmp_path}",
        "memfd:mem\nfd \\\xff (deleted)",
        "pidfd",
        "uffd",
        "iouring",
        "misc",
        f"highfd:{HIGH_FD}",
    )
    rep = examine(mnt, t.pid, tmp_path)
    rep.ok()
    fds = rep.text("fds")
    assert f"fd={HIGH_FD} kind=chr" in fds
    assert "kind=pidfd" in fds
    assert "kind=memfd" in fds


def test_bound_netlink_socket_is_socket_netlink(mnt: Mount, spawn: Spawn) -> None:
    """A bound NETLINK_ROUTE socket reads kind=socket-netlink (FORMAT.md fds)."""
    t = spawn("odd_files", "sock:netlink")
    fds = mnt.read(f"{t.pid}/fds")
    assert "fd=3 kind=socket-netlink " in fds, fds


def test_descriptor_on_the_sigfs_mount_itself(spawn: Spawn, tmp_path: Path) -> None:
    """A process holding a file of the mount open (a `tail -f` of an errors
    file, a monitor keeping `version` open): its fds must read.  A plain
    stat of /proc/PID/fd/N, made on the daemon's event loop, deadlocked the
    whole mount once the attribute cache had expired (the kernel asked the
    blocked daemon for the file's attributes)."""
    own = start_mount()
    try:
        t = spawn("odd_files", f"hold:{own.path}/version")
        time.sleep(1.2)  # past the attribute cache (sigfs's TIMEOUT)
        # The daemon stuck on its own mount dies of SIGKILL (its own request
        # was never taken), and the reader with it.
        got = read_files([f"{own.path}/{t.pid}/fds"], timeout=3, on_hang=own.proc.kill)
        kind, value = got[f"{own.path}/{t.pid}/fds"]
        assert kind == "ok", (kind, value)
        t.proc.kill()  # it holds a file of the mount: gone first, the unmount is quick
        t.proc.wait()
    finally:
        stop_mount(own)


# --------------------------------------------------------------------------- mappings


def test_odd_mappings(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: PROT_NONE regions, a PROT_NONE page in the middle of the stack,
    MADV_GUARD_INSTALL guard pages and a few thousand tiny mappings read (mm,
    pages) and checkpoint cleanly."""
    t = spawn("odd_files", "protnone:16", "stackguard", "madvguard", "tiny:3000")
    rep = examine(mnt, t.pid, tmp_path)
    rep.ok()
    mm = rep.text("mm")
    assert mm.count("\nvma ") > 3000
    assert rep.image is not None
    assert run_cli("verify", str(rep.image), "-q").returncode == 0


# --------------------------------------------------------------------------- threads


@pytest.fixture
def zombie_leader(spawn: Spawn) -> Any:
    t = spawn("odd_procs", "zombie_leader")
    assert proc_state(t.pid) == "Z"
    return t


def test_zombie_leader_is_shown_in_the_mount(
    mnt: Mount, zombie_leader: Any, tmp_path: Path
) -> None:
    """A process whose thread group leader has exited while another thread
    runs is alive and traceable (state.live_thread exists for it): its
    directory and the live thread's files must read; the leader's own
    thread files may refuse cleanly."""
    t = zombie_leader
    leader_errnos = {"ESRCH", "ENOENT", "EAGAIN"}
    allowed = {f: leader_errnos for f in THREAD_FILES}
    allowed.update({f"task/{t.pid}/{f}": leader_errnos for f in THREAD_FILES})
    rep = examine(
        mnt,
        t.pid,
        tmp_path,
        tids=[t.info_int("tid")],
        allowed=allowed,
        show=False,
        checkpoint=False,
    )
    rep.ok()
    # What the process has, not what its dead leader shows in /proc/PID:
    # the umask, its ids, and fds 9 and 10 one open file with fd 3.
    status = rep.text("status")
    assert "\numask 0077\n" in status, status
    live = procfs.read_status(t.pid, t.info_int("tid"))
    assert f"\nuids {' '.join(live['Uid'].split())}\n" in status
    fds = rep.text("fds")
    for fd in (9, 10):
        assert re.search(rf"^fd={fd} kind=chr .*shared=3 ", fds, re.M), fds


def test_zombie_leader_show_and_checkpoint(mnt: Mount, zombie_leader: Any, tmp_path: Path) -> None:
    """`sigfs show` and `sigfs checkpoint` of a process whose leader exited
    work through its live thread, and leave it running."""
    t = zombie_leader
    res = run_cli("show", str(t.pid))
    assert res.returncode == 0, res.stderr
    res = run_cli("checkpoint", str(t.pid), str(tmp_path / "img"), "--leave-running", "-q")
    assert res.returncode == 0, res.stderr
    assert t.state(t.info_int("tid")) in "RS"


def test_zombie_leader_checkpoint_is_the_live_threads(zombie_leader: Any, tmp_path: Path) -> None:
    """A checkpoint of a process whose leader has exited: a whole image
    (it verifies), with the live thread's files and none of the exited
    leader's, and the live thread running untraced after it."""
    t = zombie_leader
    res = run_cli("checkpoint", str(t.pid), str(tmp_path / "img"), "--leave-running", "-q")
    assert res.returncode == 0, res.stderr
    assert run_cli("verify", str(tmp_path / "img"), "-q").returncode == 0
    live = t.info_int("tid")
    assert sorted(os.listdir(tmp_path / "img" / "task")) == [str(live)]
    assert not (tmp_path / "img" / "regs").exists()  # the exited leader's
    assert t.state(live) in "RS"
    assert tracer_of(live) == 0


def test_thread_with_odd_name(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a thread named with bytes that are not UTF-8, a tab, a
    backslash and " (deleted)"."""
    t = spawn("odd_procs", "threadname")
    examine(mnt, t.pid, tmp_path, tids=t.tids()).ok()


# --------------------------------------------------------------------------- processes


def test_orphan(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a process whose parent has exited (reparented)."""
    t = spawn("odd_procs", "orphan")
    examine(mnt, t.info_int("child"), tmp_path).ok()


def test_zombie_process_is_not_shown(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a zombie is not shown (ENOENT), `show` and `checkpoint` of it
    fail with one line, and its parent reads and checkpoints cleanly."""
    t = spawn("odd_procs", "zombie")
    z = t.info_int("child")
    assert proc_state(z) == "Z"
    assert not os.path.exists(os.path.join(mnt.path, str(z)))
    for args in (("show", str(z)), ("checkpoint", str(z), str(tmp_path / "z"), "-q")):
        res = run_cli(*args)
        assert res.returncode == 1, res
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "z").exists()
    examine(mnt, t.pid, tmp_path).ok()
    assert proc_state(z) == "Z"


def test_process_in_own_pid_namespace(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: pid 1 of a new pid namespace (NSpid differs from the pid)."""
    t = spawn("odd_procs", "pidns")
    examine(mnt, t.info_int("child"), tmp_path).ok()


def test_stopped_process(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a process stopped by SIGSTOP (state T) stays stopped after
    every file is read and after a checkpoint."""
    t = spawn("odd_files", "misc")
    os.kill(t.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while proc_state(t.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc_state(t.pid) == "T"
    examine(mnt, t.pid, tmp_path).ok()
    assert proc_state(t.pid) == "T"
    os.kill(t.pid, signal.SIGCONT)
    assert t.command("ping") == "pong"


def test_process_traced_by_strace(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a process under strace: the ptrace files refuse with EBUSY
    (README "Errors"), the others read, the checkpoint fails with one line,
    and strace keeps it."""
    t = spawn("odd_files", "misc")
    strace = subprocess.Popen(
        ["strace", "-q", "-o", "/dev/null", "-p", str(t.pid)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while tracer_of(t.pid) != strace.pid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tracer_of(t.pid) == strace.pid
        busy = {"EBUSY"}
        allowed = {f: busy for f in ("sig/action", "sig/altstack", "regs", "fpu", "status")}
        allowed.update({"mm": busy, "ctl": busy, "pages": busy})
        rep = examine(mnt, t.pid, tmp_path, allowed=allowed, checkpoint_may_fail=True, show=False)
        rep.ok()
        assert tracer_of(t.pid) == strace.pid
        assert t.command("ping") == "pong"
    finally:
        strace.terminate()
        strace.wait(timeout=10)


def test_vfork_child(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: the child of a vfork (sharing its parent's memory, the parent
    in D state) reads and checkpoints, and the parent stays in vfork."""
    t = spawn("odd_procs", "vfork")
    child = t.info_int("child")
    assert proc_state(t.pid) == "D"
    examine(mnt, child, tmp_path).ok()
    assert proc_state(t.pid) == "D"


def test_vfork_parent(mnt: Mount, spawn: Spawn, tmp_path: Path) -> None:
    """Guards: a parent blocked in vfork (state D): the files that need a
    stop refuse with EAGAIN (README "Errors"), the rest read, and a
    checkpoint fails with one line."""
    t = spawn("odd_procs", "vfork")
    assert proc_state(t.pid) == "D"
    base = os.path.join(mnt.path, str(t.pid))
    cheap = [os.path.join(base, f) for f in ("sig/blocked", "sig/waiters", "fds", "errors")]
    got = read_files([*cheap, os.path.join(base, "regs")], timeout=20)
    for path in cheap:
        assert got[path][0] == "ok", (path, got[path])
    assert got[os.path.join(base, "regs")] == ("err", "EAGAIN")
    res = run_cli("checkpoint", str(t.pid), str(tmp_path / "v"), "--leave-running", "-q")
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert proc_state(t.pid) == "D"


def test_unbound_sockets_are_told_by_their_protocol(mnt: Mount, spawn: Spawn) -> None:
    """The /proc/net tables list bound sockets only: an unbound TCP, UDPv6
    or unix socket took `socket-other` from them.  Its protocol's name (the
    socket inode's system.sockprotoname) says what it is; packet sockets
    stay `socket-other`."""
    t = spawn("odd_files", "sock:inet", "sock:inet6", "sock:udp6", "sock:unix", "sock:packet")
    kinds = re.findall(r"^fd=(\d+) kind=(\S+)", mnt.read(f"{t.pid}/fds"), re.M)
    got = [k for fd, k in kinds if int(fd) >= 3]
    assert got == ["socket-inet", "socket-inet6", "socket-inet6", "socket-unix", "socket-other"]


def test_a_descriptor_that_turns_from_a_socket_into_a_file_of_the_mount(spawn: Spawn) -> None:
    """A process that turns descriptors into a socket and then into a file
    of this mount, for ever: `fds` found a socket and then asked the number's
    file for its protocol's name (getxattr), by then the mount's own file:
    FUSE sends every xattr name to its server, this daemon, blocked in the
    asking (any user could hang an allow_other mount so).  The file is
    pinned (O_PATH) between the look and the question; and descriptors that
    kcmp calls one open file but that read differently are shown apart (a
    racing process gave EIO)."""
    own = start_mount()
    try:
        t = spawn("odd_files", f"toggle:{own.path}/version")
        path = f"{own.path}/{t.pid}/fds"
        for _ in range(20):
            kind, value = read_files([path], timeout=5, on_hang=own.proc.kill)[path]
            assert kind == "ok", (kind, value)  # no hang, and no EIO from the race
        t.proc.kill()  # it holds a file of the mount: gone first, the unmount is quick
        t.proc.wait()
    finally:
        stop_mount(own)
