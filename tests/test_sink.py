"""The checkpoint's pages buffer (BufferSink), against the kernel's view of
its memory: faulted in before any copy, in the background, with clean
errors when the filesystem is full."""

from __future__ import annotations

import errno
import os
import struct
import subprocess

import pytest
import xxhash

from sigfs.pages import PAGE, BufferSink


def _present_pages(addr: int, size: int) -> int:
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(addr // PAGE * 8)
        raw = f.read(size // PAGE * 8)
    return sum(1 for (e,) in struct.iter_unpack("<Q", raw) if e >> 63)


@pytest.mark.parametrize("mib", [1, 130])  # one worker; several slices
def test_buffer_is_faulted_in_before_use(tmp_path, mib) -> None:  # type: ignore[no-untyped-def]
    size = mib << 20
    fd = os.open(tmp_path / "pages", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        sink = BufferSink(fd, size, background=True)
        sink.ready()
        assert _present_pages(sink._addr, size) == size // PAGE
        data = os.urandom(3 * PAGE + 5)
        sink.put(data)
        sink.put(b"tail")
        assert sink.digest("xxh3-128") == xxhash.xxh3_128(data + b"tail").hexdigest()
        sink.finish()
        assert os.fstat(fd).st_size == len(data) + 4
        assert os.pread(fd, len(data) + 4, 0) == data + b"tail"
    finally:
        os.close(fd)


def test_full_filesystem_is_a_clean_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        fd = os.open(small / "pages", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            sink = BufferSink(fd, 8 << 20, background=True)
            with pytest.raises(OSError) as info:
                sink.ready()
            assert info.value.errno == errno.ENOSPC
            sink.discard()  # nothing left mapped, nothing raised again
            sink.ready()
        finally:
            os.close(fd)
    finally:
        subprocess.run(["umount", str(small)], check=True)
