"""The ``mm`` file: a process's address space: mm fields, auxv and the VMAs.

::

    start_code 0x55d5c4a00000
    end_code 0x55d5c4a05000
    start_data 0x55d5c4c07000
    end_data 0x55d5c4c08000
    start_brk 0x55d5c5a1e000
    brk 0x55d5c5a3f000
    start_stack 0x7ffd7a8b1f30
    arg_start 0x7ffd7a8b3e5a
    arg_end 0x7ffd7a8b3e63
    env_start 0x7ffd7a8b3e63
    env_end 0x7ffd7a8b3fe8
    exe /usr/bin/sleep
    auxv 33 0x7ffd7a9f2000
    auxv 6 0x1000
    vma 0x55d5c4a00000-0x55d5c4a02000 r--p 0x00000000 08:01 1234 flags=rd,mr,mw path=/bin/sleep
    vma 0x7ffd7a892000-0x7ffd7a8b4000 rw-p 0x00000000 00:00 0 flags=rd,wr,mr,mw,gd,ac path=[stack]

The mm fields (``/proc/PID/stat`` fields 26..28 and 45..51, and ``brk`` as brk(0)
answers inside the process; the set ``prctl(PR_SET_MM)`` takes) come first, in that
order, as ``0x`` hex; then ``exe`` (the rest of the line); then the auxiliary vector
without its AT_NULL terminator, one ``auxv TYPE VALUE`` per entry in order (TYPE
decimal, VALUE ``0x`` hex; on input TYPE may also be a name like ``AT_PAGESZ``, see
:data:`AT_NAMES`); then one ``vma`` line per mapping, sorted by address: ``start-end``
(``0x`` hex), the four permission characters of ``/proc/PID/maps``, the file offset
(``0x`` and at least 8 hex digits), the device ``major:minor`` in hex as maps shows it,
the inode (decimal), ``flags=`` the smaps ``VmFlags`` mnemonics joined by commas (may be
empty), and ``path=`` the rest of the line (empty for an anonymous mapping; ``[heap]``,
``[stack]``, ``[vdso]``... as maps shows them).  Paths are escaped as in :mod:`.fds`.
The key lines may come in any order on input, but the vma lines must be in address
order.

:func:`parse_proc_maps` and :func:`parse_smaps_vmflags` read the kernel's own
``/proc/PID/maps`` and ``/proc/PID/smaps`` text, and :func:`parse_auxv_bytes` its binary
``/proc/PID/auxv``, for the reader that builds an :class:`Mm`.
"""

from __future__ import annotations

import re
import struct

from sigfs.formats.errors import FormatError, check_size, is_comment, parse_int, show
from sigfs.formats.fds import numbered_long_lines, parse_path, render_path
from sigfs.record import record

__all__ = [
    "AT_NAMES",
    "MAX_TEXT",
    "MM_FIELDS",
    "PAGE_SIZE",
    "Mm",
    "Vma",
    "auxv_name",
    "parse",
    "parse_auxv_bytes",
    "parse_proc_maps",
    "parse_smaps_vmflags",
    "render",
    "render_vma",
]

PAGE_SIZE = 4096
#: The mm fields, in file order.
MM_FIELDS: tuple[str, ...] = (
    "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
    "arg_start", "arg_end", "env_start", "env_end",
)  # fmt: skip
#: Largest text accepted (mm, maps or smaps): ~65530 mappings with long paths.
MAX_TEXT = 256 * 1024 * 1024

#: Names of the auxiliary vector types (include/uapi/linux/auxvec.h, x86 asm/auxvec.h).
AT_NAMES: dict[int, str] = {
    0: "AT_NULL", 1: "AT_IGNORE", 2: "AT_EXECFD", 3: "AT_PHDR", 4: "AT_PHENT",
    5: "AT_PHNUM", 6: "AT_PAGESZ", 7: "AT_BASE", 8: "AT_FLAGS", 9: "AT_ENTRY",
    10: "AT_NOTELF", 11: "AT_UID", 12: "AT_EUID", 13: "AT_GID", 14: "AT_EGID",
    15: "AT_PLATFORM", 16: "AT_HWCAP", 17: "AT_CLKTCK", 23: "AT_SECURE",
    24: "AT_BASE_PLATFORM", 25: "AT_RANDOM", 26: "AT_HWCAP2", 27: "AT_RSEQ_FEATURE_SIZE",
    28: "AT_RSEQ_ALIGN", 29: "AT_HWCAP3", 30: "AT_HWCAP4", 31: "AT_EXECFN",
    32: "AT_SYSINFO", 33: "AT_SYSINFO_EHDR", 51: "AT_MINSIGSTKSZ",
}  # fmt: skip
_AT_NUMBERS = {name: number for number, name in AT_NAMES.items()}

