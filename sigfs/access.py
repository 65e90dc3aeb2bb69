"""Who may do what: a caller touches only processes it could ptrace itself.

The daemon runs as root and could trace anything, so every request is checked
against the *caller's* credentials, following the kernel's
__ptrace_may_access() for PTRACE_MODE_ATTACH_REALCREDS (kernel/ptrace.c):

* CAP_SYS_PTRACE in the caller's effective set allows everything; else
* the caller's real uid must equal the target's real, effective and saved
  uids, and likewise for gids, and
* the target must be dumpable (the kernel shows a non-dumpable process's
  ``/proc/PID`` as owned by root, which is how we see it).  For a target
  whose euid is root that tells nothing, so a root caller needs
  CAP_SYS_PTRACE for root's processes: stricter than the kernel for a
  dumpable one, never looser for a non-dumpable one; and
* Yama's ptrace_scope, when present, is honoured (1: descendants only,
  2: CAP_SYS_PTRACE only, 3: nobody).

Kernel threads and zombies are never traceable.  This is why ``allow_other``
is safe.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import time

from sigfs import procfs

CAP_SYS_PTRACE = 19
SYS_CAPGET = 125  # x86-64
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def effective_caps(tid: int) -> int | None:
    """A thread's effective capability set, by capget(2) (one syscall, no
    /proc text to make and parse), or None if it cannot be asked."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, tid)
    data = (_CapData * 2)()
    if _libc.syscall(SYS_CAPGET, ctypes.byref(header), data) != 0:
        return None
    return int(data[0].effective) | int(data[1].effective) << 32


class Caller:
    """Who makes a request: thread id, real uid and gid, thread group, and
    (looked up only when a decision needs it) CAP_SYS_PTRACE."""

    __slots__ = ("pid", "uid", "gid", "tgid", "_privileged")

    def __init__(
        self, pid: int, uid: int, gid: int, privileged: bool | None = None, tgid: int = 0
    ) -> None:
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.tgid = tgid
        self._privileged = privileged

    @property
    def known_privileged(self) -> bool:
        """Already found to have CAP_SYS_PTRACE (no lookup)."""
        return self._privileged is True

    @property
    def privileged(self) -> bool:
        if self._privileged is None:
            caps = effective_caps(self.pid) if self.pid > 0 else None
            if caps is None:
                try:
                    caps = int(procfs.read_status(self.pid).get("CapEff") or "0", 16)
                except (ProcessLookupError, ValueError):
                    caps = 0
            self._privileged = bool(caps >> CAP_SYS_PTRACE & 1) and _capable_here(
                self.uid, self.pid
            )
        return self._privileged


PIDFD_THREAD = 0o200  # O_EXCL: a pidfd for any thread, not only a leader
PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info v0: 64 bytes)
PIDFD_INFO_PID = 1
PIDFD_INFO_CREDS = 2
_PIDFD_INFO = struct.Struct("<QQ11I4x")
_pidfd_info_works = [True]


# Pidfds of recent callers (most readers ask again and again), oldest first.
PIDFD_CACHE = 64
_pidfds: dict[int, int] = {}


def _forget_pidfd(tid: int) -> None:
    fd = _pidfds.pop(tid, None)
    if fd is not None:
        os.close(fd)


