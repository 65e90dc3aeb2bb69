"""The ``fds`` file: a process's open file descriptors, its cwd and its root.

::

    cwd /home/user
    root /
    fd=0 kind=chr flags=0o100002 pos=0 cloexec=0 mnt_id=29 ino=3 shared=0 deleted=0 path=/dev/pts/0
      extra rdev 0x8800
    fd=1 kind=chr flags=0o100002 pos=0 cloexec=0 mnt_id=29 ino=3 shared=0 deleted=0 path=/dev/pts/0
    fd=3 kind=eventfd flags=0o2 pos=0 cloexec=1 mnt_id=15 ino=1057 shared=3 deleted=0 \
path=anon_inode:[eventfd]
      extra eventfd-count 5

Each descriptor is one line of ``key=value`` tokens, in the order shown, ``path=`` last
and taking the rest of the line; then zero or more indented ``extra KEY VALUE`` lines with
type-specific details (VALUE is the rest of the line, escaped like a path).  Lines are
sorted by fd; on input the fd lines (each with its extra lines) may come in any order,
but each fd only once.

``flags`` are the open flags as ``/proc/PID/fdinfo`` shows them but without O_CLOEXEC,
which is a property of the descriptor and shown as ``cloexec``; written ``0o`` octal;
``shared`` is the lowest descriptor of the process that refers to the *same open file
description* (dup()ed descriptors share one ``struct file``: its offset and flags), the
descriptor itself when none lower does.

Paths are escaped so any name fits on a line: ``\\`` is ``\\\\``, control characters
(and bytes that are not UTF-8, held as ``os.fsdecode`` surrogates) are ``\\xHH``, and a
space at the start or end of a path is ``\\x20``.  Everything else is verbatim, including
spaces and ``=``.  The same escaping is used by :mod:`.mm`, :mod:`.status` and
:mod:`.manifest`, which import :func:`render_path`, :func:`parse_path` and
:func:`numbered_long_lines` from here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from sigfs.formats.errors import (
    FormatError,
    check_size,
    is_comment,
    numbered_lines,
    parse_int,
    show,
)
from sigfs.record import record, replace

__all__ = [
    "KINDS",
    "MAX_TEXT",
    "O_CLOEXEC",
    "PATH_LINE_MAX",
    "Fd",
    "Fds",
    "numbered_long_lines",
    "parse",
    "parse_path",
    "render",
    "render_path",
]

#: The ``kind`` values a descriptor may have.
KINDS: tuple[str, ...] = (
    "file", "dir", "pipe", "fifo", "socket-unix", "socket-inet", "socket-inet6",
    "socket-netlink", "socket-other", "eventfd", "signalfd", "timerfd", "epoll", "inotify",
    "fanotify", "pidfd", "memfd", "anon", "chr", "blk", "other",
)  # fmt: skip
#: The O_CLOEXEC bit as fdinfo's ``flags`` shows it.
O_CLOEXEC = 0o2000000
#: Longest line accepted in formats that carry paths: a PATH_MAX (4096-byte) path, every
#: byte escaped as ``\\xHH``, plus the other fields.
PATH_LINE_MAX = 4 * 4096 + 1024
#: Largest ``fds`` text accepted (about a million descriptors with longish paths).
MAX_TEXT = 256 * 1024 * 1024

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_I64 = (-(1 << 63), (1 << 63) - 1)
_FD_MAX = (1 << 31) - 1
_KIND_SET = frozenset(KINDS)
_KEYS = ("fd", "kind", "flags", "pos", "cloexec", "mnt_id", "ino", "shared", "deleted")
_EXTRA_KEY = re.compile(r"[A-Za-z0-9_.:+-]{1,64}")
_OCTAL = re.compile(r"0o[0-7]{1,30}")
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")
# A character render_path must escape or refuse (anywhere in a path), and
# the control characters parse_path refuses raw.
_SPECIAL = re.compile(r"[\\\x00-\x1f\x7f\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------------------------------
# helpers shared by the formats that carry paths


def numbered_long_lines(
    text: str, max_line: int = PATH_LINE_MAX, first_line: int = 1
) -> Iterator[tuple[int, str]]:
    """:func:`sigfs.formats.errors.numbered_lines` with room for a PATH_MAX path."""
    return numbered_lines(text, first_line, max_line)


def _check_encodable(path: str, what: str) -> None:
    try:
        path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise FormatError(None, f"{what}: {show(path)} is not a file name ({exc.reason})") from None


def render_path(path: str) -> str:
    """Escape ``path`` for a text line (see the module docstring); the inverse of parse."""
    if not _SPECIAL.search(path) and not path.startswith(" ") and not path.endswith(" "):
        return path  # the common case, without a loop over every character
    out: list[str] = []
    last = len(path) - 1
    for i, ch in enumerate(path):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise FormatError(None, f"{show(path)} is not a file name (lone surrogate)")
        elif ch == " " and (i == 0 or i == last):
            out.append("\\x20")
        else:
            out.append(ch)
    return "".join(out)


def parse_path(text: str, what: str = "path", line: int | None = None) -> str:
    """Undo :func:`render_path`: ``\\\\`` and ``\\xHH`` escapes; raw control characters
    are refused (a stray ``\\r`` from CRLF input would otherwise become part of a name)."""
    if "\\" not in text:
        found = _CONTROL.search(text)
        if found is not None:
            bad = found.group()
            raise FormatError(line, f"{what}: control character {bad!r}; write it as \\x..")
        _check_surrogates(text, what, line)
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        code = ord(ch)
        if ch == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt == "\\":
                out.append("\\")
                i += 2
                continue
            if nxt == "x" and _HEX2.fullmatch(text, i + 2, i + 4):
                byte = int(text[i + 2 : i + 4], 16)
                out.append(chr(byte) if byte < 0x80 else chr(0xDC00 + byte))
                i += 4
                continue
            raise FormatError(
                line, f"{what}: bad escape {show(text[i : i + 4])} (use \\\\ or \\xHH)"
            )
        if code < 0x20 or code == 0x7F:
            raise FormatError(line, f"{what}: control character {ch!r}; write it as \\x..")
        out.append(ch)
        i += 1
    result = "".join(out)
    _check_surrogates(result, what, line)
    return result


def _check_surrogates(path: str, what: str, line: int | None) -> None:
    try:
        _check_encodable(path, what)
    except FormatError as exc:
        raise exc.at(line) from None


def _parse_flags(token: str, line: int) -> int:
    if token.startswith("0o"):
        if not _OCTAL.fullmatch(token):
            raise FormatError(line, f"flags: expected 0o octal, got {show(token)}")
        value = int(token[2:], 8)
        if value > _U32:
            raise FormatError(line, f"flags: {token} is out of range 0..{_U32:#o}")
        return value
    return parse_int(token, "flags", 0, _U32, line)


def _parse_bool(token: str, what: str, line: int) -> bool:
    if token not in ("0", "1"):
        raise FormatError(line, f"{what}: expected 0 or 1, got {show(token)}")
    return token == "1"


# ---------------------------------------------------------------------------------------
# the model


@record
class Fd:
    """One open file descriptor (see the module docstring for the fields)."""

    fd: int
    kind: str
    flags: int
    pos: int
    cloexec: bool
    mnt_id: int
    ino: int
    shared: int
    path: str
    deleted: bool = False
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.fd <= _FD_MAX:
            raise FormatError(None, f"fd {self.fd} is out of range 0..{_FD_MAX}")
        if self.kind not in _KIND_SET:
            raise FormatError(None, f"fd {self.fd}: unknown kind {show(self.kind)}")
        if not 0 <= self.flags <= _U32:
            raise FormatError(None, f"fd {self.fd}: flags {self.flags} do not fit in 32 bits")
        if not _I64[0] <= self.pos <= _I64[1]:
            raise FormatError(None, f"fd {self.fd}: pos {self.pos} does not fit in 64 bits")
        for what in ("mnt_id", "ino"):
            value = getattr(self, what)
            if not 0 <= value <= _U64:
                raise FormatError(None, f"fd {self.fd}: {what} {value} does not fit in 64 bits")
        if not 0 <= self.shared <= self.fd:
            raise FormatError(
                None, f"fd {self.fd}: shared={self.shared} must name this or a lower fd"
            )
        _check_encodable(self.path, f"fd {self.fd}: path")
        if not isinstance(self.extra, tuple):
            raise FormatError(None, f"fd {self.fd}: extra must be a tuple of pairs")
        for key, value in self.extra:
            if not _EXTRA_KEY.fullmatch(key):
                raise FormatError(None, f"fd {self.fd}: bad extra key {show(key)}")
            _check_encodable(value, f"fd {self.fd}: extra {key}")

    def get_extra(self, key: str) -> str | None:
        """The first ``extra`` value named ``key``, or ``None``."""
        return next((v for k, v in self.extra if k == key), None)


@record
class Fds:
    """All descriptors of a process (sorted by fd), and its cwd and root."""

    fds: tuple[Fd, ...]
    cwd: str
    root: str

    def __post_init__(self) -> None:
        if not isinstance(self.fds, tuple):
            raise FormatError(None, "fds must be a tuple")
        _check_encodable(self.cwd, "cwd")
        _check_encodable(self.root, "root")
        by_fd: dict[int, Fd] = {}
        previous = -1
        for fd in self.fds:
            if fd.fd <= previous:
                raise FormatError(None, f"fd {fd.fd}: descriptors must be sorted and unique")
            previous = fd.fd
            by_fd[fd.fd] = fd
            _check_shared(fd, by_fd)

    def __getitem__(self, fd: int) -> Fd:
        """The descriptor numbered ``fd`` (``KeyError`` if not open)."""
        for item in self.fds:
            if item.fd == fd:
                return item
        raise KeyError(fd)

    def groups(self) -> dict[int, tuple[int, ...]]:
        """``{lowest fd: all fds}`` for each open file description."""
        result: dict[int, list[int]] = {}
        for fd in self.fds:
            result.setdefault(fd.shared, []).append(fd.fd)
        return {k: tuple(v) for k, v in result.items()}


def _check_shared(fd: Fd, by_fd: dict[int, Fd]) -> None:
    if fd.shared == fd.fd:
        return
    owner = by_fd.get(fd.shared)
    if owner is None:
        raise FormatError(None, f"fd {fd.fd}: shared={fd.shared} is not an open fd")
    if owner.shared != owner.fd:
        raise FormatError(
            None,
            f"fd {fd.fd}: shared={fd.shared}, but fd {fd.shared} has shared={owner.shared}; "
            "name the lowest fd of the open file description",
        )
    if owner.kind != fd.kind or owner.ino != fd.ino:
        raise FormatError(
            None,
            f"fd {fd.fd}: shares fd {fd.shared}'s open file description but differs in kind or ino",
        )


# ---------------------------------------------------------------------------------------
# text


def render_fd(fd: Fd) -> str:
    """One descriptor: its line and its ``extra`` lines, each ending in a newline."""
    head = (
        f"fd={fd.fd} kind={fd.kind} flags=0o{fd.flags:o} pos={fd.pos} "
        f"cloexec={int(fd.cloexec)} mnt_id={fd.mnt_id} ino={fd.ino} shared={fd.shared} "
        f"deleted={int(fd.deleted)} path={render_path(fd.path)}\n"
    )
    extra = "".join(_keyed(f"  extra {k}", render_path(v)) for k, v in fd.extra)
    return head + extra


def render(fds: Fds) -> str:
    """``cwd`` and ``root`` lines, then every descriptor in fd order."""
    return (
        _keyed("cwd", render_path(fds.cwd))
        + _keyed("root", render_path(fds.root))
        + "".join(render_fd(fd) for fd in fds.fds)
    )


def _keyed(key: str, value: str) -> str:
    """``key value`` and a newline; just ``key`` when the value is empty."""
    return f"{key} {value}\n" if value else f"{key}\n"


def _parse_fd_line(number: int, line: str) -> tuple[dict[str, str], str]:
    values: dict[str, str] = {}
    pos = 0
    while True:
        if line.startswith("path=", pos):
            return values, line[pos + 5 :]
        space = line.find(" ", pos)
        token = line[pos:] if space < 0 else line[pos:space]
        key, eq, value = token.partition("=")
        if not eq:
            if not token:
                raise FormatError(number, "expected single spaces between key=value fields")
            raise FormatError(number, f"expected key=value, got {show(token)}")
        if key not in _KEYS:
            raise FormatError(number, f"unknown field {show(key)}")
        if key in values:
            raise FormatError(number, f"field {key} given twice")
        values[key] = value
        if space < 0:
            raise FormatError(number, "end of line: expected path=... last")
        pos = space + 1


def _build_fd(number: int, values: dict[str, str], raw_path: str) -> Fd:
    missing = [k for k in _KEYS if k not in values]
    if missing:
        raise FormatError(number, f"missing fields: {' '.join(missing)}")
    fd = parse_int(values["fd"], "fd", 0, _FD_MAX, number)
    kind = values["kind"]
    if kind not in _KIND_SET:
        raise FormatError(number, f"unknown kind {show(kind)} (one of {', '.join(KINDS)})")
    flags = _parse_flags(values["flags"], number)
    pos = parse_int(values["pos"], "pos", _I64[0], _I64[1], number)
    cloexec = _parse_bool(values["cloexec"], "cloexec", number)
    mnt_id = parse_int(values["mnt_id"], "mnt_id", 0, _U64, number)
    ino = parse_int(values["ino"], "ino", 0, _U64, number)
    shared = parse_int(values["shared"], "shared", 0, _FD_MAX, number)
    deleted = _parse_bool(values["deleted"], "deleted", number)
    if shared > fd:
        raise FormatError(number, f"shared={shared} is higher than fd {fd}")
    path = parse_path(raw_path, "path", number)
    return Fd(fd, kind, flags, pos, cloexec, mnt_id, ino, shared, path, deleted)


def parse(text: str) -> Fds:
    """Parse ``fds`` text: ``cwd`` and ``root`` once each, fd lines in any order."""
    check_size(text, MAX_TEXT, "fds")
    cwd: str | None = None
    root: str | None = None
    entries: dict[int, tuple[int, Fd, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    last = 1
    for number, line in numbered_long_lines(text):
        last = number
        if is_comment(line):
            continue
        if line[0] in " \t":
            if current is None:
                raise FormatError(number, "an indented extra line must follow an fd line")
            body = line.lstrip(" \t")
            word, _, rest = body.partition(" ")
            if word != "extra":
                raise FormatError(number, f"expected 'extra KEY VALUE', got {show(body)}")
            key, _, value = rest.partition(" ")
            if not _EXTRA_KEY.fullmatch(key):
                raise FormatError(number, f"bad extra key {show(key)}")
            current.append((key, parse_path(value, f"extra {key}", number)))
            continue
        current = None
        word, _, rest = line.partition(" ")
        if word in ("cwd", "root"):
            path = parse_path(rest, word, number)
            if word == "cwd":
                if cwd is not None:
                    raise FormatError(number, "cwd given twice")
                cwd = path
            else:
                if root is not None:
                    raise FormatError(number, "root given twice")
                root = path
            continue
        if not word.startswith("fd="):
            raise FormatError(number, f"expected 'cwd', 'root' or 'fd=N ...', got {show(word)}")
        values, raw_path = _parse_fd_line(number, line)
        fd = _build_fd(number, values, raw_path)
        if fd.fd in entries:
            first = entries[fd.fd][0]
            raise FormatError(number, f"fd {fd.fd} given twice (also on line {first})")
        current = []
        entries[fd.fd] = (number, fd, current)
    if cwd is None or root is None:
        raise FormatError(last, f"end of input: no {'cwd' if cwd is None else 'root'} line")
    result: list[Fd] = []
    by_fd: dict[int, Fd] = {}
    for fd_number in sorted(entries):
        number, fd, extra = entries[fd_number]
        if extra:
            fd = replace(fd, extra=tuple(extra))
        try:
            _check_shared(fd, by_fd)
        except FormatError as exc:
            raise exc.at(number) from None
        by_fd[fd.fd] = fd
        result.append(fd)
    return Fds(tuple(result), cwd, root)
