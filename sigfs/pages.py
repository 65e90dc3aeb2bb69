"""The ``pages`` stream: the memory contents a restore needs, generated lazily.

For every VMA (but the kernel's own: vvar, vdso, vsyscall) the pagemap tells
which pages hold data a restore needs: in private mappings the anonymous
pages (PM_FILE clear: heap, stack, and file pages changed copy-on-write), in
shared anonymous memory every present page; clean file pages are not taken,
the file has them (CRIU makes the same choice).  Only those runs are read
through ``/proc/PID/mem`` -- reading a whole window would fault absent pages
in and change the very page tables being dumped -- all-zero pages are left
out, and the rest is emitted as records (see :mod:`sigfs.formats.pages`).
Nothing is held but the current 4 MiB window, so the daemon's memory stays
flat however large the process is.
"""

from __future__ import annotations

import bisect
import ctypes
import errno
import functools
import mmap
import os
import re
import struct
from collections.abc import Callable, Iterator

from sigfs import procfs
from sigfs.formats import pages as pages_fmt
from sigfs.sink import Iovec, libc

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from sigfs.sink import BufferSink

PAGE = 4096
# Pages looked at per pagemap read.  Records never span two windows, so the
# stream's bytes depend on it: both ways of making the stream use this one.
WINDOW_PAGES = 1024  # 4 MiB
SKIPPED = {"[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]"}
PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_FILE = 1 << 61  # file page or shared anonymous page
ZERO_PAGE = bytes(PAGE)
ZERO_WINDOW = bytes(PAGE * WINDOW_PAGES)


class Span:
    """What the stream needs of a mapping.  A plain class with slots: one is
    made per mapping while the process is frozen, and a frozen record's
    ``__init__`` costs three times as much (2 ms more for 5000 mappings)."""

    __slots__ = ("start", "end", "perms", "inode", "path")

    def __init__(self, start: int, end: int, perms: str, inode: int, path: str) -> None:
        self.start = start
        self.end = end
        self.perms = perms
        self.inode = inode
        self.path = path

    def __repr__(self) -> str:
        return f"Span({self.start:#x}-{self.end:#x} {self.perms} {self.inode} {self.path!r})"


# PAGEMAP_SCAN (Linux 6.7+): _IOWR('f', 16, struct pm_scan_arg), whose
# fields follow; categories as in include/uapi/linux/fs.h.
PAGEMAP_SCAN = 0xC0606610
PAGE_IS_PFNZERO = 1 << 5
SCAN_VEC_LEN = 512  # regions per call


