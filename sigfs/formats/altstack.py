"""The ``altstack`` file: one thread's sigaltstack, as ``sp size flags``.

::

    0x7f1234000000 8192 0

``sp`` (ss_sp) is lowercase ``0x`` hex, ``size`` (ss_size) and ``flags`` (ss_flags)
decimal.  A thread without an alternate stack reads ``0x0 0 2`` (SS_DISABLE).  Flags are
kept as the kernel's unsigned ``sas_ss_flags``, so SS_AUTODISARM (bit 31) prints as a
positive number; on input a negative C ``int`` spelling (e.g. ``-2147483648``) is accepted
and converted.
"""

from __future__ import annotations

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines, parse_int
from sigfs.record import record
from sigfs.signals import SS_DISABLE

__all__ = ["MAX_TEXT", "AltStack", "DISABLED", "render", "parse"]

#: Largest text accepted (one short line, plus comments).
MAX_TEXT = 64 * 1024

_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1


@record
class AltStack:
    """``stack_t`` as sigaltstack() reports it: base, size and SS_* flags."""

    sp: int
    size: int
    flags: int

    def __post_init__(self) -> None:
        limits = (("sp", self.sp, _U64), ("size", self.size, _U64), ("flags", self.flags, _U32))
        for what, value, hi in limits:
            if not 0 <= value <= hi:
                raise FormatError(None, f"{what} {value} is out of range 0..{hi:#x}")


#: What a thread with no alternate signal stack has.
DISABLED = AltStack(0, 0, SS_DISABLE)


def render(stack: AltStack) -> str:
    """``sp size flags`` and a newline."""
    return f"{stack.sp:#x} {stack.size} {stack.flags}\n"


def parse(text: str) -> AltStack:
    """Parse exactly one ``sp size flags`` line (comments and blank lines are skipped)."""
    check_size(text, MAX_TEXT, "altstack")
    result: AltStack | None = None
    last = 1
    for number, line in numbered_lines(text):
        last = number
        if is_comment(line):
            continue
        if result is not None:
            raise FormatError(number, "expected only one 'sp size flags' line")
        tokens = line.split()
        if len(tokens) != 3:
            raise FormatError(number, f"expected 3 fields 'sp size flags', got {len(tokens)}")
        sp = parse_int(tokens[0], "sp", 0, _U64, number)
        size = parse_int(tokens[1], "size", 0, _U64, number)
        flags = parse_int(tokens[2], "flags", -(1 << 31), _U32, number) & _U32
        result = AltStack(sp, size, flags)
    if result is None:
        raise FormatError(last, "end of input: expected a line 'sp size flags'")
    return result
