"""Read the rest of a process's state (registers, FPU, status, fds, mm).

Like :mod:`sigfs.state`, each reader takes the least intrusive route:
``/proc`` and plain syscalls on the pid (prlimit, getpriority, kcmp) where
they answer from outside, a ptrace stop for registers, and one injected
syscall for what only the process can ask (brk, a few prctl values).
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import os
import resource
import stat
import struct

from sigfs import inject, procfs
from sigfs import ptrace_raw as pt
from sigfs.formats import fds as fds_fmt
from sigfs.formats import mm as mm_fmt
from sigfs.formats import regs as regs_fmt
from sigfs.formats import status as status_fmt
from sigfs.formats.fpu import Fpu
from sigfs.record import record, replace
from sigfs.tracer import Tracer

XSTATE_MAX = 16384
O_CLOEXEC = 0o2000000
KCMP_FILE = 0
SYS_KCMP = 312
SYS_BRK = 12
SYS_PRCTL = 157
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_GET_CHILD_SUBREAPER = 37
PR_GET_THP_DISABLE = 42

_libc = ctypes.CDLL(None, use_errno=True)

RLIMITS = (
    ("cpu", resource.RLIMIT_CPU),
    ("fsize", resource.RLIMIT_FSIZE),
    ("data", resource.RLIMIT_DATA),
    ("stack", resource.RLIMIT_STACK),
    ("core", resource.RLIMIT_CORE),
    ("rss", resource.RLIMIT_RSS),
    ("nproc", resource.RLIMIT_NPROC),
    ("nofile", resource.RLIMIT_NOFILE),
    ("memlock", resource.RLIMIT_MEMLOCK),
    ("as", resource.RLIMIT_AS),
    ("locks", 10),
    ("sigpending", resource.RLIMIT_SIGPENDING),
    ("msgqueue", resource.RLIMIT_MSGQUEUE),
    ("nice", resource.RLIMIT_NICE),
    ("rtprio", resource.RLIMIT_RTPRIO),
    ("rttime", resource.RLIMIT_RTTIME),
)


def _read_text(path: str, errors: str = "replace") -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", errors)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def _stat_fields(where: str) -> list[str]:
    """``stat`` in ``where`` (a :func:`procfs.proc_dir`: a live thread's, for
    the mm fields) split after the comm, so index 0 is field 3 (state)."""
    text = _read_text(f"{where}/stat")
    return text[text.rindex(")") + 2 :].split()


def _field(fields: list[str], number: int) -> int:
    """Field ``number`` (1-based, as in proc(5)) of a split stat line."""
    return int(fields[number - 3])


async def read_regs(tracer: Tracer, tgid: int, tid: int) -> regs_fmt.Regs:
    regs = await tracer.with_stopped(tgid, tid, lambda _att: pt.getregs(tid))
    return regs_fmt.Regs(tuple(int(getattr(regs, name)) for name in regs_fmt.REGISTER_NAMES))


async def read_fpu(tracer: Tracer, tgid: int, tid: int) -> Fpu:
    blob = await tracer.with_stopped(
        tgid, tid, lambda _att: pt.getregset(tid, pt.NT_X86_XSTATE, XSTATE_MAX)
    )
    return Fpu(blob)


async def _prctl_values(tracer: Tracer, tgid: int) -> tuple[int, int, int, int]:
    """(pdeath_signal, dumpable, child_subreaper, thp_disable) via injected
    prctl, or as the `action` stub found them in this freeze."""
    from sigfs.state import live_thread

    facts = tracer.facts(tgid)
    names = ("pdeath_signal", "dumpable", "child_subreaper", "thp_disable")
    if all(name in facts for name in names):
        pdeath, dumpable, subreaper, thp = (facts[name] for name in names)
        return pdeath, dumpable, subreaper, thp

    tid = live_thread(tgid)
    async with tracer.stopped(tgid, tid) as att:
        async with inject.Injection(tracer, att) as inj:
            buf = inj.scratch
            await inj.check(SYS_PRCTL, PR_GET_PDEATHSIG, buf)
            pdeath = struct.unpack("<i", inj.read(buf, 4))[0]
            dumpable = await inj.check(SYS_PRCTL, PR_GET_DUMPABLE)
            await inj.check(SYS_PRCTL, PR_GET_CHILD_SUBREAPER, buf)
            subreaper = struct.unpack("<i", inj.read(buf, 4))[0]
            thp = await inj.check(SYS_PRCTL, PR_GET_THP_DISABLE)
    return pdeath, dumpable, subreaper, thp


async def read_status(tracer: Tracer, tgid: int) -> status_fmt.Status:
    # A live thread's status if the leader has exited: the leader's has no
    # umask then, and its ids and capabilities are the dead thread's.
    where = procfs.proc_dir(tgid)
    task = procfs.task_in(where, tgid)
    st = procfs.read_status(tgid, task if task != tgid else None)
    fields = _stat_fields(where)
    pdeath, dumpable, subreaper, thp = await _prctl_values(tracer, tgid)
    uids = tuple(int(x) for x in st["Uid"].split())
    gids = tuple(int(x) for x in st["Gid"].split())
    groups = tuple(int(x) for x in (st.get("Groups") or "").split())
    # /proc/PID/limits, not prlimit(2): reading another user's limits with
    # prlimit takes CAP_SYS_RESOURCE, which a container's root may lack.
    limits = procfs.read_limits(tgid)
    rlimits = [(name, *limits[i]) for i, (name, _res) in enumerate(RLIMITS)]
    try:
        timerslack = int(_read_text(f"/proc/{tgid}/timerslack_ns"))
    except (OSError, ValueError):
        timerslack = 0
    return status_fmt.Status(
        comm=procfs.comm(tgid),
        pid=tgid,
        tgid=int(st["Tgid"]),
        ppid=int(st["PPid"]),
        pgid=_field(fields, 5),
        sid=_field(fields, 6),
        uids=(uids[0], uids[1], uids[2], uids[3]),
        gids=(gids[0], gids[1], gids[2], gids[3]),
        groups=groups,
        umask=int(st.get("Umask") or "0022", 8),
        cwd=_readlink(f"{where}/cwd"),
        root=_readlink(f"{where}/root"),
        personality=int(_read_text(f"{where}/personality").strip(), 16),
        no_new_privs=int(st.get("NoNewPrivs") or "0"),
        pdeath_signal=pdeath,
        dumpable=dumpable,
        seccomp=int(st.get("Seccomp") or "0"),
        cap_inh=int(st["CapInh"], 16),
        cap_prm=int(st["CapPrm"], 16),
        cap_eff=int(st["CapEff"], 16),
        cap_bnd=int(st["CapBnd"], 16),
        cap_amb=int(st["CapAmb"], 16),
        timerslack_ns=timerslack,
        nice=os.getpriority(os.PRIO_PROCESS, task),
        sched_policy=os.sched_getscheduler(task),
        sched_priority=os.sched_getparam(task).sched_priority,
        rlimits=tuple(rlimits),
        thp_disable=thp,
        child_subreaper=subreaper,
    )


# -- file descriptors ---------------------------------------------------------

_ANON_KINDS = {
    "anon_inode:[eventfd]": "eventfd",
    "anon_inode:[signalfd]": "signalfd",
    "anon_inode:[timerfd]": "timerfd",
    "anon_inode:[eventpoll]": "epoll",
    "anon_inode:inotify": "inotify",
    "anon_inode:[fanotify]": "fanotify",
    "anon_inode:[pidfd]": "pidfd",
}


def _socket_kind(pinned: int) -> str | None:
    """A socket's kind from its protocol's name (the socket inode's
    ``system.sockprotoname``: TCP, UDPv6, UNIX-STREAM, NETLINK...), bound
    or not; None if it cannot be asked.  ``pinned``: an O_PATH descriptor of
    this process for the socket, so that the name is asked of the socket
    that was found to be one (the process's descriptor may be another file
    by now, on a filesystem whose server is this daemon: FUSE answers every
    xattr name)."""
    try:
        name = (
            os.getxattr(f"/proc/self/fd/{pinned}", "system.sockprotoname")
            .rstrip(b"\0")
            .decode("ascii", "replace")
        )
    except OSError:
        return None
    if name.startswith("UNIX"):
        return "socket-unix"
    if name == "NETLINK":
        return "socket-netlink"
    if name in _INET6_PROTOS:
        return "socket-inet6"
    if name in _INET_PROTOS:
        return "socket-inet"
    return "socket-other"


_INET_PROTOS = frozenset({"TCP", "UDP", "UDP-Lite", "RAW", "PING", "SCTP", "MPTCP", "DCCP"})
_INET6_PROTOS = frozenset(
    {"TCPv6", "UDPv6", "UDPLITEv6", "RAWv6", "PINGv6", "SCTPv6", "MPTCPv6", "DCCPv6"}
)


def _socket_inodes(where: str) -> dict[int, str]:
    """inode -> socket kind, from the process's network namespace tables."""
    kinds: dict[int, str] = {}
    tables = (
        ("unix", "socket-unix", 6),
        ("tcp", "socket-inet", 9),
        ("udp", "socket-inet", 9),
        ("raw", "socket-inet", 9),
        ("tcp6", "socket-inet6", 9),
        ("udp6", "socket-inet6", 9),
        ("raw6", "socket-inet6", 9),
        ("netlink", "socket-netlink", 9),  # sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
    )
    for table, kind, col in tables:
        try:
            # Only "\n" ends a line: a unix socket's path may hold \r or \v.
            lines = _read_text(f"{where}/net/{table}").split("\n")[1:]
        except (OSError, ProcessLookupError):
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > col and parts[col].isdigit():
                kinds.setdefault(int(parts[col]), kind)
    return kinds


