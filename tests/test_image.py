"""regs, fpu, fds, mm, status, pages and ctl through a real mount, checked
against the kernel's own view and gdb."""

from __future__ import annotations

import hashlib
import os
import re
import resource
import signal
import subprocess
import threading
import time

import pytest
from conftest import start_python, stop_process
from mounting import start_mount, stop_mount

from sigfs.formats import fds as fds_fmt
from sigfs.formats import fpu as fpu_fmt
from sigfs.formats import manifest as manifest_fmt
from sigfs.formats import mm as mm_fmt
from sigfs.formats import pages as pages_fmt
from sigfs.formats import regs as regs_fmt
from sigfs.formats import status as status_fmt

pytestmark = pytest.mark.mount


def gdb_registers(pid: int, *exprs: str) -> str:
    cmd = ["gdb", "-batch", "-nx", "-p", str(pid), "-ex", "info registers"]
    for e in exprs:
        cmd += ["-ex", e]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return res.stdout


def test_regs_match_gdb(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "read")
    text = mnt.read(f"{t.pid}/regs")
    regs = regs_fmt.parse(text).as_dict()
    assert "# syscall 0 read" in text  # blocked in read(2)
    assert "restart" in text
    out = gdb_registers(t.pid)
    seen = 0
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+(0x[0-9a-f]+)", line)
        if not m or m.group(1) not in regs:
            continue
        assert regs[m.group(1)] == int(m.group(2), 16), line
        seen += 1
    assert seen >= 20, out
    # Still asleep in read, undisturbed.
    t.send("write")
    assert "rc=1" in t.readline()


