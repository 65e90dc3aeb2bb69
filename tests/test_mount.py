"""A real sigfs mount, end to end, checked against the kernel's own view."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import resource
import signal
import subprocess
import time

import pytest
from conftest import run_as, start_python, stop_process
from mounting import start_mount, stop_mount

from sigfs.formats import action as action_fmt
from sigfs.formats import altstack as altstack_fmt
from sigfs.formats import pending as pending_fmt
from sigfs.formats import waiters as waiters_fmt
from sigfs.formats.sigset import parse_bitmap

pytestmark = pytest.mark.mount


def bitmap(text: str) -> int:
    return parse_bitmap(text.splitlines()[0])


def test_root_lists_processes_and_tree(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    assert str(t.pid) in os.listdir(mnt.path)
    base = os.path.join(mnt.path, str(t.pid))
    assert sorted(os.listdir(base)) == [
        "ctl",
        "errors",
        "fds",
        "fpu",
        "mm",
        "pages",
        "regs",
        "sig",
        "status",
        "task",
    ]
    assert sorted(os.listdir(base + "/sig")) == [
        "action",
        "altstack",
        "blocked",
        "pending",
        "shared_pending",
        "waiters",
    ]
    assert [int(x) for x in os.listdir(base + "/task")] == t.tids()
    assert sorted(os.listdir(f"{base}/task/{t.pid}")) == ["fpu", "regs", "sig"]
    tsig = f"{base}/task/{t.pid}/sig"
    assert sorted(os.listdir(tsig)) == ["altstack", "blocked", "pending"]
    with pytest.raises(FileNotFoundError):
        os.stat(f"{base}/task/{t.pid}/sig/action")
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt.path, "999999999"))
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt.path, "not-a-pid"))


def test_cp_copies_pages_a_mib_at_a_time(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Files report the largest FUSE request as their best read size, so
    that `cp` (which reads by it) copies `pages` in 1 MiB requests, not 128
    KiB ones; the copy holds the same bytes as a read of the file."""
    t = spawn("mem", "8")
    pages = os.path.join(mnt.path, str(t.pid), "pages")
    assert os.stat(pages).st_blksize == 1 << 20
    assert os.stat(os.path.join(mnt.path, str(t.pid), "sig", "blocked")).st_blksize == 1 << 20
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-qq",
            "-e",
            "trace=read",
            "-o",
            str(trace),
            "cp",
            pages,
            str(tmp_path / "copy"),
        ],
        check=True,
        timeout=60,
    )
    sizes = [int(m) for m in re.findall(r"^read\(3, .*\) = (\d+)$", trace.read_text(), re.M)]
    assert sizes and max(sizes) == 1 << 20, sizes
    with open(pages, "rb") as f:
        assert (tmp_path / "copy").read_bytes() == f.read()


