"""The ``status`` file: the per-process settings a restore needs, one ``key value`` a line.

::

    comm sleep
    pid 4242
    tgid 4242
    ppid 1
    pgid 4242
    sid 4242
    uids 1000 1000 1000 1000
    gids 1000 1000 1000 1000
    groups 4 24 27 1000
    umask 0022
    cwd /home/user
    root /
    personality 0x00000000
    no_new_privs 0
    pdeath_signal 0
    dumpable 1
    seccomp 0
    cap_inh 0x0000000000000000
    cap_prm 0x0000000000000000
    cap_eff 0x0000000000000000
    cap_bnd 0x000001ffffffffff
    cap_amb 0x0000000000000000
    timerslack_ns 50000
    nice 0
    sched_policy 0
    sched_priority 0
    rlimit cpu unlimited unlimited
    ...                                  (16 rlimit lines, Linux order)
    rlimit rttime unlimited unlimited
    thp_disable 0
    child_subreaper 0

``uids``/``gids`` are real, effective, saved and filesystem ids; ``groups`` the
supplementary groups (``groups -`` for none); ``umask`` octal (on input with a leading
``0`` or ``0o``); ``personality`` and the capability sets ``0x`` hex; rlimits decimal,
``unlimited`` standing for RLIM_INFINITY.  ``comm``, ``cwd`` and ``root`` are the rest
of the line, escaped as in :mod:`.fds` (a name is any 15 bytes but NUL, UTF-8 or not).
On input every key must appear exactly once, and ``rlimit`` once for each resource, in
any order.
"""

from __future__ import annotations

import re

from sigfs.formats.errors import FormatError, check_size, is_comment, parse_int, show
from sigfs.formats.fds import numbered_long_lines, parse_path, render_path
from sigfs.record import fields, record

__all__ = [
    "COMM_MAX",
    "KEYS",
    "MAX_TEXT",
    "NGROUPS_MAX",
    "RLIMIT_NAMES",
    "RLIM_INFINITY",
    "Status",
    "parse",
    "render",
]

#: Resource names in Linux's RLIMIT_* order (RLIMIT_CPU = 0 ... RLIMIT_RTTIME = 15).
RLIMIT_NAMES: tuple[str, ...] = (
    "cpu", "fsize", "data", "stack", "core", "rss", "nproc", "nofile", "memlock", "as",
    "locks", "sigpending", "msgqueue", "nice", "rtprio", "rttime",
)  # fmt: skip
RLIM_INFINITY = (1 << 64) - 1
#: TASK_COMM_LEN - 1.
COMM_MAX = 15
NGROUPS_MAX = 65536
#: Largest text accepted (a full ``groups`` line is ~720 KB).
MAX_TEXT = 2 * 1024 * 1024

_U32 = (1 << 32) - 1
_U64 = (1 << 64) - 1
_PID_MAX = (1 << 31) - 1
_OCTAL = re.compile(r"0(?:o)?[0-7]{1,6}")
_SCHED_RESET_ON_FORK = 0x40000000

# (key, lo, hi, how it is written: "dec", "hex8", "hex16")
_INTS: dict[str, tuple[int, int, str]] = {
    "pid": (1, _PID_MAX, "dec"),
    "tgid": (1, _PID_MAX, "dec"),
    "ppid": (0, _PID_MAX, "dec"),
    "pgid": (0, _PID_MAX, "dec"),
    "sid": (0, _PID_MAX, "dec"),
    "personality": (0, _U32, "hex8"),
    "no_new_privs": (0, 1, "dec"),
    "pdeath_signal": (0, 64, "dec"),
    "dumpable": (0, 2, "dec"),
    "seccomp": (0, 2, "dec"),
    "cap_inh": (0, _U64, "hex16"),
    "cap_prm": (0, _U64, "hex16"),
    "cap_eff": (0, _U64, "hex16"),
    "cap_bnd": (0, _U64, "hex16"),
    "cap_amb": (0, _U64, "hex16"),
    "timerslack_ns": (0, _U64, "dec"),
    "nice": (-20, 19, "dec"),
    "sched_policy": (0, _SCHED_RESET_ON_FORK | 7, "dec"),
    "sched_priority": (0, 99, "dec"),
    "thp_disable": (0, 3, "dec"),  # 6.18: 3 with PR_THP_DISABLE_EXCEPT_ADVISED
    "child_subreaper": (0, 1, "dec"),
}


