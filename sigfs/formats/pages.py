"""The ``pages`` stream: the memory contents of a process (the one binary sigfs file).

Layout, all little-endian::

    file header   32 bytes  magic b"SIGFSPG\\0" (8), version u32 = 1, page_size u32 = 4096,
                            flags u32 = 0, reserved u32 = 0, reserved u64 = 0
    records       each:     vaddr u64 (page aligned), npages u32 (>= 1),
                            flags u32 (bit 0: the pages were swapped out; others 0),
                            reserved u64 = 0                                   (24 bytes)
                            then npages * page_size bytes of page contents
    end marker    24 bytes  vaddr 0, npages 0, flags 0x80000000 (FLAG_END), reserved 0
    trailer       16 bytes  total_pages u64, total_records u64

Records are sorted by address and do not overlap (adjacent is fine); only pages with
data are stored (present or swapped; flag bit 0 marks swapped), never all-zero pages of
anonymous memory.  The totals in the trailer count data records and their pages; nothing may
follow the trailer.  The whole stream is :func:`stream_size` bytes long.

:func:`iter_records` reads a stream incrementally, validating as it goes, in pieces of
at most ``chunk_pages`` pages, so memory stays bounded whatever the stream's size.  It
yields records as it reads them, so an error late in the stream is raised after earlier
records were yielded: a restore that must be all-or-nothing runs :func:`scan` first.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from sigfs.formats.errors import FormatError

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

__all__ = [
    "CHUNK_PAGES",
    "FLAG_END",
    "FLAG_SWAPPED",
    "HEADER_SIZE",
    "MAGIC",
    "PAGE_SIZE",
    "RECORD_HEADER_SIZE",
    "TRAILER_SIZE",
    "VERSION",
    "Reader",
    "encode",
    "end_marker",
    "header",
    "is_zero_page",
    "iter_records",
    "record_header",
    "scan",
    "stream_size",
]

MAGIC = b"SIGFSPG\0"
VERSION = 1
PAGE_SIZE = 4096
#: Record flag: the pages were swapped out when read (informational).
FLAG_SWAPPED = 1
#: Flags value of the end marker.
FLAG_END = 1 << 31
#: Most pages :func:`iter_records` yields at once by default (1 MiB).
CHUNK_PAGES = 256

_HEADER = struct.Struct("<8sIIIIQ")
_RECORD = struct.Struct("<QIIQ")
_TRAILER = struct.Struct("<QQ")
HEADER_SIZE = _HEADER.size
RECORD_HEADER_SIZE = _RECORD.size
TRAILER_SIZE = _TRAILER.size
_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_ZERO_PAGE = bytes(PAGE_SIZE)


class Reader(Protocol):
    """What :func:`iter_records` needs of a stream: ``read(n)`` (like ``BinaryIO``)."""

    def read(self, size: int = ..., /) -> bytes | None: ...


def header() -> bytes:
    """The 32-byte file header."""
    return _HEADER.pack(MAGIC, VERSION, PAGE_SIZE, 0, 0, 0)


def _check_record(vaddr: int, npages: int, flags: int) -> str | None:
    if not 0 <= vaddr <= _U64 or vaddr % PAGE_SIZE:
        return f"vaddr {vaddr:#x} is not a page-aligned 64-bit address"
    if not 1 <= npages <= _U32:
        return f"npages {npages} is out of range 1..{_U32}"
    if vaddr + npages * PAGE_SIZE > 1 << 64:
        return f"{npages} pages at {vaddr:#x} run past the end of the address space"
    if not 0 <= flags <= _U32 or flags & ~FLAG_SWAPPED:
        return f"flags {flags:#x} has bits other than FLAG_SWAPPED"
    return None


def record_header(vaddr: int, npages: int, flags: int = 0) -> bytes:
    """The 24-byte header of a record of ``npages`` pages at ``vaddr``."""
    problem = _check_record(vaddr, npages, flags)
    if problem is not None:
        raise FormatError(None, problem)
    return _RECORD.pack(vaddr, npages, flags, 0)


def end_marker(total_pages: int, total_records: int) -> bytes:
    """The end marker and trailer (40 bytes)."""
    if not 0 <= total_pages <= _U64 or not 0 <= total_records <= _U64:
        raise FormatError(None, "totals must fit in 64 bits")
    return _RECORD.pack(0, 0, FLAG_END, 0) + _TRAILER.pack(total_pages, total_records)


def stream_size(total_pages: int, total_records: int) -> int:
    """Length in bytes of a stream with these totals."""
    return (
        HEADER_SIZE
        + (total_records + 1) * RECORD_HEADER_SIZE
        + total_pages * PAGE_SIZE
        + TRAILER_SIZE
    )


def encode(runs: Iterable[tuple[int, int, bytes]]) -> Iterator[bytes]:
    """The whole stream, in pieces, for ``(vaddr, flags, data)`` runs in address order.

    ``len(data)`` must be a non-zero multiple of the page size.
    """
    yield header()
    pages = records = 0
    previous_end = 0
    for vaddr, flags, data in runs:
        if not data or len(data) % PAGE_SIZE:
            raise FormatError(None, f"run at {vaddr:#x}: {len(data)} bytes is not whole pages")
        npages = len(data) // PAGE_SIZE
        if vaddr < previous_end:
            raise FormatError(None, f"run at {vaddr:#x} overlaps or precedes the one before")
        yield record_header(vaddr, npages, flags)
        yield data
        previous_end = vaddr + len(data)
        pages += npages
        records += 1
    yield end_marker(pages, records)


def is_zero_page(buf: bytes | bytearray | memoryview) -> bool:
    """True when every byte of ``buf`` (a page, or any length) is zero."""
    view = memoryview(buf).cast("B")
    for start in range(0, len(view), PAGE_SIZE):
        piece = view[start : start + PAGE_SIZE]
        if bytes(piece) != _ZERO_PAGE[: len(piece)]:
            return False
    return True


def _read(stream: Reader, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the stream."""
    data = stream.read(size) or b""
    if len(data) >= size or not data:
        return data[:size]
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)[:size]


