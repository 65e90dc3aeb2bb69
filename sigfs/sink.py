"""Where a checkpoint's pages go: :class:`BufferSink`, the ``pages`` file
prepared before the freeze and written while frozen by a second thread.

Kept apart from :mod:`sigfs.pages` and light to import (nothing of sigfs's
formats): ``sigfs checkpoint`` starts preparing the file before it imports
the rest.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import queue
import threading

from sigfs import aio

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from sigfs.formats.manifest import Hasher

PAGE = 4096


class Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


libc = ctypes.CDLL(None, use_errno=True)
libc.process_vm_readv.restype = ctypes.c_ssize_t


MADV_POPULATE_WRITE = 23  # Linux 5.14+
TMPFS_MAGIC = 0x01021994
# The staging buffers between process_vm_readv and pwrite: enough to keep the
# writer busy while the next one is read, small enough to stay in cache.
SLOT_SIZE = 1 << 20
SLOTS = 4


def prefault(addr: int, size: int) -> None:
    """Write-fault ``size`` bytes at ``addr`` in one madvise; a memset on
    kernels without MADV_POPULATE_WRITE."""
    if libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(size), MADV_POPULATE_WRITE) == 0:
        return
    err = ctypes.get_errno()
    if err != errno.EINVAL:
        raise OSError(err, f"cannot fault in memory: {os.strerror(err)}")
    ctypes.memset(addr, 0, size)


class _Statfs(ctypes.Structure):
    _fields_ = (("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15))


def on_tmpfs(fd: int) -> bool:
    """Whether ``fd`` is a file in tmpfs, where fallocate() allocates the
    file's memory itself (elsewhere it only reserves blocks on disk)."""
    buf = _Statfs()
    if libc.fstatfs(fd, ctypes.byref(buf)) != 0:
        return False
    return bool(buf.f_type & 0xFFFFFFFF == TMPFS_MAGIC)


def _fill_zeros(fd: int, size: int) -> None:
    """Write zeros over the first ``size`` bytes: the page cache then holds
    every page, so the writes while frozen only copy."""
    zeros = bytes(SLOT_SIZE)
    off = 0
    while off < size:
        off += os.pwrite(fd, memoryview(zeros)[: min(SLOT_SIZE, size - off)], off)


