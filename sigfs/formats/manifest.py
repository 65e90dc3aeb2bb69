"""``DIR/MANIFEST``: what a checkpoint image is, and a checksum of every file in it.

::

    format_version 3
    checksum xxh3-128
    sigfs_version 0.1.0
    kernel 6.8.0-45-generic
    machine x86_64
    xfeatures 0x00000000000000e7
    xsave_size 2432
    pid 4242
    created 2024-05-01T12:00:00Z
    file 6c78e0e3bd51d358d01e758642b85fb8 4 fds
    file 99aa06d3014798d86001c324468d497f 0 task/4242/regs

``checksum`` names the algorithm of every digest in the file: ``xxh3-128`` (32
lowercase hex digits, the default: fast, and it catches corruption but not tampering)
or ``sha256`` (64).  ``xfeatures`` and ``xsave_size`` describe the CPU's xsave area
(the ``fpu`` files can only be restored where they match); ``created`` is ISO-8601
UTC: sigfs writes the process's start time there, so two images of one unchanged
process are identical.  Each ``file`` line is ``file DIGEST SIZE PATH``, PATH relative
to the image directory, the rest of the line, escaped as in :mod:`.fds`; the lines
are sorted by path.  ``kernel`` is the rest of its line (``uname -r``).  On input
every key must appear once; ``format_version`` must be in :data:`SUPPORTED_VERSIONS`.
Version 1 has no ``checksum`` line and its digests are sha256; it is still read, and
:func:`render` writes a version 1 :class:`Manifest` back the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import xxhash

from sigfs.formats.errors import FormatError, check_size, is_comment, parse_int, show
from sigfs.formats.fds import numbered_long_lines, parse_path, render_path
from sigfs.record import record

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import Protocol

    from _typeshed import ReadableBuffer
else:
    Protocol = object

__all__ = [
    "CHECKSUMS",
    "DEFAULT_CHECKSUM",
    "FORMAT_VERSION",
    "KEYS",
    "MAX_TEXT",
    "SUPPORTED_VERSIONS",
    "Hasher",
    "Manifest",
    "digest",
    "entry",
    "format_created",
    "hasher",
    "parse",
    "render",
    "verify",
]

#: The image format this sigfs writes.
FORMAT_VERSION = 3
#: The image formats this sigfs reads: 1 is 2 without ``checksum`` (always sha256); 3 is
#: 2 with ``comm`` in ``status`` escaped as paths are (the same bytes unless a name had a
#: ``\``, a control character or bytes that are not UTF-8).
SUPPORTED_VERSIONS: tuple[int, ...] = (1, 2, 3)
#: Checksum algorithms, by their name in the ``checksum`` line.
CHECKSUMS: tuple[str, ...] = ("xxh3-128", "sha256")
#: What sigfs uses unless told otherwise: over ten times faster than sha256, and as good at
#: catching corruption (not tampering).
DEFAULT_CHECKSUM = "xxh3-128"
#: Keys before the ``file`` lines, in file order (version 1 has no ``checksum``).
KEYS: tuple[str, ...] = (
    "format_version", "checksum", "sigfs_version", "kernel", "machine", "xfeatures",
    "xsave_size", "pid", "created",
)  # fmt: skip
#: Largest text accepted (a process with many threads has many files).
MAX_TEXT = 64 * 1024 * 1024

_U64 = (1 << 64) - 1
_PID_MAX = (1 << 31) - 1
#: Hex digits of each algorithm's digest.
_DIGITS = {"xxh3-128": 32, "sha256": 64}
_DIGEST = {algo: re.compile(f"[0-9a-f]{{{n}}}") for algo, n in _DIGITS.items()}
_WORD = re.compile(r"[A-Za-z0-9._+~:-]{1,64}")
_CREATED = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|\+00:00)")


class Hasher(Protocol):
    """A running checksum, as :func:`hasher` returns it (like ``hashlib``'s objects)."""

    def update(self, data: ReadableBuffer, /) -> None: ...

    def hexdigest(self) -> str: ...


def _unknown_checksum(algo: object) -> str:
    known = ", ".join(CHECKSUMS)
    return f"checksum: unknown algorithm {show(str(algo))} (known: {known})"


def hasher(algo: str) -> Hasher:
    """A fresh :class:`Hasher` for ``algo``, one of :data:`CHECKSUMS`."""
    if algo == "xxh3-128":
        return xxhash.xxh3_128()
    if algo == "sha256":
        import hashlib  # only here: OpenSSL's start-up costs a few ms

        return hashlib.sha256()
    raise FormatError(None, _unknown_checksum(algo))


def digest(algo: str, data: ReadableBuffer) -> str:
    """The ``algo`` checksum of ``data`` as lowercase hex, as a ``file`` line has it."""
    h = hasher(algo)
    h.update(data)
    return h.hexdigest()


def _check_digest(algo: str, value: str, line: int | None, prefix: str = "") -> None:
    if not _DIGEST[algo].fullmatch(value):
        raise FormatError(
            line,
            f"{prefix}expected {_DIGITS[algo]} lowercase hex digits of {algo}, got {show(value)}",
        )


def format_created(when: datetime) -> str:
    """``when`` as the canonical ``created`` value, e.g. ``2024-05-01T12:00:00Z``."""
    if when.tzinfo is None:
        raise FormatError(None, "created: need an aware datetime")
    return when.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_created(value: str, line: int | None) -> None:
    if not _CREATED.fullmatch(value):
        raise FormatError(
            line, f"created: expected ISO-8601 UTC like 2024-05-01T12:00:00Z, got {show(value)}"
        )
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise FormatError(line, f"created: {show(value)} is not a valid date and time") from None


def _check_relpath(path: str, line: int | None) -> None:
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in path.split("/")):
        raise FormatError(line, f"file: {show(path)} is not a clean relative path")
    render_path(path)