class ScanArg(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


def pagemap_scan(
    fd: int,
    start: int,
    end: int,
    vec: ctypes.Array[ctypes.c_uint64],
    flags: int = 0,
    category_mask: int = 0,
    anyof: int = 0,
    return_mask: int = 0,
) -> list[tuple[int, int]]:
    """The regions (start, end) in [start, end) that PAGEMAP_SCAN reports on
    the pagemap ``fd`` for these categories, in address order, as many calls
    as ``vec`` (3 * n words) needs.  Raises OSError with the ioctl's errno
    (ENOTTY or EINVAL: a kernel without it).

    A call stops early only when ``vec`` is full; then the next one starts
    where the last region ended (or at ``walk_end``, past it).  The kernel
    collects regions 512 at a time, and with a larger ``vec`` its
    ``walk_end`` can be stale after a full batch, so a full ``vec`` is the
    only sign that more remain, and ``walk_end`` alone is not trusted."""
    out: list[tuple[int, int]] = []
    vec_len = len(vec) // 3
    while start < end:
        arg = ScanArg(
            ctypes.sizeof(ScanArg),
            flags,
            start,
            end,
            0,
            ctypes.addressof(vec),
            vec_len,
            0,
            0,
            category_mask,
            anyof,
            return_mask,
        )
        n = libc.ioctl(fd, ctypes.c_ulong(PAGEMAP_SCAN), ctypes.byref(arg))
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        for i in range(n):
            out.append((vec[3 * i], vec[3 * i + 1]))
        if n < vec_len:
            break
        resume = max(arg.walk_end, out[-1][1])
        if resume <= start:
            break
        start = resume
    return out


def dumpable_vmas(maps_text: str) -> list[Span]:
    """The mappings whose pages the stream looks at, from the kernel's
    ``/proc/PID/maps`` text: a plain split, not the validating parser of
    :mod:`sigfs.formats.mm`, which costs some 10 us a mapping (a process
    with thousands of them is read while it is frozen).  Only the path's
    start is looked at (the kernel's [vvar] and the like; shared anonymous
    memory), so its escapes need no undoing."""
    out = []
    for line in maps_text.split("\n"):  # only "\n": a name may hold \r, \v, U+2028...
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        path = parts[5] if len(parts) > 5 else ""
        if path in SKIPPED:
            continue
        lo, _, hi = parts[0].partition("-")
        out.append(Span(int(lo, 16), int(hi, 16), parts[1], int(parts[4]), path))
    return out


PFN_MASK = (1 << 55) - 1
# A swap entry's type (bits 0-4, shown with page frames) and offset (bits
# 5-54).  Since Linux 6.2 type 31 is always SWP_PTE_MARKER: no page at all,
# only a mark, whose offset is the marker's bits (1 userfaultfd write
# protection, 2 a swap-in error, 4 a guard page).  Before 5.19 type 31 could
# be a migration or device entry, whose offset is a page frame: never that
# small.  So an entry is a marker only with both.
SWAP_TYPE_MASK = 0x1F
SWP_PTE_MARKER = 31
SWAP_OFFSET_SHIFT = 5
SWAP_OFFSET_MASK = (1 << 50) - 1
MARKER_BITS = 0x7
# Entries whose low byte has type 31: the only candidates for a marker.
_TYPE31 = bytes(0 if b & SWAP_TYPE_MASK == SWP_PTE_MARKER else 2 for b in range(256))
_WRITTEN_RUNS = re.compile(rb"\x00+")
# PagesStream.patch makes a new stream instead past half the pages and more
# than this many (16 MiB), or past half the records and more than this many.
MOST_PAGES = 4096
MOST_RUNS = 256

# Page classes from an entry's top byte (bits 56..63): present 0x80,
# swapped 0x40, file-or-shared 0x20.  0 = anonymous data, 1 = swapped, 2 = skip.
_CLASS_PRIVATE = bytes(
    1 if b & 0x40 else (0 if b & 0x80 and not b & 0x20 else 2) for b in range(256)
)
_CLASS_SHARED = bytes(1 if b & 0x40 else (0 if b & 0x80 else 2) for b in range(256))
_RUNS = re.compile(rb"\x00+|\x01+")


@functools.cache
def zero_pfn() -> int:
    """The page frame of the kernel's shared zero page, or 0 when this process
    cannot see page frames (no CAP_SYS_ADMIN): then zero pages are found by
    comparing contents instead."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    )
    addr = libc.mmap(None, PAGE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if not addr or addr == ctypes.c_void_p(-1).value:
        return 0
    try:
        ctypes.string_at(addr, 1)  # a read fault maps the zero page
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // PAGE * 8)
            (entry,) = struct.unpack("<Q", f.read(8))
        return entry & PFN_MASK if entry & PM_PRESENT else 0
    except OSError:
        return 0
    finally:
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(PAGE))


def _marks(start: int, n: int, written: list[tuple[int, int]], starts: list[int]) -> bytes:
    """Per page of the window of ``n`` pages at ``start``: 0 if it is in one
    of the ``written`` regions (sorted, not overlapping), else 2."""
    end = start + n * PAGE
    i = max(bisect.bisect_right(starts, start) - 1, 0)
    marks = bytearray(b"\x02" * n)
    while i < len(written) and written[i][0] < end:
        lo, hi = max(written[i][0], start), min(written[i][1], end)
        if lo < hi:
            first, last = (lo - start) // PAGE, (hi - start + PAGE - 1) // PAGE
            marks[first:last] = bytes(last - first)
        i += 1
    return bytes(marks)


class Layout:
    """Where a pages stream copied while the process ran put each record,
    so that the pages written since can be copied again over their place
    (:meth:`PagesStream.patch`): per window, its key, the runs of its
    pagemap and the records made of them (address, pages, file offset of
    their data)."""

    __slots__ = ("windows", "total_pages", "total_records")

    def __init__(self) -> None:
        self.windows: list[
            tuple[
                tuple[int, int, bool, bool],
                list[tuple[int, int, int]],
                bool,
                list[tuple[int, int, int]],
            ]
        ] = []
        self.total_pages = 0
        self.total_records = 0


def untracked(layout: Layout, tracked: list[tuple[int, int]]) -> tuple[int, int]:
    """(pages, records) of a pre-copy that :meth:`PagesStream.patch` would
    copy again in any case: those outside the ``tracked`` ranges."""
    starts = [lo for lo, _ in tracked]
    pages = records = 0
    for (start, n, _, _), _, _, placed in layout.windows:
        i = bisect.bisect_right(starts, start) - 1
        if i >= 0 and start + n * PAGE <= tracked[i][1]:
            continue
        records += len(placed)
        pages += sum(count for _, count, _ in placed)
    return pages, records


def mostly(pages: int, records: int, layout: Layout) -> bool:
    """Whether copying ``pages`` in ``records`` again would cost more than a
    new stream (see :meth:`PagesStream.patch`)."""
    return (pages * 2 > layout.total_pages and pages > MOST_PAGES) or (
        records * 2 > layout.total_records and records > MOST_RUNS
    )


class PagesStream:
    """One pass over a process's memory, as the bytes of the ``pages`` file."""

    def __init__(self, tgid: int, vmas: list[Span], follow_pid: bool = False) -> None:
        """``follow_pid``: read with process_vm_readv, which goes wherever
        the pid is at each call -- to a new image after an exec.  Only for
        a caller whose own credentials the kernel checks at each call, or a
        process held stopped throughout (``sigfs checkpoint``).  Otherwise
        (the mount, where the daemon reads for someone else) every read goes
        through ``/proc/PID/mem`` opened here, which stays with the image
        the process had then: after an exec, of a set-user-ID program say,
        the stream reads nothing of the new one."""
        self.tgid = tgid
        self.vmas = vmas
        self.follow_pid = follow_pid
        self.total_pages = 0
        self.total_records = 0
        self.bytes_planned = sum(v.end - v.start for v in vmas)
        self.bytes_scanned = 0
        #: Why :meth:`patch` refused ("layout", "most"), or "".
        self.refused = ""
        # The buffer runs are read into (see _read_run), made on first use.
        self._run_buf: bytearray | None = None
        self._run_addr = 0
        # Pagemap entries read ahead (see _entries), from page _ahead_first.
        self._ahead = b""
        self._ahead_first = 0
        self._zero_pfn = zero_pfn()
        # Without page frames: PAGEMAP_SCAN's PAGE_IS_PFNZERO finds the same
        # pages (Linux 6.7+, any user), until it is found missing.
        self._zero_scan = not self._zero_pfn
        self._scan_vec: ctypes.Array[ctypes.c_uint64] | None = None
        self._mem = self._pagemap = -1
        self._vm_pid = tgid
        try:
            where = procfs.proc_dir(tgid)
            # process_vm_readv takes a task: a live thread's if the leader
            # has exited (the leader's has no memory then).
            self._vm_pid = procfs.task_in(where, tgid)
            self._mem = os.open(f"{where}/mem", os.O_RDONLY | os.O_CLOEXEC)
            self._pagemap = os.open(f"{where}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as exc:
            self.close()
            if isinstance(exc, FileNotFoundError):
                raise ProcessLookupError(errno.ESRCH, f"no such process: {tgid}") from None
            raise

    def close(self) -> None:
        for fd in (self._mem, self._pagemap):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> PagesStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning -------------------------------------------------------------

    def _windows(self, window: int) -> Iterator[tuple[int, int, bool, bool]]:
        """(start, npages, shared_anon, drop_zero) for every window to look at."""
        for vma in self.vmas:
            shared_anon = vma.perms[3] == "s" and (
                vma.inode == 0 or vma.path.startswith(("/dev/zero", "/SYSV", "/memfd:"))
            )
            # Zero pages can be left out only where a restore maps zeros anyway.
            drop_zero = vma.inode == 0 or shared_anon
            if vma.perms[3] == "s" and not shared_anon:
                self.bytes_scanned += vma.end - vma.start
                continue  # a shared file mapping: the file holds the data
            addr = vma.start
            while addr < vma.end:
                n = min(window, (vma.end - addr) // PAGE)
                yield addr, n, shared_anon, drop_zero
                addr += n * PAGE
                self.bytes_scanned += n * PAGE

    def _classify(
        self, start: int, npages: int, shared_anon: bool, drop_zero: bool, raw: bytes = b""
    ) -> tuple[list[tuple[int, int, int]], bool]:
        """Runs (first, count, flags) of the pages to keep, and whether their
        contents must still be checked for zero pages."""
        raw = raw or self._entries(start, npages)
        classes = raw[7::8].translate(_CLASS_SHARED if shared_anon else _CLASS_PRIVATE)
        # Byte values are looked for as ints: `b"\x01" in x` first tries the
        # argument as an int and raises (and clears) a TypeError each time.
        if self._zero_pfn and 1 in classes:
            # Swap entries of type SWP_PTE_MARKER hold no page: a guard page
            # (MADV_GUARD_INSTALL), a userfaultfd write-protection mark.  The
            # type is shown only with page frames (so is the zero page).
            candidates = raw[0::8].translate(_TYPE31)
            if 0 in candidates:
                marks = bytearray(classes)
                at = candidates.find(b"\x00")
                while at >= 0:
                    (e,) = struct.unpack_from("<Q", raw, at * 8)
                    offset = (e >> SWAP_OFFSET_SHIFT) & SWAP_OFFSET_MASK
                    if marks[at] == 1 and 0 < offset <= MARKER_BITS:
                        marks[at] = 2
                    at = candidates.find(b"\x00", at + 1)
                classes = bytes(marks)
        if not classes.strip(b"\x02"):
            # Nothing to keep (an untouched thread stack, say): no searching.
            return [], drop_zero and not self._zero_pfn
        zp = self._zero_pfn
        if drop_zero and not zp and self._zero_scan and 0 in classes:
            zeros = self._zero_pages(start, npages)
            if zeros:
                marks = bytearray(classes)
                for lo, hi in zeros:
                    for i in range(lo, hi):
                        if marks[i] == 0:
                            marks[i] = 2
                classes = bytes(marks)
        if drop_zero and zp and 0 in classes:
            pattern = struct.pack("<Q", zp)[:7]
            at = raw.find(pattern)
            if at >= 0:
                # Some pages map the shared zero page: leave exactly those out.
                entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
                marks = bytearray(classes)
                for i, e in enumerate(entries):
                    if marks[i] == 0 and e & PFN_MASK == zp:
                        marks[i] = 2
                classes = bytes(marks)
        runs = [
            (m.start(), m.end() - m.start(), classes[m.start()]) for m in _RUNS.finditer(classes)
        ]
        return runs, drop_zero and not zp

    def _zero_pages(self, start: int, npages: int) -> list[tuple[int, int]]:
        """(first, end) page indexes in the window that map the kernel's zero
        page, by PAGEMAP_SCAN; on a kernel without it, [] and the contents
        are compared from then on (``_zero_scan`` off)."""
        if self._scan_vec is None:
            self._scan_vec = (ctypes.c_uint64 * (3 * SCAN_VEC_LEN))()
        try:
            found = pagemap_scan(
                self._pagemap,
                start,
                start + npages * PAGE,
                self._scan_vec,
                category_mask=PAGE_IS_PFNZERO,
                return_mask=PAGE_IS_PFNZERO,
            )
        except OSError:
            # No PAGEMAP_SCAN (ENOTTY, EINVAL), or refused (a security
            # module): the contents are compared instead, from here on.
            self._zero_scan = False
            return []
        return [((lo - start) // PAGE, (hi - start) // PAGE) for lo, hi in found]

    def _entries(self, start: int, npages: int) -> bytes:
        """The pagemap entries of ``npages`` pages at ``start``.  A window
        smaller than WINDOW_PAGES reads ahead to that many, and the windows
        after it that fall in what was read (a process's small mappings lie
        side by side) are served from it: one pread instead of one each (a
        process with 5000 small mappings: 10 instead of 5000)."""
        first = start // PAGE
        at = first - self._ahead_first
        if 0 <= at and at + npages <= len(self._ahead) // 8:
            return self._ahead[at * 8 : (at + npages) * 8]
        raw = os.pread(self._pagemap, 8 * max(npages, WINDOW_PAGES), first * 8)
        if npages < WINDOW_PAGES:
            self._ahead, self._ahead_first = raw, first
        return raw[: 8 * npages]

    # -- reading --------------------------------------------------------------

    def _read_run(self, addr: int, count: int) -> bytes | memoryview:
        """The ``count`` pages at ``addr``.  Mostly a view of the stream's one
        read buffer, valid until the next call: every caller copies it (or,
        through :class:`StreamReader`, hands it to FUSE) before asking for
        more.  Reusing it spares a fresh 4 MiB (its faults and zeroing) per
        window."""
        n = count * PAGE
        if self._run_buf is None or n > len(self._run_buf):
            # A window's size (runs never span windows) unless asked for more.
            self._run_buf = bytearray(max(n, WINDOW_PAGES * PAGE))
            self._run_addr = ctypes.addressof(ctypes.c_char.from_buffer(self._run_buf))
        view = memoryview(self._run_buf)[:n]
        if self.follow_pid:
            # process_vm_readv (about twice /proc/PID/mem's speed here).
            local = Iovec(self._run_addr, n)
            remote = Iovec(addr, n)
            got = libc.process_vm_readv(
                self._vm_pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0
            )
        else:
            try:
                got = os.preadv(self._mem, [view], addr)
            except OSError:
                got = -1
        if got == n:
            return view
        data = b""
        if self.follow_pid:
            try:
                data = os.pread(self._mem, count * PAGE, addr)
            except OSError:
                pass
        if len(data) == count * PAGE:
            return data
        # Partly unreadable (e.g. a file mapping past EOF): page by page,
        # unreadable pages as zeros.
        out = bytearray(count * PAGE)
        for i in range(count):
            try:
                page = os.pread(self._mem, PAGE, addr + i * PAGE)
            except OSError:
                continue
            if len(page) == PAGE:
                out[i * PAGE : (i + 1) * PAGE] = page
        return bytes(out)

    def _records(
        self, start: int, runs: list[tuple[int, int, int]], check_zero: bool
    ) -> Iterator[tuple[int, int, int, bytes | memoryview | None]]:
        """(vaddr, count, flags, data-or-None) records; data None means "not
        read yet" (the caller copies it)."""
        for first, count, flags in runs:
            addr = start + first * PAGE
            # Present pages were searched by PAGEMAP_SCAN (_zero_pages); a
            # "swapped" one may be a marker (a guard page), which reads as
            # zeros: without page frames only its contents tell.
            if not check_zero or (flags == 0 and self._zero_scan):
                yield addr, count, flags, None
                continue
            # Bytes, not the read buffer's view: a memoryview compares
            # element by element, 20 times slower than bytes.
            data = bytes(self._read_run(addr, count))
            if data == ZERO_WINDOW[: len(data)]:
                continue
            nonzero = [
                0 if data[i * PAGE : (i + 1) * PAGE] != ZERO_PAGE else 2 for i in range(count)
            ]
            view = memoryview(data)
            for m in _RUNS.finditer(bytes(nonzero)):
                sub, subcount = m.start(), m.end() - m.start()
                yield addr + sub * PAGE, subcount, flags, view[sub * PAGE : (sub + subcount) * PAGE]

    def chunks(self) -> Iterator[bytes | bytearray | memoryview]:
        """The stream, chunk by chunk (for a sequential FUSE read)."""
        yield pages_fmt.header()
        for start, n, shared_anon, drop_zero in self._windows(WINDOW_PAGES):
            runs, check_zero = self._classify(start, n, shared_anon, drop_zero)
            for addr, count, flags, data in self._records(start, runs, check_zero):
                self.total_pages += count
                self.total_records += 1
                yield pages_fmt.record_header(addr, count, flags)
                yield data if data is not None else self._read_run(addr, count)
        yield pages_fmt.end_marker(self.total_pages, self.total_records)

    def dump(
        self,
        sink: BufferSink,
        progress: Callable[[], None] | None = None,
        layout: Layout | None = None,
    ) -> None:
        """The whole stream into ``sink``, memory copied process to buffer;
        with ``layout``, where every record went is noted there.  The sink
        reads with process_vm_readv: only for a ``follow_pid`` stream."""
        if not self.follow_pid:
            raise ValueError("dump() reads by pid: make the stream with follow_pid=True")
        sink.put(pages_fmt.header())
        for key in self._windows(WINDOW_PAGES):
            runs, check_zero = self._classify(*key)
            placed: list[tuple[int, int, int]] = []
            for addr, count, flags, data in self._records(key[0], runs, check_zero):
                self.total_pages += count
                self.total_records += 1
                sink.put(pages_fmt.record_header(addr, count, flags))
                placed.append((addr, count, sink.size))
                if data is not None:
                    sink.put(data)
                else:
                    done = sink.put_remote(self._vm_pid, addr, count * PAGE) // PAGE
                    if done < count:
                        sink.put(self._read_run(addr + done * PAGE, count - done))
            if layout is not None:
                layout.windows.append((key, runs, check_zero, placed))
            if progress is not None:
                progress()
        sink.put(pages_fmt.end_marker(self.total_pages, self.total_records))
        if layout is not None:
            layout.total_pages = self.total_pages
            layout.total_records = self.total_records

    def patch(
        self,
        sink: BufferSink,
        layout: Layout,
        written: list[tuple[int, int]],
        tracked: list[tuple[int, int]],
    ) -> int | None:
        """Bring a stream that :meth:`dump` copied while the process ran up to
        date, the process now frozen: in the ``tracked`` ranges (address
        order), the pages in ``written`` (regions in address order, written
        since the copy began: see :mod:`sigfs.tracking`) are copied again over
        their place, and elsewhere every page kept (shared memory, which
        another process may have written; the copied-on-write pages of
        private file mappings; mappings that could not be tracked).
        Returns how many pages were copied again, or None, with the reason in
        :attr:`refused`, when only a new stream will do: the stream's layout
        itself changed (mappings, pages present, swapped or mapping the zero
        page, or a written page where zero pages are found by their
        contents), or more than half of its pages or records would be copied
        again (a new stream copies them faster than patching does)."""
        if not self.follow_pid:
            raise ValueError("patch() reads by pid: make the stream with follow_pid=True")
        self.refused = "layout"
        windows = list(self._windows(WINDOW_PAGES))
        if len(windows) != len(layout.windows):
            return None
        starts = [lo for lo, _ in written]
        tracked_starts = [lo for lo, _ in tracked]
        # First every window is checked and what to copy again is listed;
        # only then is anything copied.
        todo: list[tuple[int, int, int]] = []  # (address, pages, file offset)
        count_again = 0
        for key, (old_key, old_runs, old_check, placed) in zip(
            windows, layout.windows, strict=True
        ):
            if key != old_key:
                return None
            start, n, shared_anon, drop_zero = key
            raw = self._entries(start, n)
            runs, check_zero = self._classify(start, n, shared_anon, drop_zero, raw)
            if runs != old_runs or check_zero != old_check:
                return None
            if not runs:
                continue
            i = bisect.bisect_right(tracked_starts, start) - 1
            inside = i >= 0 and start + n * PAGE <= tracked[i][1]
            if not inside:
                if check_zero:
                    return None  # its zero pages may have changed
                todo.extend(placed)
                count_again += sum(count for _, count, _ in placed)
                continue
            dirty = _marks(start, n, written, starts)
            for addr, count, at in placed:
                first = (addr - start) // PAGE
                marks = dirty[first : first + count]
                if 0 not in marks:
                    continue
                if check_zero:
                    return None  # its zero pages may have changed
                for m in _WRITTEN_RUNS.finditer(marks):
                    sub, k = m.start(), m.end() - m.start()
                    todo.append((addr + sub * PAGE, k, at + sub * PAGE))
                    count_again += k
        # Patching costs more a page, and much more a run, than a new stream:
        # past half of either (and past a few MiB or runs), make a new one.
        if mostly(count_again, len(todo), layout):
            self.refused = "most"
            return None
        for addr, k, at in todo:
            if not sink.patch_remote(self._vm_pid, addr, k * PAGE, at):
                # A page process_vm_readv cannot read (PROT_NONE): through
                # /proc/PID/mem, as dump() does.
                sink.patch_bytes(bytes(self._read_run(addr, k)), at)
        self.refused = ""
        self.total_pages = layout.total_pages
        self.total_records = layout.total_records
        return count_again


class StreamReader:
    """Serves a sequential FUSE read of a chunk iterator, holding one chunk."""

    def __init__(
        self, chunks: Iterator[bytes | bytearray | memoryview], on_close: PagesStream | None = None
    ) -> None:
        self._chunks = chunks
        self._buf: bytes | bytearray | memoryview = b""
        self._buf_off = 0  # stream offset of _buf[0]
        self._done = False
        self._on_close = on_close

    def read(self, off: int, size: int) -> bytes | bytearray | memoryview:
        """``size`` bytes of the stream at ``off`` (fewer at its end).  A read
        inside the chunk held is a view of it, valid until the next read
        (pyfuse3 replies from it before it runs another handler: no copy in
        Python); one across chunks is a new buffer."""
        if off < self._buf_off:
            raise OSError(errno.ESPIPE, "pages is a stream: read it from the start, in order")
        rel = off - self._buf_off
        if rel + size <= len(self._buf):
            return memoryview(self._buf)[rel : rel + size]
        out = bytearray()
        while len(out) < size:
            rel = off + len(out) - self._buf_off
            if rel < len(self._buf):
                take = self._buf[rel : rel + size - len(out)]
                out += take
                continue
            if self._done:
                break
            try:
                nxt = next(self._chunks)
            except StopIteration:
                self._done = True
                break
            self._buf_off += len(self._buf)
            self._buf = nxt
        return out

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close.close()