def _kcmp_file(tgid: int, fd1: int, fd2: int) -> int:
    """kcmp(KCMP_FILE): 0 the same open file, 1 or 2 an order between the
    two (the kernel's, consistent for one boot), -1 an error."""
    return int(_libc.syscall(SYS_KCMP, tgid, tgid, KCMP_FILE, fd1, fd2))


def _same_file_as(tgid: int, fd: int, reps: list[int]) -> int | None:
    """The descriptor in ``reps`` (one per open file, kept in kcmp's order)
    that shares ``fd``'s open file, or None after putting ``fd`` in its
    place: a binary search, so a thousand opens of one file take some ten
    thousand kcmp calls, not half a million."""
    lo, hi = 0, len(reps)
    while lo < hi:
        mid = (lo + hi) // 2
        order = _kcmp_file(tgid, fd, reps[mid])
        if order == 0:
            return reps[mid]
        if order == 1:
            hi = mid
        elif order == 2:
            lo = mid + 1
        else:
            # No answer (a descriptor closed meanwhile): shown as its own,
            # and kept out of the list so that its order stays sound.
            return None
    reps.insert(lo, fd)
    return None


def _fdinfo(where: str, fd: int) -> tuple[dict[str, str], list[tuple[str, str]]]:
    main: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for line in _read_text(f"{where}/fdinfo/{fd}").splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().replace(" ", "_")
        value = value.strip()
        if key in ("pos", "flags", "mnt_id", "ino") and key not in main:
            main[key] = value
        else:
            extra.append((key, " ".join(value.split())))
    return main, extra


