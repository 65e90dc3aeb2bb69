"""The ``fpu`` file: one thread's FPU/SSE/AVX/AVX-512 state, the whole xsave area.

The model is the raw xsave area as PTRACE_GETREGSET(NT_X86_XSTATE) returns it (standard,
non-compacted format).  The text shows the decoded registers for people, then carries
the area itself as hex, which is what counts::

    fcw 0x037f
    fsw 0x0000
    ftw 0x00
    fop 0x0000
    fip 0x0000000000000000
    fdp 0x0000000000000000
    mxcsr 0x00001f80
    mxcsr_mask 0x0002ffff
    st0 0x00000000000000000000
    ...
    xmm0 0x000000000000000000000000000000ff
    ...
    ymm0 0x...                  (64 hex digits; when the area has AVX state)
    k0 0x...                    (16; opmask, with AVX-512)
    zmm0 0x...                  (128; zmm0..15 with ZMM_Hi256, zmm16..31 with Hi16_ZMM)
    pkru 0x55555554             (with PKRU)
    xstate_bv 0x00000000000000a2
    xfeatures 0x00000000000000e7
    xsave_size 2432
    xsave 0000 7f0300000000000000000000000000000000000000000000801f0000ffff0200
    ...

Vector registers are one number, most significant digit first (the little-endian bytes
reversed), at full width.  ``xsave OFFSET HEX`` lines (OFFSET 4 hex digits, 32 bytes a
line, the last maybe shorter) must cover exactly ``xsave_size`` bytes without gaps or
overlaps.  The decoded lines are optional on input, but any that are given must agree
with the area, or the parse fails naming the register: that is what makes the text
round-trip exactly, and it stops an edit of a decoded line being silently ignored.

Which components are shown.  The enabled feature mask (``xfeatures``) comes from the
area's software-reserved bytes: PTRACE_GETREGSET stores XCR0 as a u64 at byte 464; an
area from a signal frame instead has ``struct _fpx_sw_bytes`` there (magic1
0x46505853 at 464, xfeatures at 472, xstate_size at 480), and both are understood.  A
component is shown when its bit is in ``xfeatures`` and the area is long enough to hold
it; when its bit is clear in ``xstate_bv`` (byte 512) it is in its init state and shows
as zeros, whatever stale bytes the area has there.

Component offsets are not the same on every CPU: Intel places opmask/ZMM_Hi256/
Hi16_ZMM/PKRU at 1088/1152/1664/2688 (leaving room for MPX), AMD at 832/896/1408/2432.
The layout is recognised by the area's size (see :data:`LAYOUTS`, :attr:`Fpu.layout`);
when neither layout explains the size, the Intel offsets are assumed.
"""

from __future__ import annotations

import re

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines, show
from sigfs.record import record

__all__ = [
    "BYTES_PER_LINE",
    "FP_XSTATE_MAGIC1",
    "LAYOUTS",
    "MAX_SIZE",
    "MAX_TEXT",
    "MIN_SIZE",
    "XFEATURE_AVX",
    "XFEATURE_HI16_ZMM",
    "XFEATURE_OPMASK",
    "XFEATURE_PKRU",
    "XFEATURE_ZMM_HI256",
    "Fpu",
    "parse",
    "render",
]

#: Legacy area (512) plus the xsave header (64).
MIN_SIZE = 576
#: Largest area accepted (offsets are written as 4 hex digits; AMX needs 11008).
MAX_SIZE = 0x10000
#: Bytes per ``xsave`` line.
BYTES_PER_LINE = 32
#: Largest text accepted.
MAX_TEXT = 1024 * 1024
#: ``struct _fpx_sw_bytes`` magic (signal frames).
FP_XSTATE_MAGIC1 = 0x46505853

XFEATURE_AVX = 2
XFEATURE_OPMASK = 5
XFEATURE_ZMM_HI256 = 6
XFEATURE_HI16_ZMM = 7
XFEATURE_PKRU = 9

#: ``{layout: {xfeature bit: (offset, size)}}`` of the user components of the standard
#: format.  Intel: CPUID leaf 0xD as on Skylake-SP..Sapphire Rapids (MPX 3/4, AMX
#: 17/18 included so the size identifies the layout).  AMD: as on Zen 3/4 (no MPX gap).
LAYOUTS: dict[str, dict[int, tuple[int, int]]] = {
    "intel": {
        2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64), 6: (1152, 512),
        7: (1664, 1024), 9: (2688, 8), 17: (2752, 64), 18: (2816, 8192),
    },
    "amd": {2: (576, 256), 5: (832, 64), 6: (896, 512), 7: (1408, 1024), 9: (2432, 8)},
}  # fmt: skip

_U64 = (1 << 64) - 1
_HEXDIGITS = re.compile(r"[0-9a-fA-F]+")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")
# decoded name -> width in hex digits
_FIXED_WIDTHS = {
    "fcw": 4, "fsw": 4, "ftw": 2, "fop": 4, "fip": 16, "fdp": 16, "mxcsr": 8,
    "mxcsr_mask": 8,
}  # fmt: skip
_WIDTHS: dict[str, int] = {
    **_FIXED_WIDTHS,
    **{f"st{i}": 20 for i in range(8)},
    **{f"xmm{i}": 32 for i in range(16)},
    **{f"ymm{i}": 64 for i in range(16)},
    **{f"k{i}": 16 for i in range(8)},
    **{f"zmm{i}": 128 for i in range(32)},
    "pkru": 8,
    "xstate_bv": 16,
    "xfeatures": 16,
}


