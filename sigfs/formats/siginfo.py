"""x86-64 ``siginfo_t`` (128 bytes) and its text record in ``pending``/``shared_pending``.

A record is two lines, the first as in the 2007 RFC, the second (indented) naming the
union member the kernel would use for this signal and si_code, with its fields::

    sig 17: user 0 flags 0 errno 0 code 1
      chld pid 4242 uid 0 status 0 utime 0 stime 0

Checkpoint/restore needs the very same 128 bytes back, and the named fields do not
always carry all of them (a timer's ``si_sys_private``, bytes a ``sigqueue`` caller left
in the union, padding).  So whenever :meth:`Siginfo.build` from the printed fields would
not reproduce the bytes exactly, a third line ``raw <256 hex digits>`` carries all of
them.  When parsing, ``raw`` wins, but it must agree with everything printed above it,
so an edited field with a stale ``raw`` line is an error rather than silently ignored.

Which union member applies is decided by :func:`layout_of`, a transcription of the
kernel's ``siginfo_layout()`` (kernel/signal.c) for x86-64.  x86-64 has no ``si_trapno``
(the RFC's fault "trapno" exists only on alpha and sparc), so fault records show ``addr``
plus the fields of their si_code; anything else in the union travels in ``raw``.

Numbers are decimal (signed where the C field is signed; ``value``, a ``sigval_t``, as an
unsigned 64-bit number), addresses and ``arch`` lowercase ``0x`` hex.  On input, either
base is accepted anywhere, and the signal in ``sig N:`` may be a name.
"""

from __future__ import annotations

import enum
import functools
import re
import struct
from collections.abc import Iterable, Iterator

from sigfs.formats.errors import (
    MAX_LINE,
    FormatError,
    is_comment,
    numbered_lines,
    parse_int,
    show,
)
from sigfs.record import record
from sigfs.signals import (
    SI_KERNEL,
    SI_SIGIO,
    SI_TIMER,
    SI_USER,
    SIGBUS,
    SIGCHLD,
    SIGFPE,
    SIGILL,
    SIGPOLL,
    SIGSEGV,
    SIGSYS,
    SIGTRAP,
    parse_signal,
)

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import Literal

__all__ = [
    "SIGINFO_SIZE",
    "Layout",
    "Siginfo",
    "layout_of",
    "field_names",
    "render_record",
    "parse_records",
    "parse_numbered_records",
    "parse_located_records",
    "render",
    "parse",
]

#: sizeof(siginfo_t) on every Linux architecture.
SIGINFO_SIZE = 128


class Layout(enum.Enum):
    """Which member of siginfo_t's union is in use (the kernel's ``enum siginfo_layout``)."""

    KILL = "kill"
    TIMER = "timer"
    RT = "rt"
    CHLD = "chld"
    FAULT = "fault"
    FAULT_MCEERR = "fault_mceerr"
    FAULT_BNDERR = "fault_bnderr"
    FAULT_PKUERR = "fault_pkuerr"
    FAULT_PERF = "fault_perf"
    POLL = "poll"
    SYS = "sys"


# Kernel sig_sicodes[]: signal -> (NSIGxxx limit, layout for codes 1..limit).
_SIG_SICODES: dict[int, tuple[int, Layout]] = {
    SIGILL: (11, Layout.FAULT),
    SIGFPE: (15, Layout.FAULT),
    SIGSEGV: (10, Layout.FAULT),
    SIGBUS: (5, Layout.FAULT),
    SIGTRAP: (6, Layout.FAULT),
    SIGCHLD: (6, Layout.CHLD),
    SIGPOLL: (6, Layout.POLL),
    SIGSYS: (2, Layout.SYS),
}
_NSIGPOLL = 6
_BUS_MCEERR_AR, _BUS_MCEERR_AO = 4, 5
_SEGV_BNDERR, _SEGV_PKUERR = 3, 4
_TRAP_PERF = 6


