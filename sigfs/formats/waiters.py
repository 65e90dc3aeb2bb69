"""The ``waiters`` file: threads of a process blocked in wait4()/waitid(), read-only.

One line per waiting thread, ``options tid awaited``::

    0x40000004 1234 -1

``options`` is lowercase ``0x`` hex, ``tid`` decimal and ``awaited`` a signed decimal in
wait4()'s ``pid`` convention: ``-1`` any child, ``> 0`` that pid, ``0`` any child in the
caller's process group, ``< -1`` any child in process group ``-awaited``.  No waiters is
the empty text.

``options`` are the flags as the kernel holds them while waiting (``wo_flags``), so a
wait4() waiter has WEXITED set (the kernel adds it) and wait4() and waitid() waiters read
the same way.  The file is not written back: restoring a thread's registers makes it
re-enter its wait (SPEC "Formats"); :func:`parse` exists for tools and tests.
"""

from __future__ import annotations

from collections.abc import Iterable

from sigfs.formats.errors import FormatError, check_size, is_comment, numbered_lines, parse_int
from sigfs.record import record
from sigfs.signals import WEXITED

__all__ = [
    "MAX_TEXT",
    "P_ALL",
    "P_PID",
    "P_PGID",
    "P_PIDFD",
    "Waiter",
    "from_wait4",
    "from_waitid",
    "render",
    "parse",
]

#: Largest text accepted (~25 characters per thread; room for very many threads).
MAX_TEXT = 16 * 1024 * 1024

P_ALL = 0
P_PID = 1
P_PGID = 2
P_PIDFD = 3

_U32 = (1 << 32) - 1
_PID_MAX = (1 << 31) - 1  # pid_t is int; INT_MIN is refused by the kernel (-INT_MIN overflows)


@record
class Waiter:
    """One thread blocked in a wait: its wait options, its tid, and whom it waits for."""

    options: int
    tid: int
    awaited: int

    def __post_init__(self) -> None:
        if not 0 <= self.options <= _U32:
            raise FormatError(None, f"options {self.options} is out of range 0..{_U32:#x}")
        if not 1 <= self.tid <= _PID_MAX:
            raise FormatError(None, f"tid {self.tid} is out of range 1..{_PID_MAX}")
        if not -_PID_MAX <= self.awaited <= _PID_MAX:
            raise FormatError(
                None, f"awaited {self.awaited} is out of range {-_PID_MAX}..{_PID_MAX}"
            )


def from_wait4(tid: int, pid_arg: int, options: int) -> Waiter:
    """A waiter in ``wait4(pid_arg, ..., options)`` (also waitpid()/wait()).

    WEXITED is added to ``options`` as the kernel does (kernel_wait4() sets it).
    """
    return Waiter(options | WEXITED, tid, pid_arg)


def from_waitid(
    tid: int, idtype: int, id: int, options: int, pidfd_pid: int | None = None
) -> Waiter:
    """A waiter in ``waitid(idtype, id, ..., options)``, in wait4()'s ``awaited`` terms.

    P_ALL becomes -1, P_PID ``id``, P_PGID ``-id`` (or 0, "my own group", when ``id`` is
    0, as the kernel reads it).  P_PIDFD waits for the process the pidfd ``id`` refers
    to; this module does no I/O, so the caller should resolve it (the ``Pid:`` line of
    ``/proc/TID/fdinfo/ID``) and pass it as ``pidfd_pid``, which then is ``awaited``.
    Without it, ``awaited`` is 0: the file format has no way to say "a pidfd", and 0 is
    the documented stand-in for "unresolved pidfd" (the options still tell it apart from
    nothing: a reader that needs the truth looks at the registers).

    Arguments waitid() itself would refuse with EINVAL raise :class:`FormatError`.
    """
    if idtype == P_ALL:
        awaited = -1
    elif idtype == P_PID:
        if id <= 0:
            raise FormatError(None, f"waitid(P_PID, {id}): pid must be positive")
        awaited = id
    elif idtype == P_PGID:
        if id < 0:
            raise FormatError(None, f"waitid(P_PGID, {id}): process group must not be negative")
        awaited = -id
    elif idtype == P_PIDFD:
        if id < 0:
            raise FormatError(None, f"waitid(P_PIDFD, {id}): not a file descriptor")
        awaited = 0 if pidfd_pid is None else pidfd_pid
    else:
        raise FormatError(None, f"waitid: unknown idtype {idtype}")
    return Waiter(options, tid, awaited)


def render(waiters: Iterable[Waiter]) -> str:
    """One ``options tid awaited`` line per waiter, in the given order; none gives ``""``."""
    return "".join(f"{w.options:#x} {w.tid} {w.awaited}\n" for w in waiters)


def parse(text: str) -> tuple[Waiter, ...]:
    """Parse ``waiters`` text; each tid may appear once (a thread waits in one place)."""
    check_size(text, MAX_TEXT, "waiters")
    result: list[Waiter] = []
    seen: dict[int, int] = {}
    for number, line in numbered_lines(text):
        if is_comment(line):
            continue
        tokens = line.split()
        if len(tokens) != 3:
            raise FormatError(number, f"expected 3 fields 'options tid awaited', got {len(tokens)}")
        options = parse_int(tokens[0], "options", 0, _U32, number)
        tid = parse_int(tokens[1], "tid", 1, _PID_MAX, number)
        awaited = parse_int(tokens[2], "awaited", -_PID_MAX, _PID_MAX, number)
        if tid in seen:
            raise FormatError(number, f"tid {tid} given twice (also on line {seen[tid]})")
        seen[tid] = number
        result.append(Waiter(options, tid, awaited))
    return tuple(result)