def test_rfc_forker(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The RFC's own test: blocked SIGUSR1/USR2/CHLD/SEGV/POLL, a dead child,
    then kill -10, -29, -11."""
    t = spawn("forker")
    for sig in (10, 29, 11):
        os.kill(t.pid, sig)

    kernel = t.sigmask_fields()
    blocked = mnt.read(f"{t.pid}/sig/blocked")
    assert blocked == blocked.splitlines()[0] + "\n" and len(blocked) == 65
    assert bitmap(blocked) == kernel["SigBlk"]
    for sig in (10, 12, 17, 11, 29):
        assert blocked[sig - 1] == "1"
    pending = pending_fmt.parse(mnt.read(f"{t.pid}/sig/pending"))
    shared = pending_fmt.parse(mnt.read(f"{t.pid}/sig/shared_pending"))
    assert pending.mask == kernel["SigPnd"]
    assert shared.mask == kernel["ShdPnd"]
    signos = [si.signo for si in shared.queue]
    assert signos == [17, 10, 29, 11]  # queue order: the child's SIGCHLD first
    chld = shared.queue[0]
    assert chld.fields()["pid"] == int(t.ready_info["child"])
    assert chld.fields()["status"] == 0
    assert chld.code == 1  # CLD_EXITED
    for si in shared.queue[1:]:
        assert si.fields()["spid"] == os.getpid()
        assert si.code == 0  # SI_USER
    text = mnt.read(f"{t.pid}/sig/shared_pending")
    assert "  chld pid " in text and "  kill spid " in text


class _Sigval(ctypes.Union):
    _fields_ = (("sival_int", ctypes.c_int), ("sival_ptr", ctypes.c_void_p))


def test_pending_bits_without_siginfo(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """With RLIMIT_SIGPENDING exhausted the kernel still sets a legacy
    signal's bit but queues no siginfo: the bitmap must show it, the queue
    must not invent a record, read after read."""
    t = spawn("forker")  # blocks SIGUSR1, SIGUSR2; its child's SIGCHLD is queued
    resource.prlimit(t.pid, resource.RLIMIT_SIGPENDING, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    # sigqueue (SI_QUEUE) and tgkill (SI_TKILL) are not exempt from the limit.
    assert libc.sigqueue(t.pid, signal.SIGUSR2, _Sigval(7)) == 0, ctypes.get_errno()
    assert libc.syscall(234, t.pid, t.pid, signal.SIGUSR1) == 0, ctypes.get_errno()
    kernel = t.sigmask_fields()
    assert kernel["ShdPnd"] >> (signal.SIGUSR2 - 1) & 1
    assert kernel["SigPnd"] >> (signal.SIGUSR1 - 1) & 1
    for _ in range(3):
        shared = pending_fmt.parse(mnt.read(f"{t.pid}/sig/shared_pending"))
        private = pending_fmt.parse(mnt.read(f"{t.pid}/sig/pending"))
        assert shared.mask == kernel["ShdPnd"]
        assert [si.signo for si in shared.queue] == [signal.SIGCHLD]
        assert private.mask == kernel["SigPnd"]
        assert private.queue == ()
    assert t.sigmask_fields() == kernel  # reading changed nothing


def test_action_and_altstack_match_target(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    actions = action_fmt.parse(mnt.read(f"{t.pid}/sig/action"))
    for line in t.act_lines:
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        act = actions[int(line.split()[1])]
        assert act.handler == int(fields["handler"], 16)
        assert act.flags == int(fields["flags"], 16)
        assert act.restorer == int(fields["restorer"], 16)
        assert "".join("1" if act.mask >> k & 1 else "0" for k in range(64)) == fields["mask"]
    alt = altstack_fmt.parse(mnt.read(f"{t.pid}/sig/altstack"))
    want = dict(kv.split("=", 1) for kv in t.altstack_line.split()[1:])
    assert (alt.sp, alt.size, alt.flags) == (
        int(want["sp"], 16),
        int(want["size"]),
        int(want["flags"]),
    )
    kernel = t.sigmask_fields()
    caught = sum(1 << (a.signum - 1) for a in actions if a.handler > 1)
    ignored = sum(1 << (a.signum - 1) for a in actions if a.handler == 1)
    assert caught == kernel["SigCgt"] and ignored == kernel["SigIgn"]
    # The pending queue holds both sigqueue'd values in order.
    pend = pending_fmt.parse(mnt.read(f"{t.pid}/sig/shared_pending")) if kernel["ShdPnd"] else None
    if pend is not None:
        values = [si.fields().get("value") for si in pend.queue if si.signo == 39]
        assert values == [1234, 5678]


def test_siginfo_layouts(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("siginfo_zoo")
    kernel = t.sigmask_fields()
    private = pending_fmt.parse(mnt.read(f"{t.pid}/sig/pending"))
    shared = pending_fmt.parse(mnt.read(f"{t.pid}/sig/shared_pending"))
    assert private.mask == kernel["SigPnd"] and shared.mask == kernel["ShdPnd"]
    every = list(private.queue) + list(shared.queue)
    layouts = {si.layout.name for si in every}
    for needed in ("KILL", "CHLD", "RT", "TIMER", "POLL", "FAULT", "SYS"):
        assert needed in layouts, (needed, layouts, t.ready_info)
    by_sig = {si.signo: si for si in every}
    info = t.ready_info
    if "child" in info:
        assert by_sig[17].fields()["pid"] == int(info["child"])
        assert by_sig[17].fields()["status"] == 3
    # Every record round-trips byte for byte through the text.
    for rel in ("pending", "shared_pending"):
        text = mnt.read(f"{t.pid}/sig/{rel}")
        assert pending_fmt.render(pending_fmt.parse(text)) == text


def test_waiters(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t4 = spawn("sleeper", "wait4")
    tw = spawn("sleeper", "waitid")
    time.sleep(0.2)
    w4 = waiters_fmt.parse(mnt.read(f"{t4.pid}/sig/waiters"))
    ww = waiters_fmt.parse(mnt.read(f"{tw.pid}/sig/waiters"))
    assert [(w.tid, w.awaited) for w in w4] == [(t4.pid, int(t4.ready_info["child"]))]
    assert [(w.tid, w.awaited) for w in ww] == [(tw.pid, int(tw.ready_info["child"]))]
    assert ww[0].options & 4  # WEXITED
    idle = spawn("counter")
    assert mnt.read(f"{idle.pid}/sig/waiters") == ""


def test_waitid_on_a_pidfd_shows_the_process_it_refers_to(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "waitid_pidfd")
    child, pidfd = int(t.ready_info["child"]), int(t.ready_info["pidfd"])
    # The kernel's view: blocked in waitid(P_PIDFD, pidfd, ...).
    with open(f"/proc/{t.pid}/task/{t.pid}/syscall") as f:
        fields = f.read().split()
    assert int(fields[0]) == 247 and int(fields[1], 16) == 3 and int(fields[2], 16) == pidfd
    (w,) = waiters_fmt.parse(mnt.read(f"{t.pid}/sig/waiters"))
    assert (w.tid, w.awaited) == (t.pid, child)
    assert w.options & 4  # WEXITED
    # Once the child is gone and reaped the wait is over: no waiter left.
    t.send("release")
    assert t.readline().startswith("waitid rc=0 ")
    assert mnt.read(f"{t.pid}/sig/waiters") == ""


def test_threads_have_their_own_files(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("threads", "3")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    for tid in tids:
        base = f"{t.pid}/task/{tid}/sig"
        st = t.status(tid)
        assert bitmap(mnt.read(f"{base}/blocked")) == int(st["SigBlk"], 16)
        pend = pending_fmt.parse(mnt.read(f"{base}/pending"))
        assert pend.mask == int(st["SigPnd"], 16)
        assert [si.signo for si in pend.queue] == [
            s for s in range(1, 65) if pend.mask >> (s - 1) & 1
        ]
        alt = altstack_fmt.parse(mnt.read(f"{base}/altstack"))
        assert alt.size > 0


def test_self_read_is_refused_not_hung(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    # After exec, cat's pid is the shell's $$: it opens its own pending file.
    proc = subprocess.Popen(
        ["sh", "-c", f"exec cat {mnt.path}/$$/sig/pending"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=10)
    assert proc.returncode != 0
    assert b"deadlock" in err.lower()
    # /proc-backed files of oneself are fine.
    proc = subprocess.run(
        ["sh", "-c", f"exec cat {mnt.path}/$$/sig/blocked"], capture_output=True, timeout=10
    )
    assert proc.returncode == 0 and len(proc.stdout) == 65


@pytest.mark.parametrize("debugger", ["strace", "gdb"])
def test_traced_by_someone_else(mnt, spawn, debugger) -> None:  # type: ignore[no-untyped-def]
    t = spawn("forker")
    os.kill(t.pid, signal.SIGUSR1)
    if debugger == "strace":
        cmd = ["strace", "-p", str(t.pid), "-o", "/dev/null"]
    else:  # stays attached (the process stopped) while it sleeps
        cmd = ["gdb", "-batch", "-nx", "-p", str(t.pid), "-ex", "shell sleep 20"]
    strace = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while int(t.status()["TracerPid"]) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(OSError) as info:
            mnt.read(f"{t.pid}/sig/action")
        assert info.value.errno == errno.EBUSY
        text = mnt.read(f"{t.pid}/sig/shared_pending")
        assert bitmap(text) == t.sigmask_fields()["ShdPnd"]
        assert "# siginfo records not shown" in text
        errors = mnt.read(f"{t.pid}/errors")
        assert "already traced by" in errors and debugger in errors
        assert bitmap(mnt.read(f"{t.pid}/sig/blocked")) == t.sigmask_fields()["SigBlk"]
    finally:
        strace.terminate()
        strace.wait()


def test_exit_mid_read_keeps_mount_working(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    f = open(os.path.join(mnt.path, str(t.pid), "sig", "blocked"))
    t.kill()
    f.read()  # rendered at open: still the snapshot
    f.close()
    with pytest.raises(FileNotFoundError):
        mnt.read(f"{t.pid}/sig/action")
    other = spawn("counter")
    assert len(mnt.read(f"{other.pid}/sig/blocked")) == 65


def test_reads_never_disturb_a_busy_target(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    for _ in range(300):
        mnt.read(f"{t.pid}/sig/pending")
        mnt.read(f"{t.pid}/sig/altstack")
    t.send("check")
    assert "ok" in t.readline()
    t.send("sigs")
    assert t.readline().split()[1] == "0"
    assert t.status()["TracerPid"] == "0"


def _tracer_free(pids: list[int]) -> None:
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            st = f.read()
        assert "TracerPid:\t0\n" in st, st
        state = [ln for ln in st.splitlines() if ln.startswith("State:")][0]
        assert "t (tracing stop)" not in state, state


@pytest.mark.parametrize("how", ["umount", "SIGTERM", "SIGKILL"])
def test_daemon_death_leaves_no_process_traced(spawn, how) -> None:  # type: ignore[no-untyped-def]
    m = start_mount()
    try:
        targets = [spawn("counter"), spawn("sleeper", "nanosleep", "3000"), spawn("handlers")]
        # Hammer the mount from a reader process while the daemon dies.
        pids = " ".join(str(t.pid) for t in targets)
        # SIGKILL lands, sooner or later, while a thread is inside one of the
        # 64 syscalls injected for `action`: the tracer process finishes it.
        files = "sig/action sig/pending sig/altstack"
        reader = subprocess.Popen(
            [
                "sh",
                "-c",
                f"while :; do for p in {pids}; do for f in {files}; do "
                f"cat {m.path}/$p/$f >/dev/null 2>&1; done; done; done",
            ]
        )
        time.sleep(0.5)
        if how == "umount":
            subprocess.run(["fusermount3", "-u", "-z", m.path], check=True)
        elif how == "SIGTERM":
            m.proc.send_signal(signal.SIGTERM)
        else:
            m.proc.kill()
        m.proc.wait(timeout=10)
        reader.kill()
        reader.wait()
        time.sleep(0.1)
        _tracer_free([t.pid for t in targets])
        targets[0].send("check")
        assert "ok" in targets[0].readline()
        line = targets[1].readline(timeout=10)
        assert "rc=0" in line, line
    finally:
        stop_mount(m)


def test_daemon_sigkill_thaws_a_frozen_process(spawn) -> None:  # type: ignore[no-untyped-def]
    m = start_mount()
    try:
        t = spawn("counter")
        with open(os.path.join(m.path, str(t.pid), "ctl"), "w") as f:
            f.write("freeze\n")
        assert t.state() == "t"
        m.proc.kill()
        m.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while t.status()["TracerPid"] != "0" and time.monotonic() < deadline:
            time.sleep(0.02)
        _tracer_free([t.pid])
        t.send("check")
        assert "ok" in t.readline()
    finally:
        stop_mount(m)


def test_unprivileged_user_sees_only_own_processes(spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    name, uid, gid = unpriv_user
    m = start_mount(options=("allow_other",))
    try:
        mine = spawn("counter", user=name)
        roots = spawn("counter")

        listing = run_as(uid, gid, f"ls {m.path}").stdout.split()
        assert str(mine.pid) in listing
        assert str(roots.pid) not in listing
        assert "1" not in listing
        ok = run_as(uid, gid, f"cat {m.path}/{mine.pid}/sig/action {m.path}/{mine.pid}/sig/pending")
        assert ok.returncode == 0, ok.stderr
        for path in (f"{roots.pid}/sig/blocked", f"{roots.pid}/sig/action", "1/sig/pending"):
            res = run_as(uid, gid, f"cat {m.path}/{path}")
            assert res.returncode != 0, path
            assert "No such file" in res.stderr, res.stderr
        # Root sees both.
        assert {str(mine.pid), str(roots.pid)} <= set(os.listdir(m.path))
    finally:
        stop_mount(m)
    assert "Traceback" not in m.log()


NONDUMPABLE = """
import ctypes, sys
assert ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) == 0  # PR_SET_DUMPABLE 0
print("ready", flush=True)
sys.stdin.readline()
"""


def test_root_without_cap_sys_ptrace_cannot_read_a_nondumpable_root_process(mnt) -> None:  # type: ignore[no-untyped-def]
    """uid 0 alone is not enough: the kernel refuses a caller without
    CAP_SYS_PTRACE a non-dumpable process, and root's /proc/PID looks the
    same dumpable or not, so sigfs asks for the capability there."""
    import sys

    proc, words = start_python(NONDUMPABLE)
    try:
        assert words == ["ready"]
        capless = ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"]

        def run(*cmd: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20)

        # The kernel's own answer for such a caller: PTRACE_SEIZE is refused.
        seize = (
            "import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
            "r = libc.ptrace(0x4206, int(sys.argv[1]), 0, 0); print(r, ctypes.get_errno())"
        )
        kernel = run(*capless, sys.executable, "-c", seize, str(proc.pid))
        assert kernel.stdout.split() == ["-1", "1"], kernel  # EPERM
        path = f"{mnt.path}/{proc.pid}/sig/blocked"
        refused = run(*capless, "cat", path)
        assert refused.returncode != 0 and "No such file" in refused.stderr, refused
        assert str(proc.pid) not in run(*capless, "ls", mnt.path).stdout.split()
        # Root with the capability reads it.
        assert run("cat", path).returncode == 0
    finally:
        stop_process(proc)


def test_open_for_write_refused_on_read_only_files(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("counter")
    with pytest.raises(PermissionError):
        with open(os.path.join(mnt.path, str(t.pid), "fds"), "w"):
            pass


def test_no_ptrace_left_after_many_reads(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    for _ in range(20):
        mnt.read(f"{t.pid}/sig/action")
    _tracer_free([t.pid])


def test_daemon_and_tracer_process_are_not_shown(mnt) -> None:  # type: ignore[no-untyped-def]
    """Tracing either from the mount would stop the process that answers."""
    tracers = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{p}/status") as f:
                ppid = int(next(x for x in f if x.startswith("PPid:")).split()[1])
        except OSError:
            continue
        if b"sigfs.tracerd" in argv and ppid == mnt.proc.pid:
            tracers.append(int(p))
    assert len(tracers) == 1
    listing = os.listdir(mnt.path)
    for pid in (mnt.proc.pid, tracers[0]):
        assert str(pid) not in listing
        with pytest.raises(FileNotFoundError):
            os.stat(os.path.join(mnt.path, str(pid), "sig", "action"))


def test_listing_gives_each_entry_its_owner(spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    """readdir answers with attributes too (READDIRPLUS), which the kernel
    caches: they must name each process's owner, as a later stat does."""
    name, uid, gid = unpriv_user
    m = start_mount(options=("allow_other",))
    try:
        t = spawn("threads", "2", user=name)
        tids = sorted(int(x) for x in t.ready_info["tids"].split(","))
        for rel in ("", f"{t.pid}", f"{t.pid}/sig", f"{t.pid}/task"):
            root = os.path.join(m.path, rel)
            with os.scandir(root) as it:
                entries = {e.name: e.stat(follow_symlinks=False) for e in it}
            if rel == "":
                st = entries[str(t.pid)]
                assert (st.st_uid, st.st_gid) == (uid, gid), rel
                assert entries["version"].st_uid == 0
            else:
                assert entries, rel
                for entry, st in entries.items():
                    assert (st.st_uid, st.st_gid) == (uid, gid), f"{rel}/{entry}"
        assert {str(x) for x in tids} <= set(os.listdir(os.path.join(m.path, f"{t.pid}/task")))
    finally:
        stop_mount(m)