def layout_of(signo: int, code: int) -> Layout:
    """The union member the kernel uses for ``signo``/``code`` (its siginfo_layout())."""
    if SI_USER < code < SI_KERNEL:
        entry = _SIG_SICODES.get(signo)
        if entry is not None and code <= entry[0]:
            if signo == SIGBUS and _BUS_MCEERR_AR <= code <= _BUS_MCEERR_AO:
                return Layout.FAULT_MCEERR
            if signo == SIGSEGV and code == _SEGV_BNDERR:
                return Layout.FAULT_BNDERR
            if signo == SIGSEGV and code == _SEGV_PKUERR:
                return Layout.FAULT_PKUERR
            if signo == SIGTRAP and code == _TRAP_PERF:
                return Layout.FAULT_PERF
            return entry[1]
        if code <= _NSIGPOLL:
            return Layout.POLL
        return Layout.KILL
    if code == SI_TIMER:
        return Layout.TIMER
    if code == SI_SIGIO:
        return Layout.POLL
    if code < 0:
        return Layout.RT
    return Layout.KILL


# One field of the union: text key, byte offset, struct format, printed in hex?
_Field = tuple[str, int, str, bool]
_ADDR: _Field = ("addr", 16, "<Q", True)
_FIELDS: dict[Layout, tuple[_Field, ...]] = {
    Layout.KILL: (("spid", 16, "<i", False), ("suid", 20, "<I", False)),
    Layout.RT: (("spid", 16, "<i", False), ("suid", 20, "<I", False), ("value", 24, "<Q", False)),
    Layout.TIMER: (
        ("tid", 16, "<i", False),
        ("overrun", 20, "<i", False),
        ("value", 24, "<Q", False),
    ),
    Layout.CHLD: (
        ("pid", 16, "<i", False),
        ("uid", 20, "<I", False),
        ("status", 24, "<i", False),
        ("utime", 32, "<q", False),
        ("stime", 40, "<q", False),
    ),
    Layout.FAULT: (_ADDR,),
    Layout.FAULT_MCEERR: (_ADDR, ("addr_lsb", 24, "<h", False)),
    Layout.FAULT_BNDERR: (_ADDR, ("lower", 32, "<Q", True), ("upper", 40, "<Q", True)),
    Layout.FAULT_PKUERR: (_ADDR, ("pkey", 32, "<I", False)),
    Layout.FAULT_PERF: (
        _ADDR,
        ("perf_data", 24, "<Q", True),
        ("perf_type", 32, "<I", False),
        ("perf_flags", 36, "<I", False),
    ),
    Layout.POLL: (("band", 16, "<q", False), ("fd", 24, "<i", False)),
    Layout.SYS: (
        ("call_addr", 16, "<Q", True),
        ("syscall", 24, "<i", False),
        ("arch", 28, "<I", True),
    ),
}
# The detail line's first word, per layout (all fault kinds share "fault").
_KEYWORD: dict[Layout, str] = {
    Layout.KILL: "kill",
    Layout.RT: "queue",
    Layout.TIMER: "timer",
    Layout.CHLD: "chld",
    Layout.FAULT: "fault",
    Layout.FAULT_MCEERR: "fault",
    Layout.FAULT_BNDERR: "fault",
    Layout.FAULT_PKUERR: "fault",
    Layout.FAULT_PERF: "fault",
    Layout.POLL: "poll",
    Layout.SYS: "sys",
}
# Layouts whose union starts with the sender's pid and uid: the header's "user" is si_uid.
_UID_KEY: dict[Layout, str] = {Layout.KILL: "suid", Layout.RT: "suid", Layout.CHLD: "uid"}
_RANGES: dict[str, tuple[int, int]] = {
    "<i": (-(1 << 31), (1 << 31) - 1),
    "<I": (0, (1 << 32) - 1),
    "<q": (-(1 << 63), (1 << 63) - 1),
    "<Q": (0, (1 << 64) - 1),
    "<h": (-(1 << 15), (1 << 15) - 1),
}
_I32 = _RANGES["<i"]
_U32 = _RANGES["<I"]
_HEX_RAW = re.compile(r"[0-9a-fA-F]{256}")


