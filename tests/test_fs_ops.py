"""The FUSE operations called in-process (no mount): errno mapping, and the
rule that nothing but FUSEError ever escapes a handler (anything else would
take the whole mount down)."""

from __future__ import annotations

import errno
import logging
import os
import stat

import pyfuse3
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigfs.files import TREE
from sigfs.fs import ROOT_INODE, SigFS
from sigfs.tree import Place, encode


class Ctx:
    """Stands in for pyfuse3.RequestContext (the handlers read these three)."""

    def __init__(self, pid: int, uid: int = 0, gid: int = 0) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.umask = 0o022


ME = Ctx(os.getpid())


def inode_of(pid: int, *path: str, place: Place = Place.PROCESS, tid: int = 0) -> int:
    node = TREE.find(place, tuple(path))
    assert node is not None, path
    return encode(node, pid, tid)


def errno_of(coro_fn, *args) -> int:  # type: ignore[no-untyped-def]
    async def run() -> int:
        try:
            await coro_fn(*args)
        except pyfuse3.FUSEError as exc:
            return exc.errno
        return 0

    return trio.run(run)


def test_lookup_and_getattr(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    fs = SigFS()

    async def main() -> None:
        attr = await fs.lookup(ROOT_INODE, str(t.pid).encode(), ME)
        assert stat.S_ISDIR(attr.st_mode)
        sig = await fs.lookup(attr.st_ino, b"sig", ME)
        blocked = await fs.lookup(sig.st_ino, b"blocked", ME)
        assert stat.S_ISREG(blocked.st_mode) and blocked.st_mode & 0o777 == 0o644
        pending = await fs.lookup(sig.st_ino, b"pending", ME)
        assert pending.st_mode & 0o777 == 0o644
        waiters = await fs.lookup(sig.st_ino, b"waiters", ME)
        assert waiters.st_mode & 0o777 == 0o444
        ctl = await fs.lookup(attr.st_ino, b"ctl", ME)
        assert ctl.st_mode & 0o777 == 0o644
        assert (await fs.getattr(blocked.st_ino, ME)).st_ino == blocked.st_ino

    trio.run(main)
    root = ROOT_INODE
    assert errno_of(fs.lookup, root, b"nope", ME) == errno.ENOENT
    assert errno_of(fs.lookup, root, b"007", ME) == errno.ENOENT  # not canonical
    assert errno_of(fs.lookup, root, str(os.getpid()).encode(), ME) == errno.ENOENT  # ourselves
    tid_dir = inode_of(t.pid, "task")
    assert errno_of(fs.lookup, tid_dir, b"999999999", ME) == errno.ENOENT


def test_open_errors(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    fs = SigFS()
    blocked = inode_of(t.pid, "sig", "blocked")
    assert errno_of(fs.open, inode_of(t.pid, "fds"), os.O_WRONLY, ME) == errno.EACCES
    assert errno_of(fs.open, inode_of(t.pid, "sig"), os.O_RDONLY, ME) == errno.EISDIR
    # The target reading its own ptrace-backed file: refused, never hung.
    assert errno_of(fs.open, inode_of(t.pid, "sig", "pending"), 0, Ctx(t.pid)) == errno.EDEADLK
    # ... its /proc-backed files are fine to read, not to write (every write stops it).
    assert errno_of(fs.open, blocked, 0, Ctx(t.pid)) == 0
    assert errno_of(fs.open, blocked, os.O_WRONLY, Ctx(t.pid)) == errno.EDEADLK
    # Another user, not allowed to trace root's process: as if it did not exist.
    assert errno_of(fs.open, blocked, 0, Ctx(0, uid=12345, gid=12345)) == errno.ENOENT
    assert errno_of(fs.read, 987654, 0, 10) == errno.EBADF
    assert errno_of(fs.write, 987654, 0, b"x") == errno.EBADF


def test_ctl_write_in_process(spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    fs = SigFS()
    ctl = inode_of(t.pid, "ctl")

    async def main() -> None:
        fi = await fs.open(ctl, os.O_WRONLY, ME)
        with pytest.raises(pyfuse3.FUSEError) as info:
            await fs.write(fi.fh, 0, b"explode\n")
        assert info.value.errno == errno.EINVAL
        assert await fs.write(fi.fh, 0, b"freeze\n") == 7
        assert t.state() == "t"
        assert await fs.write(fi.fh, 0, b"thaw\n") == 5
        await fs.release(fi.fh)
        fi = await fs.open(inode_of(t.pid, "errors"), os.O_RDONLY, ME)
        text = await fs.read(fi.fh, 0, 65536)
        assert b"expected 'freeze' or 'thaw'" in text and b"frozen (2 threads)" in text

    trio.run(main)
    assert t.status()["TracerPid"] == "0"
    t.send("check")
    assert "ok" in t.readline()


def test_blocked_write_in_process(spawn) -> None:  # type: ignore[no-untyped-def]
    """The daemon's tracer in this process (no tracer process): `>` and `>>`
    are told apart by the open's O_APPEND."""
    t = spawn("counter")
    fs = SigFS()
    blocked = inode_of(t.pid, "sig", "blocked")
    usr1, usr2 = 1 << 9, 1 << 11

    async def main() -> None:
        fi = await fs.open(blocked, os.O_WRONLY | os.O_TRUNC, ME)
        assert await fs.write(fi.fh, 0, b"SIGUSR1\n") == 8
        await fs.release(fi.fh)
        assert t.sigmask_fields()["SigBlk"] == usr1
        fi = await fs.open(blocked, os.O_WRONLY | os.O_APPEND, ME)
        assert await fs.write(fi.fh, 0, b"SIGUSR2\n") == 8
        with pytest.raises(pyfuse3.FUSEError) as info:
            await fs.write(fi.fh, 0, b"SIGKILL\n")
        assert info.value.errno == errno.EINVAL
        await fs.release(fi.fh)
        assert t.sigmask_fields()["SigBlk"] == usr1 | usr2
        fi = await fs.open(blocked, os.O_WRONLY | os.O_TRUNC, ME)
        assert await fs.write(fi.fh, 0, b"SIGUSR2\n") == 8
        await fs.release(fi.fh)
        assert t.sigmask_fields()["SigBlk"] == usr2

    trio.run(main)
    assert t.status()["TracerPid"] == "0"


def test_a_stop_never_lands_inside_another_tasks_injection(spawn, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Reads run concurrently in the daemon.  A `regs` read while an
    `action` read is injecting into the same thread must wait for it: the
    thread is then running between its ptrace steps, or holds sigfs's
    registers.  Each wait for a stop is made to yield first, as a thread
    slow to stop makes it, so the reads do interleave."""
    from sigfs.tracer import Tracer

    wait = Tracer.wait

    async def slow_wait(self, tid: int, timeout: float | None = None) -> int:  # type: ignore[no-untyped-def]
        await trio.sleep(0.001)
        return await wait(self, tid, timeout)

    monkeypatch.setattr(Tracer, "wait", slow_wait)
    t = spawn("handlers", "seccomp")  # one injected syscall per signal: many stops
    fs = SigFS()
    rip_alone = None

    async def read(*path: str) -> bytes:
        fi = await fs.open(inode_of(t.pid, *path), os.O_RDONLY, ME)
        try:
            return await fs.read(fi.fh, 0, 1 << 20)
        finally:
            await fs.release(fi.fh)

    def rip(text: bytes) -> int:
        for line in text.decode().splitlines():
            if line.startswith("rip "):
                return int(line.split()[1], 0)
        raise AssertionError(text)

    # Asleep in its read of stdin first: just after "ready" it may still be
    # on its way out of the write that printed it (a busy host), and its rip
    # would rightly differ later.
    import time

    from sigfs import procfs

    deadline = time.monotonic() + 5
    while procfs.current_syscall(t.pid, t.pid)[0] != "0" and time.monotonic() < deadline:
        time.sleep(0.005)

    async def main() -> None:
        nonlocal rip_alone
        rip_alone = rip(await read("regs"))
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read, "sig", "action")
                for _ in range(20):
                    await trio.sleep(0.001)
                    assert rip(await read("regs")) == rip_alone

    trio.run(main)
    assert t.status()["TracerPid"] == "0"


@pytest.fixture(scope="module")
def fuzz_target(request):  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "targets"))
    from build import build

    proc = subprocess.Popen(
        [str(build("handlers"))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    while not proc.stdout.readline().startswith("ready"):
        pass
    yield proc.pid
    proc.kill()
    proc.wait()
    proc.stdout.close()
    proc.stdin.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(),
    name=st.binary(max_size=40),
    flags=st.sampled_from([os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC]),
    payload=st.binary(max_size=200),
    off=st.integers(min_value=0, max_value=1 << 40),
)
def test_only_fuse_errors_escape(fuzz_target, data, name, flags, payload, off) -> None:  # type: ignore[no-untyped-def]
    """Only FUSEError may leave a handler, and no internal error may be
    behind one: _fuse_errors turns a bug into EIO (so the mount survives)
    and logs it, and that log is what this test watches."""
    pid = fuzz_target
    internal: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            internal.append(record)

    catcher = Catch(level=logging.ERROR)
    logging.getLogger("sigfs").addHandler(catcher)
    fs = SigFS()
    real = [encode(n, pid, pid if n.place is Place.TASK else 0) for n in TREE.nodes]
    inode = data.draw(
        st.one_of(
            st.sampled_from([ROOT_INODE, 2, 3, *real]),
            st.integers(min_value=0, max_value=(1 << 64) - 1),
        )
    )
    ctx = data.draw(st.sampled_from([ME, Ctx(pid), Ctx(0, 4242, 4242), Ctx(999999999)]))

    async def main() -> None:
        calls = [
            fs.lookup(inode, name, ctx),
            fs.getattr(inode, ctx),
            fs.access(inode, os.R_OK | os.W_OK, ctx),
        ]
        for call in calls:
            try:
                await call
            except pyfuse3.FUSEError:
                pass
        try:
            dh = await fs.opendir(inode, ctx)
            await fs.releasedir(dh)
        except pyfuse3.FUSEError:
            pass
        try:
            fi = await fs.open(inode, flags, ctx)
        except pyfuse3.FUSEError:
            return
        for call in (fs.read(fi.fh, off, 4096), fs.write(fi.fh, off, payload)):
            try:
                await call
            except pyfuse3.FUSEError:
                pass
        await fs.release(fi.fh)
        # Whatever was written, nothing may stay frozen.
        if fs.tracer.frozen:
            for tgid in list(fs.tracer.frozen):
                await fs.tracer.thaw(tgid)

    try:
        trio.run(main)
    finally:
        logging.getLogger("sigfs").removeHandler(catcher)
    assert not internal, [r.getMessage() for r in internal]
    with open(f"/proc/{pid}/status") as f:
        assert "TracerPid:\t0\n" in f.read()


def test_the_error_log_stays_utf8_whatever_a_message_quotes() -> None:
    """A message may quote a name that is not UTF-8 (kept as surrogates):
    the errors file must still encode, or reading it would fail."""
    from sigfs.files import ErrorLog

    log = ErrorLog()
    pid = os.getpid()
    log.add(pid, "status", "write refused: comm \udcff\udcfe is odd")
    text = log.text(pid)
    assert text.encode() == text.encode("utf-8")
    assert text.endswith("status: write refused: comm \\udcff\\udcfe is odd\n")
