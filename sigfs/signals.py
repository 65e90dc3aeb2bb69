"""Names and numbers of x86-64 Linux signals, sigaction/sigaltstack/wait flags and si_codes.

Pure tables and lookups, shared by the text formats (which accept signal names wherever
a signal number goes, SPEC "Writing") and by ``sigfs show`` (which decodes flags for
people).  Numbering is the x86-64 kernel's; real-time signal names follow glibc and
bash's ``kill -l``: glibc reserves kernel signals 32 and 33 for itself, so its
``SIGRTMIN`` is 34, and the signals in between are named ``SIGRTMIN+n`` for the lower
half and ``SIGRTMAX-n`` for the upper half.
"""

from __future__ import annotations

import re

from sigfs.formats.errors import FormatError, show

__all__ = [
    "NSIG",
    "SIGRTMIN",
    "SIGRTMAX",
    "SIGNAL_NAMES",
    "SIGNAL_ALIASES",
    "SA_FLAGS",
    "SS_FLAGS",
    "WAIT_OPTIONS",
    "SI_CODES",
    "SIGNAL_CODES",
    "signal_name",
    "parse_signal",
    "bit_names",
    "flag_names",
    "ss_flag_names",
    "wait_option_names",
    "code_name",
]

#: Number of signals; valid signal numbers are 1..NSIG.
NSIG = 64

SIGHUP = 1
SIGINT = 2
SIGQUIT = 3
SIGILL = 4
SIGTRAP = 5
SIGABRT = 6
SIGBUS = 7
SIGFPE = 8
SIGKILL = 9
SIGUSR1 = 10
SIGSEGV = 11
SIGUSR2 = 12
SIGPIPE = 13
SIGALRM = 14
SIGTERM = 15
SIGSTKFLT = 16
SIGCHLD = 17
SIGCONT = 18
SIGSTOP = 19
SIGTSTP = 20
SIGTTIN = 21
SIGTTOU = 22
SIGURG = 23
SIGXCPU = 24
SIGXFSZ = 25
SIGVTALRM = 26
SIGPROF = 27
SIGWINCH = 28
SIGIO = 29
SIGPOLL = SIGIO
SIGPWR = 30
SIGSYS = 31
#: glibc's SIGRTMIN (the kernel's is 32; glibc keeps 32 and 33 for threads/cancellation).
SIGRTMIN = 34
SIGRTMAX = 64

_STANDARD = (
    "SIGHUP SIGINT SIGQUIT SIGILL SIGTRAP SIGABRT SIGBUS SIGFPE SIGKILL SIGUSR1 SIGSEGV "
    "SIGUSR2 SIGPIPE SIGALRM SIGTERM SIGSTKFLT SIGCHLD SIGCONT SIGSTOP SIGTSTP SIGTTIN "
    "SIGTTOU SIGURG SIGXCPU SIGXFSZ SIGVTALRM SIGPROF SIGWINCH SIGIO SIGPWR SIGSYS"
).split()


def _build_names() -> dict[int, str]:
    names = {n: name for n, name in enumerate(_STANDARD, start=1)}
    names[32] = "SIG32"
    names[33] = "SIG33"
    names[SIGRTMIN] = "SIGRTMIN"
    for n in range(SIGRTMIN + 1, SIGRTMAX):
        # bash/glibc split the range in the middle: 35..49 from below, 50..63 from above.
        if n - SIGRTMIN <= 15:
            names[n] = f"SIGRTMIN+{n - SIGRTMIN}"
        else:
            names[n] = f"SIGRTMAX-{SIGRTMAX - n}"
    names[SIGRTMAX] = "SIGRTMAX"
    return names


#: Canonical name of every signal 1..64, as printed.
SIGNAL_NAMES: dict[int, str] = _build_names()

#: Other names accepted on input (old System V and Linux spellings).
SIGNAL_ALIASES: dict[str, int] = {
    "SIGPOLL": SIGIO,
    "SIGIOT": SIGABRT,
    "SIGCLD": SIGCHLD,
    "SIGPWR": SIGPWR,
    "SIGUNUSED": SIGSYS,
}

_BY_NAME: dict[str, int] = {name: n for n, name in SIGNAL_NAMES.items()} | SIGNAL_ALIASES
_RT = re.compile(r"SIGRT(MIN|MAX)(?:([+-])([0-9]{1,2}))?")
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]+")


def signal_name(n: int) -> str:
    """The canonical name of signal ``n`` (1..64), e.g. ``"SIGUSR1"`` or ``"SIGRTMIN+3"``."""
    try:
        return SIGNAL_NAMES[n]
    except KeyError:
        raise FormatError(None, f"signal {n} is out of range 1..{NSIG}") from None