def field_names(layout: Layout) -> tuple[str, ...]:
    """Names of the fields of ``layout``, in printed order (the keys of :meth:`fields`)."""
    return tuple(f[0] for f in _FIELDS[layout])


def _covered(layout: Layout) -> int:
    """Bit mask (over ``int.from_bytes(raw, "little")``) of the bytes that the
    header and ``layout``'s printed fields occupy."""
    mask = (1 << (12 * 8)) - 1  # signo, errno, code
    for _, off, fmt, _ in _FIELDS[layout]:
        mask |= ((1 << (struct.calcsize(fmt) * 8)) - 1) << (off * 8)
    return mask


_COVERED: dict[Layout, int] = {layout: _covered(layout) for layout in _FIELDS}


@record
class Siginfo:
    """One siginfo_t exactly as the kernel hands it out: 128 raw bytes.

    Everything else is decoded from ``raw`` on demand, so no information can be lost
    between reading a queue and writing it back.
    """

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != SIGINFO_SIZE:
            size = len(self.raw) if isinstance(self.raw, (bytes, bytearray)) else "not bytes"
            raise FormatError(None, f"siginfo must be {SIGINFO_SIZE} bytes, got {size}")

    @property
    def signo(self) -> int:
        """si_signo."""
        return int(struct.unpack_from("<i", self.raw, 0)[0])

    @property
    def errno(self) -> int:
        """si_errno."""
        return int(struct.unpack_from("<i", self.raw, 4)[0])

    @property
    def code(self) -> int:
        """si_code."""
        return int(struct.unpack_from("<i", self.raw, 8)[0])

    @property
    def layout(self) -> Layout:
        """The union member in use, by the kernel's rules (:func:`layout_of`)."""
        return layout_of(self.signo, self.code)

    @property
    def uid(self) -> int:
        """si_uid for layouts that carry one (kill, queue, chld), else 0 (the RFC's user)."""
        key = _UID_KEY.get(self.layout)
        return self.fields()[key] if key else 0

    def fields(self) -> dict[str, int]:
        """The union fields of this record's layout, keyed as printed, in printed order."""
        return {
            key: int(struct.unpack_from(fmt, self.raw, off)[0])
            for key, off, fmt, _ in _FIELDS[self.layout]
        }

    @classmethod
    def build(cls, signo: int, errno: int, code: int, **fields: int) -> Siginfo:
        """Encode a siginfo the way the kernel does: zeroed, then the layout's fields set.

        ``fields`` are keyed as :meth:`fields` returns them; missing ones are 0, unknown
        ones or values that do not fit the C type raise :class:`FormatError`.
        """
        buf = bytearray(SIGINFO_SIZE)
        for what, value, off in (("signo", signo, 0), ("errno", errno, 4), ("code", code, 8)):
            if not _I32[0] <= value <= _I32[1]:
                raise FormatError(None, f"{what} {value} does not fit in a 32-bit int")
            struct.pack_into("<i", buf, off, value)
        layout = layout_of(signo, code)
        specs = {f[0]: f for f in _FIELDS[layout]}
        for key, value in fields.items():
            if key not in specs:
                known = " ".join(specs)
                raise FormatError(None, f"{layout.value} siginfo has no field {key!r} ({known})")
            _, off, fmt, _ = specs[key]
            lo, hi = _RANGES[fmt]
            if not lo <= value <= hi:
                raise FormatError(None, f"{key} {value} is out of range {lo}..{hi}")
            struct.pack_into(fmt, buf, off, value)
        return cls(bytes(buf))

    def is_canonical(self) -> bool:
        """True if :meth:`build` from the printed fields gives back exactly ``raw``:
        every byte that no printed field covers is zero (the printed fields are
        decoded from ``raw`` with their own C types, so they always fit)."""
        return int.from_bytes(self.raw, "little") & ~_COVERED[self.layout] == 0