def _pidfd_creds(tid: int) -> tuple[int, int, int] | None:
    """(tgid, real uid, real gid) of a thread from PIDFD_GET_INFO (Linux 6.13+):
    one ioctl instead of generating and parsing its /proc status."""
    if not _pidfd_info_works[0]:
        return None
    buf = bytearray(_PIDFD_INFO.size)
    struct.pack_into("<Q", buf, 0, PIDFD_INFO_PID | PIDFD_INFO_CREDS)
    fd = _pidfds.get(tid)
    if fd is not None:
        # A pidfd names one process for good: while the ioctl answers, the
        # process it names still lives, so ``tid`` cannot have been reused.
        try:
            fcntl.ioctl(fd, PIDFD_GET_INFO, buf)
        except OSError:
            _forget_pidfd(tid)
            fd = None
    if fd is None:
        try:
            fd = os.pidfd_open(tid, PIDFD_THREAD)
        except OSError:
            return None
        try:
            fcntl.ioctl(fd, PIDFD_GET_INFO, buf)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                _pidfd_info_works[0] = False  # an older kernel: use /proc
            return None
        while len(_pidfds) >= PIDFD_CACHE:
            _forget_pidfd(next(iter(_pidfds)))
        _pidfds[tid] = fd
    fields = _PIDFD_INFO.unpack(buf)
    mask, tgid, ruid, rgid = fields[0], fields[3], fields[5], fields[6]
    if mask & (PIDFD_INFO_PID | PIDFD_INFO_CREDS) != PIDFD_INFO_PID | PIDFD_INFO_CREDS:
        return None
    return tgid, ruid, rgid


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

    FUSE passes the caller's fsuid/fsgid and thread id; the real ids come
    from a pidfd (or its ``/proc`` status), the capabilities from its status
    when a decision needs them.  A request without a pid (pid 0: from another
    pid namespace or from the kernel) gets only the ids FUSE gave, and no
    capability unless that uid is 0.
    """
    if pid > 0:
        creds = _pidfd_creds(pid)
        if creds is not None:
            tgid, ruid, rgid = creds
            return Caller(pid, ruid, rgid, None, tgid)
        try:
            st = procfs.read_status(pid)
            real_uid = _ids(st["Uid"])[0]
            real_gid = _ids(st["Gid"])[0]
            caps = int(st.get("CapEff", "0") or "0", 16)
            tgid = int(st["Tgid"])
            privileged = bool(caps >> CAP_SYS_PTRACE & 1) and _capable_here(real_uid, pid)
            return Caller(pid, real_uid, real_gid, privileged, tgid)
        except (ProcessLookupError, KeyError, ValueError):
            pass
    return Caller(pid, uid, gid, uid == 0)


def _capable_here(uid: int, pid: int) -> bool:
    """Whether a caller holding CAP_SYS_PTRACE holds it over the processes
    sigfs shows: it is in the daemon's user namespace (one stat), or it is
    root there by uid, which only root can make so and which owns the
    system anyway (the usual caller, for whom the stat is spared: 20-30 us
    of each read)."""
    return uid == 0 or _in_our_user_ns(pid)


_our_user_ns: list[int] = []  # the daemon's user namespace (its inode), once


def _in_our_user_ns(pid: int) -> bool:
    """Whether ``pid`` is in the daemon's user namespace: a capability held
    in a namespace of its own (``unshare -Ur``) is no capability over the
    processes sigfs shows, which live outside it.  One stat a call (ours is
    looked up once: a process's user namespace is its own to change, and
    the daemon never does)."""
    if pid <= 0:
        return False
    if not _our_user_ns:
        _our_user_ns.append(os.stat("/proc/self/ns/user").st_ino)
    try:
        return os.stat(f"/proc/{pid}/ns/user").st_ino == _our_user_ns[0]
    except OSError:
        return False


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
    if procfs.leader_exited(st):
        # Its leader has exited but other threads live: a tracer can attach
        # to those threads, each by its own ids and its /proc stat's owner
        # (dumpability; the leader's shows root once it has no memory).  The
        # files show the whole process, so every live thread must pass.
        try:
            tids = [t for t in procfs.list_tids(target) if t != target]
        except OSError:
            return False
        live = []
        for tid in tids:
            try:
                tst = procfs.read_status(target, tid)
            except ProcessLookupError:
                continue
            if not (tst.get("State") or "").startswith(("Z", "X")):
                live.append((tid, tst))
        return bool(live) and all(_traceable(caller, target, tst, tid) for tid, tst in live)
    return _traceable(caller, target, st, None)


def _traceable(caller: Caller, target: int, st: procfs.Status, thread: int | None) -> bool:
    """:func:`traceable` for one thread's status (``thread`` None: the leader's)."""
    if "VmSize" not in st or (st.get("State") or "").startswith(("Z", "X")):
        return False  # kernel thread (no mm) or zombie
    if caller.tgid == target:
        # A process may read its own /proc files; sigfs still lists it (the
        # self-read guard refuses only ptrace-backed files).
        return True
    scope = _yama_scope()
    if scope >= 3:
        return False
    if scope == 2:
        return caller.privileged
    # The ids decide first: CAP_SYS_PTRACE (one capget) is looked
    # up only when they alone do not allow it -- the same decision either way.
    uids = _ids(st["Uid"])[:3]
    gids = _ids(st["Gid"])[:3]
    # A target whose effective uid is root can pass on the ids alone only
    # if /proc/PID/stat is owned by a non-root uid equal to it: never, so the
    # stat is skipped (the decision is the same).
    if uids[1] != 0 and all(u == caller.uid for u in uids) and all(g == caller.gid for g in gids):
        try:
            owner_uid, _ = procfs.owner_of(target, thread)
        except ProcessLookupError:
            return False
        # Not dumpable: /proc/PID/stat is shown as root's -- which a
        # root-owned target's is anyway, so for those only CAP_SYS_PTRACE
        # decides.
        if (
            owner_uid == uids[1]
            and owner_uid != 0
            and (scope == 0 or caller.tgid <= 0 or _is_descendant(target, caller.tgid))
        ):
            return True
    return caller.privileged