# One descriptor as read: fd, kind, fdinfo's main fields and the rest, the
# inode from stat, the descriptor it shares its open file with, and the path.
FdRaw = tuple[int, str, dict[str, str], list[tuple[str, str]], int, int, str]


def read_fds(tgid: int) -> fds_fmt.Fds:
    return fds_from_raw(*read_fds_raw(tgid))


def read_fds_raw(tgid: int) -> tuple[list[FdRaw], str, str]:
    """What ``fds`` is made of, read while the process holds still (every
    /proc read and kcmp); :func:`fds_from_raw` makes the model whenever."""
    where = procfs.proc_dir(tgid)
    fd_dir = f"{where}/fd"
    try:
        names = sorted(int(n) for n in os.listdir(fd_dir))
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {tgid}") from None
    # kcmp takes a task: the leader's, or a live thread's if it has exited.
    task = procfs.task_in(where, tgid)
    sockets: dict[int, str] | None = None
    out: list[FdRaw] = []
    groups: dict[tuple[int, int], list[int]] = {}
    what: dict[int, tuple[str, str]] = {}  # fd -> (kind, ino) as read
    for fd in names:
        found: str | None = None
        try:
            path = os.readlink(f"{fd_dir}/{fd}")
            # The file pinned (O_PATH: no open, no flush in its filesystem),
            # so that what is asked next is asked of this file, not of one
            # the process put at that number meanwhile.  What the kernel has
            # cached: a stat or getxattr that reached the file's filesystem
            # would deadlock on a file of this mount (this daemon would be
            # the server) and hang on a hung network mount.
            pinned = os.open(f"{fd_dir}/{fd}", os.O_PATH | os.O_CLOEXEC)
            try:
                try:
                    mode, dev, ino, rdev = procfs.stat_cached(pinned)
                except OSError as exc:
                    if isinstance(exc, FileNotFoundError):
                        raise
                    mode, dev, ino, rdev = 0, 0, 0, 0  # a stale NFS file, say: "other"
                if stat.S_ISSOCK(mode) and path.startswith("socket:"):
                    found = _socket_kind(pinned)
            finally:
                os.close(pinned)
            main, extra = _fdinfo(where, fd)
        except FileNotFoundError:
            continue  # closed meanwhile
        if path in _ANON_KINDS:
            kind = _ANON_KINDS[path]
        elif path.startswith("anon_inode:"):
            kind = "anon"
        elif stat.S_ISSOCK(mode):
            if found is None:  # the tables list bound sockets only
                if sockets is None:
                    sockets = _socket_inodes(where)
                found = sockets.get(ino, "socket-other")
            kind = found
        elif stat.S_ISFIFO(mode):
            kind = "pipe" if path.startswith("pipe:") else "fifo"
        elif stat.S_ISDIR(mode):
            kind = "dir"
        elif stat.S_ISCHR(mode):
            kind = "chr"
            extra.insert(0, ("rdev", f"{rdev:#x}"))
        elif stat.S_ISBLK(mode):
            kind = "blk"
            extra.insert(0, ("rdev", f"{rdev:#x}"))
        elif stat.S_ISREG(mode):
            kind = "memfd" if path.startswith("/memfd:") else "file"
        else:
            kind = "other"
        # The RFC's objref: descriptors sharing one open file description.
        same = _same_file_as(task, fd, groups.setdefault((dev, ino), []))
        seen = (kind, main.get("ino", str(ino)))
        if same is not None and what[same] != seen:
            # A process that changes its descriptors while they are read
            # (the file is not frozen): what kcmp says now may not be what
            # was read of either descriptor.  Shown as its own.
            same = None
        what[fd] = seen
        out.append((fd, kind, main, extra, ino, fd if same is None else same, path))
    return out, _readlink(f"{where}/cwd"), _readlink(f"{where}/root")