_U64 = (1 << 64) - 1
_PAGE_MASK = PAGE_SIZE - 1
_PERMS = re.compile(r"[r-][w-][x-][ps]")
_DEV = re.compile(r"[0-9a-f]{2,3}:[0-9a-f]{2,5}")
_VMFLAG = re.compile(r"[a-z0-9?]{2}")
# Several mnemonics joined by single spaces: checks them all in one match.
_VMFLAGS = re.compile(r"[a-z0-9?]{2}(?: [a-z0-9?]{2})*")
_MAPS_LINE = re.compile(
    r"([0-9a-f]{1,16})-([0-9a-f]{1,16}) ([r-][w-][x-][ps]) ([0-9a-f]{1,16}) "
    r"([0-9a-f]{2,3}:[0-9a-f]{2,5}) ([0-9]{1,20})(?: +(.*))?"
)
_SMAPS_LINE = re.compile(r"^(?:([0-9a-f]{1,16})-[0-9a-f]{1,16} |VmFlags:([^\n]*))", re.M)
_AUXV_PAIR = struct.Struct("<QQ")


@record
class Vma:
    """One mapping, as a line of ``/proc/PID/maps`` plus its smaps ``VmFlags``."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str = ""
    vmflags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"vma {self.start:#x}"
        if not 0 <= self.start < self.end <= _U64:
            raise FormatError(None, f"{where}: need 0 <= start < end < 2**64, end {self.end:#x}")
        if self.start & _PAGE_MASK or self.end & _PAGE_MASK:
            raise FormatError(None, f"{where}-{self.end:#x}: not page aligned")
        if not _PERMS.fullmatch(self.perms):
            raise FormatError(None, f"{where}: bad permissions {show(self.perms)}")
        if not 0 <= self.offset <= _U64:
            raise FormatError(None, f"{where}: offset {self.offset} does not fit in 64 bits")
        if not _DEV.fullmatch(self.dev):
            raise FormatError(None, f"{where}: bad device {show(self.dev)} (want hex MM:mm)")
        if not 0 <= self.inode <= _U64:
            raise FormatError(None, f"{where}: inode {self.inode} does not fit in 64 bits")
        if not isinstance(self.vmflags, tuple) or not (
            all(isinstance(f, str) and len(f) == 2 for f in self.vmflags)
            and (not self.vmflags or _VMFLAGS.fullmatch(" ".join(self.vmflags)))
        ):
            raise FormatError(None, f"{where}: bad VmFlags {self.vmflags!r}")
        render_path(self.path)  # refuses what cannot be a file name

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.end - self.start

    @property
    def shared(self) -> bool:
        """A MAP_SHARED mapping (``s`` in the permissions)."""
        return self.perms[3] == "s"


@record
class Mm:
    """The address space: mm fields, exe, auxv (AT_NULL excluded) and sorted VMAs."""

    start_code: int
    end_code: int
    start_data: int
    end_data: int
    start_brk: int
    brk: int
    start_stack: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    exe: str
    auxv: tuple[tuple[int, int], ...]
    vmas: tuple[Vma, ...]

    def __post_init__(self) -> None:
        for name in MM_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= _U64:
                raise FormatError(None, f"{name}: {value!r} does not fit in 64 bits")
        render_path(self.exe)
        if not isinstance(self.auxv, tuple):
            raise FormatError(None, "auxv must be a tuple of (type, value) pairs")
        for kind, value in self.auxv:
            if not 1 <= kind <= _U64 or not 0 <= value <= _U64:
                raise FormatError(None, f"auxv entry ({kind}, {value}) out of range")
        if not isinstance(self.vmas, tuple):
            raise FormatError(None, "vmas must be a tuple")
        for before, after in zip(self.vmas, self.vmas[1:], strict=False):
            if after.start < before.end:
                raise FormatError(
                    None,
                    f"vma {after.start:#x}-{after.end:#x} overlaps or precedes "
                    f"{before.start:#x}-{before.end:#x}",
                )

    def fields(self) -> dict[str, int]:
        """The mm fields as ``{name: value}``, in file order."""
        return {name: getattr(self, name) for name in MM_FIELDS}

    def find(self, address: int) -> Vma | None:
        """The mapping containing ``address``, if any."""
        lo, hi = 0, len(self.vmas)
        while lo < hi:
            mid = (lo + hi) // 2
            vma = self.vmas[mid]
            if address < vma.start:
                hi = mid
            elif address >= vma.end:
                lo = mid + 1
            else:
                return vma
        return None


def auxv_name(kind: int) -> str:
    """``AT_PAGESZ`` for 6, ``AT_<n>`` for a type without a name."""
    return AT_NAMES.get(kind, f"AT_{kind}")


def render_vma(vma: Vma) -> str:
    """One ``vma ...`` line, without the newline."""
    return (
        f"vma {vma.start:#x}-{vma.end:#x} {vma.perms} 0x{vma.offset:08x} {vma.dev} "
        f"{vma.inode} flags={','.join(vma.vmflags)} path={render_path(vma.path)}"
    )


def render(mm: Mm) -> str:
    """The whole file: mm fields, exe, auxv, VMAs (see the module docstring)."""
    lines = [f"{name} {value:#x}" for name, value in mm.fields().items()]
    exe = render_path(mm.exe)
    lines.append(f"exe {exe}" if exe else "exe")
    lines.extend(f"auxv {kind} {value:#x}" for kind, value in mm.auxv)
    lines.extend(render_vma(vma) for vma in mm.vmas)
    return "\n".join(lines) + "\n"


def _parse_vma(number: int, line: str) -> Vma:
    parts = line.split(" ", 7)
    if len(parts) != 8 or not all(parts[:7]):
        raise FormatError(
            number,
            "expected 'vma START-END PERMS OFFSET DEV INODE flags=... path=...' with single spaces",
        )
    _, span, perms, offset_token, dev, inode_token, flags_token, path_token = parts
    first, dash, second = span.partition("-")
    if not dash:
        raise FormatError(number, f"expected START-END, got {show(span)}")
    start = parse_int(first, "start", 0, _U64, number)
    end = parse_int(second, "end", 0, _U64, number)
    if not start < end:
        raise FormatError(number, f"start {start:#x} is not below end {end:#x}")
    if start & _PAGE_MASK or end & _PAGE_MASK:
        raise FormatError(number, f"{span} is not page aligned")
    if not _PERMS.fullmatch(perms):
        raise FormatError(number, f"bad permissions {show(perms)} (like r-xp or rw-s)")
    offset = parse_int(offset_token, "offset", 0, _U64, number)
    if not _DEV.fullmatch(dev):
        raise FormatError(number, f"bad device {show(dev)} (hex major:minor like 08:01)")
    inode = parse_int(inode_token, "inode", 0, _U64, number)
    if not flags_token.startswith("flags="):
        raise FormatError(number, f"expected flags=..., got {show(flags_token)}")
    vmflags = tuple(flags_token[6:].split(",")) if len(flags_token) > 6 else ()
    for flag in vmflags:
        if not _VMFLAG.fullmatch(flag):
            raise FormatError(number, f"bad VmFlags mnemonic {show(flag)}")
    if not path_token.startswith("path="):
        raise FormatError(number, f"expected path=... last, got {show(path_token)}")
    path = parse_path(path_token[5:], "path", number)
    return Vma(start, end, perms, offset, dev, inode, path, vmflags)


def _parse_auxv(number: int, rest: str) -> tuple[int, int]:
    tokens = rest.split()
    if len(tokens) != 2:
        raise FormatError(number, f"expected 'auxv TYPE VALUE', got {len(tokens) + 1} fields")
    kind_token, value_token = tokens
    if kind_token in _AT_NUMBERS:
        kind = _AT_NUMBERS[kind_token]
    else:
        kind = parse_int(kind_token, "auxv type", 0, _U64, number)
    if kind == 0:
        raise FormatError(number, "auxv: AT_NULL ends the vector and is not listed")
    return kind, parse_int(value_token, "auxv value", 0, _U64, number)


def parse(text: str) -> Mm:
    """Parse ``mm`` text: every mm field and ``exe`` once; auxv and vma lines any number.

    auxv entries keep their order; vma lines must come in address order without
    overlapping (as :func:`render` and ``/proc/PID/maps`` have them), so that bad input
    fails at the offending line.
    """
    check_size(text, MAX_TEXT, "mm")
    fields: dict[str, tuple[int, int]] = {}
    exe: tuple[int, str] | None = None
    auxv: list[tuple[int, int]] = []
    vmas: list[Vma] = []
    last = 1
    for number, line in numbered_long_lines(text):
        last = number
        if is_comment(line):
            continue
        word, _, rest = line.partition(" ")
        if word == "vma":
            vma = _parse_vma(number, line)
            if vmas and vma.start < vmas[-1].end:
                before = vmas[-1]
                raise FormatError(
                    number,
                    f"vma {vma.start:#x}-{vma.end:#x} overlaps or precedes "
                    f"{before.start:#x}-{before.end:#x} (vma lines go in address order)",
                )
            vmas.append(vma)
        elif word == "auxv":
            auxv.append(_parse_auxv(number, rest))
        elif word == "exe":
            if exe is not None:
                raise FormatError(number, f"exe given twice (also on line {exe[0]})")
            exe = (number, parse_path(rest, "exe", number))
        elif word in MM_FIELDS:
            if word in fields:
                raise FormatError(number, f"{word} given twice (also on line {fields[word][0]})")
            tokens = rest.split()
            if len(tokens) != 1:
                raise FormatError(number, f"expected '{word} VALUE'")
            fields[word] = (number, parse_int(tokens[0], word, 0, _U64, number))
        else:
            raise FormatError(number, f"unknown key {show(word)}")
    missing = [name for name in MM_FIELDS if name not in fields]
    if exe is None:
        missing.append("exe")
    if missing:
        raise FormatError(last, f"end of input: missing {' '.join(missing)}")
    assert exe is not None
    values = {name: fields[name][1] for name in MM_FIELDS}
    return Mm(**values, exe=exe[1], auxv=tuple(auxv), vmas=tuple(vmas))


# ---------------------------------------------------------------------------------------
# the kernel's own text


def parse_proc_maps(text: str, vmflags: dict[int, tuple[str, ...]] | None = None) -> list[Vma]:
    """Parse ``/proc/PID/maps``; each mapping's VmFlags from ``vmflags``
    (by start, as :func:`parse_smaps_vmflags` gives them), else empty.

    The path is taken verbatim after the padding spaces: the kernel escapes a newline in
    a name as ``\\012`` but not a backslash, so that cannot be undone reliably (read
    ``/proc/PID/map_files`` for exact names).
    """
    check_size(text, MAX_TEXT, "maps")
    result: list[Vma] = []
    for number, line in numbered_long_lines(text):
        if not line:
            continue
        m = _MAPS_LINE.fullmatch(line)
        if m is None:
            raise FormatError(number, f"not a /proc/PID/maps line: {show(line)}")
        start, end = int(m[1], 16), int(m[2], 16)
        path = m[7] or ""
        try:
            flags = vmflags.get(start, ()) if vmflags else ()
            vma = Vma(start, end, m[3], int(m[4], 16), m[5], int(m[6]), path, flags)
        except FormatError as exc:
            raise exc.at(number) from None
        if result and vma.start < result[-1].end:
            raise FormatError(number, f"mapping {start:#x} overlaps or precedes the one before")
        result.append(vma)
    return result


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def parse_smaps_vmflags(text: str) -> dict[int, tuple[str, ...]]:
    """``{start: VmFlags mnemonics}`` from ``/proc/PID/smaps`` text.

    Only the mapping header lines and the ``VmFlags:`` lines are looked at (found with
    one regular-expression scan, so even huge text is quick); other lines are skipped.
    """
    check_size(text, MAX_TEXT, "smaps")
    result: dict[int, tuple[str, ...]] = {}
    start: int | None = None
    for m in _SMAPS_LINE.finditer(text):
        if m[1] is not None:
            start = int(m[1], 16)
            continue
        # The line number only for an error: counting it for every line
        # would make the scan quadratic in the text's length.
        if start is None:
            raise FormatError(_line_at(text, m.start()), "VmFlags line before any mapping")
        flags = tuple(m[2].split())
        if flags and not _VMFLAGS.fullmatch(" ".join(flags)):
            bad = next(f for f in flags if not _VMFLAG.fullmatch(f))
            raise FormatError(_line_at(text, m.start()), f"bad VmFlags mnemonic {show(bad)}")
        result[start] = flags
    return result


def parse_auxv_bytes(data: bytes) -> tuple[tuple[int, int], ...]:
    """The ``(type, value)`` pairs of binary ``/proc/PID/auxv``, up to AT_NULL (excluded)."""
    if len(data) % _AUXV_PAIR.size:
        raise FormatError(None, f"auxv: {len(data)} bytes is not a whole number of entries")
    pairs: list[tuple[int, int]] = []
    for kind, value in _AUXV_PAIR.iter_unpack(data):
        if kind == 0:
            return tuple(pairs)
        pairs.append((kind, value))
    raise FormatError(None, "auxv: no AT_NULL entry at the end")
