"""``sigfs verify DIR``: check a checkpoint image against its ``MANIFEST``.

Every file the manifest lists is read in 1 MiB pieces (the command's memory
stays the same whatever the size of ``pages``) and its size and checksum are
compared with the manifest's; files it does not list, symbolic links, and a
``pages`` stream that does not parse to its end marker are reported too.
Nothing of the image is changed.  Exit status 0: the image is whole; 1: a
problem, one line each on stderr; 2: bad arguments.
"""

from __future__ import annotations

import os
import stat
import sys

from sigfs.formats import FormatError
from sigfs.formats import manifest as manifest_fmt
from sigfs.formats import pages as pages_fmt

CHUNK = 1 << 20

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from collections.abc import Callable

    from sigfs.formats.manifest import Hasher, Manifest


class VerifyError(Exception):
    """The image cannot be checked at all (no readable, valid MANIFEST)."""


class _Hashing:
    """A file read for :func:`sigfs.formats.pages.scan` and hashed on the way."""

    def __init__(self, fd: int, hasher: Hasher, seen: Callable[[int], None]) -> None:
        self.fd = fd
        self.hasher = hasher
        self.size = 0
        self._seen = seen

    def read(self, size: int = CHUNK, /) -> bytes:
        data = os.read(self.fd, size if size >= 0 else CHUNK)
        self.hasher.update(data)
        self.size += len(data)
        self._seen(len(data))
        return data


def load_manifest(image: str) -> Manifest:
    path = os.path.join(image, "MANIFEST")
    if not os.path.isdir(image):
        raise VerifyError(f"{image}: not a directory")
    try:
        with open(path, "rb") as f:
            text = f.read(manifest_fmt.MAX_TEXT + 1).decode("utf-8", "replace")
    except FileNotFoundError:
        raise VerifyError(
            f"{image}: no MANIFEST (not a sigfs image, or one whose checkpoint did not finish)"
        ) from None
    except OSError as exc:
        raise VerifyError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return manifest_fmt.parse(text)
    except FormatError as exc:
        raise VerifyError(f"{path}: {exc}") from None


def check(
    image: str, progress: Callable[[int, int], None] | None = None
) -> tuple[Manifest, list[str]]:
    """The image's manifest and its problems (empty: the image is whole).
    ``progress(done, total)`` is called as bytes are read."""
    manifest = load_manifest(image)
    root = os.path.realpath(image)
    total = sum(size for _, size, _ in manifest.files)
    done = 0
    problems: list[str] = []

    def seen(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    for rel, size, expected in manifest.files:
        full = os.path.join(root, rel)
        if os.path.realpath(full) != full:
            problems.append(f"{rel}: reached through a symbolic link")
            continue
        try:
            # A FIFO or a device in its place is not opened (a FIFO would
            # block; a device may act on an open); O_NONBLOCK covers a swap
            # between the lstat and the open.
            if not stat.S_ISREG(os.lstat(full).st_mode):
                problems.append(f"{rel}: not a regular file")
                continue
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            problems.append(f"{rel}: missing ({exc.strerror})")
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel}: not a regular file")
                continue
            if st.st_size != size:
                problems.append(f"{rel}: size is {st.st_size}, the manifest says {size}")
                continue
            reader = _Hashing(fd, manifest_fmt.hasher(manifest.checksum), seen)
            if rel == "pages":
                try:
                    pages_fmt.scan(reader)
                except FormatError as exc:
                    problems.append(f"{rel}: not a valid pages stream: {exc}")
                while reader.read(CHUNK):
                    pass  # what follows the end marker, if anything, is hashed too
            else:
                while reader.read(CHUNK):
                    pass
            if reader.size != size:
                problems.append(f"{rel}: changed while it was read")
                continue
            actual = reader.hasher.hexdigest()
            if actual != expected:
                problems.append(
                    f"{rel}: {manifest.checksum} is {actual}, the manifest says {expected}"
                )
        except OSError as exc:
            problems.append(f"{rel}: cannot read: {exc.strerror}")
        finally:
            os.close(fd)
    listed = {rel for rel, _, _ in manifest.files}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                problems.append(f"{rel}: a symbolic link (an image holds only files)")
            elif name in filenames and rel not in listed and rel != "MANIFEST":
                problems.append(f"{rel}: not listed in the manifest")
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return manifest, problems


def main(image: str, quiet: bool = False) -> int:
    from sigfs.checkpoint import Progress

    bar = Progress(enabled=not quiet and sys.stderr.isatty(), label="sigfs verify")
    try:
        manifest, problems = check(image, lambda done, total: bar.update("read", done, total))
    except VerifyError as exc:
        bar.finish()
        print(f"sigfs: verify: {exc}", file=sys.stderr)
        return 1
    bar.finish()
    for problem in problems:
        print(f"sigfs: verify: {image}: {problem}", file=sys.stderr)
    if problems:
        print(
            f"sigfs: verify: {image}: {len(problems)} problem(s); the image is not whole",
            file=sys.stderr,
        )
        return 1
    if not quiet:
        m = manifest
        kib = sum(size for _, size, _ in m.files) >> 10
        print(
            f"{image}: {len(m.files)} files, {kib} KiB, every {m.checksum} checksum matches; "
            f"process {m.pid}, format {m.format_version}, sigfs {m.sigfs_version}, "
            f"Linux {m.kernel} ({m.machine})"
        )
    return 0