def fds_from_raw(items: list[FdRaw], cwd: str, root: str) -> fds_fmt.Fds:
    out = []
    for fd, kind, main, extra, st_ino, shared, path in items:
        flags = int(main.get("flags", "0"), 8)
        out.append(
            fds_fmt.Fd(
                fd=fd,
                kind=kind,
                flags=flags & ~O_CLOEXEC,
                pos=int(main.get("pos", "0")),
                cloexec=bool(flags & O_CLOEXEC),
                mnt_id=int(main.get("mnt_id", "0")),
                ino=int(main.get("ino", str(st_ino))),
                shared=shared,
                path=path,
                deleted=path.endswith(" (deleted)"),
                extra=tuple(extra),
            )
        )
    return fds_fmt.Fds(fds=tuple(out), cwd=cwd, root=root)


# -- address space ------------------------------------------------------------


async def read_brk(tracer: Tracer, tgid: int) -> int:
    """The current program break: brk(0) asked inside the process (the end of
    ``[heap]`` is page-rounded and absent before the first allocation)."""
    from sigfs.state import live_thread

    brk = tracer.facts(tgid).get("brk")
    if brk is not None:
        return brk  # the `action` stub's, in this freeze
    tid = live_thread(tgid)
    async with tracer.stopped(tgid, tid) as att:
        async with inject.Injection(tracer, att) as inj:
            return await inj.check(SYS_BRK, 0)


