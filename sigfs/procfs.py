"""What ``/proc`` tells without stopping anyone: status fields, threads, maps.

These are the cheap reads (about 14 us each) that let sigfs skip a ptrace stop
when the kernel already shows the answer, and the facts the permission check
needs.  Every function raises ``ProcessLookupError`` when the process is gone.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import time


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None


def _read_fd(fd: int, path: str) -> bytes:
    """A file of one record (status, stat, comm, syscall) from offset 0,
    made afresh.  The kernel renders such a file whole into one buffer and
    hands over all that fits in one read, so a short first read is all of
    it (no second read for EOF, which would render it again)."""
    try:
        first = os.pread(fd, 16384, 0)
        if len(first) < 16384:
            return first
        chunks = [first]
        off = len(first)
        while chunk := os.pread(fd, 65536, off):
            chunks.append(chunk)
            off += len(chunk)
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None
    return b"".join(chunks)


def _read_bytes(path: str) -> bytes:
    """A one-record /proc file (see :func:`_read_fd`)."""
    fd = _open(path)
    try:
        return _read_fd(fd, path)
    finally:
        os.close(fd)


def _read_records(path: str) -> bytes:
    """A /proc file of many records (maps): the kernel hands over at most
    one buffer (a page) of them per read, so a short read is not the end;
    read on until EOF."""
    fd = _open(path)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except ProcessLookupError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {path}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_auxv(pid: int) -> tuple[tuple[int, int], ...]:
    """The (type, value) pairs of ``/proc/PID/auxv``, up to AT_NULL."""
    with open(f"{proc_dir(pid)}/auxv", "rb") as f:
        raw = f.read()
    out = []
    for i in range(0, len(raw) - 15, 16):
        key, value = struct.unpack_from("<QQ", raw, i)
        if key == 0:
            break
        out.append((key, value))
    return tuple(out)


def _read(path: str) -> str:
    return _read_bytes(path).decode("utf-8", "replace")


_TAGS: dict[str, bytes] = {}


class Status:
    """``/proc/PID[/task/TID]/status``, read once and searched lazily.

    Parsing all ~60 lines costs more than the read itself; callers want two or
    three fields, so each lookup is a search in the raw bytes.  Supports the
    dict operations sigfs uses: ``st[key]``, ``st.get(key, default)``, ``in``.
    """

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = b"\n" + raw

    def get(self, key: str, default: str | None = None) -> str | None:
        tag = _TAGS.get(key)
        if tag is None:
            tag = _TAGS[key] = b"\n" + key.encode() + b":"
        at = self.raw.find(tag)
        if at < 0:
            return default
        start = at + len(tag)
        end = self.raw.find(b"\n", start)
        return self.raw[start : end if end >= 0 else None].decode("utf-8", "replace").strip()

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


def status_path(pid: int, tid: int | None = None) -> str:
    if tid is None or tid == pid:
        return f"/proc/{pid}/status"
    return f"/proc/{pid}/task/{tid}/status"


def read_status(pid: int, tid: int | None = None) -> Status:
    """``/proc/PID[/task/TID]/status``; fields are looked up on demand."""
    return Status(_read_bytes(status_path(pid, tid)))


class StatusFiles:
    """``/proc/PID/status`` read through descriptors kept open: a ``pread``
    at offset 0 makes the kernel generate the file afresh, and skips the
    path walk, open and close (about 8.5 against 13 us here), for the mount's
    per-request permission check.

    A kept descriptor stays bound to the process it was opened for: once that
    process is gone it reads ESRCH (even if its pid is used again), and the
    path is opened anew.  Only the last ``size`` processes keep one.  Not
    thread-safe: one per thread that uses it.
    """

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._fds: dict[int, int] = {}  # pid -> fd, oldest first

    def read(self, pid: int) -> Status:
        path = status_path(pid)
        fd = self._fds.pop(pid, -1)
        if fd >= 0:
            try:
                data = _read_fd(fd, path)
            except OSError:
                data = b""
            if data:
                self._fds[pid] = fd  # most recent last
                return Status(data)
            os.close(fd)
        fd = _open(path)
        try:
            data = _read_fd(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if len(self._fds) >= self.size:
            oldest = next(iter(self._fds))
            os.close(self._fds.pop(oldest))
        self._fds[pid] = fd
        return Status(data)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def hex_field(status: Status, key: str) -> int:
    return int(status[key], 16)


def tgid_of(tid: int) -> int:
    """The thread group of any thread id (``Tgid:`` of its status)."""
    return int(read_status(tid)["Tgid"])


def list_tids(pid: int) -> list[int]:
    try:
        names = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    return sorted(int(n) for n in names if n.isdigit())


def list_pids() -> list[int]:
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def tracer_pid(pid: int, tid: int | None = None) -> int:
    return int(read_status(pid, tid).get("TracerPid") or "0")


_STATX_BUF = 256
_AT_STATX_DONT_SYNC = 0x4000
_AT_EMPTY_PATH = 0x1000
_STATX_TYPE_MODE_INO = 0x1 | 0x2 | 0x100
_statx_fn: list[ctypes._NamedFuncPointer] = []


def stat_cached(path: str | int) -> tuple[int, int, int, int]:
    """(mode, dev, ino, rdev) of the file ``path`` leads to (or of the open
    file ``path`` when it is a descriptor, an O_PATH one say), from what the
    kernel has cached (statx with AT_STATX_DONT_SYNC): a plain stat of
    /proc/PID/fd/N lets FUSE (or NFS) ask its server, which for a file of
    this very mount is this daemon, blocked in the stat: a deadlock.  A FUSE
    mount that refuses us (another user's, without allow_other) is asked
    for nothing at all (mask 0: what the kernel has)."""
    if not _statx_fn:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fn = libc.statx
        fn.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
        fn.restype = ctypes.c_int
        _statx_fn.append(fn)
    buf = ctypes.create_string_buffer(_STATX_BUF)
    fn = _statx_fn[0]
    if isinstance(path, int):
        dirfd, name, flags = path, b"", _AT_STATX_DONT_SYNC | _AT_EMPTY_PATH
    else:
        dirfd, name, flags = -100, os.fsencode(path), _AT_STATX_DONT_SYNC
    for mask in (_STATX_TYPE_MODE_INO, 0):
        if fn(dirfd, name, flags, mask, buf) == 0:
            break
        err = ctypes.get_errno()
        if err != errno.EACCES or not mask:
            raise OSError(err, os.strerror(err), str(path))
    raw = buf.raw
    mode = struct.unpack_from("<H", raw, 28)[0]
    ino = struct.unpack_from("<Q", raw, 32)[0]
    rdev_major, rdev_minor, dev_major, dev_minor = struct.unpack_from("<IIII", raw, 128)
    return mode, os.makedev(dev_major, dev_minor), ino, os.makedev(rdev_major, rdev_minor)


def comm(pid: int, errors: str = "surrogateescape") -> str:
    """The name, bytes that are not UTF-8 kept as surrogates (``errors``)."""
    name = _read_bytes(f"/proc/{pid}/comm")
    return name.removesuffix(b"\n").decode("utf-8", errors)  # a name may end in "\n" too


def mappings(pid: int) -> list[tuple[int, int, str, str]]:
    """(start, end, permissions, path column) of every mapping, from
    /proc/PID/maps ("" for an anonymous one)."""
    out = []
    # Split at "\n" only: the kernel escapes nothing else in a file's name
    # (str.splitlines would also cut at \r, \v, \x1c-\x1e, U+0085...).
    text = _read_records(f"{proc_dir(pid)}/maps").decode("utf-8", "surrogateescape")
    for line in text.split("\n"):
        if not line:
            continue
        parts = line.split(None, 5)
        start, _, end = parts[0].partition("-")
        out.append((int(start, 16), int(end, 16), parts[1], parts[5] if len(parts) == 6 else ""))
    return out


def find_mapping(pid: int, name: str) -> tuple[int, int] | None:
    """(start, end) of the first mapping whose path column equals ``name``."""
    for start, end, _perms, path in mappings(pid):
        if path == name:
            return start, end
    return None


def current_syscall(pid: int, tid: int) -> list[str]:
    """``/proc/PID/task/TID/syscall``: ["running"], ["-1", sp, pc] or
    [nr, a0..a5, sp, pc] (hex args) for a thread blocked in a syscall."""
    return _read(f"/proc/{pid}/task/{tid}/syscall").split()


def proc_dir(tgid: int) -> str:
    """Where process ``tgid``'s memory, descriptors and fs links are read:
    ``/proc/TGID``, or, when its leader has exited while other threads live
    (a zombie leader: ``/proc/TGID``'s maps, fd, cwd, auxv, mem are empty or
    gone), ``/proc/TGID/task/TID`` of a live thread, which shows the same
    process.  One readlink when the leader lives."""
    base = f"/proc/{tgid}"
    try:
        os.readlink(f"{base}/cwd")
        return base
    except (FileNotFoundError, ProcessLookupError):
        pass
    except OSError:
        return base  # EACCES and the like: as before, the caller's reads say
    try:
        tids = list_tids(tgid)
    except OSError:
        return base
    for tid in tids:
        if tid == tgid:
            continue
        try:
            os.readlink(f"{base}/task/{tid}/cwd")
        except OSError:
            continue
        return f"{base}/task/{tid}"
    return base


def task_in(where: str, tgid: int) -> int:
    """The task a :func:`proc_dir` answer stands for: ``tgid``, or the live
    thread it picked (for process_vm_readv, kcmp, a status that has the
    process's umask and ids)."""
    return int(where.rsplit("/", 1)[1]) if "/task/" in where else tgid


def leader_exited(st: Status) -> bool:
    """Whether ``st`` (a leader's status) is a zombie leader of a process
    whose other threads live on."""
    state = st.get("State") or ""
    return state.startswith("Z") and int(st.get("Threads") or "0") > 1


def owner_of(pid: int, tid: int | None = None) -> tuple[int, int]:
    """(uid, gid) that own ``/proc/PID/stat``: root for a non-dumpable
    process (the kernel's task_dump_owner), else the process's effective
    ids.  Not ``/proc/PID`` itself: task_dump_owner() leaves the per-process
    directories (dr-xr-xr-x) with the effective ids whatever the dumpable
    flag, so a non-dumpable process's directory looks its user's."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    return st.st_uid, st.st_gid


def read_maps(pid: int) -> str:
    return _read_records(f"{proc_dir(pid)}/maps").decode("utf-8", "surrogateescape")


def is_mounted(path: str) -> bool:
    """Whether ``path`` is a mount point per the mount table.  Unlike
    ``os.path.ismount`` this sees a FUSE mount whose daemon died (stat fails
    with ENOTCONN there)."""
    want = os.fsencode(os.path.abspath(path))
    with open("/proc/self/mounts", "rb") as f:  # bytes: a mount path need not be UTF-8
        for line in f:
            fields = line.split()
            if len(fields) > 1 and _unescape(fields[1]) == want:
                return True
    return False


def mount_id_of(path: str) -> int | None:
    """The mount id (``/proc/self/mountinfo``'s first field) of the mount on
    ``path`` (as the kernel names it: give a real path), the last one there;
    None if nothing is mounted on it or the table cannot be read.  Bytes
    throughout: a mount path need not be UTF-8."""
    want = os.fsencode(os.path.abspath(path))
    found = None
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape(fields[4]) == want:
                    found = int(fields[0])
    except (OSError, ValueError):
        return None
    return found


def _unescape(field: bytes) -> bytes:
    """Undo the octal escapes the mount tables use (space, tab, newline, \\)."""
    out, i = bytearray(), 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == 0x5C and len(code) == 3 and all(0x30 <= c <= 0x37 for c in code):
            out.append(int(code, 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


# write, pwrite64, writev, pwritev, pwritev2 (x86-64)
WRITE_SYSCALLS = frozenset({1, 18, 20, 296, 328})


def writing_into(
    pid: int, mount_id: int, ino: int, waits: tuple[float, ...] = (0.001, 0.004)
) -> int | None:
    """A thread of ``pid`` that sleeps in a write to file ``ino`` of mount
    ``mount_id`` (its syscall, its descriptor's fdinfo), or None.  Only
    sleeping threads (S, D) are looked at, and their ``syscall`` file read
    only then: the kernel takes the exec lock to make it.  A thread that
    runs (R) may be the writer not yet asleep (on a busy machine the
    daemon, woken by the request, can preempt it before it sleeps): such
    threads, if they have the file open for writing, are looked at again
    after each of ``waits`` (seconds), until none runs.  Blocking: run it
    off the daemon's event loop (an exec holding that lock may be waiting
    for a FUSE reply)."""
    tids = list_tids(pid)
    for wait in (*waits, None):
        running = []
        for tid in tids:
            found = _writing(pid, tid, mount_id, ino)
            if found is True:
                return tid
            if found is None:
                running.append(tid)
        if wait is None:
            return None
        # A thread that computes (the usual running thread) cannot be the
        # writer unless its descriptors include the file open for writing.
        running = [tid for tid in running if _holds_for_writing(pid, tid, mount_id, ino)]
        if not running:
            return None
        time.sleep(wait)
        tids = running
    return None


def _holds_for_writing(pid: int, tid: int, mount_id: int, ino: int) -> bool:
    """Whether thread ``tid``'s descriptor table has file ``ino`` of mount
    ``mount_id`` open for writing (what it may not be told: True)."""
    base = f"/proc/{pid}/task/{tid}/fd"
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    for name in names:
        try:
            # The link's mode tells how it was opened (0o200: for writing),
            # without a look at the file (which would ask this daemon).
            if not os.lstat(f"{base}/{name}").st_mode & 0o200:
                continue
            info = _read(f"/proc/{pid}/task/{tid}/fdinfo/{name}")
        except (FileNotFoundError, ProcessLookupError):  # closed meanwhile
            continue
        except OSError:
            return True
        if _names_file(info, mount_id, ino):
            return True
    return False


def _names_file(fdinfo: str, mount_id: int, ino: int) -> bool:
    """Whether an fdinfo text is of file ``ino`` of mount ``mount_id``."""
    found = dict(line.split(":", 1) for line in fdinfo.splitlines() if ":" in line)
    on_mount = found.get("mnt_id", "").strip() == str(mount_id)
    return on_mount and found.get("ino", "").strip() == str(ino)


def _writing(pid: int, tid: int, mount_id: int, ino: int) -> bool | None:
    """Whether thread ``tid`` sleeps in a write to that file; None when it runs."""
    try:
        stat = _read(f"/proc/{pid}/task/{tid}/stat")
        state = stat[stat.rindex(")") + 2 : stat.rindex(")") + 3]
        if state == "R":
            return None
        if state not in ("S", "D"):
            return False
        fields = _read(f"/proc/{pid}/task/{tid}/syscall").split()
    except (OSError, ValueError):
        return False
    if len(fields) < 2 or not fields[0].isdigit() or int(fields[0]) not in WRITE_SYSCALLS:
        return False
    try:
        info = _read(f"/proc/{pid}/task/{tid}/fdinfo/{int(fields[1], 16)}")
    except (OSError, ValueError):
        return False
    return _names_file(info, mount_id, ino)


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat: tells a process from a later one with its pid."""
    text = _read(f"/proc/{pid}/stat")
    return int(text[text.rindex(")") + 2 :].split()[19])


def same_namespace(pid: int, kind: str, other: int | str = "self") -> bool:
    """Whether process ``pid`` is in the namespace of ``kind`` ("pid",
    "user") of ``other`` (this process unless given); False when it cannot
    be told."""
    try:
        return (
            os.stat(f"/proc/{pid}/ns/{kind}").st_ino == os.stat(f"/proc/{other}/ns/{kind}").st_ino
        )
    except OSError:
        return False


RLIM_INFINITY = (1 << 64) - 1


def read_limits(pid: int) -> list[tuple[int, int]]:
    """(soft, hard) of each resource, in RLIMIT_* order, from
    /proc/PID/limits (readable by anyone who may see the process); RLIM_INFINITY
    for ``unlimited``."""
    out: list[tuple[int, int]] = []
    for line in _read(f"/proc/{pid}/limits").splitlines()[1:]:
        # "%-25s %-20s %-20s %-10s": the name has blanks in it, the rest not.
        soft, hard = line[26:].split()[:2]
        out.append(
            (
                RLIM_INFINITY if soft == "unlimited" else int(soft),
                RLIM_INFINITY if hard == "unlimited" else int(hard),
            )
        )
    return out