def test_fpu_shows_vector_registers(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("vectors")
    level = t.ready_info["level"]
    time.sleep(0.1)
    text = mnt.read(f"{t.pid}/fpu")
    fpu = fpu_fmt.parse(text)
    assert fpu_fmt.render(fpu) == text
    regs = fpu.registers()
    count = 32 if level == "avx512" else 16
    for i in range(count):
        raw = bytes((i * 64 + k) & 0xFF for k in range(64))
        if level == "avx512":
            assert regs[f"zmm{i}"] == int.from_bytes(raw, "little"), i
        if i < 16:
            assert regs[f"xmm{i}"] == int.from_bytes(raw[:16], "little"), i
            assert regs[f"ymm{i}"] == int.from_bytes(raw[:32], "little"), i
    if level == "avx512":
        for i in range(8):
            assert regs[f"k{i}"] == (0x1111111111111111 * (i + 1)) & (2**64 - 1)
    # gdb agrees on the legacy and AVX areas.  (Not on opmask/zmm: gdb 13
    # hard-codes Intel's xsave offsets, and this CPU uses AMD's, with no MPX
    # gap -- CPUID leaf 0xD puts opmask at 832, not 1088.)
    out = gdb_registers(t.pid, "p/x $xmm3.uint128", "p/x $xmm15.uint128")
    assert f"$1 = {regs['xmm3']:#x}" in out, out
    assert f"$2 = {regs['xmm15']:#x}" in out, out


def test_fds_match_proc(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("fds", str(tmp_path))
    info = t.ready_info
    fds = fds_fmt.parse(mnt.read(f"{t.pid}/fds"))
    by_fd = {f.fd: f for f in fds.fds}
    assert sorted(by_fd) == sorted(int(x) for x in os.listdir(f"/proc/{t.pid}/fd"))
    for f in fds.fds:
        assert f.path == os.readlink(f"/proc/{t.pid}/fd/{f.fd}")
        with open(f"/proc/{t.pid}/fdinfo/{f.fd}") as fh:
            fdinfo = dict(line.split(":", 1) for line in fh if ":" in line)
        assert f.pos == int(fdinfo["pos"])
        flags = int(fdinfo["flags"], 8)
        assert f.cloexec == bool(flags & 0o2000000)
        assert f.flags == flags & ~0o2000000
    kinds = {
        "file": "file",
        "deleted": "file",
        "dir": "dir",
        "eventfd": "eventfd",
        "signalfd": "signalfd",
        "timerfd": "timerfd",
        "epoll": "epoll",
        "inotify": "inotify",
        "memfd": "memfd",
        "inet": "socket-inet",
        "null": "chr",
    }
    for key, kind in kinds.items():
        assert by_fd[int(info[key])].kind == kind, (key, by_fd[int(info[key])])
    r, w = (int(x) for x in info["pipe"].split(","))
    assert by_fd[r].kind == by_fd[w].kind == "pipe"
    a, b = (int(x) for x in info["unix"].split(","))
    assert by_fd[a].kind == "socket-unix"
    assert by_fd[int(info["deleted"])].deleted
    assert by_fd[int(info["deleted"])].cloexec
    file_fd = int(info["file"])
    dup_fd = int(info["dupof"].split(":")[0])
    assert by_fd[dup_fd].shared == file_fd  # dup'ed: one open file description
    assert by_fd[file_fd].shared == file_fd
    assert by_fd[file_fd].pos == 6
    sfd = by_fd[int(info["signalfd"])]
    assert any(k == "sigmask" for k, _ in sfd.extra)
    assert fds.cwd == os.readlink(f"/proc/{t.pid}/cwd")


def test_mm_matches_maps(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("mem", "4")
    mm = mm_fmt.parse(mnt.read(f"{t.pid}/mm"))
    with open(f"/proc/{t.pid}/maps") as f:
        maps = mm_fmt.parse_proc_maps(f.read())
    assert [(v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path) for v in mm.vmas] == [
        (v.start, v.end, v.perms, v.offset, v.dev, v.inode, v.path) for v in maps
    ]
    assert mm.exe == os.readlink(f"/proc/{t.pid}/exe")
    heap = [v for v in mm.vmas if v.path == "[heap]"]
    if heap:
        assert heap[0].start <= mm.brk <= heap[0].end
    assert mm.start_brk <= mm.brk
    stack = [v for v in mm.vmas if v.path == "[stack]"][0]
    assert "gd" in stack.vmflags  # VM_GROWSDOWN
    assert stack.start <= mm.start_stack < stack.end
    with open(f"/proc/{t.pid}/auxv", "rb") as f:
        raw = f.read()
    assert dict(mm.auxv)[6] == 4096  # AT_PAGESZ
    assert len(mm.auxv) == len(raw) // 16 - 1


def test_status_matches_proc(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    st = status_fmt.parse(mnt.read(f"{t.pid}/status"))
    kernel = t.status()
    assert st.comm == "counter"
    assert st.pid == st.tgid == t.pid
    assert st.ppid == os.getpid()
    assert st.uids == tuple(int(x) for x in kernel["Uid"].split())
    assert st.umask == int(kernel["Umask"], 8)
    assert st.sid == os.getsid(t.pid) and st.pgid == os.getpgid(t.pid)
    rl = dict((name, (soft, hard)) for name, soft, hard in st.rlimits)
    soft, hard = resource.prlimit(t.pid, resource.RLIMIT_NOFILE)
    assert rl["nofile"] == (soft, hard)
    assert st.cwd == os.readlink(f"/proc/{t.pid}/cwd")
    assert st.cap_eff == int(kernel["CapEff"], 16)


def _records(data: bytes) -> dict[int, bytes]:
    import io

    out = {}
    for vaddr, npages, _flags, payload in pages_fmt.iter_records(io.BytesIO(data)):
        for i in range(npages):
            out[vaddr + i * 4096] = bytes(payload[i * 4096 : (i + 1) * 4096])
    return out


def test_pages_hold_the_memory(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("mem", "8")
    addr = int(t.ready_info["addr"], 16)
    size = int(t.ready_info["size"])
    with open(os.path.join(mnt.path, str(t.pid), "pages"), "rb") as f:
        data = f.read()
    pages = _records(data)
    with open(f"/proc/{t.pid}/mem", "rb") as mem:
        for off in range(0, size, 4096 * 97):
            mem.seek(addr + off)
            assert pages[addr + off] == mem.read(4096)
    assert addr + size not in pages  # the untouched hole is not there
    t.send("check")
    assert t.readline() == "mem ok"


def test_pages_hold_memory_the_process_made_unreadable(mnt) -> None:  # type: ignore[no-untyped-def]
    """Pages written, then made PROT_NONE (a guard, a sandbox): the quick
    copy (process_vm_readv) stops at them, and the stream reads them through
    /proc/PID/mem instead, with the pages around them, all as they are."""
    code = (
        "import ctypes, mmap, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "m = mmap.mmap(-1, 64 * 4096)\n"
        "for i in range(64): m[i * 4096:(i + 1) * 4096] = bytes([i + 1]) * 4096\n"
        "addr = ctypes.addressof(ctypes.c_char.from_buffer(m))\n"
        "for first, n in ((7, 1), (20, 5), (63, 1)):\n"
        "    assert libc.mprotect(ctypes.c_void_p(addr + first * 4096), n * 4096, 0) == 0\n"
        "print('ready', hex(addr), flush=True); sys.stdin.readline()\n"
    )
    proc, words = start_python(code)
    try:
        addr = int(words[1], 16)
        with open(os.path.join(mnt.path, str(proc.pid), "pages"), "rb") as f:
            pages = _records(f.read())
        for i in range(64):
            assert pages[addr + i * 4096] == bytes([i + 1]) * 4096, i
    finally:
        stop_process(proc)


def test_ctl_freeze_shows_one_moment(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("threads", "4")
    ctl = os.path.join(mnt.path, str(t.pid), "ctl")
    with open(ctl, "w") as f:
        f.write("freeze\n")
    try:
        assert mnt.read(f"{t.pid}/ctl") == "frozen\n"
        for tid in t.tids():
            assert t.state(tid) == "t"
        first = {tid: mnt.read(f"{t.pid}/task/{tid}/regs") for tid in t.tids()}
        again = {tid: mnt.read(f"{t.pid}/task/{tid}/regs") for tid in t.tids()}
        assert first == again
        with open(os.path.join(mnt.path, str(t.pid), "pages"), "rb") as f:
            pages1 = f.read()
        with open(os.path.join(mnt.path, str(t.pid), "pages"), "rb") as f:
            assert f.read() == pages1
    finally:
        with open(ctl, "w") as f:
            f.write("thaw\n")
    assert mnt.read(f"{t.pid}/ctl") == "running\n"
    for tid in t.tids():
        assert t.state(tid) != "t"
        assert t.status(tid)["TracerPid"] == "0"


def test_a_frozen_process_killed_from_outside_is_reaped_by_its_parent(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """Its exit goes to the tracer first: the tracer process collects it, so
    the parent's wait() returns, and the process is no longer frozen."""
    t = spawn("threads", "3")
    with open(os.path.join(mnt.path, str(t.pid), "ctl"), "w") as f:
        f.write("freeze\n")
    assert t.state() == "t"
    t.proc.kill()
    assert t.proc.wait(timeout=5) == -9
    # The mount goes on; a new freeze of another process works.
    other = spawn("counter")
    ctl = os.path.join(mnt.path, str(other.pid), "ctl")
    with open(ctl, "w") as f:
        f.write("freeze\n")
    with open(ctl, "w") as f:
        f.write("thaw\n")
    assert other.status()["TracerPid"] == "0"


@pytest.mark.parametrize("text", ["", "FREEZE", "freeze thaw", "x" * 100000, "\0\0", "thaw\n" * 3])
def test_ctl_bad_input_changes_nothing(mnt, spawn, text) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    ctl = os.path.join(mnt.path, str(t.pid), "ctl")
    fd = os.open(ctl, os.O_WRONLY | os.O_TRUNC)
    try:
        if text:
            with pytest.raises(OSError) as info:
                os.write(fd, text.encode())
            assert info.value.errno == 22
    finally:
        os.close(fd)
    assert mnt.read(f"{t.pid}/ctl") == "running\n"
    assert t.status()["TracerPid"] == "0"
    if text:
        assert "ctl" in mnt.read(f"{t.pid}/errors")
    t.send("check")
    assert "ok" in t.readline()


def test_ctl_of_a_process_gone(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    fd = os.open(os.path.join(mnt.path, str(t.pid), "ctl"), os.O_WRONLY)
    t.kill()
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"freeze\n")
        assert info.value.errno in (3, 2)  # ESRCH / ENOENT
    finally:
        os.close(fd)


# -- checkpoint -----------------------------------------------------------------


def checkpoint(pid: int, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    import sys

    sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
    return subprocess.run(
        [sigfs, "checkpoint", str(pid), dest, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def tree_digest(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_checkpoint_image_is_the_mounted_tree(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "read")
    img = str(tmp_path / "img")
    res = checkpoint(t.pid, img, "--leave-running")
    assert res.returncode == 0, res.stderr
    files = tree_digest(img)
    for rel in (
        "sig/action",
        "sig/blocked",
        "sig/pending",
        "sig/shared_pending",
        "sig/altstack",
        "sig/waiters",
        "regs",
        "fpu",
        "fds",
        "mm",
        "status",
        "pages",
        f"task/{t.pid}/regs",
        f"task/{t.pid}/sig/blocked",
        "MANIFEST",
    ):
        assert rel in files, rel
    # The same bytes as reading the mounted files of the same (unchanged) process.
    for rel in ("sig/action", "sig/blocked", "fds", "sig/altstack"):
        with open(os.path.join(img, rel)) as f:
            assert f.read() == mnt.read(f"{t.pid}/{rel}"), rel
    # MANIFEST checksums hold, and it lists every file.
    assert _manifest_problems(img)[1] == []
    assert _load_manifest(img).pid == t.pid
    t.send("write")
    assert "rc=1" in t.readline()


def _load_manifest(img: str) -> manifest_fmt.Manifest:
    with open(os.path.join(img, "MANIFEST")) as f:
        return manifest_fmt.parse(f.read())


def _manifest_problems(img: str) -> tuple[str, list[str]]:
    """(checksum, problems): every file's checksum checked, and no file
    missing from the image or left out of MANIFEST."""
    from sigfs.formats import manifest as manifest_fmt

    man = _load_manifest(img)

    def reader(rel: str) -> bytes:
        with open(os.path.join(img, rel), "rb") as fh:
            return fh.read()

    return man.checksum, manifest_fmt.verify(man, reader, tree_digest(img))


@pytest.mark.parametrize(
    ("extra", "algo"),
    [
        ((), "xxh3-128"),
        (("--checksum", "sha256"), "sha256"),
        # 16 MiB of pages through a 1 MiB buffer: most of the file is written
        # past the mapping, so its checksum joins mapped and file bytes.
        (("--buffer-mib", "1"), "xxh3-128"),
    ],
)
def test_checkpoint_checksums(spawn, tmp_path, extra, algo) -> None:  # type: ignore[no-untyped-def]
    t = spawn("mem", "16")
    img = str(tmp_path / "img")
    res = checkpoint(t.pid, img, "--leave-running", *extra)
    assert res.returncode == 0, res.stderr
    assert os.path.getsize(os.path.join(img, "pages")) > 16 << 20
    assert _manifest_problems(img) == (algo, [])
    # A checksum that cannot fail proves nothing: one byte changed is caught.
    with open(os.path.join(img, "pages"), "r+b") as f:
        f.seek(12 << 20)
        byte = f.read(1)
        f.seek(12 << 20)
        f.write(bytes([byte[0] ^ 1]))
    algo_seen, problems = _manifest_problems(img)
    assert len(problems) == 1 and problems[0].startswith(f"pages: {algo} is "), problems


def test_checkpoint_rejects_an_unknown_checksum(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    res = checkpoint(t.pid, str(tmp_path / "img"), "--checksum", "md5")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    assert not (tmp_path / "img").exists() and not (tmp_path / "img.partial").exists()


def stop_on_one_cpu(t) -> None:  # type: ignore[no-untyped-def]
    """Pin every thread to CPU 0 and group-stop the process (SIGSTOP): it
    then cannot change between two looks (see the test below for why both)."""
    for tid in t.tids():
        os.sched_setaffinity(tid, {0})
    os.kill(t.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while t.state() != "T" and time.monotonic() < deadline:
        time.sleep(0.01)


def test_checkpoint_image_is_its_owners_only(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Memory, registers (keys live in vector registers), open files: every
    directory 0700 and every file 0600, whatever the umask, and an empty
    directory given as DIR takes the image's mode too."""
    t = spawn("threads", "2")
    dest = tmp_path / "img"
    dest.mkdir(mode=0o755)
    old = os.umask(0)
    try:
        assert checkpoint(t.pid, str(dest), "--leave-running", "-q").returncode == 0
    finally:
        os.umask(old)
    seen = 0
    for root, _dirs, files in os.walk(dest):
        assert os.stat(root).st_mode & 0o777 == 0o700, root
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o600, (root, name)
            seen += 1
    assert seen > 20  # the task/<tid>/ files included


def test_checkpoint_twice_of_an_unchanged_process_is_identical(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Unchanged means not run in between: a thread that runs may move to
    another CPU, and the kernel then rewrites its rseq area's cpu_id.  So the
    process stays group-stopped (SIGSTOP) across both checkpoints (sigfs
    seizes it in that stop and leaves it stopped), and it is pinned to one
    CPU, since the syscalls sigfs injects return through user mode where the
    kernel refreshes rseq."""
    t = spawn("sleeper", "read")
    stop_on_one_cpu(t)
    try:
        img1, img2 = str(tmp_path / "img1"), str(tmp_path / "img2")
        assert checkpoint(t.pid, img1, "--leave-running").returncode == 0
        assert t.state() == "T"  # still stopped, as it was
        assert checkpoint(t.pid, img2, "--leave-running").returncode == 0
        assert tree_digest(img1) == tree_digest(img2)
    finally:
        os.kill(t.pid, signal.SIGCONT)
    t.send("write")
    assert "rc=1" in t.readline()
    assert t.status()["TracerPid"] == "0"


def test_checkpoint_never_disturbs_a_self_checking_target(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    for i in range(5):
        res = checkpoint(t.pid, str(tmp_path / f"img{i}"), "--leave-running")
        assert res.returncode == 0, res.stderr
    t.send("check")
    assert "ok" in t.readline()
    t.send("sigs")
    assert t.readline() == "sigs 0"


def test_checkpoint_kills_by_default(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("mem", "2")
    res = checkpoint(t.pid, str(tmp_path / "img"))
    assert res.returncode == 0, res.stderr
    t.proc.wait(timeout=10)
    assert t.proc.returncode == -9
    assert os.path.exists(tmp_path / "img" / "MANIFEST")


def test_checkpoint_kills_a_many_threaded_process_without_waiting_out_its_deadline(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    """The leader's exit is reported only after every other thread is
    reaped: waiting for it first used to wait out the 5 s deadline."""
    t = spawn("threads", "8")
    res = checkpoint(t.pid, str(tmp_path / "img"))
    assert res.returncode == 0, res.stderr
    frozen_ms = float(res.stderr.split("frozen ")[1].split(" ms")[0])
    assert frozen_ms < 2500, res.stderr  # nowhere near the 5000 ms deadline
    t.proc.wait(timeout=10)
    assert t.proc.returncode == -9
    assert os.path.exists(tmp_path / "img" / "MANIFEST")


def test_checkpoint_failures_leave_no_image(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = checkpoint(999999999, str(tmp_path / "none"))
    assert res.returncode == 1 and not (tmp_path / "none").exists()
    assert res.stderr.count("\n") == 1
    t = spawn("counter")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    res = checkpoint(t.pid, str(tmp_path / "full"))
    assert res.returncode == 1 and "not an empty directory" in res.stderr
    assert t.alive()
    # A target that exits mid-checkpoint: a large one, killed while its pages stream.
    big = spawn("mem", "256")
    killer = threading.Timer(0.15, big.kill)
    killer.start()
    res = checkpoint(big.pid, str(tmp_path / "racy"))
    killer.join()
    assert not (tmp_path / "racy.partial").exists()
    if res.returncode != 0:
        assert not (tmp_path / "racy").exists()
        assert "no image written" in res.stderr
    else:  # finished before the kill: then the image is whole
        assert (tmp_path / "racy" / "MANIFEST").exists()


def test_freeze_catches_threads_born_while_freezing(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """A process that creates a thread every 0.2 ms: after `freeze`, every
    live thread is stopped (none slipped through clone() during the freeze),
    and none is created while frozen."""
    t = spawn("spawner")
    time.sleep(0.1)
    ctl = os.path.join(mnt.path, str(t.pid), "ctl")
    for _ in range(5):
        with open(ctl, "w") as f:
            f.write("freeze\n")
        try:
            tids = t.tids()
            assert len(tids) > 2
            stopped = 0
            for tid in tids:
                try:
                    state = t.state(tid)
                except (FileNotFoundError, ProcessLookupError):
                    continue  # was already exiting when the freeze began
                assert state in ("t", "Z", "X"), (tid, state)
                stopped += state == "t"
            assert stopped >= 2
            time.sleep(0.05)
            assert set(t.tids()) <= set(tids)  # nothing born while frozen
        finally:
            with open(ctl, "w") as f:
                f.write("thaw\n")
        time.sleep(0.02)
    t.send("count")
    before = int(t.readline().split()[1])
    time.sleep(0.1)
    t.send("count")
    assert int(t.readline().split()[1]) > before  # runs on after thaw
    for tid in t.tids():
        try:
            assert t.status(tid)["TracerPid"] == "0"
        except (FileNotFoundError, ProcessLookupError):
            pass  # a short-lived thread that ended meanwhile


def test_pages_keep_the_daemons_memory_flat(spawn) -> None:  # type: ignore[no-untyped-def]
    """Streaming 256 MiB of pages grows the daemon's peak RSS by far less
    than the memory read (it holds one 1 MiB window at a time)."""
    m = start_mount()
    try:
        t = spawn("mem", "256")

        def hwm_kib() -> int:
            with open(f"/proc/{m.proc.pid}/status") as f:
                return next(int(x.split()[1]) for x in f if x.startswith("VmHWM"))

        before = hwm_kib()
        total = 0
        with open(os.path.join(m.path, str(t.pid), "pages"), "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
        assert total > 256 << 20
        assert hwm_kib() - before < 32 * 1024, (before, hwm_kib())
    finally:
        stop_mount(m)


def test_checkpoint_of_a_traced_process_leaves_nothing(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The freeze itself fails (strace holds the process): one line, no DIR,
    no DIR.partial, the process untouched."""
    t = spawn("counter")
    strace = subprocess.Popen(
        ["strace", "-p", str(t.pid), "-o", "/dev/null"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while t.status()["TracerPid"] == "0" and time.monotonic() < deadline:
            time.sleep(0.01)
        res = checkpoint(t.pid, str(tmp_path / "img"))
        assert res.returncode == 1
        assert "already traced" in res.stderr and res.stderr.count("\n") == 1
        assert not (tmp_path / "img").exists()
        assert not (tmp_path / "img.partial").exists()
    finally:
        strace.terminate()
        strace.wait()
    assert t.alive()


def test_checkpoint_refuses_to_delete_a_leftover_partial(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    (tmp_path / "img.partial").mkdir()
    (tmp_path / "img.partial" / "mine").write_text("keep me")
    res = checkpoint(t.pid, str(tmp_path / "img"))
    assert res.returncode == 1 and "remove it first" in res.stderr
    assert (tmp_path / "img.partial" / "mine").read_text() == "keep me"
    assert t.alive()


def test_checkpoint_pages_equal_the_mounted_pages_whatever_the_buffer(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two code paths make the pages stream (the mount's, chunk by chunk; the
    checkpoint's, copied into the mapped pages file, going on with pwrite past
    --buffer-mib): the same bytes."""
    t = spawn("mem", "8")
    stop_on_one_cpu(t)
    try:
        # A first checkpoint settles the rseq areas on CPU 0 (see above).
        assert checkpoint(t.pid, str(tmp_path / "settle"), "--leave-running").returncode == 0
        with open(os.path.join(mnt.path, str(t.pid), "pages"), "rb") as f:
            mounted = f.read()
        for name, extra in (
            ("big", ()),
            ("tiny", ("--buffer-mib", "1")),
            ("none", ("--buffer-mib", "0")),
        ):
            img = str(tmp_path / name)
            res = checkpoint(t.pid, img, "--leave-running", *extra)
            assert res.returncode == 0, res.stderr
            with open(os.path.join(img, "pages"), "rb") as f:
                assert f.read() == mounted, name
    finally:
        os.kill(t.pid, signal.SIGCONT)
    t.send("check")
    assert t.readline() == "mem ok"


@pytest.mark.parametrize("mode", ["kill", "--leave-running"])
def test_the_image_is_on_disk_before_it_is_named_and_the_process_killed(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path,
    mode: str,
) -> None:
    """A crash (power lost) after the checkpoint must not leave a killed
    process with an image still in the page cache, nor a DIR with files
    short: strace shows syncfs before the rename of DIR.partial to DIR, the
    directory's fsync after it, and only then the SIGKILL."""
    import sys

    t = spawn("mem", "4")
    img = str(tmp_path / "img")
    sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
    extra = [mode] if mode != "kill" else []
    res = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=syncfs,fsync,rename,kill", "-o", str(tmp_path / "st")]
        + [sigfs, "checkpoint", str(t.pid), img, *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    calls = (tmp_path / "st").read_text().splitlines()

    def first(pattern: str) -> int:
        found = [i for i, line in enumerate(calls) if re.search(pattern, line)]
        assert found, (pattern, calls)
        return found[0]

    synced = first(r"syncfs\(\d+\) += 0")
    named = first(rf'rename\("{re.escape(img)}\.partial", "{re.escape(img)}"\) += 0')
    dir_synced = max(i for i, line in enumerate(calls) if re.search(r"fsync\(\d+\) += 0", line))
    assert synced < named < dir_synced, calls
    kills = [i for i, line in enumerate(calls) if f"kill({t.pid}, SIGKILL)" in line]
    if mode == "kill":
        assert kills and kills[0] > dir_synced, calls
    else:
        assert not kills, calls
        t.send("check")
        assert t.readline() == "mem ok"


def test_checkpoint_that_cannot_write_leaves_nothing(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A file-size limit smaller than the memory (EFBIG, like a full disk):
    one line, no DIR and no DIR.partial, the process running and untraced."""
    t = spawn("mem", "16")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    for extra in ((), ("--buffer-mib", "0")):
        res = subprocess.run(
            [*_sigfs(), "checkpoint", str(t.pid), str(tmp_path / "img"), "--leave-running", *extra],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=small_files,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 1, (extra, res.stderr)
        assert res.stderr.count("\n") == 1 and "no image written" in res.stderr, res.stderr
        assert not (tmp_path / "img").exists()
        assert not (tmp_path / "img.partial").exists()
        assert t.status()["TracerPid"] == "0" and t.state() != "t"
    t.send("check")
    assert t.readline() == "mem ok"


def _sigfs() -> list[str]:
    import sys

    return [os.path.join(os.path.dirname(sys.executable), "sigfs")]


def test_checkpoint_timings_show_every_phase_each_file_and_the_peak_memory(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    t = spawn("threads", "3")
    res = checkpoint(t.pid, str(tmp_path / "img"), "--leave-running", "--timings")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"sigfs: checkpoint of {t.pid} ")
    # A phase: "  %8.1f ms  what"; a file under the copy: "    %8.2f ms  file".
    phase = re.compile(r"^  [ \d]{5}\d\.\d ms  (.+)$")
    cost = re.compile(r"^    [ \d]{4}\d\.\d\d ms  (.+)$")
    phases = [m.group(1) for ln in lines if (m := phase.match(ln))]
    assert phases == [
        "checked arguments, started preparing the pages file",
        "imported the tracer and the loaders",
        "pages file prepared",
        "froze every thread",
        "copied the state and the pages",
        "thawed",
        "wrote the files read while frozen",
        "checksummed, wrote MANIFEST",
        "flushed to disk",
        "published the image",
        "closed",
    ]
    per_file = {m.group(1): float(ln.split()[0]) for ln in lines if (m := cost.match(ln))}
    for name in ("sig/action", "mm", "pages", "task/*/regs", "task/*/sig/pending"):
        assert name in per_file, per_file
    assert not any(name.startswith("task/") and name.split("/")[1] != "*" for name in per_file)
    frozen = float(lines[0].split("frozen ")[1].split(" ms")[0])
    assert 0 < sum(per_file.values()) <= frozen + 0.5
    peak = [ln for ln in lines if ln.startswith("  peak RSS ")]
    assert len(peak) == 1
    mib = float(peak[0].split()[2])
    assert 5 < mib < 200


@pytest.mark.parametrize("mode", ["--leave-running", "kill"])
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_an_interrupted_checkpoint_leaves_the_process_as_it_was(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path,
    mode: str,
    signame: str,
) -> None:
    """Ctrl-C or SIGTERM at any moment: the process runs on untraced with
    its own mask and memory (or, only once its image is whole, is killed),
    no DIR.partial is left, one line says what happened, and the command
    dies of the signal as a shell expects."""
    import sys

    signum = getattr(signal, signame)
    sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
    for i, delay in enumerate((0.0, 0.01, 0.02, 0.04, 0.06, 0.09, 0.12, 0.2)):
        t = spawn("mem", "128")
        mask = t.status()["SigBlk"]
        with open(f"/proc/{t.pid}/maps") as f:
            maps = f.read()
        img = str(tmp_path / f"img{i}")
        extra = [mode] if mode != "kill" else []
        cmd = [sigfs, "checkpoint", str(t.pid), img, *extra]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        # From the moment DIR.partial exists (the command has started work):
        deadline = time.monotonic() + 10
        while not os.path.exists(img + ".partial") and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(delay)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert not os.path.exists(img + ".partial"), err
        if proc.returncode == 0:
            continue  # done before the signal came
        assert proc.returncode == -signum, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"sigfs: checkpoint: interrupted ({signame}); "), err
        whole = os.path.isdir(img)
        if whole:
            assert _manifest_problems(img)[1] == []
        if whole and mode == "kill":
            assert "killed" in last or "left running" in last, last
            if "killed" in last:
                continue
        assert "no image written" in last or whole, last
        st = t.status()
        assert st["TracerPid"] == "0", (delay, st)
        assert not st["State"].startswith(("t", "T")), (delay, st["State"])
        assert st["SigBlk"] == mask
        with open(f"/proc/{t.pid}/maps") as f:
            assert f.read() == maps, delay  # no injected stub's pages left
        t.send("check")
        assert t.readline(timeout=10) == "mem ok"


def test_an_interrupt_python_swallowed_is_acted_on_at_the_next_phase(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A handler's exception raised inside a callback (a weakref's, an
    import lock's) is swallowed by Python: it must not be reported as a
    traceback, and the next phase mark must raise it after all."""
    from sigfs import checkpoint
    from sigfs.sink import BufferSink

    seen: list[object] = []
    hook = checkpoint._quiet_unraisable(seen.append)

    class Unraisable:
        def __init__(self, exc: BaseException) -> None:
            self.exc_value = exc

    hook(Unraisable(checkpoint.Interrupted(signal.SIGTERM)))
    assert seen == []
    other = Unraisable(ValueError("x"))
    hook(other)
    assert seen == [other]

    fd = os.open(tmp_path / "pages", os.O_RDWR | os.O_CREAT, 0o600)
    prep = checkpoint.Prepared(1, "d", "d.partial", fd, BufferSink(fd, 0))
    try:
        prep.mark("quiet")
        checkpoint._pending.append(signal.SIGTERM)
        with pytest.raises(checkpoint.Interrupted) as info:
            prep.mark("next phase")
        assert info.value.signum == signal.SIGTERM
        assert str(info.value) == "SIGTERM"
    finally:
        checkpoint._pending.clear()
        prep.sink.discard()
        os.close(fd)


def test_a_process_with_many_mappings_is_read_whole(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """/proc/PID/maps of more than a page comes in several reads: sigfs must
    not take the first for the whole (it once did, and then found no [vdso]
    and left the last mappings, the stack among them, out of `pages`)."""
    import io

    from sigfs import procfs

    t = spawn("threads", "30")  # a guard page and a stack per thread
    with open(f"/proc/{t.pid}/maps") as f:
        full = f.read()
    assert len(full) > 5000, len(full)
    assert procfs.read_maps(t.pid) == full
    assert procfs.find_mapping(t.pid, "[vdso]") is not None
    img = str(tmp_path / "img")
    res = checkpoint(t.pid, img, "--leave-running")
    assert res.returncode == 0, res.stderr
    stack = next(line.split()[0] for line in full.splitlines() if line.endswith("[stack]"))
    lo, hi = (int(x, 16) for x in stack.split("-"))
    with open(os.path.join(img, "pages"), "rb") as f:
        addrs = [vaddr for vaddr, _n, _fl, _p in pages_fmt.iter_records(io.BytesIO(f.read()))]
    assert any(lo <= a < hi for a in addrs), "no page of the main stack in the image"
    with open(os.path.join(img, "mm")) as f:
        assert f.read().count("\nvma ") + 1 >= full.count("\n") - 3


SMALL_MAPPINGS_CHILD = """
import ctypes, mmap, sys
rw = mmap.PROT_READ | mmap.PROT_WRITE
# Private anonymous, two pages each, alternately read-only so that the
# kernel keeps them apart; every third one has its second page written.
maps = [mmap.mmap(-1, 8192, flags=mmap.MAP_PRIVATE, prot=rw if i % 2 else mmap.PROT_READ)
        for i in range(600)]
written = []
for i, m in enumerate(maps):
    if i % 2 and i % 3 == 0:
        m[4096:8192] = bytes([i % 251 + 1]) * 4096
        written.append((ctypes.addressof(ctypes.c_char.from_buffer(m)) + 4096, i % 251 + 1))
print("ready", " ".join(f"{a:x}:{b}" for a, b in written), flush=True)
sys.stdin.readline()
"""


def test_many_small_mappings_side_by_side(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Small mappings lie side by side, and the pages stream reads their
    pagemap entries ahead, several mappings at a time: each written page is
    in the image, under its own address with its own bytes, and no other
    page of these mappings is."""
    import io

    from conftest import start_python, stop_process

    proc, words = start_python(SMALL_MAPPINGS_CHILD)
    try:
        written = {int(a, 16): int(b) for a, b in (w.split(":") for w in words[1:])}
        assert len(written) == 100
        img = str(tmp_path / "img")
        res = checkpoint(proc.pid, img, "--leave-running")
        assert res.returncode == 0, res.stderr
        with open(os.path.join(img, "pages"), "rb") as f:
            data = f.read()
        pages = {}
        for vaddr, n, _fl, payload in pages_fmt.iter_records(io.BytesIO(data)):
            for i in range(n):
                pages[vaddr + i * 4096] = bytes(payload[i * 4096 : (i + 1) * 4096])
        for addr, byte in written.items():
            assert pages.get(addr) == bytes([byte]) * 4096, hex(addr)
            assert addr - 4096 not in pages  # its first page was never touched
    finally:
        stop_process(proc)


def test_every_threads_altstack_in_one_batch(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """30 threads, each with its own sigaltstack and half of them asleep in
    read() (a syscall to restart): the batch that steps sigaltstack in every
    thread at once gives each its own, and every thread sleeps on untouched,
    its signal still pending and its syscall unbroken."""
    from sigfs.formats import altstack as altstack_fmt

    t = spawn("threads", "30")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    stacks = [s.split(":") for s in t.ready_info["stacks"].split(",")]
    before = {tid: t.status(tid) for tid in tids}
    img = str(tmp_path / "img")
    res = checkpoint(t.pid, img, "--leave-running")
    assert res.returncode == 0, res.stderr
    for tid, (sp, size) in zip(tids, stacks, strict=True):
        with open(os.path.join(img, "task", str(tid), "sig", "altstack")) as f:
            alt = altstack_fmt.parse(f.read())
        assert (alt.sp, alt.size, alt.flags) == (int(sp, 16), int(size), 0), tid
    with open(os.path.join(img, "sig", "altstack")) as f:
        assert altstack_fmt.parse(f.read()).size == 0  # the main thread has none
    for tid in tids:
        st = t.status(tid)
        for key in ("SigBlk", "SigPnd", "ShdPnd", "TracerPid"):
            assert st[key] == before[tid][key], (tid, key)
        with open(f"/proc/{t.pid}/task/{tid}/syscall") as f:
            nr = f.read().split()[0]
        assert nr in ("0", "34"), (tid, nr)  # still in read() or pause()


def test_a_freeze_that_fails_halfway_lets_every_thread_go(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The last thread is held by strace: the threads before it were already
    seized and asked to stop, all together; every one of them must run on
    untraced, with its signal still pending and its mask as it was."""
    t = spawn("threads", "8")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    before = {tid: t.status(tid) for tid in [t.pid, *tids]}
    victim = tids[-1]
    strace = subprocess.Popen(
        ["strace", "-p", str(victim), "-o", "/dev/null"], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while t.status(victim)["TracerPid"] == "0" and time.monotonic() < deadline:
            time.sleep(0.01)
        res = checkpoint(t.pid, str(tmp_path / "img"), "--leave-running")
        assert res.returncode == 1
        assert "already traced" in res.stderr, res.stderr
        assert not (tmp_path / "img.partial").exists()
        deadline = time.monotonic() + 5
        for tid in [t.pid, *tids[:-1]]:
            while t.status(tid)["TracerPid"] != "0" and time.monotonic() < deadline:
                time.sleep(0.01)
            st = t.status(tid)
            assert st["TracerPid"] == "0", tid
            assert not st["State"].startswith(("t", "T")), (tid, st["State"])
            for key in ("SigBlk", "SigPnd"):
                assert st[key] == before[tid][key], (tid, key)
    finally:
        strace.terminate()
        strace.wait()
    assert t.alive()


_MANY_OPENS = """
import os, random, sys
random.seed(7)
fds = [os.open("/dev/null", os.O_RDONLY) for _ in range(60)]
for _ in range(40):  # dups of random ones: the same open file under new numbers
    os.dup(random.choice(fds))
fds2 = [os.open("/etc/hostname", os.O_RDONLY) for _ in range(5)]
os.dup(fds2[2])
print("ready", flush=True)
sys.stdin.readline()
"""


def test_fds_sharing_among_many_opens_of_one_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Sixty opens of /dev/null and forty dups of them: each descriptor's
    `shared` is the lowest descriptor on the same open file, as pairwise
    kcmp says (the reader finds it by a binary search in kcmp's order)."""
    import ctypes

    from sigfs import image

    libc = ctypes.CDLL(None, use_errno=True)
    proc, words = start_python(_MANY_OPENS)
    try:
        assert words == ["ready"]
        pid = proc.pid
        got = {fd.fd: fd.shared for fd in image.read_fds(pid).fds}
        fds = sorted(got)
        assert len(fds) > 100
        for fd in fds:
            want = next(
                other
                for other in fds
                if other <= fd and libc.syscall(312, pid, pid, 0, other, fd) == 0
            )
            assert got[fd] == want, fd
        assert len(set(got.values())) < len(fds) - 30  # the dups were found
    finally:
        stop_process(proc)


def test_the_pages_streams_quick_maps_split_agrees_with_the_full_parser(spawn) -> None:  # type: ignore[no-untyped-def]
    """dumpable_vmas splits /proc/PID/maps without validating it; for real
    processes (a small C target, this Python, with its deleted and special
    mappings) it must name the same mappings, bounds, permissions and
    inodes as sigfs.formats.mm's parser, less the kernel's own."""
    from sigfs import procfs
    from sigfs.formats import mm as mm_fmt
    from sigfs.pages import SKIPPED, dumpable_vmas

    for pid in (spawn("threads", "4").pid, os.getpid()):
        text = procfs.read_maps(pid)
        full = [v for v in mm_fmt.parse_proc_maps(text) if v.path not in SKIPPED]
        quick = dumpable_vmas(text)
        assert [(v.start, v.end, v.perms, v.inode) for v in full] == [
            (v.start, v.end, v.perms, v.inode) for v in quick
        ]
        for f, q in zip(full, quick, strict=True):
            if "\\" not in q.path:  # no escape for the full parser to undo
                assert q.path == f.path


_ZERO_SHAPES = """
import ctypes, mmap, sys
n = 64
def anon():  # private: a read fault maps the kernel's zero page
    return mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
read_only = anon()  # only read: every page maps the zero page
written_zero = anon()  # written with zeros: real pages of zeros
data = anon()
mixed = anon()  # zero-page reads and data, page by page
for i in range(n):
    read_only[i * 4096]
    written_zero[i * 4096] = 0
    data[i * 4096] = 1 + i % 200
    if i % 2:
        mixed[i * 4096] = 7
    else:
        mixed[i * 4096]
maps = (read_only, written_zero, data, mixed)
addrs = [hex(ctypes.addressof(ctypes.c_char.from_buffer(m))) for m in maps]
print("ready", *addrs, flush=True)
sys.stdin.readline()
"""


def test_pages_leave_out_exactly_the_zero_page(mnt, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """As root (page frame numbers visible): pages that map the kernel's
    shared zero page are left out, pages written with zeros and pages of
    data are kept, also where the two alternate page by page."""

    from sigfs.pages import zero_pfn

    if not zero_pfn():
        pytest.skip("page frame numbers are not visible (not root)")
    proc, words = start_python(_ZERO_SHAPES)
    try:
        read_only, written_zero, data, mixed = (int(x, 16) for x in words[1:])
        with open(os.path.join(mnt.path, str(proc.pid), "pages"), "rb") as f:
            pages = _records(f.read())
        n = 64
        for i in range(n):
            assert read_only + i * 4096 not in pages, i
            assert pages[written_zero + i * 4096] == bytes(4096), i
            assert pages[data + i * 4096][0] == 1 + i % 200, i
            if i % 2:
                assert pages[mixed + i * 4096][0] == 7, i
            else:
                assert mixed + i * 4096 not in pages, i
    finally:
        stop_process(proc)


def test_without_page_frames_the_same_zero_pages_are_left_out(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Other users see no page frame numbers in the pagemap.  PAGEMAP_SCAN's
    PAGE_IS_PFNZERO, open to any user (Linux 6.7+), finds the same pages, so
    their stream is root's byte for byte: pages written with zeros are kept
    (comparing contents would drop them too)."""
    from sigfs import pages, procfs

    if not _pagemap_scan_available():
        pytest.skip("no PAGEMAP_SCAN here (Linux 6.7+)")
    proc, words = start_python(_ZERO_SHAPES)
    try:
        read_only, written_zero, data, mixed = (int(x, 16) for x in words[1:])
        os.kill(proc.pid, signal.SIGSTOP)  # nothing changes between the reads

        def stream() -> bytes:
            s = pages.PagesStream(proc.pid, pages.dumpable_vmas(procfs.read_maps(proc.pid)))
            with s:
                return b"".join(bytes(c) for c in s.chunks())

        as_root = stream()
        monkeypatch.setattr(pages, "zero_pfn", lambda: 0)
        as_user = stream()
        assert as_user == as_root
        records = _records(as_user)
        for i in range(64):
            assert read_only + i * 4096 not in records, i
            assert records[written_zero + i * 4096] == bytes(4096), i
            assert (mixed + i * 4096 in records) == bool(i % 2), i
        # A kernel without PAGEMAP_SCAN (an unknown request: ENOTTY): the
        # contents are compared, and every all-zero page is left out.
        monkeypatch.setattr(pages, "PAGEMAP_SCAN", 0xC06066FF)
        records = _records(stream())
        for i in range(64):
            assert read_only + i * 4096 not in records, i
            assert written_zero + i * 4096 not in records, i
            assert records[data + i * 4096][0] == 1 + i % 200, i
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        stop_process(proc)


def _pagemap_scan_available() -> bool:
    import ctypes

    from sigfs import pages

    vec = (ctypes.c_uint64 * 3)()
    with open("/proc/self/pagemap", "rb") as f:
        try:
            pages.pagemap_scan(f.fileno(), 0, 4096, vec, category_mask=pages.PAGE_IS_PFNZERO)
        except OSError:
            return False
    return True


@pytest.mark.parametrize("vec_len", [1, 3, 511, 512, 513, 600, 1000, 2000])
def test_pagemap_scan_lists_every_region_once_whatever_the_vector(vec_len: int) -> None:
    """1000 zero-page regions (every other page only read): every one comes
    back once and in order, whether the vector holds fewer regions, exactly
    the kernel's batch of 512, or more (then the kernel's walk_end can be
    stale after a full batch)."""
    import ctypes
    import mmap

    from sigfs import pages

    if not _pagemap_scan_available():
        pytest.skip("no PAGEMAP_SCAN here (Linux 6.7+)")
    n = 2000
    m = mmap.mmap(-1, n * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        for i in range(n):
            if i % 2:
                m[i * 4096] = 1  # a real page between the zero pages
            else:
                m[i * 4096]  # read: the zero page
        vec = (ctypes.c_uint64 * (3 * vec_len))()
        with open("/proc/self/pagemap", "rb") as f:
            found = pages.pagemap_scan(
                f.fileno(),
                base,
                base + n * 4096,
                vec,
                category_mask=pages.PAGE_IS_PFNZERO,
                return_mask=pages.PAGE_IS_PFNZERO,
            )
        want = [(base + i * 4096, base + (i + 1) * 4096) for i in range(0, n, 2)]
        assert found == want
    finally:
        m.close()


@pytest.mark.parametrize("cont", [False, True])
@pytest.mark.parametrize("sender", ["kill", "tgkill"])
@pytest.mark.parametrize("target", ["handlers", "counter"])
def test_a_sigstop_sent_to_a_frozen_process_is_not_lost_in_the_reads(  # type: ignore[no-untyped-def]
    mnt, spawn, target, sender, cont
) -> None:
    """SIGSTOP cannot be blocked, so a thread running sigfs's injected code
    dequeues it.  It must not be lost (it was: withheld until the detach,
    where the kernel ignores it): it is delivered there as the kernel would,
    the group stop stays in force, and the thaw leaves the process stopped;
    a SIGCONT sent after it, while frozen, cancels it as it would without
    sigfs.  Files that inject through the stub (action) and one syscall at
    a time (altstack, status); a thread asleep in a syscall (handlers: read)
    and a spinning one (counter); sent to the process and to the thread."""
    t = spawn(target)
    d = os.path.join(mnt.path, str(t.pid))
    queue = "shared_pending" if sender == "kill" else "pending"
    with open(f"{d}/ctl", "w") as f:
        f.write("freeze\n")
    try:
        if sender == "kill":
            os.kill(t.pid, signal.SIGSTOP)
        else:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            assert libc.syscall(234, t.pid, t.pid, signal.SIGSTOP) == 0  # tgkill
        before = mnt.read(f"{t.pid}/sig/{queue}")
        assert before.splitlines()[0][signal.SIGSTOP - 1] == "1", before
        for name in ("sig/action", "sig/altstack", "status", "sig/action"):
            mnt.read(f"{t.pid}/{name}")
        if cont:
            os.kill(t.pid, signal.SIGCONT)
    finally:
        with open(f"{d}/ctl", "w") as f:
            f.write("thaw\n")
    expected = "S" if cont else "T"
    want = ("S", "R") if cont else ("T",)
    deadline = time.monotonic() + 5
    while t.state() not in want and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert t.state() in want, expected
    assert t.status()["TracerPid"] == "0"
    if not cont:
        os.kill(t.pid, signal.SIGCONT)
    command = "counts" if target == "handlers" else "check"
    reply = t.command(command)
    assert reply == "counts h1=0 h2=0 h3=0" or reply.endswith(" ok"), reply
