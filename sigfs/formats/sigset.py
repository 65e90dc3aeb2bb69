"""Signal sets: the 64-character bitmap of ``blocked`` (and of ``pending``/``action`` masks).

A sigset is a plain ``int`` with bit ``k-1`` standing for signal ``k``, exactly the
kernel's 64-bit ``sigset_t`` and the hex number in ``/proc/PID/status`` (``SigBlk``).
As text it is a line of 64 characters ``0``/``1`` where character ``k`` (1-based) is
signal ``k``, so signal 1 comes *first*, as in the 2007 RFC; that is the bit order
reversed with respect to the hex number.

The ``blocked`` file is one such line (``render``/``parse``); for people writing to it,
:func:`parse_mask_edit` also takes signal names with ``+``/``-`` (SPEC "Writing").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines, show
from sigfs.signals import NSIG, parse_signal

__all__ = [
    "FULL",
    "MAX_TEXT",
    "render_bitmap",
    "parse_bitmap",
    "parse_proc_hex",
    "render",
    "parse",
    "parse_mask_edit",
    "signals_of",
    "mask_of",
]

#: Mask with every signal 1..64 set.
FULL = (1 << NSIG) - 1
#: Largest ``blocked`` text accepted (one line plus generous comments).
MAX_TEXT = 64 * 1024

_BITMAP = re.compile(r"[01]{64}")
_TOKEN_SPLIT = re.compile(r"[\s,]+")
_PROC_HEX = re.compile(r"[0-9a-fA-F]{1,16}")


def _check_mask(mask: int) -> None:
    if not 0 <= mask <= FULL:
        raise FormatError(None, f"signal mask {mask:#x} does not fit in {NSIG} bits")


def render_bitmap(mask: int) -> str:
    """The 64-character ``0``/``1`` line for ``mask`` (no newline); signal 1 first."""
    _check_mask(mask)
    return format(mask, "064b")[::-1]


def parse_bitmap(s: str, line: int | None = None) -> int:
    """Parse exactly 64 characters of ``0``/``1`` (nothing else, no whitespace)."""
    if len(s) != NSIG:
        raise FormatError(line, f"expected {NSIG} characters of 0/1, got {len(s)}")
    if not _BITMAP.fullmatch(s):
        col = next(i for i, c in enumerate(s, start=1) if c not in "01")
        raise FormatError(
            line, f"expected {NSIG} characters of 0/1, got {s[col - 1]!r} at column {col}"
        )
    return int(s[::-1], 2)


def parse_proc_hex(s: str) -> int:
    """Parse a mask as ``/proc/PID/status`` prints it (``SigBlk:\\t0000000000010000``).

    Takes the hex digits only (1..16 of them, surrounding whitespace ignored).
    """
    s = s.strip()
    if not _PROC_HEX.fullmatch(s):
        raise FormatError(None, f"expected up to 16 hex digits, got {show(s)}")
    return int(s, 16)


def signals_of(mask: int) -> list[int]:
    """The signal numbers in ``mask``, ascending."""
    _check_mask(mask)
    return [k for k in range(1, NSIG + 1) if mask >> (k - 1) & 1]


def mask_of(signals: Iterable[int]) -> int:
    """The mask holding exactly ``signals`` (each 1..64)."""
    mask = 0
    for k in signals:
        if not 1 <= k <= NSIG:
            raise FormatError(None, f"signal {k} is out of range 1..{NSIG}")
        mask |= 1 << (k - 1)
    return mask


def render(mask: int) -> str:
    """Text of the ``blocked`` file: the bitmap line and a newline."""
    return render_bitmap(mask) + "\n"


def parse(text: str) -> int:
    """Parse the ``blocked`` file strictly: exactly one bitmap line, plus comments/blanks."""
    check_size(text, MAX_TEXT, "blocked")
    mask: int | None = None
    last = 1
    for number, line in numbered_lines(text):
        last = number
        if is_comment(line):
            continue
        if mask is not None:
            raise FormatError(number, "expected only one bitmap line")
        mask = parse_bitmap(line.strip(), number)
    if mask is None:
        raise FormatError(last, f"end of input: expected a line of {NSIG} characters of 0/1")
    return mask


def parse_mask_edit(text: str, current: int, replace: bool) -> int:
    """Apply what a person wrote to a mask file, returning the new mask.

    ``text`` is either one 64-character bitmap or a list of signal tokens separated by
    whitespace, commas and newlines; lines starting with ``#`` are comments.  Tokens are
    ``+SIG`` (add), ``-SIG`` (remove) or bare ``SIG`` (add), where ``SIG`` is anything
    :func:`~sigfs.signals.parse_signal` takes (``SIGUSR1``, ``usr1``, ``10``,
    ``SIGRTMIN+3``).

    ``replace`` says how the file was opened: ``True`` for ``>`` (truncating), ``False``
    for ``>>`` (appending).

    * A bitmap replaces the mask when ``replace``, and is OR-ed into it otherwise.
    * With ``replace``, if any bare token is present the result starts from the empty set
      (``echo SIGINT SIGTERM > blocked`` means "exactly these"); if all tokens are signed
      it starts from ``current`` (``echo +SIGUSR1 > blocked`` means "one more").  Without
      ``replace`` it always starts from ``current``.  Tokens then apply left to right.
    * No tokens at all gives the empty set with ``replace`` and ``current`` without.
    """
    _check_mask(current)
    check_size(text, MAX_TEXT, "signal mask")
    tokens: list[tuple[int, str]] = []
    for number, line in numbered_lines(text):
        if is_comment(line):
            continue
        tokens.extend((number, tok) for tok in _TOKEN_SPLIT.split(line) if tok)
    if not tokens:
        return 0 if replace else current
    bitmaps = [(n, t) for n, t in tokens if len(t) == NSIG and set(t) <= {"0", "1"}]
    if bitmaps:
        if len(tokens) > 1:
            number = bitmaps[0][0] if len(bitmaps) > 1 else tokens[1][0]
            raise FormatError(number, "a bitmap cannot be combined with other tokens")
        mask = parse_bitmap(bitmaps[0][1], bitmaps[0][0])
        return mask if replace else current | mask
    bare = any(tok[0] not in "+-" for _, tok in tokens)
    mask = 0 if replace and bare else current
    for number, tok in tokens:
        sign = tok[0] if tok[0] in "+-" else ""
        name = tok[len(sign) :]
        if not name:
            raise FormatError(number, f"{tok!r}: expected a signal name or number after it")
        if len(tok) > 8 and set(tok) <= {"0", "1"}:
            raise FormatError(
                number, f"expected {NSIG} characters of 0/1 for a bitmap, got {len(tok)}"
            )
        try:
            bit = 1 << (parse_signal(name) - 1)
        except FormatError as exc:
            raise exc.at(number) from None
        mask = mask & ~bit if sign == "-" else mask | bit
    return mask