@record
class Status:
    """Identity, credentials and per-process settings (see the module docstring)."""

    comm: str
    pid: int
    tgid: int
    ppid: int
    pgid: int
    sid: int
    uids: tuple[int, int, int, int]
    gids: tuple[int, int, int, int]
    groups: tuple[int, ...]
    umask: int
    cwd: str
    root: str
    personality: int
    no_new_privs: int
    pdeath_signal: int
    dumpable: int
    seccomp: int
    cap_inh: int
    cap_prm: int
    cap_eff: int
    cap_bnd: int
    cap_amb: int
    timerslack_ns: int
    nice: int
    sched_policy: int
    sched_priority: int
    rlimits: tuple[tuple[str, int, int], ...]
    thp_disable: int
    child_subreaper: int

    def __post_init__(self) -> None:
        _check_comm(self.comm, None)
        for key, (lo, hi, _) in _INTS.items():
            value = getattr(self, key)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise FormatError(None, f"{key}: {value!r} is out of range {lo}..{hi}")
        if self.sched_policy & ~_SCHED_RESET_ON_FORK > 7:
            raise FormatError(None, f"sched_policy: unknown policy {self.sched_policy}")
        for key in ("uids", "gids"):
            ids = getattr(self, key)
            if not isinstance(ids, tuple) or len(ids) != 4:
                raise FormatError(None, f"{key}: expected 4 ids (real effective saved fs)")
            if not all(isinstance(i, int) and 0 <= i <= _U32 for i in ids):
                raise FormatError(None, f"{key}: {ids!r} out of range 0..{_U32}")
        if not isinstance(self.groups, tuple) or len(self.groups) > NGROUPS_MAX:
            raise FormatError(None, f"groups: expected a tuple of at most {NGROUPS_MAX} ids")
        if not all(isinstance(g, int) and 0 <= g <= _U32 for g in self.groups):
            raise FormatError(None, f"groups: ids out of range 0..{_U32}")
        if not 0 <= self.umask <= 0o777:
            raise FormatError(None, f"umask: {self.umask:#o} is out of range 0..0777")
        render_path(self.cwd)
        render_path(self.root)
        if not isinstance(self.rlimits, tuple) or len(self.rlimits) != len(RLIMIT_NAMES):
            raise FormatError(None, f"expected {len(RLIMIT_NAMES)} rlimits")
        for expected, (name, soft, hard) in zip(RLIMIT_NAMES, self.rlimits, strict=True):
            if name != expected:
                raise FormatError(None, f"rlimit {show(name)} where {expected} belongs")
            _check_rlimit(name, soft, hard, None)

    def rlimit(self, name: str) -> tuple[int, int]:
        """``(soft, hard)`` of resource ``name`` (``KeyError`` if unknown)."""
        for item, soft, hard in self.rlimits:
            if item == name:
                return soft, hard
        raise KeyError(name)


#: Keys in file order (``rlimit`` stands for the 16 rlimit lines).
KEYS: tuple[str, ...] = tuple(f if f != "rlimits" else "rlimit" for f in fields(Status))