class BufferSink:
    """Where a checkpoint's pages go: the ``pages`` file, prepared *before*
    the freeze so that the frozen copy allocates nothing, and written while
    frozen by two threads at once.

    Preparing: the first ``capacity`` bytes of the file are reserved with
    posix_fallocate (a full disk is a clean error here, not mid-freeze); on
    tmpfs that also allocates the file's memory, elsewhere zeros are written
    over them so the page cache holds every page.  With ``background`` this
    runs in a thread (the kernel does the work, without the GIL) while the
    caller goes on; :meth:`ready` waits for it.

    Writing: :meth:`put_remote` copies a process's memory with
    process_vm_readv into one of a few small staging buffers, and
    :meth:`put` copies bytes there; a full buffer is fed to the checksum
    (``algo``) and goes to a writer thread, which pwrites it into the file
    while the next one is filled.  So the stream is read, written and hashed
    in one pass, and memory stays at ``SLOTS * SLOT_SIZE`` whatever the size.
    Past ``capacity`` the file simply grows.
    """

    def __init__(
        self, out_fd: int, capacity: int, algo: str = "xxh3-128", background: bool = False
    ) -> None:
        self.out = out_fd
        self.capacity = capacity - capacity % PAGE
        self.algo = algo
        self.size = 0  # bytes put so far
        self._hash: Hasher | None = None  # made with the writer (imports xxhash)
        self._rehash = False  # bytes were patched in place: hash the file again
        self._slots: list[mmap.mmap] = []
        # put_remote's two iovecs, made once (a call per small mapping).
        self._iovecs = (Iovec(), Iovec())
        self._local_ref = ctypes.byref(self._iovecs[0])
        self._remote_ref = ctypes.byref(self._iovecs[1])
        self._addrs: list[int] = []
        self._free: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
        self._slot = -1  # the slot being filled
        self._fill = 0  # bytes in it
        self._flushed = 0  # file offset where the slot being filled starts
        self._writer: threading.Thread | None = None
        self._write_error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False  # finished or discarded: nothing more starts
        if not self.capacity:
            return
        if background:
            self._thread = threading.Thread(target=self._prepare_noraise, name="sigfs-prepare")
            self._thread.start()
        else:
            self._prepare()

    # -- before the freeze ----------------------------------------------------

    def _prepare(self) -> None:
        os.posix_fallocate(self.out, 0, self.capacity)
        if not on_tmpfs(self.out):
            _fill_zeros(self.out, self.capacity)

    def _prepare_noraise(self) -> None:
        aio.block_interrupts()
        try:
            self._prepare()
        except BaseException as exc:  # handed to ready()
            self._error = exc

    def ready(self) -> None:
        """Wait for the background preparation (raising what it raised), and
        set up the staging buffers and the writer thread."""
        self._prepared()
        self._start()

    def _prepared(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _start(self) -> None:
        """The staging buffers and the writer thread, when first needed."""
        self._prepared()
        if self._closed:
            raise ValueError("the pages sink is closed")
        if not self._slots:
            for i in range(SLOTS):
                slot = mmap.mmap(-1, SLOT_SIZE)
                addr = ctypes.addressof(ctypes.c_char.from_buffer(slot))
                prefault(addr, SLOT_SIZE)
                self._slots.append(slot)
                self._addrs.append(addr)
                self._free.put(i)
        if self._hash is None:
            from sigfs.formats.manifest import hasher

            self._hash = hasher(self.algo)
        if self._writer is None:
            # A daemon thread: were the caller to die without discard(), the
            # interpreter must still exit (the half-written file is dropped).
            self._writer = threading.Thread(
                target=self._write_loop, name="sigfs-writer", daemon=True
            )
            self._writer.start()

    # -- the writer thread ----------------------------------------------------

    def _write_loop(self) -> None:
        aio.block_interrupts()
        while (item := self._full.get()) is not None:
            index, n, off = item
            try:
                if self._write_error is None:
                    # No slice of the slot is kept in a variable: a traceback
                    # holding one would keep the slot from being unmapped.
                    with memoryview(self._slots[index]) as whole:
                        pos = 0
                        while pos < n:
                            pos += os.pwrite(self.out, whole[pos:n], off + pos)
            except BaseException as exc:  # raised in the caller's thread
                self._write_error = exc
            finally:
                self._free.put(index)

    def _check(self) -> None:
        if self._write_error is not None:
            raise self._write_error

    # -- the stream -----------------------------------------------------------

    def _room(self) -> int:
        """A slot with room in it; returns the room."""
        if self._slot < 0:
            if self._writer is None:
                self._start()
            self._check()
            self._slot = self._free.get()
        return SLOT_SIZE - self._fill

    def _flush(self) -> None:
        if self._slot >= 0 and self._fill:
            # Hashed here, not by the writer: writing into tmpfs costs more
            # than process_vm_readv a page, so the copying thread has the
            # time to spare (512 MiB: the writer's 16 ms of xxh3 off the freeze).
            assert self._hash is not None
            with memoryview(self._slots[self._slot]) as whole:
                self._hash.update(whole[: self._fill])
            self._full.put((self._slot, self._fill, self._flushed))
            self._flushed += self._fill
            self._slot, self._fill = -1, 0

    def put(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        fill = self._fill
        if self._slot >= 0 and type(data) is bytes and fill + n < SLOT_SIZE:
            # The common case, a record header into the slot being filled:
            # one slice assignment (a process with thousands of small
            # mappings puts thousands of them while frozen).
            self._slots[self._slot][fill : fill + n] = data
            self._fill = fill + n
            self.size += n
            return
        view = memoryview(data).cast("B")
        while view:
            n = min(self._room(), len(view))
            at = self._fill
            self._slots[self._slot][at : at + n] = view[:n]
            self._fill += n
            self.size += n
            view = view[n:]
            if self._fill == SLOT_SIZE:
                self._flush()

    def put_remote(self, pid: int, addr: int, n: int) -> int:
        """Copy ``n`` bytes (whole pages) at ``addr`` in ``pid`` into the
        stream; returns how many were copied, a multiple of PAGE: less than
        ``n`` when a page cannot be read (the caller reads the rest another
        way)."""
        done = 0
        while done < n:
            room = self._room() // PAGE * PAGE
            if not room:
                self._flush()
                continue
            k = min(room, n - done)
            local, remote = self._iovecs
            local.base = self._addrs[self._slot] + self._fill
            remote.base = addr + done
            local.len = remote.len = k
            got: int = libc.process_vm_readv(pid, self._local_ref, 1, self._remote_ref, 1, 0)
            if got != k:
                # Stopped at a page it cannot read: keep the whole pages read.
                got = max(got, 0) // PAGE * PAGE
                self._fill += got
                self.size += got
                return done + got
            self._fill += k
            self.size += k
            done += k
            if self._fill == SLOT_SIZE:
                self._flush()
        return done

    def patch_remote(self, pid: int, addr: int, n: int, at: int) -> bool:
        """Copy ``n`` bytes at ``addr`` in ``pid`` over the stream's bytes at
        offset ``at`` (already put) where they differ: for pages written
        since they were copied.  False if they cannot all be read."""
        self.drain()
        self._prepared()
        if self._closed or not self._slots:
            raise ValueError("the pages sink is closed or was never used")
        index = self._free.get()
        try:
            done = 0
            while done < n:
                k = min(SLOT_SIZE, n - done)
                local = Iovec(self._addrs[index], k)
                remote = Iovec(addr + done, k)
                got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
                if got != k:
                    return False
                with memoryview(self._slots[index]) as whole:
                    self._overwrite(whole[:k], at + done)
                done += k
        finally:
            self._free.put(index)
        return True

    def patch_bytes(self, data: bytes | bytearray | memoryview, at: int) -> None:
        """Write ``data`` over the stream's bytes at offset ``at`` (already
        put) where they differ."""
        self.drain()
        self._overwrite(memoryview(data), at)

    def _overwrite(self, data: memoryview, at: int) -> None:
        # Unchanged bytes (a page written back with what it held, the
        # copied-on-write pages of file mappings, always copied again) are
        # left alone: the running checksum then still holds, and the file is
        # not read back whole to hash it.  Compared as bytes: bytes against a
        # memoryview goes element by element, some 17 times slower (1.9 ms a
        # MiB here, on every page a pre-copy copies again while frozen).
        if os.pread(self.out, len(data), at) == data.tobytes():
            return
        pos = 0
        while pos < len(data):
            pos += os.pwrite(self.out, data[pos:], at + pos)
        self._rehash = True

    def restart(self) -> None:
        """Begin the stream again from its first byte (what was put is
        overwritten, and cut off by :meth:`finish`)."""
        from sigfs.formats.manifest import hasher

        self.drain()
        self.size = 0
        self._flushed = 0
        self._hash = hasher(self.algo)
        self._rehash = False

    def drain(self) -> None:
        """Wait until everything put is in the file; raise a write error."""
        self._flush()
        if self._writer is not None:
            self._full.put(None)
            self._writer.join()
            self._writer = None
        self._check()

    def digest(self, algo: str) -> str:
        """The checksum of everything put: computed as it was written when
        ``algo`` is the sink's, else read back from the file."""
        from sigfs.formats.manifest import hasher

        self.drain()
        if algo == self.algo and self._hash is not None and not self._rehash:
            return self._hash.hexdigest()
        h = hasher(algo)
        off = 0
        while off < self.size:
            chunk = os.pread(self.out, min(SLOT_SIZE, self.size - off), off)
            if not chunk:
                raise OSError(errno.EIO, "pages file shorter than written")
            h.update(chunk)
            off += len(chunk)
        return h.hexdigest()

    def finish(self) -> None:
        """Write out what is left and cut the file to the stream's length."""
        self.drain()
        os.ftruncate(self.out, self.size)
        self._release()

    def discard(self) -> None:
        """Stop the threads and let the buffers go (on failure: the file is
        removed anyway); raises nothing."""
        try:
            self._prepared()
        except BaseException:
            pass  # failing anyway
        try:
            self.drain()
        except BaseException:
            pass
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._free = queue.SimpleQueue()
        for slot in self._slots:
            slot.close()
        self._slots.clear()
        self._addrs.clear()