def _check_text(key: str, value: str, line: int | None) -> None:
    if not value or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or len(value) > 256:
        raise FormatError(line, f"{key}: expected 1..256 printable characters, got {show(value)}")


def _unsupported(version: int) -> str:
    reads = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
    return f"format_version {version} is not supported (this sigfs reads {reads})"


_V1_CHECKSUM = "checksum: format_version 1 has no checksum line (its digests are sha256)"


@record
class Manifest:
    """The image's identity and ``(path, size, digest)`` of each file, sorted by path.

    Every digest is of algorithm ``checksum``; format version 1 is always ``sha256``.
    """

    format_version: int
    checksum: str
    sigfs_version: str
    kernel: str
    machine: str
    xfeatures: int
    xsave_size: int
    pid: int
    created: str
    files: tuple[tuple[str, int, str], ...]

    def __post_init__(self) -> None:
        if self.format_version not in SUPPORTED_VERSIONS:
            raise FormatError(None, _unsupported(self.format_version))
        if self.checksum not in CHECKSUMS:
            raise FormatError(None, _unknown_checksum(self.checksum))
        if self.format_version == 1 and self.checksum != "sha256":
            raise FormatError(
                None, f"checksum: format_version 1 is always sha256, not {show(self.checksum)}"
            )
        for key in ("sigfs_version", "machine"):
            if not _WORD.fullmatch(getattr(self, key)):
                raise FormatError(None, f"{key}: {show(getattr(self, key))} is not a single word")
        _check_text("kernel", self.kernel, None)
        if not 0 <= self.xfeatures <= _U64:
            raise FormatError(None, f"xfeatures {self.xfeatures} does not fit in 64 bits")
        if not 0 <= self.xsave_size <= 1 << 20:
            raise FormatError(None, f"xsave_size {self.xsave_size} is out of range")
        if not 1 <= self.pid <= _PID_MAX:
            raise FormatError(None, f"pid {self.pid} is out of range 1..{_PID_MAX}")
        _check_created(self.created, None)
        if not isinstance(self.files, tuple):
            raise FormatError(None, "files must be a tuple")
        previous: str | None = None
        for path, size, value in self.files:
            _check_relpath(path, None)
            if previous is not None and path <= previous:
                raise FormatError(None, f"file {show(path)}: files must be sorted and unique")
            previous = path
            if not 0 <= size <= _U64:
                raise FormatError(None, f"file {show(path)}: size {size} out of range")
            _check_digest(self.checksum, value, None, f"file {show(path)}: ")

    def file(self, path: str) -> tuple[int, str] | None:
        """``(size, digest)`` of ``path``, or ``None`` if it is not listed."""
        for item, size, value in self.files:
            if item == path:
                return size, value
        return None


def render(manifest: Manifest) -> str:
    """The keys in :data:`KEYS` order, then one ``file`` line per file.

    A version 1 manifest has no ``checksum`` line, as version 1 was written.
    """
    m = manifest
    lines = [f"format_version {m.format_version}"]
    if m.format_version != 1:
        lines.append(f"checksum {m.checksum}")
    lines += [
        f"sigfs_version {m.sigfs_version}",
        f"kernel {m.kernel}",
        f"machine {m.machine}",
        f"xfeatures 0x{m.xfeatures:016x}",
        f"xsave_size {m.xsave_size}",
        f"pid {m.pid}",
        f"created {m.created}",
    ]
    lines.extend(f"file {value} {size} {render_path(path)}" for path, size, value in m.files)
    return "\n".join(lines) + "\n"