def _fmt(value: int, hexa: bool) -> str:
    return f"{value:#x}" if hexa else str(value)


def render_record(si: Siginfo) -> str:
    """The text of one record: header, detail and (when needed) raw line, ending in ``\\n``."""
    return _render_raw(si.raw)


@functools.lru_cache(maxsize=512)
def _render_raw(raw: bytes) -> str:
    # A pure function of the 128 bytes, and re-reading a queue that did not
    # change is the common case: cached.
    si = Siginfo(raw)
    layout = si.layout
    values = si.fields()
    lines = [f"sig {si.signo}: user {si.uid} flags 0 errno {si.errno} code {si.code}"]
    detail = " ".join(f"{key} {_fmt(values[key], hexa)}" for key, _, _, hexa in _FIELDS[layout])
    lines.append(f"  {_KEYWORD[layout]} {detail}")
    if not si.is_canonical():
        lines.append(f"  raw {si.raw.hex()}")
    return "\n".join(lines) + "\n"


def render(si: Siginfo) -> str:
    """Same as :func:`render_record` (the module's conventional name)."""
    return render_record(si)


@record
class _Header:
    line: int
    signo: int
    user: int
    errno: int
    code: int


def _parse_header(number: int, line: str) -> _Header:
    tokens = line.split()
    if len(tokens) != 10 or tokens[0] != "sig" or not tokens[1].endswith(":"):
        raise FormatError(
            number,
            "expected 'sig N: user U flags 0 errno E code C', "
            f"got {len(tokens)} words starting {show(' '.join(tokens[:2]))}",
        )
    try:
        signo = parse_signal(tokens[1][:-1])
    except FormatError as exc:
        raise exc.at(number) from None
    values: dict[str, int] = {}
    for i, key in enumerate(("user", "flags", "errno", "code")):
        word, token = tokens[2 + 2 * i], tokens[3 + 2 * i]
        if word != key:
            raise FormatError(number, f"expected {key!r} as word {3 + 2 * i}, got {show(word)}")
        lo, hi = _U32 if key == "user" else _I32
        values[key] = parse_int(token, key, lo, hi, number)
    if values["flags"] != 0:
        raise FormatError(number, f"flags must be 0 (the kernel keeps them), got {tokens[5]}")
    return _Header(number, signo, values["user"], values["errno"], values["code"])


def _parse_detail(number: int, line: str, header: _Header) -> dict[str, int]:
    layout = layout_of(header.signo, header.code)
    specs = _FIELDS[layout]
    keyword = _KEYWORD[layout]
    tokens = line.split()
    if not tokens or tokens[0] != keyword:
        got = show(tokens[0]) if tokens else "an empty line"
        raise FormatError(
            number,
            f"signal {header.signo} code {header.code} is a {keyword!r} siginfo "
            f"(layout {layout.name}), so expected a line starting {keyword!r}, got {got}",
        )
    expected = " ".join(f"{key} V" for key, _, _, _ in specs)
    if len(tokens) != 1 + 2 * len(specs):
        raise FormatError(
            number,
            f"expected '{keyword} {expected}', got {len(tokens) - 1} words after {keyword!r}",
        )
    by_key = {f[0]: f for f in specs}
    values: dict[str, int] = {}
    for i in range(1, len(tokens), 2):
        key, token = tokens[i], tokens[i + 1]
        if key not in by_key:
            raise FormatError(number, f"unknown field {show(key)} for {keyword!r}: {expected}")
        if key in values:
            raise FormatError(number, f"field {key!r} given twice")
        lo, hi = _RANGES[by_key[key][2]]
        values[key] = parse_int(token, key, lo, hi, number)
    uid_key = _UID_KEY.get(layout)
    if uid_key is not None and values[uid_key] != header.user:
        raise FormatError(
            number,
            f"{uid_key} {values[uid_key]} disagrees with 'user {header.user}' "
            f"on line {header.line}",
        )
    if uid_key is None and header.user != 0:
        raise FormatError(
            header.line, f"user must be 0 for a {keyword!r} siginfo (it has no si_uid)"
        )
    return values


