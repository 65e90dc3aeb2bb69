"""The ``action`` file: the process's 64 sigactions, one line per signal.

::

    # signum flags mask handler restorer
    1 0x0 0000000000000000000000000000000000000000000000000000000000000000 0x0 0x0
    ...
    10 0x14000004 <64 characters of 0/1> 0x401196 0x7f0a2c842520

``flags`` (sa_flags), ``handler`` and ``restorer`` are lowercase ``0x`` hex without
padding, ``mask`` (sa_mask) is the 64-character bitmap of :mod:`sigfs.formats.sigset`.
``SIG_DFL`` is handler ``0x0`` and ``SIG_IGN`` is ``0x1``.  The RFC had no restorer;
x86-64 needs it, since SA_RESTORER's trampoline is how a handler returns.

On input the lines may come in any order, numbers may be decimal or hex and the signal
may be a name, but every signal 1..64 must appear exactly once: a partial file would
leave the unnamed signals in an undefined state, and a write must be all or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines, parse_int
from sigfs.formats.sigset import FULL, parse_bitmap, render_bitmap
from sigfs.record import record
from sigfs.signals import NSIG, parse_signal, signal_name

__all__ = [
    "SIG_DFL",
    "SIG_IGN",
    "HEADER",
    "MAX_TEXT",
    "SigAction",
    "Actions",
    "render",
    "parse",
    "parse_some",
]

SIG_DFL = 0
SIG_IGN = 1
#: The comment line that starts the file, naming the columns.
HEADER = "# signum flags mask handler restorer"
#: Largest text accepted (64 lines are ~8 KiB; room for comments).
MAX_TEXT = 1024 * 1024

_U64 = (1 << 64) - 1


@record
class SigAction:
    """One signal's ``struct sigaction`` as the kernel keeps it (x86-64 ``k_sigaction``)."""

    signum: int
    handler: int = SIG_DFL
    flags: int = 0
    restorer: int = 0
    mask: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.signum <= NSIG:
            raise FormatError(None, f"signal {self.signum} is out of range 1..{NSIG}")
        for what in ("handler", "flags", "restorer"):
            value = getattr(self, what)
            if not 0 <= value <= _U64:
                raise FormatError(None, f"{what} {value} does not fit in 64 bits")
        if not 0 <= self.mask <= FULL:
            raise FormatError(None, f"mask {self.mask:#x} does not fit in {NSIG} bits")

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``"SIGUSR1"``."""
        return signal_name(self.signum)


@record
class Actions:
    """All 64 sigactions, ``actions[k-1]`` being signal ``k``'s."""

    actions: tuple[SigAction, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.actions, tuple) or len(self.actions) != NSIG:
            raise FormatError(None, f"expected {NSIG} sigactions, got {len(self.actions)}")
        for k, act in enumerate(self.actions, start=1):
            if act.signum != k:
                raise FormatError(None, f"sigaction {k} is for signal {act.signum}")

    @classmethod
    def default(cls) -> Actions:
        """Every signal at SIG_DFL with no flags and an empty mask (a fresh process)."""
        return cls(tuple(SigAction(k) for k in range(1, NSIG + 1)))

    def __getitem__(self, signum: int) -> SigAction:
        """The sigaction of signal ``signum`` (1..64; not a 0-based index)."""
        if not 1 <= signum <= NSIG:
            raise KeyError(signum)
        return self.actions[signum - 1]

    def __iter__(self) -> Iterator[SigAction]:
        return iter(self.actions)

    def __len__(self) -> int:
        return NSIG


def render_line(act: SigAction) -> str:
    """One line (without newline): ``signum flags mask handler restorer``."""
    return (
        f"{act.signum} {act.flags:#x} {render_bitmap(act.mask)} {act.handler:#x} {act.restorer:#x}"
    )


def render(actions: Actions) -> str:
    """The whole file: the header comment, then signals 1..64 in order."""
    return HEADER + "\n" + "".join(render_line(a) + "\n" for a in actions.actions)


def _parse_line(number: int, line: str) -> SigAction:
    tokens = line.split()
    if len(tokens) != 5:
        raise FormatError(
            number, f"expected 5 fields 'signum flags mask handler restorer', got {len(tokens)}"
        )
    try:
        signum = parse_signal(tokens[0])
    except FormatError as exc:
        raise exc.at(number) from None
    flags = parse_int(tokens[1], "flags", 0, _U64, number)
    mask = parse_bitmap(tokens[2], number)
    handler = parse_int(tokens[3], "handler", 0, _U64, number)
    restorer = parse_int(tokens[4], "restorer", 0, _U64, number)
    return SigAction(signum, handler, flags, restorer, mask)


def _parse_short(number: int, line: str) -> SigAction | None:
    """``SIGNAL DISPOSITION`` (see :data:`DISPOSITIONS`), or None."""
    tokens = line.split()
    if len(tokens) != 2 or tokens[1].lower() not in DISPOSITIONS:
        return None
    try:
        signum = parse_signal(tokens[0])
    except FormatError as exc:
        raise exc.at(number) from None
    return SigAction(signum, DISPOSITIONS[tokens[1].lower()])


def parse(text: str) -> Actions:
    """Parse an ``action`` file: exactly one line for each signal 1..64, in any order."""
    seen, last = _lines(text)
    missing = [k for k in range(1, NSIG + 1) if k not in seen]
    if missing:
        listed = " ".join(str(k) for k in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise FormatError(
            last,
            f"end of input: expected a line for each signal 1..{NSIG}; "
            f"{len(missing)} missing: {listed}",
        )
    return Actions(tuple(seen[k][1] for k in range(1, NSIG + 1)))


#: Dispositions a person may write instead of the five fields: ``SIGPIPE ignore``.
DISPOSITIONS = {"sig_dfl": SIG_DFL, "default": SIG_DFL, "sig_ign": SIG_IGN, "ignore": SIG_IGN}


def parse_some(text: str) -> list[SigAction]:
    """Lines for some signals, each at most once, in signal order: what a
    write of part of the file says (the signals not named keep theirs).
    Besides the file's lines, ``SIGNAL SIG_IGN`` (or ``ignore``) and
    ``SIGNAL SIG_DFL`` (or ``default``) are taken: that disposition, no
    flags, an empty mask."""
    seen, last = _lines(text, short=True)
    if not seen:
        raise FormatError(last, "end of input: expected 'signum flags mask handler restorer' lines")
    return [seen[k][1] for k in sorted(seen)]


def _lines(text: str, short: bool = False) -> tuple[dict[int, tuple[int, SigAction]], int]:
    check_size(text, MAX_TEXT, "action")
    seen: dict[int, tuple[int, SigAction]] = {}
    last = 1
    for number, line in numbered_lines(text):
        last = number
        if is_comment(line):
            continue
        act = _parse_short(number, line) if short else None
        act = act or _parse_line(number, line)
        if act.signum in seen:
            raise FormatError(
                number, f"signal {act.signum} given twice (also on line {seen[act.signum][0]})"
            )
        seen[act.signum] = (number, act)
    return seen, last
