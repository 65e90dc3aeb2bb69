"""Shared fixtures: building and running the C target programs in tests/targets/.

Fixtures
--------
``target_bin`` (session)
    ``target_bin(name) -> str``: path of tests/targets/bin/<name>, compiled from
    tests/targets/<name>.c first if the source is newer (see targets/build.py).
``spawn`` (function)
    ``spawn(name, *args, user=None, ready_timeout=10.0) -> Target``: starts the
    target with pipes on stdin/stdout, waits for its "ready ..." line and
    returns a :class:`Target`.  Every target spawned (and every child it lists
    under ``child=`` in its ready line) is SIGKILLed and reaped at teardown.
``target_cls`` (session)
    The :class:`Target` class itself (for ``isinstance`` and its static helpers).
``unpriv_user`` / ``unpriv_user2`` (session)
    ``(name, uid, gid)`` of the local users ``sigfs-test`` / ``sigfs-test2``,
    created with ``useradd --system`` if missing.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import pytest

if TYPE_CHECKING:
    from mounting import Mount

TESTS_DIR = Path(__file__).resolve().parent
SIGMASK_KEYS = ("SigBlk", "SigPnd", "ShdPnd", "SigIgn", "SigCgt")


def _load_build_module() -> ModuleType:
    """Import tests/targets/build.py under a name that cannot clash (e.g. with
    the PyPI ``build`` package)."""
    name = "sigfs_tests_targets_build"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS_DIR / "targets" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


targets_build = _load_build_module()


# --------------------------------------------------------------------------- helpers


def parse_kv(text: str) -> dict[str, str]:
    """``"ready pid=12 tids=1,2 x"`` -> ``{"pid": "12", "tids": "1,2"}``.

    Tokens without ``=`` are ignored; values are kept as strings (use
    ``int(v, 0)`` for numbers, it understands the ``0x`` prefix)."""
    out: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
    return out


def sigset(mask: int) -> set[int]:
    """Signal numbers in a kernel sigset bitmask (bit ``n-1`` is signal ``n``)."""
    return {n for n in range(1, 65) if (mask >> (n - 1)) & 1}


def sigmask(*signals: int) -> int:
    """The bitmask of the given signal numbers (inverse of :func:`sigset`)."""
    mask = 0
    for n in signals:
        mask |= 1 << (int(n) - 1)
    return mask


def _proc_starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks): with the pid it
    identifies a process even across pid reuse."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _resolve_user(user: str | int) -> tuple[int, int]:
    if isinstance(user, str):
        pw = pwd.getpwnam(user)
        return pw.pw_uid, pw.pw_gid
    try:
        return user, pwd.getpwuid(user).pw_gid
    except KeyError:
        return user, user


# --------------------------------------------------------------------------- Target


class Target:
    """A running target program (see tests/targets/*.c).

    Attributes: ``name``, ``argv``, ``pid``, ``proc`` (the ``subprocess.Popen``),
    ``ready_line`` (the full "ready ..." line), ``ready_info`` (its ``key=value``
    tokens as a dict of strings), ``preamble`` (lines printed before "ready"),
    ``skipped`` (lines :meth:`expect` read past).
    """

    parse_kv = staticmethod(parse_kv)
    sigset = staticmethod(sigset)
    sigmask = staticmethod(sigmask)

    def __init__(
        self, name: str, argv: list[str], proc: subprocess.Popen[bytes], stderr: IO[bytes]
    ):
        self.name = name
        self.argv = argv
        self.proc = proc
        self.pid: int = proc.pid
        self.ready_line = ""
        self.ready_info: dict[str, str] = {}
        self.preamble: list[str] = []
        self.skipped: list[str] = []
        self._stderr = stderr
        self._buf = bytearray()
        self._eof = False
        self._children: list[tuple[int, str | None]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"<Target {self.name} pid={self.pid} rc={self.proc.returncode}>"

    @property
    def info(self) -> dict[str, str]:
        """Alias of ``ready_info``."""
        return self.ready_info

    def info_int(self, key: str) -> int:
        """``ready_info[key]`` as an int (decimal or 0x-prefixed hex)."""
        return int(self.ready_info[key], 0)

    @property
    def act_lines(self) -> list[str]:
        """handlers: the "act N handler=.. flags=.. restorer=.. mask=.." lines
        printed before ready (one per signal 1..64)."""
        return [ln for ln in self.preamble if ln.startswith("act ")]

    @property
    def altstack_line(self) -> str:
        """handlers: the "altstack sp=.. size=.. flags=.." line printed before ready."""
        lines = [ln for ln in self.preamble if ln.startswith("altstack ")]
        if not lines:
            raise AttributeError(f"{self!r} printed no altstack line before ready")
        return lines[-1]

    # ---- output
    def stderr_text(self) -> str:
        """Everything the target wrote to stderr so far."""
        if self._stderr.closed:
            return ""
        # pread: the target shares this file's offset, so never move it.
        fd = self._stderr.fileno()
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        return data.decode(errors="replace")

    def _describe(self) -> str:
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        err = self.stderr_text().strip()
        return f"target {self.name} (pid {self.pid}, {state}); stderr: {err or '(empty)'}"

    def readline(self, timeout: float = 5.0) -> str:
        """The next line of the target's stdout, without its newline.

        Raises ``TimeoutError`` if no complete line arrives within *timeout*
        seconds and ``EOFError`` if the target closed stdout (exited)."""
        if self.proc.stdout is None or self.proc.stdout.closed:
            raise EOFError(f"stdout of {self!r} is closed")
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line.decode(errors="replace")
            if self._eof:
                if self._buf:  # a last line without a newline
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line.decode(errors="replace")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=1)
                raise EOFError(f"end of output from {self._describe()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no line within {timeout} s (partial: {bytes(self._buf)!r}) from "
                    + self._describe()
                )
            if not poller.poll(max(1, int(remaining * 1000))):
                continue
            chunk = os.read(fd, 65536)
            if chunk:
                self._buf += chunk
            else:
                self._eof = True

    def expect(self, prefix: str, timeout: float = 5.0) -> str:
        """Read lines until one starts with *prefix* and return it; the lines
        read past are appended to ``self.skipped``.  Raises like readline."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(timeout=max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line
            self.skipped.append(line)

    def send(self, line: str) -> None:
        """Write *line* (a newline is added if missing) to the target's stdin."""
        assert self.proc.stdin is not None
        data = (line if line.endswith("\n") else line + "\n").encode()
        view = memoryview(data)
        while view:
            n = self.proc.stdin.write(view)
            if n is None:  # cannot happen with a blocking pipe, but be safe
                n = 0
            view = view[n:]
        self.proc.stdin.flush()

    def command(self, line: str, prefix: str | None = None, timeout: float = 5.0) -> str:
        """``send(line)`` then return the reply line (the next line, or the next
        one starting with *prefix*)."""
        self.send(line)
        return self.readline(timeout) if prefix is None else self.expect(prefix, timeout)

    def close_stdin(self) -> None:
        """Close the target's stdin: every target exits 0 on EOF."""
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()

    def wait(self, timeout: float = 5.0) -> int:
        """Wait for the target to exit; returns its returncode."""
        return self.proc.wait(timeout=timeout)

    # ---- /proc
    def tids(self) -> list[int]:
        """Thread ids, sorted (the main thread's tid is the pid)."""
        return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))

    def status(self, tid: int | None = None) -> dict[str, str]:
        """/proc/PID/status (or /proc/PID/task/TID/status) as ``{key: value}``."""
        path = f"/proc/{self.pid}/status" if tid is None else f"/proc/{self.pid}/task/{tid}/status"
        with open(path) as f:
            text = f.read()
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key] = value.strip()
        return out

    def sigmask_fields(self, tid: int | None = None) -> dict[str, int]:
        """SigBlk, SigPnd, ShdPnd, SigIgn, SigCgt as ints.

        SigBlk/SigPnd are per thread (the main thread's unless *tid* is given),
        ShdPnd/SigIgn/SigCgt are process-wide.  Use ``Target.sigset(v)`` for the
        signal numbers."""
        st = self.status(tid)
        return {k: int(st[k], 16) for k in SIGMASK_KEYS}

    def state(self, tid: int | None = None) -> str:
        """The one-letter ``State:`` (R, S, D, T, t, Z, ...)."""
        return self.status(tid)["State"][0]

    def alive(self) -> bool:
        return self.proc.poll() is None

    # ---- lifetime
    def _record_children(self) -> None:
        for value in self.ready_info.get("child", "").split(","):
            if value.strip().isdigit():
                pid = int(value)
                self._children.append((pid, _proc_starttime(pid)))

    def kill(self) -> None:
        """SIGKILL the target (its whole process group) and the children named
        in its ready line, and reap it.  Safe to call more than once."""
        for pid, start in self._children:
            if start is not None and _proc_starttime(pid) == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc.returncode is None:
            # The target is a session/group leader (start_new_session) that we
            # have not reaped, so its pid is still its own process group's id.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        self.proc.wait(timeout=10)

    def close(self) -> None:
        """kill() and release the pipes and the stderr file."""
        if self._closed:
            return
        try:
            self.kill()
        finally:
            self._closed = True
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
            self._stderr.close()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.readline(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                pytest.fail(
                    f"{self.argv} printed no 'ready' line within {timeout} s; "
                    f"output so far: {self.preamble!r}; {self._describe()}",
                    pytrace=False,
                )
            except EOFError:
                pytest.fail(
                    f"{self.argv} exited before 'ready'; output: {self.preamble!r}; "
                    + self._describe(),
                    pytrace=False,
                )
            if line == "ready" or line.startswith("ready "):
                break
            self.preamble.append(line)
        self.ready_line = line
        self.ready_info = parse_kv(line[len("ready") :])
        self._record_children()
        claimed = self.ready_info.get("pid")
        if claimed is not None and claimed != str(self.pid):
            pytest.fail(f"{self.argv} says pid={claimed} but was started as {self.pid}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def target_bin() -> Callable[[str], str]:
    """``target_bin(name) -> str``: the path of the (re)built target binary."""

    def path(name: str) -> str:
        try:
            return str(targets_build.build(name))
        except targets_build.BuildError as e:
            pytest.fail(str(e), pytrace=False)

    return path


@pytest.fixture(scope="session")
def target_cls() -> type[Target]:
    return Target


@pytest.fixture
def spawn(target_bin: Callable[[str], str]) -> Iterator[Callable[..., Target]]:
    """``spawn(name, *args, user=None, ready_timeout=10.0) -> Target``.

    *user* (a user name or uid) runs the target as that user (and its primary
    group, no supplementary groups), from a copy of the binary any user can
    reach (the checkout may sit in a directory only root can enter).  The
    target runs in a new session, with stderr captured to a temporary file
    (``Target.stderr_text()``)."""
    started: list[Target] = []

    def _spawn(
        name: str, *args: object, user: str | int | None = None, ready_timeout: float = 10.0
    ) -> Target:
        argv = [target_bin(name), *(str(a) for a in args)]
        extra: dict[str, Any] = {}
        if user is not None:
            uid, gid = _resolve_user(user)
            extra = {"user": uid, "group": gid, "extra_groups": []}
            argv[0] = _runnable_by_anyone(argv[0])
        stderr = tempfile.TemporaryFile(prefix=f"sigfs-target-{name}-")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                bufsize=0,
                close_fds=True,
                start_new_session=True,
                **extra,
            )
        except BaseException:
            stderr.close()
            raise
        target = Target(name, argv, proc, stderr)
        started.append(target)
        target._wait_ready(ready_timeout)
        return target

    yield _spawn

    first_error: BaseException | None = None
    for target in reversed(started):
        try:
            target.close()
        except BaseException as e:  # keep cleaning up the others
            first_error = first_error or e
    if first_error is not None:
        raise first_error


_SHARED_BIN: list[str] = []


def _runnable_by_anyone(path: str) -> str:
    """A copy of the binary *path* in a mode-0755 directory under /tmp, made once
    per session and per binary, so that a target run as another user can be
    executed whatever the modes of the directories above the checkout."""
    if not _SHARED_BIN:
        shared = tempfile.mkdtemp(prefix="sigfs-targets-")
        os.chmod(shared, 0o755)
        _SHARED_BIN.append(shared)
        atexit.register(shutil.rmtree, shared, True)
    dest = os.path.join(_SHARED_BIN[0], os.path.basename(path))
    src = os.stat(path)
    try:
        fresh = os.stat(dest).st_mtime_ns == src.st_mtime_ns
    except FileNotFoundError:
        fresh = False
    if not fresh:
        tmp = dest + ".tmp"
        shutil.copy2(path, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    return dest


class UnprivUser(NamedTuple):
    name: str
    uid: int
    gid: int


def _ensure_user(name: str) -> UnprivUser:
    last = ""
    for _ in range(10):
        try:
            pw = pwd.getpwnam(name)
            return UnprivUser(pw.pw_name, pw.pw_uid, pw.pw_gid)
        except KeyError:
            pass
        if os.geteuid() != 0:
            pytest.skip(f"user {name} does not exist and we are not root to create it")
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        res = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        # Exit 9: created concurrently by someone else; 10: passwd file busy.
        last = f"exit {res.returncode}: {res.stderr.strip()}"
        if res.returncode not in (0, 9):
            time.sleep(0.2)
    pytest.fail(f"could not create user {name}: {last}")


@pytest.fixture(scope="session")
def unpriv_user() -> UnprivUser:
    """(name, uid, gid) of the unprivileged local user ``sigfs-test``."""
    return _ensure_user("sigfs-test")


@pytest.fixture(scope="session")
def unpriv_user2() -> UnprivUser:
    """(name, uid, gid) of a second unprivileged local user, ``sigfs-test2``."""
    return _ensure_user("sigfs-test2")


@pytest.fixture(scope="module")
def mnt() -> Iterator[Mount]:
    """A real sigfs mount shared by one test module; its log must show no
    traceback when it is unmounted."""
    from mounting import start_mount, stop_mount

    m = start_mount()
    yield m
    stop_mount(m)
    assert "Traceback" not in m.log(), m.log()


def demoted(uid: int, gid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child that user and group, with no
    supplementary groups."""

    def demote() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return demote


def run_as(uid: int, gid: int, cmd: str) -> subprocess.CompletedProcess[str]:
    """``sh -c cmd`` as that user and group, its output captured."""
    return subprocess.run(
        ["sh", "-c", cmd], capture_output=True, text=True, preexec_fn=demoted(uid, gid), timeout=20
    )


def start_python(code: str) -> tuple[subprocess.Popen[str], list[str]]:
    """Run ``code`` in a Python child with pipes on stdin and stdout; returns
    it and the words of the first line it prints, which must be ``ready``
    and whatever it reports.  End it with :func:`stop_process`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    words = proc.stdout.readline().split()
    if words[:1] != ["ready"]:
        stop_process(proc)
        raise AssertionError(f"python child did not get ready: {words!r}")
    return proc, words


def stop_process(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc``, reap it and close its pipes."""
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def modules_after(imports: str) -> set[str]:
    """The modules a fresh interpreter holds after ``import <imports>``:
    what a command pays for at start-up, whatever this test process has
    imported already."""
    probe = f"import sys, {imports}\nprint(' '.join(sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", probe], check=True, timeout=60, capture_output=True, text=True
    ).stdout
    return set(out.split())


def write_file(path: str, data: bytes, append: bool = False) -> None:
    """One write(2), as `echo ... >` (with ``append``, `>>`) makes it."""
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
