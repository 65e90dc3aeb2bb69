"""The caller's credentials as the permission check sees them, against real
processes whose credentials change and which exit (the pidfd cache must
never answer for a process that is not the caller any more)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import _runnable_by_anyone, demoted, run_as, start_python, stop_process

from sigfs import access

SWITCHER = """
import os, sys
print("ready", flush=True)
sys.stdin.readline()
os.setresgid({gid}, {gid}, {gid})
os.setresuid({uid}, {uid}, {uid})
print("switched", flush=True)
sys.stdin.readline()
"""


def _start(code: str) -> subprocess.Popen[str]:
    proc, words = start_python(code)
    assert words == ["ready"]
    return proc


def test_caller_ids_follow_a_setuid(unpriv_user) -> None:  # type: ignore[no-untyped-def]
    _, uid, gid = unpriv_user
    proc = _start(SWITCHER.format(uid=uid, gid=gid))
    try:
        first = access.caller_of(proc.pid, 4242, 4242)
        assert (first.uid, first.gid, first.tgid) == (0, 0, proc.pid)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "switched\n"
        # Asked again (the pidfd is cached now): the new ids, not the old.
        again = access.caller_of(proc.pid, 4242, 4242)
        assert (again.uid, again.gid) == (uid, gid)
        assert not again.privileged
    finally:
        stop_process(proc)


def test_caller_that_exited_is_not_answered_from_the_cache() -> None:
    proc = _start('import sys; print("ready", flush=True); sys.stdin.readline()')
    pid = proc.pid
    assert access.caller_of(pid, 4242, 4243).uid == 0
    assert pid in access._pidfds
    stop_process(proc)
    # Gone: only what FUSE said is left, and the stale pidfd is dropped.
    gone = access.caller_of(pid, 4242, 4243)
    assert (gone.uid, gone.gid) == (4242, 4243) and not gone.privileged
    assert pid not in access._pidfds


def test_pidfd_cache_is_bounded() -> None:
    procs = [
        _start('import sys; print("ready", flush=True); sys.stdin.readline()')
        for _ in range(access.PIDFD_CACHE + 3)
    ]
    try:
        for p in procs:
            assert access.caller_of(p.pid, 1, 1).uid == 0
        assert len(access._pidfds) <= access.PIDFD_CACHE
        assert procs[-1].pid in access._pidfds
    finally:
        for p in procs:
            stop_process(p)


def test_effective_caps_agree_with_proc() -> None:
    """capget(2) against the kernel's own text, for us and for a process
    started without CAP_SYS_PTRACE."""

    def capeff(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            return int(next(x for x in f if x.startswith("CapEff:")).split()[1], 16)

    assert access.effective_caps(os.getpid()) == capeff(os.getpid())
    proc = subprocess.Popen(
        [
            "setpriv",
            "--inh-caps=-sys_ptrace",
            "--bounding-set=-sys_ptrace",
            sys.executable,
            "-c",
            'import sys; print("ready", flush=True); sys.stdin.readline()',
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        caps = access.effective_caps(proc.pid)
        assert caps == capeff(proc.pid) and caps is not None
        assert not caps >> access.CAP_SYS_PTRACE & 1
        assert not access.Caller(proc.pid, 0, 0).privileged
        assert access.Caller(os.getpid(), 0, 0).privileged
    finally:
        stop_process(proc)


def test_the_decision_is_the_kernels(spawn, target_bin, unpriv_user, unpriv_user2) -> None:  # type: ignore[no-untyped-def]
    """traceable() against a real PTRACE_SEIZE by the same caller, for
    callers root and two users, and targets of each."""
    targets = [spawn("counter"), spawn("counter", user=unpriv_user.name)]
    targets.append(spawn("counter", user=unpriv_user2.name))
    # And one of the user's that made itself non-dumpable (as ssh-agent
    # does): the kernel refuses it to the user; its /proc/PID directory
    # still looks the user's.
    nodump = subprocess.Popen(
        [
            "/usr/bin/python3",
            "-c",
            "import ctypes, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); "
            "print('ready', flush=True); sys.stdin.readline()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=demoted(unpriv_user.uid, unpriv_user.gid),
    )
    assert nodump.stdout is not None and nodump.stdout.readline() == "ready\n"
    assert os.stat(f"/proc/{nodump.pid}").st_uid == unpriv_user.uid
    targets.append(nodump)  # type: ignore[arg-type]
    pids = [str(t.pid) for t in targets]
    probe = _runnable_by_anyone(target_bin("ptprobe"))
    answers: set[tuple[bool, bool]] = set()
    for who in (None, unpriv_user, unpriv_user2):

        def demote(who=who) -> None:  # type: ignore[no-untyped-def]
            if who is not None:
                os.setgroups([])
                os.setresgid(who.gid, who.gid, who.gid)
                os.setresuid(who.uid, who.uid, who.uid)

        res = subprocess.run(
            [probe, *pids],
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=demote,
        )
        assert res.returncode == 0, res.stderr
        kernel = {line.split()[0]: line.split()[1] for line in res.stdout.splitlines()}
        if who is None:
            caller = access.Caller(os.getpid(), 0, 0, None, os.getpid())
        else:
            # A caller that is no ancestor of the targets, as the probe is not.
            caller = access.Caller(1 << 22, who.uid, who.gid, False, 1 << 22)
        for t in targets:
            allowed = kernel[str(t.pid)] == "1"
            assert access.traceable(caller, t.pid) == allowed, (who, t)
            answers.add((who is None, allowed))
    stop_process(nodump)
    if access._yama_scope() == 0:
        # Root may trace all; a user its own and no one else's.
        assert answers == {(True, True), (False, True), (False, False)}


def test_capabilities_of_a_user_s_own_namespace_count_for_nothing(spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    """`unshare -Ur` makes a user root of a namespace of its own, with
    CAP_SYS_PTRACE there: over root's processes, outside it, that is
    nothing, to the kernel and to sigfs alike."""
    import pytest
    from mounting import start_mount, stop_mount

    _name, uid, gid = unpriv_user
    probe = run_as(uid, gid, "unshare -Ur true")
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged user namespaces here: {probe.stderr.strip()}")
    m = start_mount(options=("allow_other",))
    try:
        roots = spawn("handlers")
        base = f"{m.path}/{roots.pid}"
        for cmd in (f"cat {base}/regs", f"ls {m.path}", f"echo comm pwned > {base}/status"):
            res = run_as(uid, gid, f"unshare -Ur sh -c {cmd!r}")
            if cmd.startswith("ls"):
                assert str(roots.pid) not in res.stdout.split(), res.stdout
            else:
                assert res.returncode != 0, (cmd, res.stdout)
        assert roots.status()["Name"] == "handlers"
    finally:
        stop_mount(m)