def parse(text: str) -> Manifest:
    """Parse ``MANIFEST`` text: every key once, ``file`` lines sorted by path and unique.

    ``checksum`` is required in format version 2 and refused in version 1 (sha256).
    """
    check_size(text, MAX_TEXT, "MANIFEST")
    values: dict[str, tuple[int, str]] = {}
    files: list[tuple[str, int, str]] = []
    file_lines: list[int] = []
    last = 1
    for number, line in numbered_long_lines(text):
        last = number
        if is_comment(line):
            continue
        key, _, rest = line.partition(" ")
        if key == "file":
            parts = rest.split(" ", 2)
            if len(parts) != 3 or not parts[0] or not parts[1]:
                raise FormatError(number, "expected 'file DIGEST SIZE PATH' with single spaces")
            value, size_token, raw_path = parts
            size = parse_int(size_token, "size", 0, _U64, number)
            path = parse_path(raw_path, "path", number)
            _check_relpath(path, number)
            if files and path <= files[-1][0]:
                what = "given twice" if path == files[-1][0] else "out of order (sort by path)"
                raise FormatError(number, f"file {show(path)} {what}")
            files.append((path, size, value))
            file_lines.append(number)
            continue
        if key not in KEYS:
            raise FormatError(number, f"unknown key {show(key)}")
        if key in values:
            raise FormatError(number, f"{key} given twice (also on line {values[key][0]})")
        values[key] = (number, rest)

    def number_of(key: str, lo: int, hi: int) -> int:
        line, token = values[key]
        return parse_int(token.strip(), key, lo, hi, line)

    version = FORMAT_VERSION
    if "format_version" in values:
        version = number_of("format_version", 0, _U64)
        if version not in SUPPORTED_VERSIONS:
            raise FormatError(values["format_version"][0], _unsupported(version))
    required = KEYS if version != 1 else tuple(k for k in KEYS if k != "checksum")
    missing = [k for k in required if k not in values]
    if missing:
        raise FormatError(last, f"end of input: missing {' '.join(missing)}")
    if version == 1:
        if "checksum" in values:
            raise FormatError(values["checksum"][0], _V1_CHECKSUM)
        algo = "sha256"
    else:
        checksum_line, algo = values["checksum"]
        if algo not in CHECKSUMS:
            raise FormatError(checksum_line, _unknown_checksum(algo))
    for number, (_, _, value) in zip(file_lines, files, strict=True):
        _check_digest(algo, value, number)
    words: dict[str, str] = {}
    for key in ("sigfs_version", "machine"):
        where, token = values[key]
        if not _WORD.fullmatch(token):
            raise FormatError(where, f"{key}: expected one word, got {show(token)}")
        words[key] = token
    kernel_line, kernel = values["kernel"]
    _check_text("kernel", kernel, kernel_line)
    created_line, created = values["created"]
    _check_created(created, created_line)
    return Manifest(
        format_version=version,
        checksum=algo,
        sigfs_version=words["sigfs_version"],
        kernel=kernel,
        machine=words["machine"],
        xfeatures=number_of("xfeatures", 0, _U64),
        xsave_size=number_of("xsave_size", 0, 1 << 20),
        pid=number_of("pid", 1, _PID_MAX),
        created=created,
        files=tuple(files),
    )


def entry(path: str, data: bytes, algo: str = DEFAULT_CHECKSUM) -> tuple[str, int, str]:
    """The ``(path, size, digest)`` entry for a file with contents ``data``."""
    return path, len(data), digest(algo, data)


def verify(
    manifest: Manifest,
    read: Callable[[str], bytes],
    present: Iterable[str] | None = None,
) -> list[str]:
    """Check every listed file; return one message per problem (empty: all good).

    ``read(path)`` returns a file's contents (relative to the image) and raises
    ``OSError`` when it cannot; ``present``, if given, names the files that exist, so
    that files the manifest does not list are reported too (``MANIFEST`` itself aside).
    Digests are computed with ``manifest.checksum``.
    """
    problems: list[str] = []
    algo = manifest.checksum
    for path, size, expected in manifest.files:
        try:
            data = read(path)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            problems.append(f"{path}: missing ({reason})")
            continue
        if len(data) != size:
            problems.append(f"{path}: size is {len(data)}, the manifest says {size}")
            continue
        actual = digest(algo, data)
        if actual != expected:
            problems.append(f"{path}: {algo} is {actual}, the manifest says {expected}")
    if present is not None:
        listed = {path for path, _, _ in manifest.files}
        for path in sorted(set(present) - listed - {"MANIFEST"}):
            problems.append(f"{path}: not listed in the manifest")
    return problems
