"""Pure tests of the sig/ text formats and the signal tables (no processes, no mounts).

Round trips are proven with hypothesis: model -> render -> parse gives the model back,
and rendering is stable.  siginfo byte layouts are checked against an independent
transcription of the x86-64 ``siginfo_t`` offsets, and arbitrary 128-byte siginfos must
survive text exactly.  Every parser is fed truncated, oversized, miscounted, out-of-range
and misspelt input and must raise FormatError naming the line.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigfs import signals
from sigfs.formats import FormatError, action, altstack, pending, siginfo, sigset, waiters
from sigfs.formats.action import Actions, SigAction
from sigfs.formats.altstack import AltStack
from sigfs.formats.pending import Pending
from sigfs.formats.siginfo import Layout, Siginfo, layout_of
from sigfs.formats.waiters import Waiter

# Guards against hangs (a quadratic parser on 10 MB takes hours), not a speed
# measure: speed is for benchmarks/, and a loaded CI machine must not fail this.
HANG = 60.0

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
I32 = (-(1 << 31), (1 << 31) - 1)
ZERO_MASK = "0" * 64

# ---------------------------------------------------------------------------------------
# errors


def test_format_error_str_and_attributes() -> None:
    err = FormatError(3, "expected 64 characters of 0/1, got 12")
    assert str(err) == "line 3: expected 64 characters of 0/1, got 12"
    assert err.line == 3 and err.reason == "expected 64 characters of 0/1, got 12"
    assert isinstance(err, ValueError)
    assert str(FormatError(None, "bad")) == "bad"


def test_bitmap_error_message_example() -> None:
    with pytest.raises(FormatError) as info:
        sigset.parse("# c\n\n" + "0" * 12 + "\n")
    assert str(info.value) == "line 3: expected 64 characters of 0/1, got 12"


# ---------------------------------------------------------------------------------------
# signals


@pytest.mark.parametrize(
    ("token", "number"),
    [
        ("SIGUSR1", 10),
        ("USR1", 10),
        ("sigusr1", 10),
        ("Usr1", 10),
        ("10", 10),
        ("0x0a", 10),
        ("SIGRTMIN+3", 37),
        ("RTMIN+3", 37),
        ("sigrtmin+3", 37),
        ("SIGRTMAX-2", 62),
        ("SIGRTMIN", 34),
        ("SIGRTMAX", 64),
        ("34", 34),
        ("1", 1),
        ("64", 64),
        ("SIGHUP", 1),
        ("SIGSYS", 31),
        ("SIG32", 32),
        ("SIG33", 33),
        ("SIGPOLL", 29),
        ("SIGIO", 29),
        ("SIGIOT", 6),
        ("SIGABRT", 6),
        ("SIGCLD", 17),
        ("SIGCHLD", 17),
        ("SIGPWR", 30),
        ("SIGUNUSED", 31),
        ("SIGSTKFLT", 16),
    ],
)
def test_parse_signal(token: str, number: int) -> None:
    assert signals.parse_signal(token) == number


@pytest.mark.parametrize(
    "token",
    [
        "",
        "0",
        "65",
        "-1",
        "+10",
        "SIGFOO",
        "SIG",
        "USR3",
        "SIGRTMIN-1",
        "SIGRTMAX+1",
        "SIGRTMIN+31",
        "SIG USR1",
        "1" * 5000,
        "SIGUSR1" * 1000,
        "１０",
        "1_0",
        "10 ",
        "0x41",
    ],
)
def test_parse_signal_rejects(token: str) -> None:
    with pytest.raises(FormatError) as info:
        signals.parse_signal(token)
    assert info.value.line is None
    assert info.value.reason


def test_signal_names_cover_range_and_round_trip() -> None:
    assert signals.NSIG == 64
    expected = {
        1: "SIGHUP",
        6: "SIGABRT",
        9: "SIGKILL",
        10: "SIGUSR1",
        17: "SIGCHLD",
        19: "SIGSTOP",
        29: "SIGIO",
        30: "SIGPWR",
        31: "SIGSYS",
        32: "SIG32",
        33: "SIG33",
        34: "SIGRTMIN",
        35: "SIGRTMIN+1",
        49: "SIGRTMIN+15",
        50: "SIGRTMAX-14",
        63: "SIGRTMAX-1",
        64: "SIGRTMAX",
    }
    for n, name in expected.items():
        assert signals.signal_name(n) == name
    for n in range(1, 65):
        assert signals.parse_signal(signals.signal_name(n)) == n
        assert signals.parse_signal(str(n)) == n
    assert len(set(signals.SIGNAL_NAMES.values())) == 64
    for bad in (0, 65, -1):
        with pytest.raises(FormatError):
            signals.signal_name(bad)


def test_flag_names() -> None:
    assert signals.flag_names(0x14000004) == ["SA_SIGINFO", "SA_RESTORER", "SA_RESTART"]
    assert signals.flag_names(0) == []
    assert signals.flag_names(0x80000000 | 0x100) == ["SA_RESETHAND", "0x100"]
    every = sum(signals.SA_FLAGS.values())
    assert signals.flag_names(every) == list(signals.SA_FLAGS)
    assert signals.ss_flag_names(2) == ["SS_DISABLE"]
    assert signals.ss_flag_names(1 | (1 << 31)) == ["SS_ONSTACK", "SS_AUTODISARM"]
    assert signals.wait_option_names(0x40000004) == ["WEXITED", "__WALL"]
    assert signals.wait_option_names(0x80000000 | 0x01000000 | 0x20000000 | 0xB) == [
        "WNOHANG",
        "WUNTRACED",
        "WCONTINUED",
        "WNOWAIT",
        "__WNOTHREAD",
        "__WCLONE",
    ]
    with pytest.raises(ValueError):
        signals.flag_names(-1)


@pytest.mark.parametrize(
    ("signo", "code", "name"),
    [
        (10, 0, "SI_USER"),
        (11, 0x80, "SI_KERNEL"),
        (10, -1, "SI_QUEUE"),
        (14, -2, "SI_TIMER"),
        (10, -3, "SI_MESGQ"),
        (10, -4, "SI_ASYNCIO"),
        (29, -5, "SI_SIGIO"),
        (10, -6, "SI_TKILL"),
        (10, -7, "SI_DETHREAD"),
        (10, -60, "SI_ASYNCNL"),
        (4, 1, "ILL_ILLOPC"),
        (4, 11, "__ILL_BNDMOD"),
        (8, 1, "FPE_INTDIV"),
        (8, 15, "FPE_CONDTRAP"),
        (11, 1, "SEGV_MAPERR"),
        (11, 3, "SEGV_BNDERR"),
        (11, 4, "SEGV_PKUERR"),
        (11, 10, "SEGV_CPERR"),
        (7, 1, "BUS_ADRALN"),
        (7, 4, "BUS_MCEERR_AR"),
        (7, 5, "BUS_MCEERR_AO"),
        (5, 1, "TRAP_BRKPT"),
        (5, 6, "TRAP_PERF"),
        (17, 1, "CLD_EXITED"),
        (17, 6, "CLD_CONTINUED"),
        (29, 1, "POLL_IN"),
        (29, 6, "POLL_HUP"),
        (31, 1, "SYS_SECCOMP"),
        (31, 2, "SYS_USER_DISPATCH"),
        (40, 2, "POLL_OUT"),  # F_SETSIG: any signal can carry POLL_* codes
        (10, 7, "7"),
        (10, -100, "-100"),
        (4, 12, "12"),
    ],
)
def test_code_name(signo: int, code: int, name: str) -> None:
    assert signals.code_name(signo, code) == name


# ---------------------------------------------------------------------------------------
# sigset


@given(st.integers(0, U64))
def test_bitmap_round_trip(mask: int) -> None:
    text = sigset.render_bitmap(mask)
    assert len(text) == 64 and set(text) <= {"0", "1"}
    assert sigset.parse_bitmap(text) == mask
    assert sigset.parse(sigset.render(mask)) == mask
    assert sigset.render(sigset.parse(sigset.render(mask))) == sigset.render(mask)
    assert sigset.mask_of(sigset.signals_of(mask)) == mask
    assert sigset.parse_proc_hex(f"{mask:016x}") == mask


def test_bitmap_signal_one_first() -> None:
    assert sigset.render_bitmap(1) == "1" + "0" * 63
    assert sigset.render_bitmap(1 << 63) == "0" * 63 + "1"
    # SIGUSR1 blocked: /proc says 0000000000000200, the bitmap has character 10 set
    mask = sigset.parse_proc_hex("0000000000000200")
    assert sigset.render_bitmap(mask) == "0" * 9 + "1" + "0" * 54
    assert sigset.parse_proc_hex(" 0000000000010000\n") == 1 << 16


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "end of input"),
        ("# only a comment\n", 1, "end of input"),
        ("0" * 63 + "\n", 1, "got 63"),
        ("0" * 65 + "\n", 1, "got 65"),
        ("0" * 63 + "2\n", 1, "column 64"),
        ("0" * 32 + " " + "0" * 31 + "\n", 1, "column 33"),
        (ZERO_MASK + "\n" + ZERO_MASK + "\n", 2, "only one"),
        ("\n\n" + "x" * 64, 3, "column 1"),
    ],
)
def test_blocked_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        sigset.parse(text)
    assert info.value.line == line
    assert needle in str(info.value)


@pytest.mark.parametrize("bad", ["", "0x10", "g", "1" * 17, "-1"])
def test_parse_proc_hex_rejects(bad: str) -> None:
    with pytest.raises(FormatError):
        sigset.parse_proc_hex(bad)


def test_render_bitmap_rejects_out_of_range() -> None:
    for bad in (-1, 1 << 64):
        with pytest.raises(FormatError):
            sigset.render_bitmap(bad)


def _m(*sigs: int) -> int:
    return sigset.mask_of(sigs)


@pytest.mark.parametrize(
    ("text", "current", "replace", "result"),
    [
        ("+SIGUSR1\n", _m(2), True, _m(2, 10)),
        ("+SIGUSR1\n", _m(2), False, _m(2, 10)),
        ("SIGINT SIGTERM\n", _m(10), True, _m(2, 15)),
        ("SIGINT SIGTERM\n", _m(10), False, _m(2, 10, 15)),
        ("-SIGINT\n", _m(2, 10), True, _m(10)),
        ("-2,-10\n", _m(2, 10, 12), False, _m(12)),
        ("usr1, 12 rtmin+1\n", 0, True, _m(10, 12, 35)),
        ("SIGINT +SIGUSR1 -SIGINT\n", _m(3), True, _m(10)),
        ("+SIGUSR1 SIGINT\n", _m(3), True, _m(2, 10)),
        ("", _m(3), True, 0),
        ("\n", _m(3), True, 0),
        ("", _m(3), False, _m(3)),
        ("# just a comment\n", _m(3), True, 0),
        ("# comment\n+SIGHUP\n# another\n-SIGQUIT\n", _m(3), True, _m(1)),
        (sigset.render_bitmap(_m(1, 64)) + "\n", _m(5), True, _m(1, 64)),
        (sigset.render_bitmap(_m(1, 64)) + "\n", _m(5), False, _m(1, 5, 64)),
        ("  " + sigset.render_bitmap(_m(7)) + "  \n", 0, True, _m(7)),
        ("SIGRTMAX", 0, True, _m(64)),
        ("-SIGRTMAX", _m(64), True, 0),
    ],
)
def test_parse_mask_edit(text: str, current: int, replace: bool, result: int) -> None:
    assert sigset.parse_mask_edit(text, current, replace=replace) == result


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("+SIGFOO\n", 1, "SIGFOO"),
        ("SIGINT\n\n+65\n", 3, "out of range"),
        ("+\n", 1, "after it"),
        ("--SIGINT\n", 1, "unknown signal"),
        (ZERO_MASK + " +SIGINT\n", 1, "bitmap"),
        ("SIGINT\n" + ZERO_MASK + "\n", 2, "bitmap"),
        ("0" * 63 + "\n", 1, "got 63"),
        ("1" * 65 + "\n", 1, "got 65"),
        ("+" + "0" * 30 + "1\n", 1, "out of range"),
    ],
)
def test_parse_mask_edit_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        sigset.parse_mask_edit(text, 0, replace=True)
    assert info.value.line == line
    assert needle in str(info.value)


@given(st.integers(0, U64), st.integers(0, U64), st.booleans())
def test_parse_mask_edit_bitmap_property(mask: int, current: int, replace: bool) -> None:
    got = sigset.parse_mask_edit(sigset.render(mask), current, replace=replace)
    assert got == (mask if replace else mask | current)


@given(
    st.lists(st.tuples(st.sampled_from("+- "), st.integers(1, 64)), max_size=20),
    st.integers(0, U64),
)
def test_parse_mask_edit_token_property(edits: list[tuple[str, int]], current: int) -> None:
    text = " ".join(f"{sign.strip()}{signals.signal_name(n)}" for sign, n in edits)
    for replace in (True, False):
        bare = any(s == " " for s, _ in edits)
        mask = 0 if replace and (bare or not edits) else current
        for sign, n in edits:
            mask = mask & ~(1 << (n - 1)) if sign == "-" else mask | (1 << (n - 1))
        assert sigset.parse_mask_edit(text, current, replace=replace) == mask


# ---------------------------------------------------------------------------------------
# siginfo: layout_of


@pytest.mark.parametrize(
    ("signo", "code", "layout"),
    [
        # generic codes
        (10, 0, Layout.KILL),  # SI_USER
        (10, 0x80, Layout.KILL),  # SI_KERNEL
        (11, 0x80, Layout.KILL),
        (10, 0x7FFFFFFF, Layout.KILL),
        (10, -1, Layout.RT),  # SI_QUEUE
        (34, -1, Layout.RT),
        (10, -6, Layout.RT),  # SI_TKILL
        (10, -3, Layout.RT),
        (10, -60, Layout.RT),
        (10, -(1 << 31), Layout.RT),
        (14, -2, Layout.TIMER),  # SI_TIMER, any signal
        (40, -2, Layout.TIMER),
        (29, -5, Layout.POLL),  # SI_SIGIO
        (10, -5, Layout.POLL),
        # per-signal tables
        (4, 1, Layout.FAULT),
        (4, 11, Layout.FAULT),
        (4, 12, Layout.KILL),
        (8, 15, Layout.FAULT),
        (8, 16, Layout.KILL),
        (11, 1, Layout.FAULT),
        (11, 2, Layout.FAULT),
        (11, 3, Layout.FAULT_BNDERR),
        (11, 4, Layout.FAULT_PKUERR),
        (11, 10, Layout.FAULT),
        (11, 11, Layout.KILL),
        (7, 1, Layout.FAULT),
        (7, 3, Layout.FAULT),
        (7, 4, Layout.FAULT_MCEERR),
        (7, 5, Layout.FAULT_MCEERR),
        (7, 6, Layout.POLL),  # past NSIGBUS but within NSIGPOLL
        (7, 7, Layout.KILL),
        (5, 1, Layout.FAULT),
        (5, 5, Layout.FAULT),
        (5, 6, Layout.FAULT_PERF),
        (5, 7, Layout.KILL),
        (17, 1, Layout.CHLD),
        (17, 6, Layout.CHLD),
        (17, 7, Layout.KILL),
        (29, 1, Layout.POLL),
        (29, 6, Layout.POLL),
        (29, 7, Layout.KILL),
        (31, 1, Layout.SYS),
        (31, 2, Layout.SYS),
        (31, 3, Layout.POLL),
        (31, 7, Layout.KILL),
        # signals without a table: positive codes up to NSIGPOLL are POLL
        (10, 1, Layout.POLL),
        (10, 6, Layout.POLL),
        (10, 7, Layout.KILL),
        (10, 0x7F, Layout.KILL),
        (64, 3, Layout.POLL),
        (1, 6, Layout.POLL),
    ],
)
def test_layout_of(signo: int, code: int, layout: Layout) -> None:
    assert layout_of(signo, code) == layout


# Independent transcription of the x86-64 union offsets: key -> (offset, struct format).
OFFSETS: dict[Layout, dict[str, tuple[int, str]]] = {
    Layout.KILL: {"spid": (16, "<i"), "suid": (20, "<I")},
    Layout.RT: {"spid": (16, "<i"), "suid": (20, "<I"), "value": (24, "<Q")},
    Layout.TIMER: {"tid": (16, "<i"), "overrun": (20, "<i"), "value": (24, "<Q")},
    Layout.CHLD: {
        "pid": (16, "<i"),
        "uid": (20, "<I"),
        "status": (24, "<i"),
        "utime": (32, "<q"),
        "stime": (40, "<q"),
    },
    Layout.FAULT: {"addr": (16, "<Q")},
    Layout.FAULT_MCEERR: {"addr": (16, "<Q"), "addr_lsb": (24, "<h")},
    Layout.FAULT_BNDERR: {"addr": (16, "<Q"), "lower": (32, "<Q"), "upper": (40, "<Q")},
    Layout.FAULT_PKUERR: {"addr": (16, "<Q"), "pkey": (32, "<I")},
    Layout.FAULT_PERF: {
        "addr": (16, "<Q"),
        "perf_data": (24, "<Q"),
        "perf_type": (32, "<I"),
        "perf_flags": (36, "<I"),
    },
    Layout.POLL: {"band": (16, "<q"), "fd": (24, "<i")},
    Layout.SYS: {"call_addr": (16, "<Q"), "syscall": (24, "<i"), "arch": (28, "<I")},
}
RANGES = {
    "<i": I32,
    "<I": (0, U32),
    "<q": (-(1 << 63), (1 << 63) - 1),
    "<Q": (0, U64),
    "<h": (-(1 << 15), (1 << 15) - 1),
}
# A (signo, code) giving each layout.
EXAMPLES: dict[Layout, list[tuple[int, int]]] = {
    Layout.KILL: [(10, 0), (15, 0x80), (10, 7), (9, 0)],
    Layout.RT: [(34, -1), (10, -6), (12, -3), (40, -4), (2, -7), (10, -60), (5, -100)],
    Layout.TIMER: [(14, -2), (34, -2)],
    Layout.CHLD: [(17, c) for c in range(1, 7)],
    Layout.FAULT: [(11, 1), (11, 2), (4, 5), (8, 1), (7, 2), (5, 1), (5, 4)],
    Layout.FAULT_MCEERR: [(7, 4), (7, 5)],
    Layout.FAULT_BNDERR: [(11, 3)],
    Layout.FAULT_PKUERR: [(11, 4)],
    Layout.FAULT_PERF: [(5, 6)],
    Layout.POLL: [(29, 1), (29, 6), (10, -5), (40, 2)],
    Layout.SYS: [(31, 1), (31, 2)],
}


def test_field_names_match_transcription() -> None:
    for layout in Layout:
        assert siginfo.field_names(layout) == tuple(OFFSETS[layout])
        for signo, code in EXAMPLES[layout]:
            assert layout_of(signo, code) == layout


@st.composite
def canonical_siginfo(draw: st.DrawFn) -> tuple[Siginfo, dict[str, int]]:
    layout = draw(st.sampled_from(list(Layout)))
    signo, code = draw(st.sampled_from(EXAMPLES[layout]))
    errno = draw(st.integers(*I32))
    fields = {key: draw(st.integers(*RANGES[fmt])) for key, (_, fmt) in OFFSETS[layout].items()}
    return Siginfo.build(signo, errno, code, **fields), {"errno": errno, **fields}


@given(canonical_siginfo())
def test_siginfo_build_layout_bytes(case: tuple[Siginfo, dict[str, int]]) -> None:
    si, given_fields = case
    layout = si.layout
    raw = bytearray(si.raw)
    assert len(raw) == 128
    assert struct.unpack_from("<i", raw, 4)[0] == given_fields["errno"]
    assert si.errno == given_fields["errno"]
    for key, (off, fmt) in OFFSETS[layout].items():
        assert struct.unpack_from(fmt, raw, off)[0] == given_fields[key]
        assert si.fields()[key] == given_fields[key]
        raw[off : off + struct.calcsize(fmt)] = bytes(struct.calcsize(fmt))
    # nothing but the header and the layout's fields is written
    raw[0:12] = bytes(12)
    assert raw == bytes(128)
    assert si.is_canonical()


@given(canonical_siginfo())
def test_siginfo_text_round_trip_canonical(case: tuple[Siginfo, dict[str, int]]) -> None:
    si, _ = case
    text = siginfo.render_record(si)
    assert text.endswith("\n")
    assert len(text.splitlines()) == 2, "canonical records have no raw line"
    assert "  raw " not in text
    assert siginfo.parse_records(text.splitlines(), 1) == [si]
    assert siginfo.parse_records(text.splitlines(keepends=True), 7) == [si]
    assert siginfo.parse(text) == si
    assert siginfo.render(siginfo.parse(text)) == text


@given(st.binary(min_size=128, max_size=128), st.integers(1, 64), st.booleans())
def test_siginfo_random_bytes_round_trip(raw: bytes, signo: int, plausible_code: bool) -> None:
    data = bytearray(raw)
    struct.pack_into("<i", data, 0, signo)
    if plausible_code:
        struct.pack_into("<i", data, 8, (raw[8] % 140) - 10)
    si = Siginfo(bytes(data))
    text = siginfo.render_record(si)
    back = siginfo.parse(text)
    assert back.raw == si.raw
    assert siginfo.render_record(back) == text
    has_raw = "\n  raw " in text
    assert has_raw == (not si.is_canonical())
    if has_raw:
        assert text.splitlines()[2] == "  raw " + si.raw.hex()


@given(
    st.binary(min_size=128, max_size=128),
    st.integers(1, 64),
    st.integers(-10, 130),
    st.integers(12, 127),
    st.integers(0, 255),
)
def test_siginfo_is_canonical_means_build_gives_raw_back(
    raw: bytes, signo: int, code: int, pos: int, byte: int
) -> None:
    """The fast canonical check (no uncovered byte set) agrees with its
    definition (building from the printed fields gives ``raw`` back), for
    records with and without a stray byte anywhere past the header."""
    data = bytearray(raw)
    struct.pack_into("<ii", data, 8, code, 0)
    struct.pack_into("<i", data, 0, signo)
    loose = Siginfo(bytes(data))
    clean = bytearray(Siginfo.build(loose.signo, loose.errno, loose.code, **loose.fields()).raw)
    clean[pos] = byte
    si = Siginfo(bytes(clean))
    rebuilt = Siginfo.build(si.signo, si.errno, si.code, **si.fields())
    assert si.is_canonical() == (rebuilt.raw == si.raw)


def test_siginfo_example_text() -> None:
    si = Siginfo.build(17, 0, 1, pid=4242, uid=0, status=0, utime=0, stime=0)
    assert siginfo.render_record(si) == (
        "sig 17: user 0 flags 0 errno 0 code 1\n  chld pid 4242 uid 0 status 0 utime 0 stime 0\n"
    )


@pytest.mark.parametrize(
    ("si", "text"),
    [
        (
            Siginfo.build(10, 0, 0, spid=77, suid=1000),
            "sig 10: user 1000 flags 0 errno 0 code 0\n  kill spid 77 suid 1000\n",
        ),
        (
            Siginfo.build(40, 0, -1, spid=77, suid=1000, value=U64),
            f"sig 40: user 1000 flags 0 errno 0 code -1\n  queue spid 77 suid 1000 value {U64}\n",
        ),
        (
            Siginfo.build(14, 0, -2, tid=5, overrun=-1, value=3),
            "sig 14: user 0 flags 0 errno 0 code -2\n  timer tid 5 overrun -1 value 3\n",
        ),
        (
            Siginfo.build(11, 0, 1, addr=0xDEADBEEF),
            "sig 11: user 0 flags 0 errno 0 code 1\n  fault addr 0xdeadbeef\n",
        ),
        (
            Siginfo.build(7, 0, 4, addr=0x1000, addr_lsb=12),
            "sig 7: user 0 flags 0 errno 0 code 4\n  fault addr 0x1000 addr_lsb 12\n",
        ),
        (
            Siginfo.build(11, 0, 3, addr=0x10, lower=0x20, upper=0x30),
            "sig 11: user 0 flags 0 errno 0 code 3\n  fault addr 0x10 lower 0x20 upper 0x30\n",
        ),
        (
            Siginfo.build(11, 0, 4, addr=0x10, pkey=3),
            "sig 11: user 0 flags 0 errno 0 code 4\n  fault addr 0x10 pkey 3\n",
        ),
        (
            Siginfo.build(5, 0, 6, addr=0x10, perf_data=0xAB, perf_type=2, perf_flags=1),
            "sig 5: user 0 flags 0 errno 0 code 6\n"
            "  fault addr 0x10 perf_data 0xab perf_type 2 perf_flags 1\n",
        ),
        (
            Siginfo.build(29, 0, 1, band=-65, fd=3),
            "sig 29: user 0 flags 0 errno 0 code 1\n  poll band -65 fd 3\n",
        ),
        (
            Siginfo.build(31, 1, 1, call_addr=0x401000, syscall=39, arch=0xC000003E),
            "sig 31: user 0 flags 0 errno 1 code 1\n"
            "  sys call_addr 0x401000 syscall 39 arch 0xc000003e\n",
        ),
    ],
)
def test_siginfo_texts(si: Siginfo, text: str) -> None:
    assert siginfo.render_record(si) == text
    assert siginfo.parse(text) == si


def test_siginfo_raw_line_for_timer_sys_private() -> None:
    base = Siginfo.build(14, 0, -2, tid=1, overrun=0, value=0)
    raw = bytearray(base.raw)
    struct.pack_into("<i", raw, 32, 99)  # si_sys_private
    si = Siginfo(bytes(raw))
    text = siginfo.render_record(si)
    lines = text.splitlines()
    assert lines[:2] == siginfo.render_record(base).splitlines()
    assert lines[2] == "  raw " + bytes(raw).hex()
    assert siginfo.parse(text) == si


def test_siginfo_lenient_input() -> None:
    text = (
        "# queued by hand\n"
        "sig SIGCHLD: user 0x0 flags 0 errno 0 code 0x1\n"
        "\n"
        "\tchld  uid 0 pid 0x10 stime 2 utime 1 status -1\n"
    )
    assert siginfo.parse(text) == Siginfo.build(17, 0, 1, pid=16, status=-1, utime=1, stime=2)


def _raw_line(si: Siginfo) -> str:
    return "  raw " + si.raw.hex()


CHLD_HEAD = "sig 17: user 0 flags 0 errno 0 code 1"
CHLD_DETAIL = "  chld pid 4242 uid 0 status 0 utime 0 stime 0"
TIMER = Siginfo.build(14, 0, -2, tid=1, overrun=2, value=3)


@pytest.mark.parametrize(
    ("lines", "line", "needle"),
    [
        ([CHLD_HEAD], 1, "no detail line"),
        ([CHLD_HEAD, "# c", ""], 1, "no detail line"),
        (["  chld pid 1"], 1, "expected a 'sig N: ...' line"),
        (["sig 17: user 0 flags 0 errno 0", CHLD_DETAIL], 1, "got 8 words"),
        (["sig 17 user 0 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "expected 'sig N:"),
        (["sig 17: user 0 flags 1 errno 0 code 1", CHLD_DETAIL], 1, "flags must be 0"),
        (["sig 17: uid 0 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "expected 'user'"),
        (["sig 0: user 0 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "out of range"),
        (["sig 65: user 0 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "out of range"),
        (["sig SIGFOO: user 0 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "SIGFOO"),
        (["sig 17: user 0 flags 0 errno 0 code 2147483648", CHLD_DETAIL], 1, "code"),
        (["sig 17: user -1 flags 0 errno 0 code 1", CHLD_DETAIL], 1, "user"),
        (["sig 17: user 0 flags 0 errno x code 1", CHLD_DETAIL], 1, "errno"),
        ([CHLD_HEAD, "  kill spid 1 suid 0"], 2, "'chld'"),
        ([CHLD_HEAD, "  chld pid 4242 uid 0 status 0 utime 0"], 2, "got 8 words"),
        ([CHLD_HEAD, CHLD_DETAIL + " extra 1"], 2, "got 12 words"),
        ([CHLD_HEAD, "  chld pid 1 pid 2 status 0 utime 0 stime 0"], 2, "twice"),
        ([CHLD_HEAD, "  chld pid 1 uid 0 status 0 utime 0 stim 0"], 2, "unknown field"),
        ([CHLD_HEAD, "  chld pid 2147483648 uid 0 status 0 utime 0 stime 0"], 2, "pid"),
        ([CHLD_HEAD, "  chld pid 1 uid 4294967296 status 0 utime 0 stime 0"], 2, "uid"),
        ([CHLD_HEAD, "  chld pid 1 uid 5 status 0 utime 0 stime 0"], 2, "disagrees"),
        ([CHLD_HEAD, "  chld pid 1 uid 0 status 0 utime 1e3 stime 0"], 2, "utime"),
        (["sig 11: user 3 flags 0 errno 0 code 1", "  fault addr 0x0"], 1, "user must be 0"),
        (["sig 11: user 0 flags 0 errno 0 code 1", "  fault addr -1"], 2, "addr"),
        (["sig 11: user 0 flags 0 errno 0 code 1", "  fault addr 0x1" + "0" * 16], 2, "addr"),
        ([CHLD_HEAD, CHLD_DETAIL, "  raw 00"], 3, "got 2"),
        ([CHLD_HEAD, CHLD_DETAIL, "  raw " + "zz" * 128], 3, "hex digits"),
        ([CHLD_HEAD, CHLD_DETAIL, "  raw"], 3, "expected 'raw'"),
        ([CHLD_HEAD, CHLD_DETAIL, "  bogus 1"], 3, "expected a 'raw' line or"),
        # raw must agree with the header and the detail line
        (
            [
                "sig 14: user 0 flags 0 errno 0 code -2",
                "  timer tid 1 overrun 2 value 3",
                _raw_line(Siginfo.build(14, 0, -2, tid=1, overrun=2, value=4)),
            ],
            3,
            "value",
        ),
        (
            [
                "sig 14: user 0 flags 0 errno 5 code -2",
                "  timer tid 1 overrun 2 value 3",
                _raw_line(TIMER),
            ],
            3,
            "errno",
        ),
        (
            [
                "sig 15: user 0 flags 0 errno 0 code -2",
                "  timer tid 1 overrun 2 value 3",
                _raw_line(TIMER),
            ],
            3,
            "signo",
        ),
        ([CHLD_HEAD, CHLD_DETAIL, "x" * 2000], 3, "longer than"),
    ],
)
def test_siginfo_rejects(lines: list[str], line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        siginfo.parse_records(lines, 1)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


def test_siginfo_parse_records_line_offset() -> None:
    with pytest.raises(FormatError) as info:
        siginfo.parse_records([CHLD_HEAD, "  kill spid 1 suid 0"], 10)
    assert info.value.line == 11


def test_siginfo_model_rejects() -> None:
    with pytest.raises(FormatError):
        Siginfo(bytes(127))
    with pytest.raises(FormatError):
        Siginfo(bytes(129))
    with pytest.raises(FormatError):
        Siginfo.build(17, 0, 1, spid=3)  # kill field on a chld layout
    with pytest.raises(FormatError):
        Siginfo.build(17, 0, 1, pid=1 << 31)
    with pytest.raises(FormatError):
        Siginfo.build(17, 1 << 31, 1)
    with pytest.raises(FormatError):
        siginfo.parse(CHLD_HEAD + "\n" + CHLD_DETAIL + "\n" + CHLD_HEAD + "\n" + CHLD_DETAIL)


# ---------------------------------------------------------------------------------------
# pending


@st.composite
def any_siginfo(draw: st.DrawFn, signo: int) -> Siginfo:
    if draw(st.booleans()):
        si, _ = draw(canonical_siginfo())
        data = bytearray(si.raw)
    else:
        data = bytearray(draw(st.binary(min_size=128, max_size=128)))
    struct.pack_into("<i", data, 0, signo)
    return Siginfo(bytes(data))


@st.composite
def pendings(draw: st.DrawFn) -> Pending:
    mask = draw(st.integers(0, U64))
    sigs = sigset.signals_of(mask)
    queue: list[Siginfo] = []
    if sigs:
        for signo in draw(st.lists(st.sampled_from(sigs), max_size=6)):
            queue.append(draw(any_siginfo(signo)))
    return Pending(mask, tuple(queue))


@settings(deadline=None)
@given(pendings())
def test_pending_round_trip(p: Pending) -> None:
    text = pending.render(p)
    assert text.endswith("\n")
    assert all(line for line in text.split("\n")[:-1])
    assert pending.parse(text) == p
    assert pending.render(pending.parse(text)) == text


def test_pending_example_and_comments() -> None:
    mask = sigset.mask_of([17])
    text = sigset.render_bitmap(mask) + "\n" + CHLD_HEAD + "\n" + CHLD_DETAIL + "\n"
    p = pending.parse(text)
    assert p.mask == mask and len(p.queue) == 1 and p.queue[0].signo == 17
    assert pending.render(p) == text
    commented = "# pending of 4242\n\n" + text.replace(CHLD_HEAD, "# SIGCHLD\n" + CHLD_HEAD)
    assert pending.parse(commented) == p
    assert pending.parse(ZERO_MASK + "\n") == Pending(0)
    assert pending.render(Pending(0)) == ZERO_MASK + "\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "end of input"),
        ("# nothing\n\n", 2, "end of input"),
        (CHLD_HEAD + "\n" + CHLD_DETAIL + "\n", 1, "64 characters"),
        (ZERO_MASK[:-1] + "\n", 1, "got 63"),
        (ZERO_MASK + "\n" + CHLD_HEAD + "\n" + CHLD_DETAIL + "\n", 2, "not set in the mask"),
        (sigset.render_bitmap(1 << 16) + "\n" + CHLD_HEAD + "\n", 2, "no detail line"),
        (sigset.render_bitmap(1 << 16) + "\n" + ZERO_MASK + "\n", 2, "expected a 'sig"),
        (
            sigset.render_bitmap(1 << 16) + "\n" + CHLD_HEAD + "\n" + CHLD_DETAIL[:-8] + "\n",
            3,
            "got 8 words",
        ),
    ],
)
def test_pending_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        pending.parse(text)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


def test_parse_signal_list() -> None:
    assert pending.parse_signal_list("SIGUSR2\n") == [12]
    assert pending.parse_signal_list("SIGUSR2 10, rtmin+1\n# c\nSIGUSR2") == [12, 10, 35, 12]
    assert pending.parse_signal_list("") == []
    with pytest.raises(FormatError) as info:
        pending.parse_signal_list("SIGUSR2\nSIGNOPE\n")
    assert info.value.line == 2 and "SIGNOPE" in str(info.value)
    with pytest.raises(FormatError) as info:
        pending.parse_signal_list("10 99")
    assert info.value.line == 1 and "out of range" in str(info.value)


def test_pending_model_rejects() -> None:
    with pytest.raises(FormatError):
        Pending(1 << 64)
    with pytest.raises(FormatError):
        Pending(-1)


# ---------------------------------------------------------------------------------------
# action


@st.composite
def actions_models(draw: st.DrawFn) -> Actions:
    u64 = st.one_of(st.integers(0, U64), st.sampled_from([0, 1, 0x401196, 0x7F0A2C842520]))
    flags = st.one_of(st.integers(0, U64), st.sampled_from([0, 0x14000004, 0x4000000]))
    return Actions(
        tuple(
            SigAction(k, draw(u64), draw(flags), draw(u64), draw(st.integers(0, U64)))
            for k in range(1, 65)
        )
    )


@settings(deadline=None)
@given(actions_models())
def test_action_round_trip(actions: Actions) -> None:
    text = action.render(actions)
    lines = text.splitlines()
    assert lines[0] == "# signum flags mask handler restorer"
    assert len(lines) == 65
    assert action.parse(text) == actions
    assert action.render(action.parse(text)) == text


def test_action_example_line() -> None:
    acts = list(Actions.default())
    acts[9] = SigAction(10, handler=0x401196, flags=0x14000004, restorer=0x7F0A2C842520, mask=0)
    actions = Actions(tuple(acts))
    text = action.render(actions)
    assert text.splitlines()[10] == f"10 0x14000004 {ZERO_MASK} 0x401196 0x7f0a2c842520"
    assert text.splitlines()[1] == f"1 0x0 {ZERO_MASK} 0x0 0x0"
    assert actions[10].handler == 0x401196 and actions[10].name == "SIGUSR1"


def test_action_lenient_input() -> None:
    default = Actions.default()
    lines = action.render(default).splitlines()[1:]
    lines.reverse()
    lines[0] = f"SIGRTMAX 0 {ZERO_MASK} 0 0"  # name, decimal numbers
    lines[1] = f"rtmax-1 0 {ZERO_MASK} 1 0"
    text = "# hand written\n\n" + "\n".join(lines)  # no final newline, any order
    parsed = action.parse(text)
    assert parsed[64] == SigAction(64)
    assert parsed[63] == SigAction(63, handler=1)


def _action_lines() -> list[str]:
    return action.render(Actions.default()).splitlines()


def _with(index: int, replacement: str | None) -> str:
    lines = _action_lines()
    if replacement is None:
        del lines[index]
    else:
        lines[index] = replacement
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "64 missing"),
        (_with(64, None), 64, "missing: 64"),
        (_with(5, None), 64, "missing: 5"),
        ("\n".join(_action_lines()[:10]) + "\n", 10, "55 missing: 10 11 12"),
        (_with(5, f"4 0x0 {ZERO_MASK} 0x0 0x0"), 6, "given twice (also on line 5)"),
        (_with(5, f"SIGILL 0x0 {ZERO_MASK} 0x0 0x0"), 6, "given twice"),
        (action.render(Actions.default()) + f"65 0x0 {ZERO_MASK} 0x0 0x0\n", 66, "out of range"),
        (action.render(Actions.default()) + f"0 0x0 {ZERO_MASK} 0x0 0x0\n", 66, "out of range"),
        (_with(3, f"3 0x0 {ZERO_MASK} 0x0"), 4, "expected 5 fields"),
        (_with(3, f"3 0x0 {ZERO_MASK} 0x0 0x0 0x0"), 4, "got 6"),
        (_with(3, "3"), 4, "got 1"),
        (_with(3, f"3 zero {ZERO_MASK} 0x0 0x0"), 4, "flags"),
        (_with(3, f"3 0x0 {ZERO_MASK} SIG_DFL 0x0"), 4, "handler"),
        (_with(3, f"3 0x0 {ZERO_MASK} 0x0 0x1{'0' * 16}"), 4, "restorer"),
        (_with(3, f"3 0x1{'0' * 16} {ZERO_MASK} 0x0 0x0"), 4, "flags"),
        (_with(3, f"3 0x0 {ZERO_MASK} -1 0x0"), 4, "handler"),
        (_with(3, f"3 0x0 {ZERO_MASK} {1 << 64} 0x0"), 4, "handler"),
        (_with(3, f"3 0x0 {ZERO_MASK[:-1]} 0x0 0x0"), 4, "got 63"),
        (_with(3, "3 0x0 0x0 0x0 0x0"), 4, "got 3"),
        (_with(3, f"SIGBOGUS 0x0 {ZERO_MASK} 0x0 0x0"), 4, "SIGBOGUS"),
    ],
)
def test_action_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        action.parse(text)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


def test_action_model_rejects() -> None:
    for kwargs in (
        {"signum": 0},
        {"signum": 65},
        {"signum": 1, "handler": -1},
        {"signum": 1, "flags": 1 << 64},
        {"signum": 1, "mask": 1 << 64},
    ):
        with pytest.raises(FormatError):
            SigAction(**kwargs)
    with pytest.raises(FormatError):
        Actions(Actions.default().actions[:63])
    with pytest.raises(FormatError):
        Actions(tuple(reversed(Actions.default().actions)))


# ---------------------------------------------------------------------------------------
# altstack


@given(st.builds(AltStack, st.integers(0, U64), st.integers(0, U64), st.integers(0, U32)))
def test_altstack_round_trip(stack: AltStack) -> None:
    text = altstack.render(stack)
    assert text.endswith("\n") and text.count("\n") == 1
    assert altstack.parse(text) == stack
    assert altstack.render(altstack.parse(text)) == text


def test_altstack_examples() -> None:
    assert altstack.render(altstack.DISABLED) == "0x0 0 2\n"
    assert altstack.parse("0x0 0 2\n") == AltStack(0, 0, 2)
    assert altstack.render(AltStack(0x7F12340000, 8192, 0)) == "0x7f12340000 8192 0\n"
    assert altstack.parse("# sp size flags\n545766244352 0x2000 0") == AltStack(
        0x7F12340000, 8192, 0
    )
    assert altstack.parse("0x1000 4096 -2147483648\n").flags == 1 << 31


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("", 1, "end of input"),
        ("# c\n", 1, "end of input"),
        ("0x1000 4096\n", 1, "got 2"),
        ("0x1000 4096 0 0\n", 1, "got 4"),
        ("0x0 0 2\n0x0 0 2\n", 2, "only one"),
        ("0x1000 -1 0\n", 1, "size"),
        (f"0x1{'0' * 16} 0 0\n", 1, "sp"),
        (f"0x0 0 {1 << 32}\n", 1, "flags"),
        ("0x0 0 SS_DISABLE\n", 1, "flags"),
        ("\n\nsp 0 0\n", 3, "sp"),
    ],
)
def test_altstack_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        altstack.parse(text)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


# ---------------------------------------------------------------------------------------
# waiters

waiter_st = st.builds(
    Waiter, st.integers(0, U32), st.integers(1, I32[1]), st.integers(-I32[1], I32[1])
)


@given(st.lists(waiter_st, max_size=10, unique_by=lambda w: w.tid))
def test_waiters_round_trip(ws: list[Waiter]) -> None:
    text = waiters.render(ws)
    assert waiters.parse(text) == tuple(ws)
    assert waiters.render(waiters.parse(text)) == text
    assert text.count("\n") == len(ws)


def test_waiters_examples() -> None:
    assert waiters.render([]) == ""
    assert waiters.parse("") == ()
    w = waiters.from_wait4(1234, -1, signals.WALL)
    assert waiters.render([w]) == "0x40000004 1234 -1\n"
    assert waiters.from_wait4(5, 0, 0) == Waiter(signals.WEXITED, 5, 0)
    assert waiters.from_wait4(5, -77, signals.WNOHANG).awaited == -77
    assert waiters.from_waitid(5, waiters.P_ALL, 0, 4) == Waiter(4, 5, -1)
    assert waiters.from_waitid(5, waiters.P_PID, 42, 4) == Waiter(4, 5, 42)
    assert waiters.from_waitid(5, waiters.P_PGID, 42, 4) == Waiter(4, 5, -42)
    assert waiters.from_waitid(5, waiters.P_PGID, 0, 4) == Waiter(4, 5, 0)
    assert waiters.from_waitid(5, waiters.P_PIDFD, 7, 4) == Waiter(4, 5, 0)
    assert waiters.from_waitid(5, waiters.P_PIDFD, 7, 4, pidfd_pid=99) == Waiter(4, 5, 99)
    for idtype, ident in (
        (waiters.P_PID, 0),
        (waiters.P_PGID, -3),
        (4, 1),
        (-1, 0),
        (waiters.P_PIDFD, -1),
    ):
        with pytest.raises(FormatError):
            waiters.from_waitid(5, idtype, ident, 4)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("0x4 1\n", 1, "got 2"),
        ("0x4 1 -1 9\n", 1, "got 4"),
        ("0x4 1 -1\n0x4 1 3\n", 2, "tid 1 given twice"),
        ("0x4 0 -1\n", 1, "tid"),
        ("0x4 -5 -1\n", 1, "tid"),
        ("0x4 2147483648 -1\n", 1, "tid"),
        ("0x4 1 -2147483648\n", 1, "awaited"),
        ("0x100000000 1 -1\n", 1, "options"),
        ("WNOHANG 1 -1\n", 1, "options"),
        ("# c\n0x4 1 -1\n0x4 2 any\n", 3, "awaited"),
    ],
)
def test_waiters_rejects(text: str, line: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        waiters.parse(text)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value)


# ---------------------------------------------------------------------------------------
# hostile input: everything fails fast, with FormatError

TEN_MB = 10 * 1024 * 1024

PARSERS: dict[str, Callable[[str], Any]] = {
    "blocked": sigset.parse,
    "mask_edit": lambda t: sigset.parse_mask_edit(t, 0, replace=True),
    "pending": pending.parse,
    "signal_list": pending.parse_signal_list,
    "action": action.parse,
    "altstack": altstack.parse,
    "waiters": waiters.parse,
    "siginfo": siginfo.parse,
}

# Built on demand (10 MB each), not at import.
HUGE: dict[str, Callable[[], str]] = {
    "zeros": lambda: "0" * TEN_MB,
    "digits": lambda: "1" * TEN_MB,
    "hex": lambda: "0x" + "f" * TEN_MB,
    "letters": lambda: "x" * TEN_MB,
    "zero_lines": lambda: (ZERO_MASK + "\n") * (TEN_MB // 65),
    "short_lines": lambda: "1\n" * (TEN_MB // 2),
    "spaces": lambda: " " * TEN_MB + "1",
    "signals": lambda: "SIGUSR1 " * (TEN_MB // 8),
    "sig_headers": lambda: (CHLD_HEAD + "\n") * (TEN_MB // 40),
}


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize("kind", list(HUGE))
def test_huge_input_fails_fast(parser: str, kind: str) -> None:
    text = HUGE[kind]()
    start = time.monotonic()
    with pytest.raises(FormatError):
        PARSERS[parser](text)
    assert time.monotonic() - start < HANG


def test_huge_valid_looking_blank_lines_are_bounded() -> None:
    # Lots of blank lines before anything: small formats refuse by size without scanning.
    text = "\n" * TEN_MB
    for parser in ("blocked", "action", "altstack"):
        start = time.monotonic()
        with pytest.raises(FormatError) as info:
            PARSERS[parser](text)
        assert "at most" in str(info.value)
        assert time.monotonic() - start < HANG


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize(
    "text", ["\x00", "\u2028", "１", "0x", "--", "sig", "sig 1:", "\r\n\r\n+", "\ufeff0x0 0 2"]
)
def test_garbage_raises_format_error_only(parser: str, text: str) -> None:
    try:
        PARSERS[parser](text)
    except FormatError as exc:
        assert exc.reason
    # some garbage is acceptable to some lenient parsers (e.g. "" lists); no other errors


@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for parse in PARSERS.values():
        try:
            parse(text)
        except FormatError:
            pass


@given(st.text(alphabet="0123456789abcdefx+-:# \n,SIGUSRTMINAXraw", max_size=400))
def test_arbitrary_near_miss_text_never_crashes(text: str) -> None:
    for parse in PARSERS.values():
        try:
            parse(text)
        except FormatError:
            pass