def parse_signal(token: str) -> int:
    """Parse one signal written by a person: a name or a number, returning 1..64.

    Accepted: ``SIGUSR1``, ``USR1``, ``sigusr1`` (any case, ``SIG`` optional), the
    aliases in :data:`SIGNAL_ALIASES`, ``SIGRTMIN+n`` / ``SIGRTMAX-n`` (also without
    ``SIG``; the result must be a real-time signal 34..64), and decimal or ``0x`` numbers
    1..64.  Anything else raises :class:`FormatError` with no line number (callers add it).
    """
    if _NUMBER.fullmatch(token):
        n = -1
        if len(token) <= 20:
            n = int(token, 16) if token[1:2] in ("x", "X") else int(token, 10)
        if not 1 <= n <= NSIG:
            raise FormatError(None, f"signal {show(token)} is out of range 1..{NSIG}")
        return n
    if len(token) > 20:
        raise FormatError(None, f"unknown signal {show(token)}")
    name = token.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _BY_NAME:
        return _BY_NAME[name]
    m = _RT.fullmatch(name)
    if m:
        base = SIGRTMIN if m.group(1) == "MIN" else SIGRTMAX
        offset = int(m.group(3) or "0", 10)
        n = base + offset if m.group(2) == "+" else base - offset
        if not SIGRTMIN <= n <= SIGRTMAX:
            raise FormatError(None, f"{token} is not a real-time signal ({SIGRTMIN}..{SIGRTMAX})")
        return n
    if re.fullmatch(r"[+-]?[0-9]+|[+-]?0[xX][0-9a-fA-F]+", token):
        raise FormatError(None, f"signal {show(token)} is out of range 1..{NSIG}")
    raise FormatError(None, f"unknown signal {show(token)}")


# --- flags ------------------------------------------------------------------------------

#: sigaction sa_flags bits on x86-64.
SA_FLAGS: dict[str, int] = {
    "SA_NOCLDSTOP": 0x00000001,
    "SA_NOCLDWAIT": 0x00000002,
    "SA_SIGINFO": 0x00000004,
    "SA_UNSUPPORTED": 0x00000400,
    "SA_EXPOSE_TAGBITS": 0x00000800,
    "SA_RESTORER": 0x04000000,
    "SA_ONSTACK": 0x08000000,
    "SA_RESTART": 0x10000000,
    "SA_NODEFER": 0x40000000,
    "SA_RESETHAND": 0x80000000,
}
SA_NOCLDSTOP = 0x00000001
SA_NOCLDWAIT = 0x00000002
SA_SIGINFO = 0x00000004
SA_UNSUPPORTED = 0x00000400
SA_EXPOSE_TAGBITS = 0x00000800
SA_RESTORER = 0x04000000
SA_ONSTACK = 0x08000000
SA_RESTART = 0x10000000
SA_NODEFER = 0x40000000
SA_RESETHAND = 0x80000000

#: sigaltstack ss_flags bits.
SS_FLAGS: dict[str, int] = {
    "SS_ONSTACK": 1,
    "SS_DISABLE": 2,
    "SS_AUTODISARM": 1 << 31,
}
SS_ONSTACK = 1
SS_DISABLE = 2
SS_AUTODISARM = 1 << 31

#: wait4/waitid option bits.  WSTOPPED (waitid's name) is the same bit as WUNTRACED and is
#: printed as the latter.
WAIT_OPTIONS: dict[str, int] = {
    "WNOHANG": 0x00000001,
    "WUNTRACED": 0x00000002,
    "WEXITED": 0x00000004,
    "WCONTINUED": 0x00000008,
    "WNOWAIT": 0x01000000,
    "__WNOTHREAD": 0x20000000,
    "__WALL": 0x40000000,
    "__WCLONE": 0x80000000,
}
WNOHANG = 0x00000001
WUNTRACED = 0x00000002
WSTOPPED = WUNTRACED
WEXITED = 0x00000004
WCONTINUED = 0x00000008
WNOWAIT = 0x01000000
WNOTHREAD = 0x20000000
WALL = 0x40000000
WCLONE = 0x80000000


def bit_names(value: int, table: dict[str, int]) -> list[str]:
    """Names of the bits of ``value`` found in ``table``, lowest bit first.

    Bits with no name are collected into one final ``0x...`` entry, so that joining the
    result with ``|`` still describes the whole value.  Zero gives an empty list.
    """
    if value < 0:
        raise ValueError(f"flags must not be negative, got {value}")
    names = [name for name, bit in sorted(table.items(), key=lambda kv: kv[1]) if value & bit]
    rest = value
    for bit in table.values():
        rest &= ~bit
    if rest:
        names.append(f"{rest:#x}")
    return names