def _le(data: bytes, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


@record
class Fpu:
    """The raw xsave area of one thread, with the registers decoded on demand."""

    xsave: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.xsave, bytes):
            raise FormatError(None, f"xsave must be bytes, not {type(self.xsave).__name__}")
        if not MIN_SIZE <= len(self.xsave) <= MAX_SIZE:
            raise FormatError(
                None, f"xsave area is {len(self.xsave)} bytes, expected {MIN_SIZE}..{MAX_SIZE}"
            )

    # -- header and software bytes ---------------------------------------------------

    @property
    def xstate_bv(self) -> int:
        """XSTATE_BV: the components not in their init state."""
        return _le(self.xsave, 512, 8)

    @property
    def xcomp_bv(self) -> int:
        """XCOMP_BV (0 in the standard format)."""
        return _le(self.xsave, 520, 8)

    @property
    def has_sw_magic(self) -> bool:
        """The software bytes are a signal frame's ``struct _fpx_sw_bytes``."""
        return _le(self.xsave, 464, 4) == FP_XSTATE_MAGIC1

    @property
    def xfeatures(self) -> int:
        """The enabled feature mask (XCR0) recorded in the software-reserved bytes."""
        return _le(self.xsave, 472 if self.has_sw_magic else 464, 8)

    @property
    def layout(self) -> str:
        """``"intel"`` or ``"amd"``: which component offsets this area uses."""
        xfeatures = self.xfeatures
        sizes = [len(self.xsave)]
        if self.has_sw_magic:
            sizes.insert(0, _le(self.xsave, 480, 4))
        for size in sizes:
            matches = [name for name, table in LAYOUTS.items() if _end(table, xfeatures) == size]
            if len(matches) == 1:
                return matches[0]
        return "intel"

    def component(self, bit: int) -> tuple[int, int] | None:
        """``(offset, size)`` of component ``bit`` when it is shown, else ``None``."""
        if not self.xfeatures >> bit & 1:
            return None
        place = LAYOUTS[self.layout].get(bit)
        if place is None or place[0] + place[1] > len(self.xsave):
            return None
        return place

    def _component_bytes(self, bit: int) -> bytes | None:
        place = self.component(bit)
        if place is None:
            return None
        offset, size = place
        if not self.xstate_bv >> bit & 1:
            return bytes(size)
        return self.xsave[offset : offset + size]

    # -- decoded registers -----------------------------------------------------------

    def registers(self) -> dict[str, int]:
        """Every decoded value the text shows, in text order."""
        a = self.xsave
        regs: dict[str, int] = {
            "fcw": _le(a, 0, 2),
            "fsw": _le(a, 2, 2),
            "ftw": a[4],
            "fop": _le(a, 6, 2),
            "fip": _le(a, 8, 8),
            "fdp": _le(a, 16, 8),
            "mxcsr": _le(a, 24, 4),
            "mxcsr_mask": _le(a, 28, 4),
        }
        for i in range(8):
            regs[f"st{i}"] = _le(a, 32 + 16 * i, 10)
        xmm = [_le(a, 160 + 16 * i, 16) for i in range(16)]
        for i in range(16):
            regs[f"xmm{i}"] = xmm[i]
        ymm = list(xmm)
        avx = self._component_bytes(XFEATURE_AVX)
        if avx is not None:
            for i in range(16):
                ymm[i] |= _le(avx, 16 * i, 16) << 128
                regs[f"ymm{i}"] = ymm[i]
        opmask = self._component_bytes(XFEATURE_OPMASK)
        if opmask is not None:
            for i in range(8):
                regs[f"k{i}"] = _le(opmask, 8 * i, 8)
        hi256 = self._component_bytes(XFEATURE_ZMM_HI256)
        if hi256 is not None:
            for i in range(16):
                regs[f"zmm{i}"] = ymm[i] | _le(hi256, 32 * i, 32) << 256
        hi16 = self._component_bytes(XFEATURE_HI16_ZMM)
        if hi16 is not None:
            for i in range(16):
                regs[f"zmm{16 + i}"] = _le(hi16, 64 * i, 64)
        pkru = self._component_bytes(XFEATURE_PKRU)
        if pkru is not None:
            regs["pkru"] = _le(pkru, 0, 4)
        regs["xstate_bv"] = self.xstate_bv
        regs["xfeatures"] = self.xfeatures
        return regs

    def get(self, name: str) -> int:
        """One decoded value, e.g. ``fpu.get("xmm3")`` (``KeyError`` if not shown)."""
        return self.registers()[name]


def _end(table: dict[int, tuple[int, int]], xfeatures: int) -> int:
    end = MIN_SIZE
    for bit, (offset, size) in table.items():
        if xfeatures >> bit & 1:
            end = max(end, offset + size)
    return end