@record
class MmRaw:
    """What ``mm`` is made of, as the kernel gave it: read while the process
    holds still, parsed (:func:`mm_from_raw`) whenever."""

    brk: int
    stat: list[str]
    maps: str
    smaps: str
    exe: str
    auxv: tuple[tuple[int, int], ...]
    #: Ranges (in address order) whose mappings' `uw` VmFlag sigfs set
    #: itself (write tracking).
    tracked: tuple[tuple[int, int], ...] = ()


async def read_mm_raw(
    tracer: Tracer, tgid: int, tracked: tuple[tuple[int, int], ...] = ()
) -> MmRaw:
    brk = await read_brk(tracer, tgid)
    where = procfs.proc_dir(tgid)
    fields = _stat_fields(where)
    # Names need not be UTF-8: kept as surrogates, shown as \xHH (not U+FFFD).
    maps = _read_text(f"{where}/maps", "surrogateescape")
    smaps = _read_text(f"{where}/smaps", "surrogateescape")
    try:
        exe = _readlink(f"{where}/exe")
    except OSError:
        exe = ""
    return MmRaw(brk, fields, maps, smaps, exe, procfs.read_auxv(tgid), tracked)


async def read_mm(tracer: Tracer, tgid: int) -> mm_fmt.Mm:
    return mm_from_raw(await read_mm_raw(tracer, tgid))


def mm_from_raw(raw: MmRaw) -> mm_fmt.Mm:
    fields, brk = raw.stat, raw.brk
    vmas = mm_fmt.parse_proc_maps(raw.maps, mm_fmt.parse_smaps_vmflags(raw.smaps))
    if raw.tracked:
        # A mapping that overlaps a tracked range (split, shrunk or grown
        # since, maybe: a range is registered whole) has sigfs's uw.
        ends = [hi for _, hi in raw.tracked]
        for k, vma in enumerate(vmas):
            i = bisect.bisect_right(ends, vma.start)
            if i < len(raw.tracked) and raw.tracked[i][0] < vma.end and "uw" in vma.vmflags:
                vmas[k] = replace(vma, vmflags=tuple(f for f in vma.vmflags if f != "uw"))
    return mm_fmt.Mm(
        start_code=_field(fields, 26),
        end_code=_field(fields, 27),
        start_data=_field(fields, 45),
        end_data=_field(fields, 46),
        start_brk=_field(fields, 47),
        brk=brk,
        start_stack=_field(fields, 28),
        arg_start=_field(fields, 48),
        arg_end=_field(fields, 49),
        env_start=_field(fields, 50),
        env_end=_field(fields, 51),
        exe=raw.exe,
        auxv=raw.auxv,
        vmas=tuple(vmas),
    )
