"""Who may do what: a caller touches only processes it could ptrace itself.

The daemon runs as root and could trace anything, so every request is checked
against the *caller's* credentials, following the kernel's
__ptrace_may_access() for PTRACE_MODE_ATTACH_REALCREDS (kernel/ptrace.c):

* CAP_SYS_PTRACE in the caller's effective set allows everything; else
* the caller's real uid must equal the target's real, effective and saved
  uids, and likewise for gids, and
* the target must be dumpable (the kernel shows a non-dumpable process's
  ``/proc/PID`` as owned by root, which is how we see it), and
* Yama's ptrace_scope, when present, is honoured (1: descendants only,
  2: CAP_SYS_PTRACE only, 3: nobody).

Kernel threads and zombies are never traceable.  This is why ``allow_other``
is safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sigfs import procfs

CAP_SYS_PTRACE = 19


@dataclass(frozen=True)
class Caller:
    pid: int
    uid: int
    gid: int
    privileged: bool
    tgid: int = 0  # the caller's process (0: unknown)


def _ids(field: str) -> list[int]:
    return [int(x) for x in field.split()]


_yama_cache: list[float] = [0.0, 0.0]  # [checked at, scope]


def _yama_scope() -> int:
    """Yama's ptrace_scope (0 without Yama), re-read at most once a second."""
    now = time.monotonic()
    if now - _yama_cache[0] > 1.0:
        try:
            with open("/proc/sys/kernel/yama/ptrace_scope") as f:
                _yama_cache[1] = int(f.read())
        except (OSError, ValueError):
            _yama_cache[1] = 0
        _yama_cache[0] = now
    return int(_yama_cache[1])


def caller_of(pid: int, uid: int, gid: int) -> Caller:
    """The credentials of the process making a FUSE request.

    FUSE passes the caller's fsuid/fsgid and thread id; the real ids and
    capabilities come from its ``/proc`` status.  A request without a pid
    (pid 0: from another pid namespace or from the kernel) gets only the
    ids FUSE gave, and no capability unless that uid is 0.
    """
    if pid > 0:
        try:
            st = procfs.read_status(pid)
            real_uid = _ids(st["Uid"])[0]
            real_gid = _ids(st["Gid"])[0]
            caps = int(st.get("CapEff", "0") or "0", 16)
            tgid = int(st["Tgid"])
            return Caller(pid, real_uid, real_gid, bool(caps >> CAP_SYS_PTRACE & 1), tgid)
        except (ProcessLookupError, KeyError, ValueError):
            pass
    return Caller(pid, uid, gid, uid == 0)


def _is_descendant(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 4096:
        if pid == ancestor:
            return True
        try:
            pid = int(procfs.read_status(pid)["PPid"])
        except (ProcessLookupError, KeyError, ValueError):
            return False
        seen += 1
    return pid == ancestor


def traceable(caller: Caller, target: int, status: procfs.Status | None = None) -> bool:
    """Could ``caller`` PTRACE_ATTACH to process ``target`` right now?"""
    try:
        st = status if status is not None else procfs.read_status(target)
    except ProcessLookupError:
        return False
    if "VmSize" not in st or (st.get("State") or "").startswith(("Z", "X")):
        return False  # kernel thread (no mm) or zombie
    if caller.tgid == target:
        # A process may read its own /proc files; sigfs still lists it (the
        # self-read guard refuses only ptrace-backed files).
        return True
    scope = _yama_scope()
    if scope >= 3:
        return False
    if caller.privileged:
        return True
    if scope == 2:
        return False
    uids = _ids(st["Uid"])[:3]
    gids = _ids(st["Gid"])[:3]
    if any(u != caller.uid for u in uids) or any(g != caller.gid for g in gids):
        return False
    try:
        owner_uid, _ = procfs.owner_of(target)
    except ProcessLookupError:
        return False
    if owner_uid != uids[1]:
        return False  # not dumpable: /proc/PID is shown as root's
    if scope == 1 and caller.tgid > 0:
        return _is_descendant(target, caller.tgid)
    return True