def _check_comm(comm: str, line: int | None) -> None:
    if "\0" in comm:
        raise FormatError(line, "comm: a NUL byte cannot be part of a name")
    try:
        size = len(comm.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise FormatError(line, f"comm: {show(comm)} cannot be encoded") from None
    if size > COMM_MAX:
        raise FormatError(line, f"comm: {size} bytes, at most {COMM_MAX}")


def _check_rlimit(name: str, soft: int, hard: int, line: int | None) -> None:
    for what, value in (("soft", soft), ("hard", hard)):
        if not isinstance(value, int) or not 0 <= value <= _U64:
            raise FormatError(line, f"rlimit {name}: {what} {value!r} does not fit in 64 bits")
    if soft > hard:
        raise FormatError(line, f"rlimit {name}: soft limit {soft} is above hard limit {hard}")


def _limit(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def _render_int(key: str, value: int) -> str:
    how = _INTS[key][2]
    if how == "hex8":
        return f"0x{value:08x}"
    if how == "hex16":
        return f"0x{value:016x}"
    return str(value)


def render(status: Status) -> str:
    """Every key in :data:`KEYS` order, one line each (16 for ``rlimit``)."""
    lines: list[str] = []
    for key in KEYS:
        if key == "comm":
            lines.append(f"comm {render_path(status.comm)}" if status.comm else "comm")
        elif key in ("cwd", "root"):
            path = render_path(getattr(status, key))
            lines.append(f"{key} {path}" if path else key)
        elif key in ("uids", "gids"):
            lines.append(f"{key} " + " ".join(str(i) for i in getattr(status, key)))
        elif key == "groups":
            lines.append("groups " + (" ".join(str(g) for g in status.groups) or "-"))
        elif key == "umask":
            lines.append(f"umask {status.umask:04o}")
        elif key == "rlimit":
            lines.extend(
                f"rlimit {name} {_limit(soft)} {_limit(hard)}"
                for name, soft, hard in status.rlimits
            )
        else:
            lines.append(f"{key} {_render_int(key, getattr(status, key))}")
    return "\n".join(lines) + "\n"


def _parse_limit(token: str, what: str, line: int) -> int:
    if token in ("unlimited", "infinity", "-1"):
        return RLIM_INFINITY
    return parse_int(token, what, 0, _U64, line)


def _parse_ids(key: str, tokens: list[str], line: int) -> tuple[int, int, int, int]:
    if len(tokens) != 4:
        raise FormatError(
            line, f"{key}: expected 4 ids (real effective saved fs), got {len(tokens)}"
        )
    a, b, c, d = (parse_int(t, key, 0, _U32, line) for t in tokens)
    return a, b, c, d


def _parse_umask(tokens: list[str], line: int) -> int:
    if len(tokens) != 1:
        raise FormatError(line, "expected 'umask OCTAL'")
    token = tokens[0]
    if not _OCTAL.fullmatch(token):
        raise FormatError(line, f"umask: expected octal like 0022, got {show(token)}")
    value = int(token.replace("o", ""), 8)
    if value > 0o777:
        raise FormatError(line, f"umask: {token} is out of range 0..0777")
    return value


def parse(text: str) -> Status:
    """Parse ``status`` text: every key exactly once (``rlimit`` once per resource)."""
    values, rlimits, last = _lines(text)
    missing = [k for k in KEYS if k != "rlimit" and k not in values]
    missing += [f"rlimit {name}" for name in RLIMIT_NAMES if name not in rlimits]
    if missing:
        listed = ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise FormatError(last, f"end of input: {len(missing)} keys missing: {listed}")
    values["rlimits"] = tuple((name, *rlimits[name]) for name in RLIMIT_NAMES)
    try:
        return Status(**values)  # type: ignore[arg-type]
    except FormatError as exc:
        raise exc.at(last) from None


def parse_some(text: str) -> tuple[dict[str, object], dict[str, tuple[int, int]]]:
    """Some keys, each at most once (``rlimit`` once per resource): what a
    write of part of the file says.  Returns the values by key and the
    rlimits by name."""
    values, rlimits, last = _lines(text)
    if not values and not rlimits:
        raise FormatError(last, "end of input: expected 'key value' lines")
    return values, rlimits


def _lines(text: str) -> tuple[dict[str, object], dict[str, tuple[int, int]], int]:
    check_size(text, MAX_TEXT, "status")
    values: dict[str, object] = {}
    seen: dict[str, int] = {}
    rlimits: dict[str, tuple[int, int]] = {}
    last = 1
    for number, line in numbered_long_lines(text, MAX_TEXT):
        last = number
        if is_comment(line):
            continue
        key, _, rest = line.partition(" ")
        if key == "rlimit":
            tokens = rest.split()
            if len(tokens) != 3:
                raise FormatError(number, "expected 'rlimit NAME SOFT HARD'")
            name = tokens[0]
            if name not in RLIMIT_NAMES:
                raise FormatError(number, f"unknown rlimit {show(name)}")
            if name in rlimits:
                raise FormatError(number, f"rlimit {name} given twice")
            soft = _parse_limit(tokens[1], f"rlimit {name} soft", number)
            hard = _parse_limit(tokens[2], f"rlimit {name} hard", number)
            _check_rlimit(name, soft, hard, number)
            rlimits[name] = (soft, hard)
            continue
        if key not in KEYS:
            raise FormatError(number, f"unknown key {show(key)}")
        if key in seen:
            raise FormatError(number, f"{key} given twice (also on line {seen[key]})")
        seen[key] = number
        values[key] = _parse_value(key, rest, number)
    return values, rlimits, last


def _parse_value(key: str, rest: str, number: int) -> object:
    if key == "comm":
        comm = parse_path(rest, "comm", number)
        _check_comm(comm, number)
        return comm
    if key in ("cwd", "root"):
        return parse_path(rest, key, number)
    tokens = rest.split()
    if key in ("uids", "gids"):
        return _parse_ids(key, tokens, number)
    if key == "groups":
        if tokens == ["-"]:
            return ()
        if len(tokens) > NGROUPS_MAX:
            raise FormatError(number, f"groups: {len(tokens)} groups, at most {NGROUPS_MAX}")
        return tuple(parse_int(t, "group", 0, _U32, number) for t in tokens)
    if key == "umask":
        return _parse_umask(tokens, number)
    lo, hi, _ = _INTS[key]
    if len(tokens) != 1:
        raise FormatError(number, f"expected '{key} VALUE'")
    value = parse_int(tokens[0], key, lo, hi, number)
    if key == "sched_policy" and value & ~_SCHED_RESET_ON_FORK > 7:
        raise FormatError(number, f"sched_policy: unknown policy {value}")
    return value
