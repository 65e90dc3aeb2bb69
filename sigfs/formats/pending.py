"""The ``pending`` and ``shared_pending`` files: a pending mask and its queue of siginfos.

Text is the 64-character bitmap line (see :mod:`sigfs.formats.sigset`) followed by one
record per queued siginfo in queue order (see :mod:`sigfs.formats.siginfo`)::

    0000000000000000100000000000000000000000000000000000000000000000
    sig 17: user 0 flags 0 errno 0 code 1
      chld pid 4242 uid 0 status 0 utime 0 stime 0

The mask and the queue are both kept because they are not the same thing: a standard
signal can be pending with no siginfo queued (when the kernel could not allocate one).
The reverse cannot happen in the kernel, so :func:`parse` rejects a record whose signal
is not set in the mask.  It does not reject two records of one standard signal (1..31),
although the kernel would drop the second when it is queued; that is the writer's call.

People may also write just signal names (``echo SIGUSR2 >> pending``);
:func:`parse_signal_list` reads that form.
"""

from __future__ import annotations

import re

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines
from sigfs.formats.siginfo import Siginfo, parse_located_records, render_record
from sigfs.formats.sigset import FULL, parse_bitmap, render_bitmap
from sigfs.record import record
from sigfs.signals import NSIG, parse_signal

__all__ = ["MAX_TEXT", "MAX_LIST", "Pending", "render", "parse", "parse_signal_list"]

#: Largest text accepted: a long queue (RLIMIT_SIGPENDING can be tens of thousands of
#: records of up to ~360 characters) fits; anything larger is refused unread.
MAX_TEXT = 64 * 1024 * 1024

#: Largest signal list accepted (``echo SIGUSR2 >> pending``): thousands of names.
MAX_LIST = 1024 * 1024

_TOKEN_SPLIT = re.compile(r"[\s,]+")


@record
class Pending:
    """A pending set: ``mask`` (bit k-1 = signal k) and the queued siginfos, oldest first."""

    mask: int
    queue: tuple[Siginfo, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.mask <= FULL:
            raise FormatError(None, f"pending mask {self.mask:#x} does not fit in {NSIG} bits")
        if not isinstance(self.queue, tuple):
            raise FormatError(None, "pending queue must be a tuple of Siginfo")


def render(pending: Pending) -> str:
    """Bitmap line, then every record; every line ends in ``\\n``."""
    return render_bitmap(pending.mask) + "\n" + "".join(render_record(s) for s in pending.queue)


def parse(text: str) -> Pending:
    """Parse a ``pending`` text; blank lines and ``#`` comments are skipped anywhere."""
    check_size(text, MAX_TEXT, "pending")
    lines = numbered_lines(text)
    mask: int | None = None
    bitmap_line = 0
    last = 1
    for number, line in lines:
        last = number
        if is_comment(line):
            continue
        mask = parse_bitmap(line.strip(), number)
        bitmap_line = number
        break
    if mask is None:
        raise FormatError(last, f"end of input: expected a line of {NSIG} characters of 0/1")
    queue = parse_located_records(lines)
    for number, si in queue:
        if not mask >> (si.signo - 1) & 1:
            raise FormatError(
                number,
                f"record for signal {si.signo}, but its bit is not set in the mask "
                f"on line {bitmap_line}",
            )
    return Pending(mask, tuple(si for _, si in queue))


def parse_signal_list(text: str) -> list[int]:
    """Signals named by a person, in order, e.g. ``"SIGUSR2 10, rtmin+1"`` -> [12, 10, 35].

    Names and numbers as :func:`~sigfs.signals.parse_signal` takes them, separated by
    whitespace, commas or newlines; ``#`` lines are comments.  Repeats are kept (queueing
    a signal twice is meaningful for real-time signals).  No signals gives ``[]``.
    """
    check_size(text, MAX_LIST, "signal list")
    result: list[int] = []
    for number, line in numbered_lines(text):
        if is_comment(line):
            continue
        for token in _TOKEN_SPLIT.split(line):
            if token:
                try:
                    result.append(parse_signal(token))
                except FormatError as exc:
                    raise exc.at(number) from None
    return result