def _parse_raw(
    number: int, line: str, header: _Header, values: dict[str, int], detail_line: int
) -> Siginfo:
    tokens = line.split()
    if len(tokens) != 2 or tokens[0] != "raw":
        raise FormatError(number, f"expected 'raw' and {2 * SIGINFO_SIZE} hex digits")
    if not _HEX_RAW.fullmatch(tokens[1]):
        raise FormatError(
            number,
            f"raw: expected {2 * SIGINFO_SIZE} hex digits, got {show(tokens[1])}"
            if len(tokens[1]) == 2 * SIGINFO_SIZE
            else f"raw: expected {2 * SIGINFO_SIZE} hex digits, got {len(tokens[1])}",
        )
    si = Siginfo(bytes.fromhex(tokens[1]))
    for key, want in (("signo", header.signo), ("errno", header.errno), ("code", header.code)):
        got = getattr(si, key)
        if got != want:
            raise FormatError(number, f"raw has {key} {got} but line {header.line} says {want}")
    for key, got in si.fields().items():
        if got != values[key]:
            raise FormatError(
                number, f"raw has {key} {got} but line {detail_line} says {values[key]}"
            )
    return si


def parse_numbered_records(lines: Iterable[tuple[int, str]]) -> list[Siginfo]:
    """Parse records from ``(line_number, line)`` pairs; blank and ``#`` lines are skipped.

    Each record is a ``sig`` header, the detail line right after it, and optionally a
    ``raw`` line right after that.
    """
    return [si for _, si in parse_located_records(lines)]


def parse_located_records(lines: Iterable[tuple[int, str]]) -> list[tuple[int, Siginfo]]:
    """Like :func:`parse_numbered_records`, pairing each record with its header's line."""
    records: list[tuple[int, Siginfo]] = []
    state: Literal["header", "detail", "raw"] = "header"
    header: _Header | None = None
    values: dict[str, int] = {}
    detail_line = 0
    for number, line in lines:
        if is_comment(line):
            continue
        word = line.split(None, 1)[0]
        if state == "raw" and word == "raw":
            assert header is not None
            records[-1] = (header.line, _parse_raw(number, line, header, values, detail_line))
            state = "header"
            continue
        if state in ("header", "raw"):
            if word != "sig":
                what = "a 'raw' line or " if state == "raw" else ""
                raise FormatError(number, f"expected {what}a 'sig N: ...' line, got {show(word)}")
            header = _parse_header(number, line)
            state = "detail"
            continue
        assert header is not None
        values = _parse_detail(number, line, header)
        detail_line = number
        si = Siginfo.build(header.signo, header.errno, header.code, **values)
        records.append((header.line, si))
        state = "raw"
    if state == "detail":
        assert header is not None
        raise FormatError(header.line, "record has no detail line after it")
    return records


def parse_records(lines: Iterable[str], first_line_no: int) -> list[Siginfo]:
    """Parse records from ``lines`` (with or without trailing ``\\n``).

    ``first_line_no`` is the 1-based line number of the first element, for error messages.
    """
    return parse_numbered_records(_number(lines, first_line_no))


def _number(lines: Iterable[str], first: int) -> Iterator[tuple[int, str]]:
    for i, line in enumerate(lines, start=first):
        if len(line) > MAX_LINE + 1:
            raise FormatError(i, f"line is longer than {MAX_LINE} characters")
        yield i, line.removesuffix("\n")


def parse(text: str) -> Siginfo:
    """Parse text holding exactly one record."""
    records = parse_numbered_records(numbered_lines(text))
    if len(records) != 1:
        raise FormatError(None, f"expected exactly one siginfo record, got {len(records)}")
    return records[0]
