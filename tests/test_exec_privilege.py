"""A process that execs a set-user-ID program becomes another user's: what
was opened before must not reach the new program (the kernel binds
/proc/PID/mem to the image of the open and checks ptrace rights at each
call for the same reason).  The daemon acts as root for its callers, so it
checks for them: each write again, with the process stopped; each read once
more after reading; and the pages stream reads only the image it opened."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from conftest import demoted, stop_process

from sigfs.pages import PagesStream, dumpable_vmas
from sigfs.procfs import read_maps

pytestmark = pytest.mark.mount

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "targets"))
from build import build  # noqa: E402


@pytest.fixture
def setuid_sleeper():  # type: ignore[no-untyped-def]
    """A set-user-ID root copy of the sleeper target, where any user can run it."""
    where = tempfile.mkdtemp(prefix="sigfs-suid-", dir="/tmp")
    if os.statvfs(where).f_flag & os.ST_NOSUID:
        os.rmdir(where)
        pytest.skip("/tmp is mounted nosuid: no set-user-ID program can run from it")
    os.chmod(where, 0o755)
    path = os.path.join(where, "sleeper")
    shutil.copy(build("sleeper"), path)
    os.chown(path, 0, 0)
    os.chmod(path, 0o4755)
    yield path
    shutil.rmtree(where)


def users_shell(setuid_program: str, uid: int, gid: int) -> subprocess.Popen[str]:
    """The user's own process: a shell that says ready, then on a line
    execs the set-user-ID program (which becomes root's: same pid)."""
    return subprocess.Popen(
        ["bash", "-c", f"echo ready; read line; exec {setuid_program} nanosleep 60000"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=demoted(uid, gid),
    )


def test_writes_opened_before_a_setuid_exec_are_refused(unpriv_user, setuid_sleeper) -> None:  # type: ignore[no-untyped-def]
    from mounting import start_mount, stop_mount

    name, uid, gid = unpriv_user

    demote = demoted(uid, gid)

    m = start_mount(options=("allow_other",))
    target = users_shell(setuid_sleeper, uid, gid)
    writer = None
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline().strip() == "ready"
        pid = target.pid
        d = f"{m.path}/{pid}"
        # The user opens its blocked mask and ctl for writing, and writes once.
        writer = subprocess.Popen(
            [
                "bash",
                "-c",
                f"exec 3>{d}/sig/blocked 4>{d}/ctl; echo +SIGUSR1 >&3; echo first=$?; "
                "read line; echo +SIGUSR2 >&3; echo blocked=$?; echo freeze >&4; echo ctl=$?; "
                "read line; echo thaw >&4; echo thaw=$?",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=demote,
        )
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "first=0"
        with open(f"/proc/{pid}/status") as f:
            assert "SigBlk:\t0000000000000200" in f.read()
        # The process becomes root's.
        target.stdin.write("go\n")
        target.stdin.flush()
        assert target.stdout.readline().startswith("ready pid=")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        assert f"Uid:\t{uid}\t0\t0" in status, status
        before = [line for line in status.splitlines() if line.startswith("SigBlk")]
        writer.stdin.write("go\n")
        writer.stdin.flush()
        assert writer.stdout.readline().strip() == "blocked=1"
        assert writer.stdout.readline().strip() == "ctl=1"
        # Frozen by root now: the user's old descriptor cannot thaw it either.
        with open(f"{d}/ctl", "w") as f:
            f.write("freeze\n")
        out, err = writer.communicate("go\n", timeout=30)
        assert out.strip() == "thaw=1", (out, err)
        assert err.count("Operation not permitted") == 3, err
        with open(f"/proc/{pid}/status") as f:
            assert "State:\tt" in f.read()
        with open(f"{d}/ctl", "w") as f:
            f.write("thaw\n")
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        assert [line for line in status.splitlines() if line.startswith("SigBlk")] == before
        assert "State:\tS" in status and "TracerPid:\t0" in status, status
        # And it is no longer listed for the user.
        listing = subprocess.run(
            ["ls", m.path], capture_output=True, text=True, preexec_fn=demote, timeout=20
        )
        assert str(pid) not in listing.stdout.split()
        with open(f"{d}/errors") as f:  # root sees the log
            errors = f.read()
        assert "no longer the opener's to trace" in errors, errors
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        stop_process(target)
        stop_mount(m)
    assert "Traceback" not in m.log()


# Maps 8 MiB at a fixed address and fills it with FILL.
_FIXED_MAP = """
import ctypes, os, sys
ADDR, SIZE = 0x3A0000000000, 8 << 20
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
int_ = ctypes.c_int
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, int_, int_, int_, ctypes.c_long)
got = libc.mmap(ADDR, SIZE, 3, 0x22 | 0x100000, -1, 0)  # MAP_FIXED_NOREPLACE
assert got == ADDR, got
ctypes.memset(ADDR, ord("FILL"), SIZE)
"""
# The old image: "O"s, then on a line it execs the new one: "N"s at the same place.
OLD_IMAGE = (
    _FIXED_MAP.replace("FILL", "O")
    + """
print("ready", flush=True)
sys.stdin.readline()
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]])
"""
)
NEW_IMAGE = (
    _FIXED_MAP.replace("FILL", "N")
    + """
print("mapped", flush=True)
sys.stdin.readline()
"""
)


def test_the_pages_stream_never_reads_the_image_after_an_exec() -> None:
    """The stream is between a record's header and its data (the pagemap of
    the old image said the pages were there) when the process execs a
    program that maps the same addresses: the data read next must not be
    the new program's."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OLD_IMAGE, NEW_IMAGE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        stream = PagesStream(proc.pid, dumpable_vmas(read_maps(proc.pid)))
        with stream:
            chunks = stream.chunks()
            want = (0x3A0000000000).to_bytes(8, "little")  # a record's vaddr
            for chunk in chunks:
                if bytes(chunk[:8]) == want:
                    break
            else:
                raise AssertionError("no record at the fixed address")
            proc.stdin.write("exec\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "mapped"
            rest = b"".join(bytes(c) for c in chunks)
        assert b"NNNN" not in rest
    finally:
        stop_process(proc)


@pytest.mark.parametrize("what", ["regs", "fds"])
def test_a_read_racing_a_setuid_exec_is_refused(
    unpriv_user, setuid_sleeper, monkeypatch, what
) -> None:  # type: ignore[no-untyped-def]
    """The permission check passes, then the process execs a set-user-ID
    program before its registers are read (forced here: the reader makes it
    exec first): the open fails as for a process the caller may not see,
    instead of handing out the new program's registers or open files
    (`fds`, read from /proc/PID/fd without a stop, is checked the same way)."""
    import trio
    from test_fs_ops import Ctx, errno_of, inode_of

    from sigfs import image
    from sigfs.fs import SigFS

    name, uid, gid = unpriv_user

    target = users_shell(setuid_sleeper, uid, gid)
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline().strip() == "ready"
        fs = SigFS()
        user = Ctx(0, uid=uid, gid=gid)
        regs = inode_of(target.pid, what)

        async def read_once() -> bytes:
            fi = await fs.open(regs, os.O_RDONLY, user)
            try:
                return await fs.read(fi.fh, 0, 65536)
            finally:
                await fs.release(fi.fh)

        assert trio.run(read_once)  # the user's own process: fine

        def do_exec() -> None:
            target.stdin.write("go\n")
            target.stdin.flush()
            assert target.stdout.readline().startswith("ready pid=")

        if what == "regs":
            real_regs = image.read_regs

            async def regs_after_exec(tracer, tgid, tid):  # type: ignore[no-untyped-def]
                do_exec()
                return await real_regs(tracer, tgid, tid)

            monkeypatch.setattr(image, "read_regs", regs_after_exec)
        else:
            real_fds = image.read_fds_raw

            def fds_after_exec(pid):  # type: ignore[no-untyped-def]
                do_exec()
                return real_fds(pid)

            monkeypatch.setattr(image, "read_fds_raw", fds_after_exec)
        assert errno_of(fs.open, regs, os.O_RDONLY, user) == errno.ENOENT
    finally:
        stop_process(target)


# The user's writer: opens each file, says so, and on a line writes each,
# printing "name errno" (0 for a write that went through).
_WRITER = """
import os, sys
d = sys.argv[1]
files = [
    ("sig/pending", b"SIGRTMIN+5\\n", True),
    ("sig/shared_pending", b"SIGRTMIN+5\\n", True),
    ("sig/action", b"SIGUSR1 ignore\\n", False),
    ("sig/altstack", b"0x0 0 2\\n", False),
    ("regs", b"rax 0\\n", False),
    ("fpu", None, False),
    ("status", b"umask 0022\\n", False),
]
fds = []
for name, data, append in files:
    if data is None:
        data = open(f"{d}/{name}", "rb").read()
    flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
    fds.append((name, os.open(f"{d}/{name}", flags), data))
print("opened", flush=True)
sys.stdin.readline()
for name, fd, data in fds:
    try:
        os.write(fd, data)
        print(name, 0, flush=True)
    except OSError as exc:
        print(name, exc.errno, flush=True)
"""


def test_every_write_opened_before_a_setuid_exec_is_refused(unpriv_user, setuid_sleeper) -> None:  # type: ignore[no-untyped-def]
    """Each writable file opened by the user before its process becomes
    root's: every write after is refused with EPERM, a write that would
    change nothing (status's umask as it is) included, so a write cannot
    tell the user anything of the new program either."""
    from mounting import start_mount, stop_mount

    _name, uid, gid = unpriv_user
    m = start_mount(options=("allow_other",))
    target = users_shell(setuid_sleeper, uid, gid)
    writer = None
    try:
        assert target.stdout is not None and target.stdin is not None
        assert target.stdout.readline().strip() == "ready"
        pid = target.pid
        writer = subprocess.Popen(
            ["/usr/bin/python3", "-c", _WRITER, f"{m.path}/{pid}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=demoted(uid, gid),
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "opened", writer.stderr
        target.stdin.write("go\n")
        target.stdin.flush()
        assert target.stdout.readline().startswith("ready pid=")
        with open(f"/proc/{pid}/status") as f:
            before = f.read()
        assert f"Uid:\t{uid}\t0\t0" in before
        out, err = writer.communicate("go\n", timeout=60)
        results = dict(line.split() for line in out.splitlines())
        assert results == {
            name: str(errno.EPERM)
            for name in (
                "sig/pending",
                "sig/shared_pending",
                "sig/action",
                "sig/altstack",
                "regs",
                "fpu",
                "status",
            )
        }, (out, err)
        with open(f"/proc/{pid}/status") as f:
            after = f.read()
        for key in ("SigPnd", "ShdPnd", "SigCgt", "SigIgn", "Umask", "TracerPid"):
            line = next(x for x in after.splitlines() if x.startswith(key + ":"))
            assert line in before, line
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        stop_process(target)
        stop_mount(m)
    assert "Traceback" not in m.log()