def flag_names(flags: int) -> list[str]:
    """sigaction ``sa_flags`` as names, e.g. ``["SA_SIGINFO", "SA_RESTORER"]``."""
    return bit_names(flags, SA_FLAGS)


def ss_flag_names(flags: int) -> list[str]:
    """sigaltstack ``ss_flags`` as names, e.g. ``["SS_DISABLE"]``."""
    return bit_names(flags, SS_FLAGS)


def wait_option_names(options: int) -> list[str]:
    """wait4/waitid options as names, e.g. ``["WEXITED", "__WALL"]``."""
    return bit_names(options, WAIT_OPTIONS)


# --- si_code ----------------------------------------------------------------------------

#: Codes that mean the same for every signal (where the signal was sent from).
SI_CODES: dict[int, str] = {
    0: "SI_USER",
    0x80: "SI_KERNEL",
    -1: "SI_QUEUE",
    -2: "SI_TIMER",
    -3: "SI_MESGQ",
    -4: "SI_ASYNCIO",
    -5: "SI_SIGIO",
    -6: "SI_TKILL",
    -7: "SI_DETHREAD",
    -60: "SI_ASYNCNL",
}
SI_USER = 0
SI_KERNEL = 0x80
SI_QUEUE = -1
SI_TIMER = -2
SI_MESGQ = -3
SI_ASYNCIO = -4
SI_SIGIO = -5
SI_TKILL = -6
SI_DETHREAD = -7
SI_ASYNCNL = -60


def _codes(names: str) -> dict[int, str]:
    return {n: name for n, name in enumerate(names.split(), start=1)}


_ILL = _codes(
    "ILL_ILLOPC ILL_ILLOPN ILL_ILLADR ILL_ILLTRP ILL_PRVOPC ILL_PRVREG ILL_COPROC "
    "ILL_BADSTK ILL_BADIADDR __ILL_BREAK __ILL_BNDMOD"
)
_FPE = _codes(
    "FPE_INTDIV FPE_INTOVF FPE_FLTDIV FPE_FLTOVF FPE_FLTUND FPE_FLTRES FPE_FLTINV "
    "FPE_FLTSUB __FPE_DECOVF __FPE_DECDIV __FPE_DECERR __FPE_INVASC __FPE_INVDEC "
    "FPE_FLTUNK FPE_CONDTRAP"
)
_SEGV = _codes(
    "SEGV_MAPERR SEGV_ACCERR SEGV_BNDERR SEGV_PKUERR SEGV_ACCADI SEGV_ADIDERR "
    "SEGV_ADIPERR SEGV_MTEAERR SEGV_MTESERR SEGV_CPERR"
)
_BUS = _codes("BUS_ADRALN BUS_ADRERR BUS_OBJERR BUS_MCEERR_AR BUS_MCEERR_AO")
_TRAP = _codes("TRAP_BRKPT TRAP_TRACE TRAP_BRANCH TRAP_HWBKPT TRAP_UNK TRAP_PERF")
_CLD = _codes("CLD_EXITED CLD_KILLED CLD_DUMPED CLD_TRAPPED CLD_STOPPED CLD_CONTINUED")
_POLL = _codes("POLL_IN POLL_OUT POLL_MSG POLL_ERR POLL_PRI POLL_HUP")
_SYS = _codes("SYS_SECCOMP SYS_USER_DISPATCH")

#: Signal-specific positive si_codes, per signal.  The number of entries of each table is
#: the kernel's NSIGxxx limit that siginfo_layout() uses.
SIGNAL_CODES: dict[int, dict[int, str]] = {
    SIGILL: _ILL,
    SIGFPE: _FPE,
    SIGSEGV: _SEGV,
    SIGBUS: _BUS,
    SIGTRAP: _TRAP,
    SIGCHLD: _CLD,
    SIGPOLL: _POLL,
    SIGSYS: _SYS,
}

#: Kernel NSIGPOLL: positive codes up to this are POLL_* for any signal without its own
#: table (F_SETSIG lets SIGIO-style notifications arrive as any signal).
NSIGPOLL = 6


def code_name(signo: int, code: int) -> str:
    """Name of ``si_code`` ``code`` for signal ``signo``, e.g. ``"CLD_EXITED"``.

    Mirrors the kernel's interpretation in siginfo_layout(): positive codes below
    SI_KERNEL are looked up in the signal's own table, else read as POLL_* (up to
    NSIGPOLL, whatever the signal: that is how the kernel lays them out); other codes
    are the generic SI_* ones.  Unknown codes are returned as decimal.
    """
    if 0 < code < SI_KERNEL:
        table = SIGNAL_CODES.get(signo)
        if table is not None and code in table:
            return table[code]
        if code <= NSIGPOLL:
            return _POLL[code]
        return str(code)
    return SI_CODES.get(code, str(code))
