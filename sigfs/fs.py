"""The FUSE operations: lookup, getattr, readdir, open, read.

Every handler funnels its errors through :func:`_fuse_errors`: an ``OSError``
becomes the matching ``FUSEError``, and anything else is logged and turned
into EIO, because an exception other than FUSEError escaping a handler takes
the whole mount down.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pyfuse3
import trio

from sigfs import __version__, access, procfs
from sigfs.files import TREE, ErrorLog, FileContext
from sigfs.pages import StreamReader
from sigfs.state import PARTWAY
from sigfs.tracer import KeyedLocks, Tracer
from sigfs.tracerd import TracerClient
from sigfs.tree import ROOT_INODE, Node, Place, decode, encode

log = logging.getLogger("sigfs")

TIMEOUT = 1.0  # entry/attr cache: the NOTES measured 0 s at 3x the cost
STREAM_BLKSIZE = 1 << 20  # st_blksize of the files: the largest FUSE read request
# Files not read from the process (sigfs's own log and freeze state): no
# permission check after reading them.  The leader's sig/blocked, made from
# the status the check itself read, needs none either.
_FROM_CHECK = frozenset({"errors", "ctl"})
FORMAT_VERSION = 3  # docs/FORMAT.md; MANIFEST's format_version

# Root-level files (fixed inodes below any computed one).
VERSION_INODE = 2
STATS_INODE = 3
ROOT_FILES = {b"version": VERSION_INODE, b"stats": STATS_INODE}


# (uid, gid) a process's entries are shown as owned by.
Owner = tuple[int, int]


def _owner(st: procfs.Status) -> Owner:
    """A process's effective uid and gid, from its status."""
    return int(st["Uid"].split()[1]), int(st["Gid"].split()[1])


@contextmanager
def _fuse_errors(what: str) -> Iterator[None]:
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except OSError as exc:
        raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
    except Exception:
        log.exception("internal error in %s", what)
        raise pyfuse3.FUSEError(errno.EIO) from None


