"""The one error type of the text formats, and the small lexing helpers they share.

Every parser in :mod:`sigfs.formats` reports bad input by raising :class:`FormatError`,
which names the 1-based line the problem is on, so that a failed write to a sigfs file
can put a message like ``line 3: expected 64 characters of 0/1, got 12`` into the
process's ``errors`` file.

The helpers here exist so that every format treats numbers, comments and hostile input
the same way:

* numbers are decimal unless written ``0x...`` (SPEC "Formats"), and only ASCII digits
  count (Python's ``int()`` would also take ``"١٢"``, ``"1_0"`` or ``" 7 "``);
* a line whose first non-blank character is ``#`` is a comment;
* input is split into lines lazily and every line is length-checked *before* it is
  copied or tokenised, so a 10 MB write fails at once instead of being chewed on.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = [
    "MAX_LINE",
    "FormatError",
    "check_size",
    "is_comment",
    "numbered_lines",
    "parse_int",
    "show",
]

#: Longest line any sigfs format produces is a siginfo ``raw`` line (~262 characters);
#: anything much longer is not ours, and refusing it early keeps parsing linear and cheap.
MAX_LINE = 1024

_DEC = re.compile(r"[+-]?[0-9]+")
_HEX = re.compile(r"[+-]?0[xX][0-9a-fA-F]+")
#: Longest number token we will even look at: a u64 in decimal is 20 digits, in hex 18
#: characters; leading zeros get some slack but not unbounded (int() is quadratic).
_MAX_NUMBER = 66


class FormatError(ValueError):
    """Text that does not follow a sigfs format (or a value that cannot be encoded).

    ``line`` is the 1-based line number within the text being parsed, or ``None`` when
    the problem is not tied to a line (e.g. a single token given to ``parse_signal``).
    ``reason`` says what was expected and what was found.
    """

    line: int | None
    reason: str

    def __init__(self, line: int | None, reason: str) -> None:
        super().__init__(line, reason)
        self.line = line
        self.reason = reason

    def __str__(self) -> str:
        if self.line is None:
            return self.reason
        return f"line {self.line}: {self.reason}"

    def at(self, line: int | None) -> FormatError:
        """Return this error attributed to ``line`` (if it had no line yet)."""
        if self.line is not None or line is None:
            return self
        return FormatError(line, self.reason)


def show(token: str, limit: int = 40) -> str:
    """Quote ``token`` for an error message, shortened so huge input gives short errors."""
    if len(token) > limit:
        return repr(token[:limit]) + f"... ({len(token)} characters)"
    return repr(token)


def parse_int(token: str, what: str, lo: int, hi: int, line: int | None = None) -> int:
    """Parse a decimal or ``0x`` hex integer and check ``lo <= value <= hi``.

    ``what`` names the field in the error message.  Only ASCII digits, an optional sign
    and an optional ``0x`` prefix are accepted.
    """
    if len(token) > _MAX_NUMBER or not (_DEC.fullmatch(token) or _HEX.fullmatch(token)):
        raise FormatError(line, f"{what}: expected a decimal or 0x hex number, got {show(token)}")
    value = int(token, 0) if "x" in token or "X" in token else int(token, 10)
    if not lo <= value <= hi:
        raise FormatError(line, f"{what}: {token} is out of range {_bound(lo)}..{_bound(hi)}")
    return value


def _bound(n: int) -> str:
    return f"{n:#x}" if n > 0xFFFF else str(n)


def check_size(text: str, limit: int, what: str) -> None:
    """Refuse text longer than ``limit`` characters before looking at it at all."""
    if len(text) > limit:
        raise FormatError(None, f"{what}: text is {len(text)} characters, at most {limit}")


def is_comment(line: str) -> bool:
    """True for blank lines and lines whose first non-blank character is ``#``."""
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def numbered_lines(
    text: str, first_line: int = 1, max_line: int = MAX_LINE
) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for each ``\\n``-separated line, without the newline.

    A final newline does not start another line, so ``"a\\n"`` and ``"a"`` both give one
    line.  Lines are produced lazily and each one is length-checked before it is sliced
    out of ``text``, so hostile input fails on the first over-long line in O(length).
    Only ``\\n`` separates lines (``str.splitlines`` would also split on ``\\x0c``,
    ``\\u2028`` and friends, which then would silently vanish).
    """
    pos = 0
    number = first_line
    end = len(text)
    while pos < end:
        nl = text.find("\n", pos, pos + max_line + 1)
        stop = end if nl < 0 else nl
        if stop - pos > max_line:
            raise FormatError(number, f"line is longer than {max_line} characters")
        yield number, text[pos:stop]
        pos = stop + 1
        number += 1
