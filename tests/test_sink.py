"""The checkpoint's pages sink (BufferSink), against the kernel's view: the
file's memory allocated before any copy (tmpfs) or its pages in the page
cache (a disk filesystem), the stream read from a real process through
small staging buffers and written by a second thread, the checksum computed
on the way, and clean errors when the filesystem is full, before the copy
or in the middle of it."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from conftest import modules_after

from sigfs.sink import PAGE, SLOT_SIZE, SLOTS, BufferSink, on_tmpfs

_libc = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a filesystem that fills up."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        yield small
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)


def _resident(fd: int, size: int) -> int:
    """Pages of the file's first ``size`` bytes in the page cache (mincore)."""
    m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
    try:
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        vec = (ctypes.c_ubyte * (size // PAGE))()
        assert _libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) == 0
        return sum(v & 1 for v in vec)
    finally:
        m.close()


def _writers() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "sigfs-writer")


def test_tmpfs_file_memory_is_allocated_before_use(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not on_tmpfs(os.open(shm, os.O_RDONLY | os.O_CLOEXEC)):
        pytest.skip("no tmpfs at /dev/shm")
    path = shm / f"sigfs-test-sink-{os.getpid()}"
    fd = _open(path)
    try:
        assert on_tmpfs(fd)
        size = 8 << 20
        sink = BufferSink(fd, size, background=True)
        sink.ready()
        # tmpfs counts a page's memory in st_blocks once it is allocated.
        assert os.fstat(fd).st_blocks * 512 >= size
        sink.put(b"x" * 5)
        sink.finish()
        assert os.fstat(fd).st_size == 5
        assert os.pread(fd, 10, 0) == b"xxxxx"
    finally:
        os.close(fd)
        path.unlink()


def test_disk_file_is_in_the_page_cache_before_use(tmp_path: Path) -> None:
    fd = _open(tmp_path / "pages")
    try:
        if on_tmpfs(fd):
            pytest.skip("tmp_path is on tmpfs")
        size = 8 << 20
        sink = BufferSink(fd, size, background=True)
        sink.ready()
        assert _resident(fd, size) == size // PAGE
        assert os.fstat(fd).st_blocks * 512 >= size  # reserved on disk
        sink.finish()
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


def _source(size: int) -> tuple[mmap.mmap, int, bytes]:
    """``size`` random bytes in an anonymous mapping of this process."""
    data = os.urandom(size)
    m = mmap.mmap(-1, size)
    m[:] = data
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m)), data


@pytest.mark.parametrize("capacity", [0, 1 << 20, 64 << 20])  # none; smaller; larger
def test_stream_of_headers_and_remote_pages(tmp_path: Path, capacity: int) -> None:
    """Small unaligned records between page runs, over many more bytes than
    the staging buffers hold: the file and both checksums (the running one
    and one read back) agree with the bytes put, in order."""
    runs = 3 * SLOTS * SLOT_SIZE // PAGE  # pages in all
    src, addr, data = _source(runs * PAGE)
    fd = _open(tmp_path / "pages")
    expect = bytearray()
    try:
        sink = BufferSink(fd, capacity, algo="xxh3-128", background=True)
        sink.ready()
        before = _writers()
        at, count, i = 0, 1, 0
        while at < runs:
            count = min(count, runs - at)
            header = f"run {i} at {at} x{count};".encode()
            sink.put(header)
            assert sink.put_remote(os.getpid(), addr + at * PAGE, count * PAGE) == count * PAGE
            expect += header + data[at * PAGE : (at + count) * PAGE]
            at, count, i = at + count, count * 3 + 1, i + 1
        sink.put(b"end")
        expect += b"end"
        assert sink.size == len(expect)
        assert sink.digest("xxh3-128") == xxhash.xxh3_128(bytes(expect)).hexdigest()
        assert sink.digest("sha256") == hashlib.sha256(expect).hexdigest()
        sink.finish()
        assert _writers() == before - 1
        assert os.fstat(fd).st_size == len(expect)
        assert os.pread(fd, len(expect) + 1, 0) == bytes(expect)
    finally:
        os.close(fd)
        src.close()