class SigFS(pyfuse3.Operations):
    """Every process the caller may trace, as a directory of text files."""

    enable_writeback_cache = False

    def __init__(self, tracer: Tracer | None = None, remote: TracerClient | None = None) -> None:
        super().__init__()
        # With ``remote`` (the daemon), every ptrace request goes to the tracer
        # process and the local tracer only serves the in-process files;
        # without it (tests, tools), this process traces by itself.
        self.tracer = tracer or Tracer()
        self.remote = remote
        # One request at a time per process, across both tracers.
        self._locks = KeyedLocks()
        # Processes the tracer process holds frozen (through their ctl).
        self.frozen: set[int] = set()
        self.errors = ErrorLog()
        self._open: dict[int, bytes] = {}
        self._writers: dict[int, tuple[Node, FileContext, int]] = {}
        self._streams: dict[int, StreamReader] = {}
        # fh -> (name, inode, its owner or None for root's) for each entry.
        self._dirs: dict[int, list[tuple[bytes, int, Owner | None]]] = {}
        self._fh = itertools.count(1)
        self.own_pid = os.getpid()
        # This mount's id (mountinfo), once mounted: a write from a process
        # into its own file is recognised by it (see write).
        self.mount_id: int | None = None
        # The per-request permission check reads the target's status.
        self._status = procfs.StatusFiles()

    # -- helpers -------------------------------------------------------------

    def _caller(self, ctx: pyfuse3.RequestContext) -> access.Caller:
        return access.caller_of(ctx.pid, ctx.uid, ctx.gid)

    def _check(
        self, ctx: pyfuse3.RequestContext, pid: int, caller: access.Caller | None = None
    ) -> procfs.Status:
        """The process's status, or ENOENT if it is gone or not the caller's to see."""
        if self._is_ours(pid):
            raise pyfuse3.FUSEError(errno.ENOENT)
        try:
            st = self._status.read(pid)
        except ProcessLookupError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None
        if int(st.get("Tgid") or "0") != pid:
            raise pyfuse3.FUSEError(errno.ENOENT)  # a thread id, not a process
        if not access.traceable(caller or self._caller(ctx), pid, st):
            # ENOENT rather than EACCES: like /proc with hidepid, another
            # user's processes are not shown at all.
            raise pyfuse3.FUSEError(errno.ENOENT)
        return st

    def _still_traceable(self, caller: access.Caller, pid: int) -> bool:
        """Checked again once a file is read: had the process exec'd a
        set-user-ID program between the first check and the reading, what
        was read would be the new program's.  The kernel finishes such an
        exec, credentials included, before a ptrace stop or a /proc/PID/mem
        open can get at the new image, so a check after the reading sees
        them (a file read from the status of the first check needs none).
        A caller found to have CAP_SYS_PTRACE may trace whatever the program:
        nothing to check again (30-100 us of a `pending` read here)."""
        if caller.known_privileged:
            return True
        try:
            st = procfs.read_status(pid)
        except ProcessLookupError:
            return False
        return access.traceable(caller, pid, st)

    async def _root_file(self, inode: int) -> bytes:
        if inode == VERSION_INODE:
            return f"sigfs {__version__} format {FORMAT_VERSION}\n".encode()
        # Plain stops happen here, injections and freezes in the tracer
        # process: the counters are the sum of both.
        stats = {
            "stops": int(self.tracer.stopped_stats[0]),
            "stopped_seconds": self.tracer.stopped_stats[1],
            "stop_wait_seconds": self.tracer.stop_wait_seconds,
            "injected_syscalls": self.tracer.injected,
            "attached_now": len(self.tracer.attached),
            "frozen_now": len(self.tracer.frozen),
        }
        if self.remote is not None:
            remote, _ = await self.remote.call("stats")
            for key in stats:
                stats[key] += remote[key]
        count = stats["stops"]
        mean = stats["stopped_seconds"] / count * 1e6 if count else 0.0
        wait = stats["stop_wait_seconds"] / count * 1e6 if count else 0.0
        return (
            f"stops {count}\n"
            f"stopped_seconds {stats['stopped_seconds']:.6f}\n"
            f"mean_stopped_us {mean:.1f}\n"
            f"mean_stop_wait_us {wait:.1f}\n"
            f"injected_syscalls {stats['injected_syscalls']}\n"
            f"attached_now {stats['attached_now']}\n"
            f"frozen_now {stats['frozen_now']}\n"
        ).encode()

    async def _remote(self, op: str, node: Node, fctx: FileContext, **extra: object) -> bytes:
        """Run a file's load or store in the tracer process, one request per
        process at a time (so a local read never overlaps an injection)."""
        async with self._locks.hold(fctx.pid):
            return await self._remote_locked(op, node, fctx, **extra)

    async def _remote_locked(
        self, op: str, node: Node, fctx: FileContext, **extra: object
    ) -> bytes:
        assert self.remote is not None and node.entry is not None
        status = fctx.status.raw[1:] if fctx.status is not None else None
        try:
            result, logs = await self.remote.call(
                op,
                place=node.place.value,
                path=node.entry.path,
                pid=fctx.pid,
                tid=fctx.tid,
                where=fctx.path,
                status=status,
                **extra,
            )
        except ProcessLookupError:
            self.frozen.discard(fctx.pid)  # it is gone; a new one may get its pid
            raise
        for where, message in logs:
            self.errors.add(fctx.pid, where, message)
        return result if isinstance(result, bytes) else b""

    async def _load(self, node: Node, fctx: FileContext) -> bytes:
        entry = node.entry
        assert entry is not None
        if self.remote is not None and entry.needs_ptrace:
            if entry.injects or fctx.pid in self.frozen:
                # Injections, and anything about threads the tracer process
                # holds frozen, run there.
                return await self._remote("load", node, fctx)
            # A plain stop is safe to run here: were the daemon killed during
            # it, the kernel would release the thread exactly where it was.
            async with self._locks.hold(fctx.pid):
                return await entry.load(fctx)
        lock = self._locks.get(fctx.pid)
        if lock is not None and lock.locked():
            # A request is at work in this process (maybe an injection, with
            # every signal blocked): wait, and read /proc again after it.
            async with lock:
                pass
            fctx.status = None
        return await entry.load(fctx)

    def _is_ours(self, pid: int) -> bool:
        """The daemon and its tracer process are not shown: tracing either
        from here would stop the very process that answers."""
        return pid == self.own_pid or (self.remote is not None and pid == self.remote.pid)

    def _root_attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = TIMEOUT
        attr.attr_timeout = TIMEOUT
        attr.st_mode = stat.S_IFREG | 0o444
        attr.st_nlink = 1
        attr.st_blksize = 4096
        return attr

    def _resolve(self, inode: int) -> tuple[Node | None, int, int]:
        if inode == ROOT_INODE:
            return None, 0, 0
        if inode in (VERSION_INODE, STATS_INODE):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        node_id, pid, tid = decode(inode)
        if not 1 <= node_id <= len(TREE.nodes):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return TREE.node(node_id), pid, tid

    def _attrs(self, inode: int, node: Node | None, owner: Owner | None) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = TIMEOUT
        attr.attr_timeout = TIMEOUT
        if node is None or node.is_dir:
            attr.st_mode = stat.S_IFDIR | 0o555
            attr.st_nlink = 2
        else:
            assert node.entry is not None
            attr.st_mode = stat.S_IFREG | node.entry.mode
            attr.st_nlink = 1
        attr.st_size = 0  # generated on open; direct_io reads past it
        # The best read size reported (cp, cat and dd's default size reads
        # by it, 128 KiB at least): FUSE's largest request, so that copying
        # `pages` out takes a round trip a MiB instead of one per 128 KiB.
        attr.st_blksize = STREAM_BLKSIZE
        if owner is not None:
            attr.st_uid, attr.st_gid = owner
        return attr

    def _exists(self, pid: int, tid: int) -> bool:
        if tid == 0 or tid == pid:
            return True
        return os.path.exists(f"/proc/{pid}/task/{tid}")

    # -- lookup and attributes ----------------------------------------------

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        with _fuse_errors("lookup"):
            sname = os.fsdecode(name)
            parent, pid, tid = self._resolve(parent_inode)
            if parent is None and name in ROOT_FILES:
                return self._root_attrs(ROOT_FILES[name])
            if parent is None:
                if not sname.isdigit() or sname != str(int(sname)):
                    raise pyfuse3.FUSEError(errno.ENOENT)
                pid = int(sname)
                st = self._check(ctx, pid)
                node = TREE.process_dir
                return self._attrs(encode(node, pid, 0), node, _owner(st))
            st = self._check(ctx, pid)
            if parent is TREE.task_dir:
                if not sname.isdigit() or not os.path.isdir(f"/proc/{pid}/task/{sname}"):
                    raise pyfuse3.FUSEError(errno.ENOENT)
                node = TREE.thread_dir
                inode = encode(node, pid, int(sname))
                return self._attrs(inode, node, _owner(st))
            found = TREE.find(parent.place, parent.path + (sname,))
            if found is None or not self._exists(pid, tid):
                raise pyfuse3.FUSEError(errno.ENOENT)
            inode = encode(found, pid, tid)
            return self._attrs(inode, found, _owner(st))

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        with _fuse_errors("getattr"):
            if inode in (VERSION_INODE, STATS_INODE):
                return self._root_attrs(inode)
            node, pid, tid = self._resolve(inode)
            if node is None:
                return self._attrs(inode, None, None)
            st = self._check(ctx, pid)
            if not self._exists(pid, tid):
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attrs(inode, node, _owner(st))

    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        with _fuse_errors("access"):
            if inode in (VERSION_INODE, STATS_INODE):
                return not mode & os.W_OK
            node, pid, _ = self._resolve(inode)
            if node is not None:
                self._check(ctx, pid)
            if mode & os.W_OK and (
                node is None or node.is_dir or not (node.entry and node.entry.mode & 0o200)
            ):
                return False
            return True

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        return None  # inodes are computed; nothing to drop

    # -- directories ---------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        with _fuse_errors("opendir"):
            node, pid, tid = self._resolve(inode)
            entries: list[tuple[bytes, int, Owner | None]] = []
            if node is None:
                entries.extend((name, inode, None) for name, inode in ROOT_FILES.items())
                caller = self._caller(ctx)
                for p in procfs.list_pids():
                    if self._is_ours(p):
                        continue
                    try:
                        st = procfs.read_status(p)
                    except ProcessLookupError:
                        continue
                    if access.traceable(caller, p, st):
                        ino = encode(TREE.process_dir, p, 0)
                        entries.append((str(p).encode(), ino, _owner(st)))
            else:
                # Every entry below a process belongs to its owner, as in
                # lookup: readdir's attributes are cached like lookup's.
                owner = _owner(self._check(ctx, pid))
                if node is TREE.task_dir:
                    for t in procfs.list_tids(pid):
                        entries.append((str(t).encode(), encode(TREE.thread_dir, pid, t), owner))
                else:
                    for child in TREE.children(node):
                        entries.append((child.name.encode(), encode(child, pid, tid), owner))
            fh = next(self._fh)
            self._dirs[fh] = entries
            return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        with _fuse_errors("readdir"):
            entries = self._dirs.get(fh, [])
            for index in range(start_id, len(entries)):
                name, inode, owner = entries[index]
                if inode in (VERSION_INODE, STATS_INODE):
                    attr = self._root_attrs(inode)
                else:
                    node, _, _ = self._resolve(inode)
                    attr = self._attrs(inode, node, owner)
                if not pyfuse3.readdir_reply(token, name, attr, index + 1):
                    break

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files ---------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        with _fuse_errors("open"):
            if inode in (VERSION_INODE, STATS_INODE):
                if flags & os.O_ACCMODE != os.O_RDONLY:
                    raise pyfuse3.FUSEError(errno.EACCES)
                data = await self._root_file(inode)
                fh = next(self._fh)
                self._open[fh] = data
                return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)
            node, pid, tid = self._resolve(inode)
            if node is None or node.entry is None:
                raise pyfuse3.FUSEError(errno.EISDIR)
            entry = node.entry
            caller = self._caller(ctx)
            st = self._check(ctx, pid, caller)
            writing = flags & os.O_ACCMODE != os.O_RDONLY
            if writing and entry.store is None:
                raise pyfuse3.FUSEError(errno.EACCES)
            if node.place is Place.PROCESS:
                tid = pid
                where = entry.path
            else:
                where = f"task/{tid}/{entry.path}"
            if (entry.needs_ptrace or writing) and caller.tgid == pid:
                # Stopping our own caller would hang it in D state inside
                # FUSE, unkillable, with the whole mount stalled.  Every
                # write stops the process.
                what = "write" if writing else "read"
                self.errors.add(pid, where, f"a process cannot {what} its own ptrace-backed file")
                raise pyfuse3.FUSEError(errno.EDEADLK)
            fctx = FileContext(
                self.tracer, self.errors, pid, tid, where, st if tid == pid else None
            )
            if writing:
                fctx.append = bool(flags & os.O_APPEND)
                # Each write checks again that the opener, as it was now,
                # could trace this same process (FileContext.check_opener).
                fctx.opener = (caller.uid, caller.gid, caller.privileged, caller.tgid)
                try:
                    fctx.started = procfs.start_time(pid)
                except (ProcessLookupError, ValueError, IndexError):
                    raise pyfuse3.FUSEError(errno.ENOENT) from None
                fh = next(self._fh)
                self._writers[fh] = (node, fctx, inode)
                return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)
            if entry.open_stream is not None:
                try:
                    reader = await entry.open_stream(fctx)
                except ProcessLookupError:
                    raise pyfuse3.FUSEError(errno.ENOENT) from None
                try:
                    if not self._still_traceable(caller, pid):
                        raise pyfuse3.FUSEError(errno.ENOENT)
                except BaseException:
                    reader.close()
                    raise
                fh = next(self._fh)
                self._streams[fh] = reader
                return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False, nonseekable=True)
            try:
                data = await self._load(node, fctx)
            except ProcessLookupError:
                raise pyfuse3.FUSEError(errno.ENOENT) from None
            except OSError as exc:
                fctx.log(exc.strerror or str(exc))
                raise
            from_check = entry.path in _FROM_CHECK or (entry.path == "sig/blocked" and tid == pid)
            if not from_check and not self._still_traceable(caller, pid):
                raise pyfuse3.FUSEError(errno.ENOENT)
            fh = next(self._fh)
            self._open[fh] = data
            return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    # pyfuse3 replies from any contiguous buffer (PyObject_GetBuffer in
    # fuse_read_async) at once, before it runs another handler, though its
    # stub says bytes: a view of the pages stream's buffer goes out uncopied.
    async def read(  # type: ignore[override]
        self, fh: int, off: int, size: int
    ) -> bytes | bytearray | memoryview:
        with _fuse_errors("read"):
            data = self._open.get(fh)
            if data is None:
                reader = self._streams.get(fh)
                if reader is None:
                    raise pyfuse3.FUSEError(errno.EBADF)
                return reader.read(off, size)
            return data[off : off + size]

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        with _fuse_errors("write"):
            writer = self._writers.get(fh)
            if writer is None:
                raise pyfuse3.FUSEError(errno.EBADF)
            node, fctx, inode = writer
            assert node.entry is not None and node.entry.store is not None
            if off > 0:
                # Not the open's first write: bash's echo and printf write
                # line by line, and FUSE cuts a write of more than it takes
                # at once (1 MiB) into pieces.  Each piece is applied as it
                # comes: a mask or a queue takes the rest as added to what the
                # first piece set; the others take each piece's lines.
                if not fctx.line_done:
                    fctx.log(
                        "write refused: it arrived in pieces, cut inside a line (more than "
                        "1 MiB at once?): write whole lines, at most 1 MiB at a time"
                    )
                    raise pyfuse3.FUSEError(errno.EINVAL)
                if node.entry.adds:
                    fctx.append = True
            fctx.line_done = bytes(buf[-1:]) == b"\n"
            # The open refuses a process its own file (EDEADLK), but a
            # descriptor can be inherited or passed: a thread of the process
            # sleeping in a write into this mount is this write.
            await self._refuse_own_write(fctx, inode)
            try:
                if self.remote is not None:
                    # One lock across the store and the state it leaves, so no
                    # local stop can slip in while the tracer process holds a
                    # frozen process that the daemon does not know of yet.
                    async with self._locks.hold(fctx.pid):
                        await self._remote_locked(
                            "store",
                            node,
                            fctx,
                            data=bytes(buf),
                            append=fctx.append,
                            opener=fctx.opener,
                            started=fctx.started,
                        )
                        if node.entry.path == "ctl":
                            state = (await self._remote_locked("load", node, fctx)).strip()
                            if state == b"frozen":
                                self.frozen.add(fctx.pid)
                            else:
                                self.frozen.discard(fctx.pid)
                else:
                    await node.entry.store(fctx, bytes(buf))
            except ProcessLookupError:
                raise pyfuse3.FUSEError(errno.ESRCH) from None
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    # The stop timed out: a writer that was not yet asleep
                    # when first looked for is asleep now.
                    await self._refuse_own_write(fctx, inode, waits=())
                message = exc.strerror or str(exc)
                if message.startswith(PARTWAY):
                    # The process was changed before the failure: not "refused".
                    fctx.log(f"write failed, {message}")
                else:
                    fctx.log(f"write refused: {message}")
                raise
            return len(buf)

    async def _refuse_own_write(
        self, fctx: FileContext, inode: int, waits: tuple[float, ...] | None = None
    ) -> None:
        """EDEADLK if a thread of the process is the one writing (see
        :func:`procfs.writing_into`).  Off the event loop, and given up after
        a second: the kernel makes /proc/TID/syscall under the exec lock,
        which an exec may hold while it waits for this daemon (a FLUSH)."""
        if self.mount_id is None:
            return
        look = functools.partial(procfs.writing_into, fctx.pid, self.mount_id, inode)
        if waits is not None:
            look = functools.partial(look, waits=waits)
        writer_tid = None
        with trio.move_on_after(1.0):
            writer_tid = await trio.to_thread.run_sync(look, abandon_on_cancel=True)
        if writer_tid is not None:
            fctx.log(
                f"write refused: thread {writer_tid} is writing this file itself "
                "(a descriptor it inherited?): stopping it would wait for ever"
            )
            raise pyfuse3.FUSEError(errno.EDEADLK)

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        # Only the truncation that `>` asks for is accepted (and means
        # nothing: the next write replaces the state).
        with _fuse_errors("setattr"):
            node, pid, _ = self._resolve(inode)
            if node is None or node.entry is None or node.entry.store is None:
                raise pyfuse3.FUSEError(errno.EPERM)
            if fields.update_mode or fields.update_uid or fields.update_gid:
                raise pyfuse3.FUSEError(errno.EPERM)
            st = self._check(ctx, pid)
            return self._attrs(inode, node, _owner(st))

    async def release(self, fh: int) -> None:
        self._open.pop(fh, None)
        self._writers.pop(fh, None)
        reader = self._streams.pop(fh, None)
        if reader is not None:
            reader.close()

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = 4096
        data.f_frsize = 4096
        data.f_namemax = 255
        return data
