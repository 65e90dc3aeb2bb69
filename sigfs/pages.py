"""The ``pages`` stream: the memory contents a restore needs, generated lazily.

For every VMA (but the kernel's own: vvar, vdso, vsyscall) the pagemap tells
which pages hold data a restore needs: in private mappings the anonymous
pages (PM_FILE clear: heap, stack, and file pages changed copy-on-write), in
shared anonymous memory every present page; clean file pages are not taken,
the file has them (CRIU makes the same choice).  Only those runs are read
through ``/proc/PID/mem`` -- reading a whole window would fault absent pages
in and change the very page tables being dumped -- all-zero pages are left
out, and the rest is emitted as records (see :mod:`sigfs.formats.pages`).
Nothing is held but the current 1 MiB window, so the daemon's memory stays
flat however large the process is.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterator

from sigfs.formats import mm as mm_fmt
from sigfs.formats import pages as pages_fmt

PAGE = 4096
WINDOW_PAGES = 256  # 1 MiB
SKIPPED = {"[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]"}
PM_PRESENT = 1 << 63
PM_SWAPPED = 1 << 62
PM_FILE = 1 << 61  # file page or shared anonymous page
ZERO_PAGE = bytes(PAGE)
ZERO_WINDOW = bytes(PAGE * WINDOW_PAGES)


def dumpable_vmas(maps_text: str) -> list[mm_fmt.Vma]:
    return [v for v in mm_fmt.parse_proc_maps(maps_text) if v.path not in SKIPPED]


def _runs(flags: list[int]) -> Iterator[tuple[int, int, int]]:
    """(first index, count, record flags) of consecutive kept pages."""
    i, n = 0, len(flags)
    while i < n:
        if flags[i] < 0:
            i += 1
            continue
        j = i
        while j < n and flags[j] == flags[i]:
            j += 1
        yield i, j - i, flags[i]
        i = j


class PagesStream:
    """One pass over a process's memory, as the bytes of the ``pages`` file."""

    def __init__(self, tgid: int, vmas: list[mm_fmt.Vma]) -> None:
        self.tgid = tgid
        self.vmas = vmas
        self.total_pages = 0
        self.total_records = 0
        self.bytes_planned = sum(v.end - v.start for v in vmas)
        self.bytes_scanned = 0
        try:
            self._mem = os.open(f"/proc/{tgid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            self._pagemap = os.open(f"/proc/{tgid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"no such process: {tgid}") from None

    def close(self) -> None:
        for fd in (self._mem, self._pagemap):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> PagesStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _window(
        self, start: int, npages: int, shared_anon: bool, drop_zero: bool
    ) -> Iterator[bytes | memoryview]:
        raw = os.pread(self._pagemap, 8 * npages, (start // PAGE) * 8)
        entries = struct.unpack(f"<{len(raw) // 8}Q", raw)
        kept = []
        for e in entries:
            if not e & (PM_PRESENT | PM_SWAPPED) or (e & PM_FILE and not shared_anon):
                kept.append(-1)
            else:
                kept.append(1 if e & PM_SWAPPED else 0)
        for first, count, flags in list(_runs(kept)):
            data = self._read_run(start + first * PAGE, count)
            if not drop_zero:
                # A zeroed copy-on-write page of a file mapping is not the
                # file's content: it must be kept.
                self.total_pages += count
                self.total_records += 1
                yield pages_fmt.record_header(start + first * PAGE, count, flags)
                yield data
                continue
            if data == ZERO_WINDOW[: len(data)]:
                continue
            # Leave all-zero pages out: split the run around them.
            nonzero = [
                0 if data[i * PAGE : (i + 1) * PAGE] != ZERO_PAGE else -1 for i in range(count)
            ]
            view = memoryview(data)
            for sub, subcount, _ in _runs(nonzero):
                self.total_pages += subcount
                self.total_records += 1
                yield pages_fmt.record_header(start + (first + sub) * PAGE, subcount, flags)
                yield view[sub * PAGE : (sub + subcount) * PAGE]

    def _read_run(self, addr: int, count: int) -> bytes:
        try:
            data = os.pread(self._mem, count * PAGE, addr)
        except OSError:
            data = b""
        if len(data) == count * PAGE:
            return data
        # Partly unreadable (e.g. a file mapping past EOF): page by page,
        # unreadable pages as zeros (and so left out).
        out = bytearray(count * PAGE)
        for i in range(count):
            try:
                page = os.pread(self._mem, PAGE, addr + i * PAGE)
            except OSError:
                continue
            if len(page) == PAGE:
                out[i * PAGE : (i + 1) * PAGE] = page
        return bytes(out)

    def chunks(self) -> Iterator[bytes | memoryview]:
        yield pages_fmt.header()
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
                n = min(WINDOW_PAGES, (vma.end - addr) // PAGE)
                yield from self._window(addr, n, shared_anon, drop_zero)
                addr += n * PAGE
                self.bytes_scanned += n * PAGE
        yield pages_fmt.end_marker(self.total_pages, self.total_records)


class StreamReader:
    """Serves a sequential FUSE read of a chunk iterator, holding one chunk."""

    def __init__(
        self, chunks: Iterator[bytes | memoryview], on_close: PagesStream | None = None
    ) -> None:
        self._chunks = chunks
        self._buf: bytes | memoryview = b""
        self._buf_off = 0  # stream offset of _buf[0]
        self._done = False
        self._on_close = on_close

    def read(self, off: int, size: int) -> bytes:
        if off < self._buf_off:
            raise OSError(errno.ESPIPE, "pages is a stream: read it from the start, in order")
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
        return bytes(out)

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close.close()