def test_remote_copy_stops_at_an_unreadable_page(tmp_path: Path) -> None:
    """A PROT_NONE page in the middle: put_remote copies the pages before it
    and says how many; the caller goes on with the rest."""
    src, addr, data = _source(8 * PAGE)
    assert _libc.mprotect(ctypes.c_void_p(addr + 5 * PAGE), PAGE, 0) == 0
    fd = _open(tmp_path / "pages")
    try:
        sink = BufferSink(fd, 1 << 20)
        sink.put(b"h")  # the staging buffer's fill is not page-aligned
        assert sink.put_remote(os.getpid(), addr, 8 * PAGE) == 5 * PAGE
        sink.put(b"rest")
        sink.finish()
        assert os.pread(fd, 1 << 20, 0) == b"h" + data[: 5 * PAGE] + b"rest"
    finally:
        os.close(fd)
        assert _libc.mprotect(ctypes.c_void_p(addr + 5 * PAGE), PAGE, 3) == 0
        src.close()


def test_remote_copy_of_an_exited_process_copies_nothing(tmp_path: Path) -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    fd = _open(tmp_path / "pages")
    try:
        sink = BufferSink(fd, 0)
        assert sink.put_remote(child.pid, 0x400000, 4 * PAGE) == 0
        sink.finish()
        assert os.fstat(fd).st_size == 0
    finally:
        os.close(fd)


def test_full_filesystem_at_prepare_is_a_clean_error(small_tmpfs: Path) -> None:
    fd = _open(small_tmpfs / "pages")
    try:
        before = _writers()
        sink = BufferSink(fd, 8 << 20, background=True)
        with pytest.raises(OSError) as info:
            sink.ready()
        assert info.value.errno == errno.ENOSPC
        sink.discard()  # nothing raised again
        assert _writers() == before
        with pytest.raises(ValueError, match="closed"):
            sink.put(b"x")
        assert _writers() == before
    finally:
        os.close(fd)


def test_full_filesystem_while_writing_is_a_clean_error(small_tmpfs: Path) -> None:
    """No room reserved (capacity 0), then more than the disk holds: the
    writer thread's ENOSPC comes out of the caller's next call, and the
    thread is gone after discard()."""
    fd = _open(small_tmpfs / "pages")
    try:
        before = _writers()
        sink = BufferSink(fd, 0)
        chunk = os.urandom(SLOT_SIZE)
        with pytest.raises(OSError) as info:
            for _ in range(4 * SLOTS):  # far past 1 MiB
                sink.put(chunk)
            sink.drain()
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError):
            sink.finish()
        sink.discard()
        assert _writers() == before
    finally:
        os.close(fd)


def test_checkpoint_prepares_the_file_before_importing_the_formats() -> None:
    """`sigfs checkpoint` starts preparing the pages file as soon as it has
    checked its arguments: what it imports before that (sigfs.checkpoint,
    sigfs.sink) must not pull in the formats or the loaders, and its
    default checksum must be the formats' own."""
    from sigfs import checkpoint
    from sigfs.formats import manifest

    assert checkpoint.DEFAULT_CHECKSUM == manifest.DEFAULT_CHECKSUM
    heavy = ("sigfs.formats", "sigfs.pages", "sigfs.files", "sigfs.tracer", "xxhash", "trio")
    loaded = modules_after("sigfs.cli, sigfs.checkpoint")
    assert not sorted(m for m in loaded if m.startswith(heavy))


def test_stream_reader_answers_every_read_as_the_stream_and_views_stay_put() -> None:
    """sigfs.pages.StreamReader over chunks that reuse one buffer, as the
    pages stream's do: every sequential read (inside a chunk: a view; across
    chunks: a copy) gives the stream's bytes, and a view handed out holds
    them until the next read, which is when FUSE has sent it."""
    import random

    from sigfs.pages import StreamReader

    rng = random.Random(7)
    buf = bytearray(4096)
    expected = bytearray()
    sizes = [rng.choice((1, 24, 100, 4096, 4096)) for _ in range(300)]

    def chunks() -> Iterator[memoryview]:
        for i, n in enumerate(sizes):
            buf[:n] = bytes([i % 251]) * n  # overwrites what the last chunk held
            yield memoryview(buf)[:n]

    for i, n in enumerate(sizes):
        expected += bytes([i % 251]) * n
    for read_size in (1, 7, 4096, 5000, 65536):
        reader = StreamReader(chunks())
        off, got = 0, bytearray()
        while True:
            data = reader.read(off, read_size)
            if not data:
                break
            assert len(data) <= read_size
            snapshot = bytes(data)
            got += data
            off += len(data)
            assert bytes(data) == snapshot  # unchanged until the next read
        assert got == expected, read_size
    reader = StreamReader(chunks())
    reader.read(0, 10000)
    with pytest.raises(OSError) as info:
        reader.read(0, 10)
    assert info.value.errno == errno.ESPIPE
