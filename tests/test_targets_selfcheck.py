"""The C targets (tests/targets/*.c) and the fixtures running them behave as
documented, checked against the kernel's own /proc view; no sigfs involved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TARGETS = Path(__file__).resolve().parent / "targets"
NAMES = ["counter", "forker", "handlers", "selfread", "siginfo_zoo", "sleeper", "threads"]
RTMIN = 34  # glibc's SIGRTMIN (32 and 33 are reserved); handlers reports it
SYS_READ, SYS_CLOCK_NANOSLEEP = 0, 230

Spawn = Callable[..., Any]


def mask(*sigs: int) -> int:
    return sum(1 << (s - 1) for s in set(sigs))


def kv(line: str) -> dict[str, str]:
    return dict(tok.split("=", 1) for tok in line.split() if "=" in tok)


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def in_syscall(pid: int, nr: int, tid: int | None = None) -> bool:
    path = f"/proc/{pid}/syscall" if tid is None else f"/proc/{pid}/task/{tid}/syscall"
    with open(path) as f:
        return f.read().split()[0] == str(nr)


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state, ppid, ...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return text[text.rfind(")") + 2 :].split()


# --------------------------------------------------------------------------- build


def test_every_target_builds(target_bin: Callable[[str], str]) -> None:
    assert set(NAMES) <= {p.stem for p in TARGETS.glob("*.c")}
    for name in NAMES:
        path = target_bin(name)
        assert path == str(TARGETS / "bin" / name)
        assert os.access(path, os.X_OK)
        mtime = os.stat(path).st_mtime_ns
        assert target_bin(name) == path
        assert os.stat(path).st_mtime_ns == mtime  # up to date: not rebuilt


def test_build_script_prints_the_binary_path(target_bin: Callable[[str], str]) -> None:
    target_bin("counter")
    res = subprocess.run(
        [sys.executable, str(TARGETS / "build.py"), "counter"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{TARGETS / 'bin' / 'counter'}\n"
    res = subprocess.run(
        [sys.executable, str(TARGETS / "build.py"), "no-such-target"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1 and "no such target" in res.stderr


# --------------------------------------------------------------------------- fixtures


def test_spawn_fails_with_stderr_when_target_dies_before_ready(spawn: Spawn) -> None:
    with pytest.raises(pytest.fail.Exception, match="exited before 'ready'.*usage: sleeper"):
        spawn("sleeper")  # no mode: prints usage and exits 2


@pytest.mark.parametrize(
    "args",
    [
        ("counter",),
        ("forker",),
        ("handlers",),
        ("selfread", "/dev/null"),
        ("siginfo_zoo",),
        ("sleeper", "nanosleep", "20"),
        ("sleeper", "read"),
        ("sleeper", "wait4"),
        ("threads", "2"),
    ],
    ids=lambda a: "-".join(a),
)
def test_targets_exit_on_stdin_eof(spawn: Spawn, args: tuple[str, ...]) -> None:
    t = spawn(*args)
    t.close_stdin()
    assert t.wait(timeout=5) == 0


def test_kill_also_kills_the_recorded_child(spawn: Spawn) -> None:
    t = spawn("sleeper", "wait4")
    child = t.info_int("child")
    st = proc_stat(child)
    assert st is not None and st[0] == "S" and st[1] == str(t.pid)
    t.kill()
    assert t.proc.returncode == -signal.SIGKILL
    t.kill()  # idempotent
    # Gone, or a zombie waiting for whoever inherited it.
    wait_for(lambda: (s := proc_stat(child)) is None or s[0] == "Z", what="child death")


def test_spawn_as_unprivileged_user(spawn: Spawn, unpriv_user: Any, unpriv_user2: Any) -> None:
    name, uid, gid = unpriv_user
    assert name == "sigfs-test" and uid != 0
    assert unpriv_user2.name == "sigfs-test2" and unpriv_user2.uid not in (0, uid)
    for user in (name, uid):
        t = spawn("counter", user=user)
        st = t.status()
        assert st["Uid"].split() == [str(uid)] * 4
        assert st["Gid"].split() == [str(gid)] * 4
        assert st["Groups"] == ""
        assert t.command("check").endswith(" ok")


# --------------------------------------------------------------------------- counter


def test_counter(spawn: Spawn) -> None:
    t = spawn("counter")
    reader = t.info_int("reader")
    assert t.tids() == [t.pid, reader]
    assert t.state() == "R"
    wait_for(lambda: t.state(reader) == "S", what="reader asleep")
    fields = t.sigmask_fields()
    assert fields["SigCgt"] & mask(signal.SIGUSR1)
    assert fields["SigBlk"] == 0 and t.sigmask_fields(reader)["SigBlk"] == mask(signal.SIGUSR1)

    # On a loaded machine the spinning thread may not have run yet.
    wait_for(lambda: int(t.command("check").split()[1]) > 0, what="counter running")
    counts = []
    for _ in range(2):
        word, n, verdict = t.command("check").split()
        assert (word, verdict) == ("count", "ok")
        counts.append(int(n))
        time.sleep(0.02)
    assert counts[1] > counts[0] > 0

    assert t.command("sigs") == "sigs 0"
    for i in range(1, 4):
        os.kill(t.pid, signal.SIGUSR1)
        wait_for(lambda i=i: t.command("sigs") == f"sigs {i}", what=f"{i} deliveries")
    assert t.command("check").endswith(" ok")
    assert t.command("bogus").startswith("error")


# --------------------------------------------------------------------------- sleeper


def test_sleeper_nanosleep(spawn: Spawn) -> None:
    t = spawn("sleeper", "nanosleep", "200")
    assert t.info_int("request_ms") == 200
    assert t.state() in ("S", "R")
    slept = kv(t.expect("slept ", timeout=5))
    assert (slept["rc"], slept["errno"], slept["rem_ms"]) == ("0", "0", "0")
    assert 200 <= int(slept["ms"]) < 400
    assert t.command("sigs") == "sigs usr1=0 usr2=0"


def test_sleeper_nanosleep_reports_eintr(spawn: Spawn) -> None:
    t = spawn("sleeper", "nanosleep", "5000")
    wait_for(lambda: in_syscall(t.pid, SYS_CLOCK_NANOSLEEP), what="clock_nanosleep")
    os.kill(t.pid, signal.SIGUSR1)
    slept = kv(t.expect("slept "))
    assert (slept["rc"], slept["errno"]) == ("-1", "4")
    assert int(slept["ms"]) < 4000 and int(slept["rem_ms"]) > 1000
    assert t.command("sigs") == "sigs usr1=1 usr2=0"


def test_sleeper_read(spawn: Spawn) -> None:
    t = spawn("sleeper", "read")
    info = t.ready_info
    assert info["blocked"] == "1" and "fd" in info
    helper = t.info_int("helper")
    assert t.tids() == [t.pid, helper]
    assert t.state() == "S" and in_syscall(t.pid, SYS_READ)
    with open(f"/proc/{t.pid}/syscall") as f:
        assert int(f.read().split()[1], 0) == t.info_int("fd")
    assert t.command("write") == "read rc=1 errno=0"
    wait_for(lambda: in_syscall(t.pid, SYS_READ) and t.state() == "S", what="read again")
    os.kill(t.pid, signal.SIGUSR1)  # no SA_RESTART
    assert t.readline() == "read rc=-1 errno=4"
    wait_for(lambda: in_syscall(t.pid, SYS_READ) and t.state() == "S", what="read again")
    os.kill(t.pid, signal.SIGUSR2)  # SA_RESTART: read() restarts silently
    wait_for(lambda: t.command("sigs") == "sigs usr1=1 usr2=1", what="SIGUSR2 handled")
    with pytest.raises(TimeoutError):
        t.readline(timeout=0.2)
    assert t.command("write") == "read rc=1 errno=0"


@pytest.mark.parametrize("mode", ["wait4", "waitid", "waitid_pidfd"])
def test_sleeper_waiters(spawn: Spawn, mode: str) -> None:
    t = spawn("sleeper", mode)
    assert t.ready_info["blocked"] == "1"
    child = t.info_int("child")
    st = proc_stat(child)
    assert st is not None and st[0] == "S" and st[1] == str(t.pid)
    assert in_syscall(t.pid, 61 if mode == "wait4" else 247)
    if mode == "waitid_pidfd":
        pidfd = t.info_int("pidfd")
        with open(f"/proc/{t.pid}/fdinfo/{pidfd}") as f:
            assert f"Pid:\t{child}\n" in f.read()
    shown = "waitid" if mode == "waitid_pidfd" else mode
    os.kill(t.pid, signal.SIGUSR1)  # no SA_RESTART: EINTR, then it waits again
    res = kv(t.expect(shown + " "))
    assert (res["rc"], res["errno"]) == ("-1", "4")
    t.send("release")
    res = kv(t.expect(shown + " "))
    if mode == "wait4":
        assert res == {"rc": str(child), "errno": "0", "status": str(signal.SIGTERM)}
    else:
        assert res == {"rc": "0", "errno": "0", "pid": str(child), "code": "2", "status": "15"}
    wait_for(lambda: proc_stat(child) is None or proc_stat(child) != st, what="child reaped")


# --------------------------------------------------------------------------- forker


def test_forker(spawn: Spawn) -> None:
    t = spawn("forker")
    child = t.info_int("child")
    fields = t.sigmask_fields()
    assert fields["SigBlk"] == mask(10, 12, 17, 11, 29)
    assert fields["ShdPnd"] == mask(signal.SIGCHLD)  # SIGCHLD is process-wide
    assert fields["SigPnd"] == 0
    assert fields["SigCgt"] == 0 and fields["SigIgn"] == 0
    st = proc_stat(child)
    assert st is not None and st[0] == "Z" and st[1] == str(t.pid)
    assert t.tids() == [t.pid]
    reply = t.command("pending")
    assert reply == "pending mask=" + "".join("1" if s == 17 else "0" for s in range(1, 65))


# --------------------------------------------------------------------------- handlers


def _acts(lines: list[str]) -> dict[int, dict[str, str]]:
    out = {}
    for line in lines:
        word, num, *rest = line.split()
        assert word == "act"
        out[int(num)] = kv(" ".join(rest))
    return out


def test_handlers(spawn: Spawn) -> None:
    t = spawn("handlers")
    info = t.ready_info
    assert info["rtmin"] == str(RTMIN)
    acts = _acts(t.act_lines)
    assert sorted(acts) == list(range(1, 65))
    assert len(t.preamble) == 65  # 64 act lines + altstack

    h1, h2, h3 = (info[k] for k in ("h1", "h2", "h3"))
    SA_SIGINFO, SA_ONSTACK, SA_RESTART = 0x4, 0x08000000, 0x10000000
    SA_NODEFER, SA_RESETHAND, SA_RESTORER = 0x40000000, 0x80000000, 0x04000000
    zero = "0" * 64
    want = {
        10: (h1, SA_SIGINFO | SA_RESTART, {12, 15}),
        12: (h2, SA_ONSTACK | SA_NODEFER, set()),
        2: ("0x1", 0, set()),
        15: (h3, SA_RESETHAND, set()),
        RTMIN + 2: (h1, SA_SIGINFO, set()),
    }
    for sig, a in acts.items():
        if sig in want:
            handler, flags, sa_mask = want[sig]
            assert a["handler"] == handler, (sig, a)
            assert int(a["flags"], 16) == flags | SA_RESTORER, (sig, a)
            assert int(a["restorer"], 16) != 0
            assert {i + 1 for i, c in enumerate(a["mask"]) if c == "1"} == sa_mask
        else:
            assert a == {"handler": "0x0", "flags": "0x0", "restorer": "0x0", "mask": zero}

    fields = t.sigmask_fields()
    caught = sum(1 << (s - 1) for s, a in acts.items() if int(a["handler"], 16) > 1)
    ignored = sum(1 << (s - 1) for s, a in acts.items() if int(a["handler"], 16) == 1)
    assert fields["SigCgt"] == caught == mask(10, 12, 15, RTMIN + 2)
    assert fields["SigIgn"] == ignored == mask(2)
    assert fields["SigBlk"] == mask(12, RTMIN + 5)
    assert fields["SigPnd"] == mask(12)  # the tgkill()ed one
    assert fields["ShdPnd"] == mask(12, RTMIN + 5)  # kill() and the two sigqueue()s

    alt = kv(t.altstack_line)
    assert alt == {"sp": info["altstack"], "size": "65536", "flags": "0"}

    t.send("dump")
    again = [t.readline() for _ in range(68)]
    assert again[:65] == t.preamble
    assert again[65] == "blocked mask=" + "".join(
        "1" if s in (12, RTMIN + 5) else "0" for s in range(1, 65)
    )
    assert again[66] == "pending mask=" + "".join(
        "1" if s in (12, RTMIN + 5) else "0" for s in range(1, 65)
    )
    assert again[67] == "end"
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


# --------------------------------------------------------------------------- siginfo_zoo


def test_siginfo_zoo(spawn: Spawn) -> None:
    t = spawn("siginfo_zoo")
    info = t.ready_info
    ints = {k: int(v, 0) for k, v in info.items() if "," not in v and v}
    private = [int(s) for s in info["private"].split(",")]
    shared = [int(s) for s in info["shared"].split(",")]
    blocked = [int(s) for s in info["blocked"].split(",")]
    fields = t.sigmask_fields()
    assert fields["SigPnd"] == mask(*private) == mask(7, 12, 29, 31, RTMIN + 4)
    assert fields["ShdPnd"] == mask(*shared) == mask(10, 12, 17, RTMIN + 1, RTMIN + 3)
    assert fields["SigBlk"] == mask(*blocked)
    zombie = proc_stat(ints["child"])
    assert zombie is not None and zombie[0] == "Z" and zombie[1] == str(t.pid)
    assert proc_stat(ints["sender"]) is None or proc_stat(ints["sender"])[1] != str(t.pid)

    t.send("drain")
    records = []
    while not (line := t.readline()).startswith("drained"):
        word, *rest = line.split()
        assert word == "info"
        records.append(kv(" ".join(rest)))
    assert line == f"drained n={len(records)}" and len(records) == 10
    assert t.sigmask_fields()["SigPnd"] == t.sigmask_fields()["ShdPnd"] == 0

    def one(signo: int, **match: str) -> dict[str, str]:
        found = [r for r in records if r["signo"] == str(signo)]
        found = [r for r in found if all(r[k] == v for k, v in match.items())]
        assert len(found) == 1, (signo, match, records)
        return found[0]

    pid, uid = str(t.pid), str(ints["uid"])
    assert one(17)["layout"] == "chld"
    assert one(17)["code"] == "1"  # CLD_EXITED
    assert (one(17)["pid"], one(17)["status"]) == (info["child"], "3")
    timer = one(ints["timer_sig"])
    assert (timer["layout"], timer["code"]) == ("timer", "-2")  # SI_TIMER
    assert (timer["timerid"], timer["value"], timer["overrun"]) == (info["timerid"], "77", "0")
    rt = one(ints["queue_sig"])
    assert (rt["layout"], rt["code"], rt["pid"], rt["uid"], rt["value"]) == (
        "rt",
        "-1",  # SI_QUEUE
        pid,
        uid,
        "99",
    )
    for signo, fd in ((ints["poll_sig"], info["poll_fd"]), (signal.SIGIO, info["sigio_fd"])):
        p = one(signo)
        assert (p["layout"], p["code"], p["band"], p["fd"]) == ("poll", "1", info["poll_band"], fd)
    usr1 = one(10)
    assert (usr1["layout"], usr1["code"], usr1["pid"]) == ("kill", "0", info["sender"])
    usr2 = [r for r in records if r["signo"] == "12"]
    assert len(usr2) == 2 and all(r["pid"] == pid and r["layout"] == "kill" for r in usr2)
    # private (tgkill) first: SI_TKILL, or SI_USER on kernels that report that
    assert usr2[0]["code"] in ("-6", "0") and usr2[1]["code"] == "0"
    bus = one(7)
    assert (bus["layout"], bus["code"], bus["addr"]) == ("fault", "2", info["fault_addr"])
    sys_ = one(31)
    assert (sys_["layout"], sys_["code"]) == ("sys", "1")
    assert (sys_["call_addr"], sys_["syscall"], sys_["arch"]) == (
        info["call_addr"],
        "39",
        "0xc000003e",
    )
    # Synchronous signals of the private queue come out first.
    assert [r["signo"] for r in records[:2]] == ["7", "31"]


# --------------------------------------------------------------------------- threads


def test_threads(spawn: Spawn) -> None:
    t = spawn("threads", "3")
    info = t.ready_info
    tids = [int(x) for x in info["tids"].split(",")]
    sigs = [int(x) for x in info["sigs"].split(",")]
    stacks = [s.split(":") for s in info["stacks"].split(",")]
    assert sigs == [RTMIN + 1, RTMIN + 2, RTMIN + 3]
    assert info["waits"] == "pause,read,pause"
    assert t.tids() == sorted([t.pid, *tids])
    assert [int(size) for _, size in stacks] == [65536 + 4096 * i for i in (1, 2, 3)]
    assert len({sp for sp, _ in stacks}) == 3
    main = t.sigmask_fields()
    assert main["SigBlk"] == main["SigPnd"] == main["ShdPnd"] == 0
    for tid, sig in zip(tids, sigs, strict=True):
        f = t.sigmask_fields(tid)
        assert f["SigBlk"] == mask(sig) and f["SigPnd"] == mask(sig)
        assert t.state(tid) == "S"
    assert in_syscall(t.pid, SYS_READ, tids[1])


def test_threads_none(spawn: Spawn) -> None:
    t = spawn("threads", "0")
    assert t.ready_info["tids"] == "" and t.tids() == [t.pid]


# --------------------------------------------------------------------------- selfread


def test_selfread(spawn: Spawn, tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("hello")
    t = spawn("selfread", path)
    assert t.command("go") == "read rc=5 errno=0 stage=read"
    assert t.command(f"go {tmp_path}/missing") == "read rc=-1 errno=2 stage=open"
    assert t.command(f"go {tmp_path}") == "read rc=-1 errno=21 stage=read"  # EISDIR
    assert t.command("go") == "read rc=5 errno=0 stage=read"