def render(fpu: Fpu) -> str:
    """Decoded lines, ``xsave_size``, then the area as ``xsave OFFSET HEX`` lines."""
    lines = [f"{name} 0x{value:0{_WIDTHS[name]}x}" for name, value in fpu.registers().items()]
    lines.append(f"xsave_size {len(fpu.xsave)}")
    data = fpu.xsave
    for offset in range(0, len(data), BYTES_PER_LINE):
        lines.append(f"xsave {offset:04x} {data[offset : offset + BYTES_PER_LINE].hex()}")
    return "\n".join(lines) + "\n"


def _parse_value(token: str, name: str, line: int) -> int:
    width = _WIDTHS[name]
    if len(token) > 2 * width + 8 or not _NUMBER.fullmatch(token):
        raise FormatError(line, f"{name}: expected a decimal or 0x hex number, got {show(token)}")
    value = int(token, 0) if token[:2] in ("0x", "0X") else int(token, 10)
    if value >> (4 * width):
        raise FormatError(line, f"{name}: {show(token)} does not fit in {4 * width} bits")
    return value


def parse(text: str) -> Fpu:
    """Parse ``fpu`` text: the ``xsave`` lines are the state; decoded lines must agree."""
    check_size(text, MAX_TEXT, "fpu")
    size: tuple[int, int] | None = None
    chunks: list[tuple[int, bytes, int]] = []
    decoded: dict[str, tuple[int, int]] = {}
    last = 1
    for number, line in numbered_lines(text):
        last = number
        if is_comment(line):
            continue
        tokens = line.split()
        name = tokens[0]
        if name == "xsave":
            if len(tokens) != 3:
                raise FormatError(number, f"expected 'xsave OFFSET HEX', got {len(tokens)} fields")
            chunks.append((*_parse_chunk(tokens[1], tokens[2], number), number))
        elif name == "xsave_size":
            if size is not None:
                raise FormatError(number, f"xsave_size given twice (also on line {size[0]})")
            if len(tokens) != 2 or not tokens[1].isascii() or not tokens[1].isdigit():
                raise FormatError(number, "expected 'xsave_size N' (decimal)")
            value = int(tokens[1]) if len(tokens[1]) <= 12 else -1
            if not MIN_SIZE <= value <= MAX_SIZE:
                raise FormatError(
                    number, f"xsave_size {show(tokens[1])} is out of range {MIN_SIZE}..{MAX_SIZE}"
                )
            size = (number, value)
        elif name in _WIDTHS:
            if len(tokens) != 2:
                raise FormatError(number, f"expected '{name} VALUE', got {len(tokens)} fields")
            if name in decoded:
                raise FormatError(number, f"{name} given twice (also on line {decoded[name][0]})")
            decoded[name] = (number, _parse_value(tokens[1], name, number))
        else:
            raise FormatError(number, f"unknown fpu field {show(name)}")
    if size is None:
        raise FormatError(last, "end of input: no 'xsave_size N' line")
    fpu = Fpu(_assemble(size[1], chunks, last))
    regs = fpu.registers()
    for name, (number, value) in decoded.items():
        if name not in regs:
            raise FormatError(
                number,
                f"{name}: not part of this xsave area (xfeatures {fpu.xfeatures:#x}, "
                f"{len(fpu.xsave)} bytes)",
            )
        if value != regs[name]:
            raise FormatError(
                number,
                f"{name}: {value:#x} does not match the xsave area "
                f"(0x{regs[name]:0{_WIDTHS[name]}x}); edit the xsave lines",
            )
    return fpu


def _parse_chunk(offset_token: str, hex_token: str, line: int) -> tuple[int, bytes]:
    digits = offset_token[2:] if offset_token[:2] in ("0x", "0X") else offset_token
    if not 1 <= len(digits) <= 8 or not _HEXDIGITS.fullmatch(digits):
        raise FormatError(line, f"xsave offset: expected hex digits, got {show(offset_token)}")
    offset = int(digits, 16)
    if len(hex_token) % 2 or not _HEXDIGITS.fullmatch(hex_token):
        raise FormatError(line, "xsave data: expected an even number of hex digits")
    data = bytes.fromhex(hex_token)
    if offset + len(data) > MAX_SIZE:
        raise FormatError(line, f"xsave data at {offset:#x} runs past {MAX_SIZE:#x}")
    return offset, data


def _assemble(size: int, chunks: list[tuple[int, bytes, int]], last: int) -> bytes:
    chunks.sort(key=lambda c: c[0])
    expected = 0
    for offset, data, number in chunks:
        if offset != expected:
            what = "overlaps the bytes before" if offset < expected else "leaves a gap before it"
            raise FormatError(
                number, f"xsave {offset:04x}: {what} (expected offset {expected:04x})"
            )
        expected += len(data)
        if expected > size:
            raise FormatError(number, f"xsave lines run past xsave_size {size}")
    if expected != size:
        raise FormatError(last, f"end of input: xsave lines cover {expected} of {size} bytes")
    return b"".join(data for _, data, _ in chunks)