def _error(offset: int, reason: str) -> FormatError:
    return FormatError(None, f"pages: at byte {offset}: {reason}")


def iter_records(
    stream: Reader, chunk_pages: int = CHUNK_PAGES
) -> Iterator[tuple[int, int, int, memoryview]]:
    """Yield ``(vaddr, npages, flags, data)`` for the stream's records, validating all.

    A record longer than ``chunk_pages`` pages comes as several consecutive pieces (each
    with its own ``vaddr`` and ``npages``).  Raises :class:`FormatError` naming the byte
    offset on a bad header, truncation, unaligned/unsorted/overlapping records, a
    missing end marker, a trailer that does not match, or data after the trailer.
    """
    for vaddr, npages, flags, data, _ in _iterate(stream, chunk_pages):
        yield vaddr, npages, flags, data


def _iterate(stream: Reader, chunk_pages: int) -> Iterator[tuple[int, int, int, memoryview, bool]]:
    """:func:`iter_records`, also saying whether each piece starts a record."""
    if chunk_pages < 1:
        raise ValueError("chunk_pages must be at least 1")
    head = _read(stream, HEADER_SIZE)
    if len(head) < HEADER_SIZE:
        raise _error(0, f"truncated file header ({len(head)} of {HEADER_SIZE} bytes)")
    magic, version, page_size, flags, reserved32, reserved64 = _HEADER.unpack(head)
    if magic != MAGIC:
        raise _error(0, f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise _error(8, f"unsupported version {version} (this sigfs reads {VERSION})")
    if page_size != PAGE_SIZE:
        raise _error(12, f"page size {page_size}, expected {PAGE_SIZE}")
    if flags or reserved32 or reserved64:
        raise _error(16, "header flags and reserved fields must be 0")
    offset = HEADER_SIZE
    previous_end = 0
    pages = records = 0
    while True:
        raw = _read(stream, RECORD_HEADER_SIZE)
        if not raw:
            raise _error(offset, "stream ends without the end marker")
        if len(raw) < RECORD_HEADER_SIZE:
            raise _error(
                offset, f"truncated record header ({len(raw)} of {RECORD_HEADER_SIZE} bytes)"
            )
        vaddr, npages, rflags, reserved = _RECORD.unpack(raw)
        if rflags == FLAG_END:
            if vaddr or npages or reserved:
                raise _error(offset, "end marker with non-zero vaddr, npages or reserved")
            _check_trailer(stream, offset + RECORD_HEADER_SIZE, pages, records)
            return
        problem = _check_record(vaddr, npages, rflags)
        if problem is None and reserved:
            problem = "reserved field is not 0"
        if problem is None and vaddr < previous_end:
            problem = f"record at {vaddr:#x} overlaps or precedes the one ending {previous_end:#x}"
        if problem is not None:
            raise _error(offset, problem)
        offset += RECORD_HEADER_SIZE
        done = 0
        while done < npages:
            count = min(chunk_pages, npages - done)
            want = count * PAGE_SIZE
            data = _read(stream, want)
            if len(data) < want:
                raise _error(
                    offset + len(data),
                    f"truncated data of the record at {vaddr:#x} "
                    f"({done * PAGE_SIZE + len(data)} of {npages * PAGE_SIZE} bytes)",
                )
            yield vaddr + done * PAGE_SIZE, count, rflags, memoryview(data), done == 0
            offset += want
            done += count
        previous_end = vaddr + npages * PAGE_SIZE
        pages += npages
        records += 1


def _check_trailer(stream: Reader, offset: int, pages: int, records: int) -> None:
    raw = _read(stream, TRAILER_SIZE)
    if len(raw) < TRAILER_SIZE:
        raise _error(offset, f"truncated trailer ({len(raw)} of {TRAILER_SIZE} bytes)")
    total_pages, total_records = _TRAILER.unpack(raw)
    if (total_pages, total_records) != (pages, records):
        raise _error(
            offset,
            f"trailer says {total_pages} pages in {total_records} records, "
            f"the stream has {pages} in {records}",
        )
    if _read(stream, 1):
        raise _error(offset + TRAILER_SIZE, "data after the trailer")


def scan(stream: Reader) -> tuple[int, int]:
    """Validate a whole stream without keeping it; return ``(total_pages, total_records)``."""
    pages = records = 0
    for _, npages, _, _, first in _iterate(stream, CHUNK_PAGES):
        pages += npages
        records += first
    return pages, records
