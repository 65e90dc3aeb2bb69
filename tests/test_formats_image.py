"""Pure tests of the image formats: regs, fpu, status, fds, mm, pages, MANIFEST.

No processes, no mounts.  Round trips are proven with hypothesis (model -> render ->
parse gives the model back, and canonical text re-renders identically); every parser is
fed truncated, oversized, miscounted, out-of-range and misspelt input and must raise
FormatError (naming the line, or the byte offset for the binary ``pages`` stream).
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sigfs.formats import FormatError, fds, fpu, manifest, mm, pages, regs, status
from sigfs.formats.fds import Fd, Fds, parse_path, render_path
from sigfs.formats.fpu import Fpu
from sigfs.formats.manifest import Manifest
from sigfs.formats.mm import Mm, Vma
from sigfs.formats.regs import REGISTER_NAMES, Regs
from sigfs.formats.status import RLIM_INFINITY, RLIMIT_NAMES, Status
from sigfs.record import replace

# Guards against hangs (a quadratic parser on 10 MB takes hours), not a speed
# measure: speed is for benchmarks/, and a loaded CI machine must not fail this.
HANG = 60.0

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
PAGE = 4096
TEN_MB = 10 * 1024 * 1024

u64s = st.integers(0, U64)
u32s = st.integers(0, U32)

# Names as os.fsdecode() gives them: any bytes but NUL and "/", non-UTF-8 as surrogates.
fs_bytes = st.binary(min_size=0, max_size=40).map(
    lambda b: b.replace(b"\0", b"").decode("utf-8", "surrogateescape")
)
any_text = st.text(max_size=40)
path_texts = st.one_of(fs_bytes, any_text, st.sampled_from(["", " ", "a b ", "x=y", "\\", "/"]))


def expect_error(parse: Callable[[str], Any], text: str, line: int | None, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        parse(text)
    assert needle in str(info.value), str(info.value)
    if line is not None:
        assert info.value.line == line, str(info.value)


# =======================================================================================
# path escaping (shared by fds, mm, status, manifest)


@given(path_texts)
def test_path_escape_round_trip(path: str) -> None:
    escaped = render_path(path)
    assert parse_path(escaped) == path
    assert "\n" not in escaped and "\r" not in escaped
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in escaped)
    assert not escaped.startswith(" ") and not escaped.endswith(" ")
    escaped.encode("utf-8")  # no surrogates left: the text is valid UTF-8


def _render_path_one_char_at_a_time(path: str) -> str:
    """render_path as it was before its fast path: the reference."""
    out: list[str] = []
    last = len(path) - 1
    for i, ch in enumerate(path):
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise FormatError(None, "lone surrogate")
        elif ch == " " and (i == 0 or i == last):
            out.append("\\x20")
        else:
            out.append(ch)
    return "".join(out)


# Paths made mostly of the characters that matter: the special ones and
# plain ones, so both the fast path and the loop are taken often.
_PATH_CHARS = st.sampled_from(list("ab /\\ \x00\x1f\x7f\udc80\udcff\ud800é")) | st.characters()


@given(st.text(alphabet=_PATH_CHARS))
@example(" lead")
@example("trail ")
@example(" ")
@example("/usr/lib/x86_64-linux-gnu/libc.so.6")
def test_render_path_fast_path_is_the_same(path: str) -> None:
    try:
        want = _render_path_one_char_at_a_time(path)
    except FormatError:
        with pytest.raises(FormatError):
            render_path(path)
        return
    assert render_path(path) == want


@pytest.mark.parametrize(
    ("path", "escaped"),
    [
        ("/tmp/x (deleted)", "/tmp/x (deleted)"),
        ("a\nb", "a\\x0ab"),
        ("a\\b", "a\\\\b"),
        (" lead", "\\x20lead"),
        ("trail ", "trail\\x20"),
        ("in side", "in side"),
        ("tab\there", "tab\\x09here"),
        ("del\x7f", "del\\x7f"),
        (b"\xff\xfe".decode("utf-8", "surrogateescape"), "\\xff\\xfe"),
        ("é", "é"),
        ("pipe:[123]", "pipe:[123]"),
    ],
)
def test_path_escape_examples(path: str, escaped: str) -> None:
    assert render_path(path) == escaped
    assert parse_path(escaped) == path


@pytest.mark.parametrize("bad", ["a\\", "a\\q", "a\\x4", "a\\xZZ", "a\rb", "a\tb", "\x00"])
def test_parse_path_rejects(bad: str) -> None:
    with pytest.raises(FormatError):
        parse_path(bad)


def test_render_path_rejects_lone_surrogate() -> None:
    with pytest.raises(FormatError):
        render_path("\ud800")
    with pytest.raises(FormatError):
        parse_path("\udc41")


def test_numbered_long_lines_limits() -> None:
    lines = list(fds.numbered_long_lines("a\n" + "b" * 5000 + "\n"))
    assert lines == [(1, "a"), (2, "b" * 5000)]
    with pytest.raises(FormatError) as info:
        list(fds.numbered_long_lines("a\n" + "b" * 50, max_line=10))
    assert info.value.line == 2


# =======================================================================================
# regs


regs_models = st.lists(u64s, min_size=27, max_size=27).map(lambda v: Regs(tuple(v)))


@given(regs_models)
def test_regs_round_trip(model: Regs) -> None:
    text = regs.render(model)
    assert regs.parse(text) == model
    assert regs.render(regs.parse(text)) == text
    assert Regs.from_bytes(model.to_bytes()) == model
    assert Regs.from_mapping(model.as_dict()) == model


def _regs(**values: int) -> Regs:
    base = dict.fromkeys(REGISTER_NAMES, 0)
    base["orig_rax"] = U64  # -1: not in a syscall
    base.update(values)
    return Regs.from_mapping(base)


def test_regs_render_format() -> None:
    model = _regs(rax=0x1234, rip=0x401000)
    lines = regs.render(model).splitlines()
    assert len(lines) == 27
    assert [line.split()[0] for line in lines] == list(REGISTER_NAMES)
    assert lines[10] == "rax 0x0000000000001234"
    assert lines[15] == "orig_rax 0xffffffffffffffff"
    assert all(len(line.split()[1]) == 18 for line in lines)


def test_regs_accessors() -> None:
    model = _regs(rax=5, orig_rax=-1 & U64)
    assert model.get("rax") == 5
    assert model.signed("orig_rax") == -1
    assert list(model.as_dict()) == list(REGISTER_NAMES)
    changed = model.replace(rax=-4, rip=0x10)
    assert changed.get("rax") == U64 - 3 and changed.get("rip") == 0x10
    assert model.get("rax") == 5
    assert len(model.to_bytes()) == regs.SIZE == 216
    with pytest.raises(KeyError):
        model.get("eax")
    with pytest.raises(FormatError):
        model.replace(eax=1)
    with pytest.raises(FormatError):
        Regs.from_mapping({"rax": 1})
    with pytest.raises(FormatError):
        Regs.from_mapping({**model.as_dict(), "eax": 1})
    with pytest.raises(FormatError):
        Regs(model.values[:26])
    with pytest.raises(FormatError):
        Regs((1 << 64,) + model.values[1:])
    with pytest.raises(FormatError):
        Regs.from_bytes(b"\0" * 215)


def test_regs_syscall_comments() -> None:
    model = _regs(orig_rax=230, rax=-516 & U64, rdi=1, rdx=0x7FFC0000, r10=0)
    text = regs.render(model)
    assert text.endswith(
        "# syscall 230 clock_nanosleep args 0x1 0x0 0x7ffc0000 0x0 0x0 0x0\n"
        "# restart: restart_block (rax -516 ERESTART_RESTARTBLOCK: "
        "the kernel runs restart_syscall)\n"
    )
    assert regs.parse(text) == model
    model = _regs(orig_rax=0, rax=-512 & U64)
    assert regs.render(model).endswith(
        "# restart: restart (rax -512 ERESTARTSYS: the kernel re-issues the syscall)\n"
    )
    assert "# syscall" not in regs.render(_regs())


@pytest.mark.parametrize(
    ("orig", "rax", "restart", "name"),
    [
        (230, -516, "restart_block", "clock_nanosleep"),
        (0, -512, "restart", "read"),
        (7, -513, "restart", "poll"),
        (61, -514, "restart", "wait4"),
        (202, -38, "none", "futex"),
        (1, 5, "returned", "write"),
        (2, -2, "returned", "open"),
        (999, 0, "returned", "syscall_999"),
        (462, 0, "returned", "mseal"),
    ],
)
def test_syscall_state(orig: int, rax: int, restart: str, name: str) -> None:
    model = _regs(orig_rax=orig, rax=rax & U64, rdi=1, rsi=2, rdx=3, r10=4, r8=5, r9=6)
    state = regs.syscall_state(model)
    assert state is not None
    assert (state.nr, state.name, state.restart) == (orig, name, restart)
    assert state.args == (1, 2, 3, 4, 5, 6)
    assert state.rax == rax
    head, explain = state.comment_lines()
    assert head.startswith(f"# syscall {orig} {name} args 0x1 0x2 0x3 0x4 0x5 0x6")
    assert explain.startswith(f"# restart: {restart} (rax ")


def test_syscall_state_none_outside_syscall() -> None:
    assert regs.syscall_state(_regs()) is None
    assert regs.syscall_state(_regs(orig_rax=1 << 63)) is None


def test_syscall_table() -> None:
    known = {
        0: "read", 1: "write", 3: "close", 9: "mmap", 13: "rt_sigaction", 15: "rt_sigreturn",
        56: "clone", 57: "fork", 59: "execve", 60: "exit", 61: "wait4", 202: "futex",
        219: "restart_syscall", 230: "clock_nanosleep", 231: "exit_group", 247: "waitid",
        334: "rseq", 424: "pidfd_send_signal", 435: "clone3", 439: "faccessat2",
        449: "futex_waitv", 451: "cachestat", 462: "mseal",
    }  # fmt: skip
    for nr, name in known.items():
        assert regs.syscall_name(nr) == name
        assert regs.syscall_number(name) == nr
    assert regs.syscall_name(335) == "syscall_335"
    assert regs.syscall_number("syscall_400") == 400
    names = [regs.syscall_name(n) for n in [*range(335), *range(424, 463)]]
    assert not any(n.startswith("syscall_") for n in names)
    assert len(set(names)) == len(names)
    with pytest.raises(FormatError):
        regs.syscall_number("nosuchcall")


def test_regs_parse_lenient_spellings() -> None:
    model = _regs(rax=10, rip=0x401000)
    lines = regs.render(model).splitlines()
    lines[10] = "rax 10"
    lines[15] = "orig_rax -1"
    text = "# header\n\n" + "\n".join(reversed(lines)) + "\n"
    assert regs.parse(text) == model


def _regs_text_without(name: str) -> str:
    return "".join(
        line + "\n" for line in regs.render(_regs()).splitlines() if not line.startswith(name + " ")
    )


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (_regs_text_without("gs"), 26, "gs"),
        ("", 1, "27 registers missing"),
        (regs.render(_regs()) + "rax 0x1\n", 28, "rax given twice"),
        ("eax 0x0\n", 1, "unknown register 'eax'"),
        ("rax\n", 1, "expected 2 fields"),
        ("rax 1 2\n", 1, "expected 2 fields"),
        ("rax 0x10000000000000000\n", 1, "out of range"),
        ("rax -0x8000000000000001\n", 1, "out of range"),
        ("rax one\n", 1, "expected a decimal"),
        ("RAX 0\n", 1, "unknown register"),
    ],
)
def test_regs_parse_rejects(text: str, line: int, needle: str) -> None:
    expect_error(regs.parse, text, line, needle)


# =======================================================================================
# fpu


def make_xsave(
    size: int = 2432,
    xfeatures: int = 0xE7,
    xstate_bv: int = 0xE7,
    sigframe: bool = False,
    xstate_size: int | None = None,
    fill: Callable[[int], int] = lambda i: (i * 7 + 3) & 0xFF,
) -> bytearray:
    """An xsave area with recognisable bytes everywhere, then the given header fields."""
    data = bytearray(fill(i) for i in range(size))
    data[464:512] = bytes(48)
    if sigframe:
        struct.pack_into("<IIQI", data, 464, fpu.FP_XSTATE_MAGIC1, size + 4, xfeatures,
                         size if xstate_size is None else xstate_size)  # fmt: skip
    else:
        struct.pack_into("<Q", data, 464, xfeatures)
    struct.pack_into("<QQ", data, 512, xstate_bv, 0)
    return data


def _le(data: bytes | bytearray, offset: int, size: int) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


@settings(deadline=None, max_examples=60)
@given(st.integers(576, 4096).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_fpu_round_trip_arbitrary_bytes(blob: bytes) -> None:
    model = Fpu(blob)
    text = fpu.render(model)
    assert fpu.parse(text) == model
    assert fpu.render(fpu.parse(text)) == text


@settings(deadline=None, max_examples=40)
@given(
    st.sampled_from([(576, 0x3), (832, 0x7), (2432, 0xE7), (2440, 0x2E7), (2688, 0xE7),
                     (2696, 0x2E7), (11008, 0x602E7)]),
    st.integers(0, U64),
    st.booleans(),
    st.randoms(use_true_random=False),
)  # fmt: skip
def test_fpu_round_trip_realistic(
    shape: tuple[int, int], bv: int, sigframe: bool, rnd: Any
) -> None:
    size, xfeatures = shape
    blob = make_xsave(size, xfeatures, bv & xfeatures, sigframe, fill=lambda i: rnd.randrange(256))
    model = Fpu(bytes(blob))
    text = fpu.render(model)
    assert fpu.parse(text) == model
    assert fpu.render(fpu.parse(text)) == text
    # the xsave lines alone are enough
    bare = "".join(line + "\n" for line in text.splitlines() if line.startswith("xsave"))
    assert fpu.parse(bare) == model


def test_fpu_legacy_decoding() -> None:
    blob = make_xsave()
    struct.pack_into("<HHBxHQQII", blob, 0, 0x037F, 0x1234, 0xAB, 0x7FF, 0x401000, 0x602000,
                     0x1F80, 0xFFFF)  # fmt: skip
    blob[32 : 32 + 10] = bytes(range(1, 11))
    blob[160 + 3 * 16 : 160 + 4 * 16] = bytes(range(16))
    model = Fpu(bytes(blob))
    r = model.registers()
    assert (r["fcw"], r["fsw"], r["ftw"], r["fop"]) == (0x037F, 0x1234, 0xAB, 0x7FF)
    assert (r["fip"], r["fdp"], r["mxcsr"], r["mxcsr_mask"]) == (0x401000, 0x602000, 0x1F80, 0xFFFF)
    assert r["st0"] == 0x0A090807060504030201
    assert r["xmm3"] == 0x0F0E0D0C0B0A09080706050403020100
    text = fpu.render(model)
    assert "fcw 0x037f\n" in text and "ftw 0xab\n" in text and "mxcsr 0x00001f80\n" in text
    assert "st0 0x0a090807060504030201\n" in text
    assert "xmm3 0x0f0e0d0c0b0a09080706050403020100\n" in text
    assert model.get("xmm3") == r["xmm3"]


@pytest.mark.parametrize(
    ("size", "xfeatures", "layout", "offsets"),
    [
        (2432, 0xE7, "amd", (832, 896, 1408, None)),
        (2440, 0x2E7, "amd", (832, 896, 1408, 2432)),
        (2688, 0xE7, "intel", (1088, 1152, 1664, None)),
        (2696, 0x2E7, "intel", (1088, 1152, 1664, 2688)),
        (11008, 0x602E7, "intel", (1088, 1152, 1664, 2688)),
        (2700, 0x2E7, "intel", (1088, 1152, 1664, 2688)),  # unknown size: Intel offsets
    ],
)
def test_fpu_layouts(
    size: int, xfeatures: int, layout: str, offsets: tuple[int, int, int, int | None]
) -> None:
    for sigframe in (False, True):
        blob = make_xsave(size, xfeatures, xfeatures, sigframe)
        model = Fpu(bytes(blob))
        assert model.layout == layout
        assert model.xfeatures == xfeatures
        assert model.has_sw_magic == sigframe
        opmask, hi256, hi16, pkru = offsets
        r = model.registers()
        assert r["k0"] == _le(blob, opmask, 8) and r["k7"] == _le(blob, opmask + 56, 8)
        ymm5 = _le(blob, 160 + 5 * 16, 16) | _le(blob, 576 + 5 * 16, 16) << 128
        assert r["ymm5"] == ymm5
        assert r["zmm5"] == ymm5 | _le(blob, hi256 + 5 * 32, 32) << 256
        assert r["zmm17"] == _le(blob, hi16 + 64, 64)
        assert r["xstate_bv"] == xfeatures and r["xfeatures"] == xfeatures
        if pkru is None:
            assert "pkru" not in r
        else:
            assert r["pkru"] == _le(blob, pkru, 4)


def test_fpu_sigframe_size_decides_layout() -> None:
    # A signal frame says xstate_size 2440 (AMD) even though the buffer is longer.
    blob = make_xsave(2696, 0x2E7, 0x2E7, sigframe=True, xstate_size=2440)
    assert Fpu(bytes(blob)).layout == "amd"


def test_fpu_init_state_components_read_as_zero() -> None:
    blob = make_xsave(2440, 0x2E7, xstate_bv=0x3)  # AVX, AVX-512, PKRU all in init state
    r = Fpu(bytes(blob)).registers()
    assert r["ymm0"] == r["xmm0"] and r["ymm15"] == r["xmm15"]
    assert all(r[f"k{i}"] == 0 for i in range(8))
    assert r["zmm3"] == r["xmm3"]
    assert all(r[f"zmm{i}"] == 0 for i in range(16, 32))
    assert r["pkru"] == 0
    # The stale bytes are still carried in the blob.
    assert Fpu(bytes(blob)).xsave == bytes(blob)


def test_fpu_components_shown_only_when_enabled_and_present() -> None:
    short = Fpu(bytes(make_xsave(576, 0xE7, 0xE7)))
    assert not any(k.startswith(("ymm", "zmm", "k", "pkru")) for k in short.registers())
    avx_only = Fpu(bytes(make_xsave(832, 0x7, 0x7)))
    r = avx_only.registers()
    assert "ymm15" in r and "k0" not in r and "zmm0" not in r
    truncated = Fpu(bytes(make_xsave(1700, 0xE7, 0xE7)))  # Intel offsets: Hi16_ZMM ends 2688
    r = truncated.registers()
    assert "zmm15" in r and "zmm16" not in r and "k0" in r
    no_avx512 = Fpu(bytes(make_xsave(2432, 0x7, 0x7)))
    assert "k0" not in no_avx512.registers()
    assert short.component(fpu.XFEATURE_AVX) is None
    assert avx_only.component(fpu.XFEATURE_AVX) == (576, 256)


def test_fpu_text_layout() -> None:
    blob = make_xsave(2440, 0x2E7, 0x2E7)
    text = fpu.render(Fpu(bytes(blob)))
    lines = text.splitlines()
    names = [line.split()[0] for line in lines]
    expected_head = (
        ["fcw", "fsw", "ftw", "fop", "fip", "fdp", "mxcsr", "mxcsr_mask"]
        + [f"st{i}" for i in range(8)]
        + [f"xmm{i}" for i in range(16)]
        + [f"ymm{i}" for i in range(16)]
        + [f"k{i}" for i in range(8)]
        + [f"zmm{i}" for i in range(32)]
        + ["pkru", "xstate_bv", "xfeatures", "xsave_size"]
    )
    assert names[: len(expected_head)] == expected_head
    widths = {"xmm0": 32, "ymm0": 64, "zmm0": 128, "k0": 16, "st0": 20, "pkru": 8, "fcw": 4}
    for line in lines:
        name, value = line.split()[:2]
        if name in widths:
            assert len(value) == 2 + widths[name]
    assert "xsave_size 2440" in lines
    xsave = [line for line in lines if line.startswith("xsave ")]
    assert len(xsave) == (2440 + 31) // 32
    assert xsave[0] == "xsave 0000 " + bytes(blob[:32]).hex()
    assert xsave[1].startswith("xsave 0020 ")
    assert xsave[-1] == "xsave 0980 " + bytes(blob[2432:]).hex()
    assert len(xsave[-1]) == len("xsave 0980 ") + 16


def test_fpu_parse_accepts_shuffled_and_partial_lines() -> None:
    blob = bytes(make_xsave(2432))
    lines = fpu.render(Fpu(blob)).splitlines()
    xsave = [line for line in lines if line.startswith("xsave ")]
    decoded = [line for line in lines if not line.startswith("xsave")][:5]
    # decimal value, uppercase hex, reordered lines, 64-byte lines
    merged = [
        f"xsave {i * 64:04x} {blob[i * 64 : i * 64 + 64].hex().upper()}"
        for i in range((len(blob) + 63) // 64)
    ]
    fcw = Fpu(blob).get("fcw")
    text = "\n".join(["# comment", *reversed(merged), "xsave_size 2432", f"fcw {fcw}"]) + "\n"
    assert fpu.parse(text).xsave == blob
    assert fpu.parse("\n".join(decoded + ["xsave_size 2432"] + xsave)).xsave == blob


def _fpu_text(size: int = 2432) -> str:
    return fpu.render(Fpu(bytes(make_xsave(size))))


def _replace_line(text: str, prefix: str, new: str | None) -> str:
    out = []
    for line in text.splitlines():
        if line.startswith(prefix):
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: _replace_line(t, "xmm3 ", "xmm3 0x1"), "xmm3: 0x1 does not match"),
        (lambda t: _replace_line(t, "fcw ", "fcw 0x0000"), "fcw: 0x0 does not match"),
        (lambda t: _replace_line(t, "k2 ", "k2 0xffff"), "k2"),
        (lambda t: _replace_line(t, "xfeatures ", "xfeatures 0x7"), "xfeatures"),
        (lambda t: _replace_line(t, "fcw ", "fcw 0x10000"), "does not fit in 16 bits"),
        (lambda t: _replace_line(t, "fcw ", "fcw x"), "expected a decimal or 0x hex"),
        (lambda t: _replace_line(t, "fcw ", "fcw 1 2"), "expected 'fcw VALUE'"),
        (lambda t: _replace_line(t, "fcw ", "pkru 0x0"), "pkru: not part of this xsave area"),
        (lambda t: _replace_line(t, "fcw ", "fsw 0x0"), "fsw given twice"),
        (lambda t: _replace_line(t, "fcw ", "fpu_cw 0x37f"), "unknown fpu field 'fpu_cw'"),
        (lambda t: _replace_line(t, "xsave 0020 ", None), "leaves a gap"),
        (lambda t: t.replace("xsave 0020 ", "xsave 0010 "), "overlaps"),
        (lambda t: _replace_line(t, "xsave 0960 ", None), "cover 2400 of 2432 bytes"),
        (lambda t: t.replace("xsave_size 2432", "xsave_size 2400"), "run past xsave_size"),
        (lambda t: t.replace("xsave_size 2432", "xsave_size 100"), "out of range"),
        (lambda t: t.replace("xsave_size 2432", "xsave_size 0x980"), "expected 'xsave_size N'"),
        (lambda t: _replace_line(t, "xsave_size", None), "no 'xsave_size N' line"),
        (lambda t: t + "xsave_size 2432\n", "xsave_size given twice"),
        (lambda t: t.replace("xsave 0000 ", "xsave 0000 0"), "even number of hex digits"),
        (lambda t: t.replace("xsave 0000 ", "xsave zz "), "xsave offset"),
        (lambda t: t.replace("xsave 0000 ", "xsave 0000 00 "), "expected 'xsave OFFSET HEX'"),
        (lambda t: t + "xsave ffff 0000\n", "runs past"),
    ],
)
def test_fpu_parse_rejects(edit: Callable[[str], str], needle: str) -> None:
    text = edit(_fpu_text())
    expect_error(fpu.parse, text, None, needle)


def test_fpu_mismatch_names_the_line() -> None:
    text = _replace_line(_fpu_text(), "xmm3 ", "xmm3 0x1")
    expect_error(fpu.parse, text, _line_of(text, "xmm3 "), "xmm3")


def test_fpu_model_rejects() -> None:
    for bad in (b"", bytes(575), bytes(fpu.MAX_SIZE + 1)):
        with pytest.raises(FormatError):
            Fpu(bad)
    with pytest.raises(FormatError):
        Fpu(bytearray(600))  # type: ignore[arg-type]
    expect_error(fpu.parse, "", 1, "xsave_size")


# =======================================================================================
# status


def _status(**changes: Any) -> Status:
    base: dict[str, Any] = {
        "comm": "sleep", "pid": 4242, "tgid": 4242, "ppid": 1, "pgid": 4242, "sid": 4242,
        "uids": (1000, 1000, 1000, 1000), "gids": (1000, 1000, 1000, 1000),
        "groups": (4, 24, 1000), "umask": 0o022, "cwd": "/home/user", "root": "/",
        "personality": 0, "no_new_privs": 0, "pdeath_signal": 0, "dumpable": 1,
        "seccomp": 0, "cap_inh": 0, "cap_prm": 0, "cap_eff": 0, "cap_bnd": 0x1FFFFFFFFFF,
        "cap_amb": 0, "timerslack_ns": 50000, "nice": 0, "sched_policy": 0,
        "sched_priority": 0,
        "rlimits": tuple(
            (name, 1024, 1048576) if name == "nofile" else (name, RLIM_INFINITY, RLIM_INFINITY)
            for name in RLIMIT_NAMES
        ),
        "thp_disable": 0, "child_subreaper": 0,
    }  # fmt: skip
    base.update(changes)
    return Status(**base)


STATUS_TEXT = """\
comm sleep
pid 4242
tgid 4242
ppid 1
pgid 4242
sid 4242
uids 1000 1000 1000 1000
gids 1000 1000 1000 1000
groups 4 24 1000
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
rlimit fsize unlimited unlimited
rlimit data unlimited unlimited
rlimit stack unlimited unlimited
rlimit core unlimited unlimited
rlimit rss unlimited unlimited
rlimit nproc unlimited unlimited
rlimit nofile 1024 1048576
rlimit memlock unlimited unlimited
rlimit as unlimited unlimited
rlimit locks unlimited unlimited
rlimit sigpending unlimited unlimited
rlimit msgqueue unlimited unlimited
rlimit nice unlimited unlimited
rlimit rtprio unlimited unlimited
rlimit rttime unlimited unlimited
thp_disable 0
child_subreaper 0
"""


def test_status_canonical_text() -> None:
    assert status.render(_status()) == STATUS_TEXT
    assert status.parse(STATUS_TEXT) == _status()
    assert _status().rlimit("nofile") == (1024, 1048576)
    with pytest.raises(KeyError):
        _status().rlimit("files")


def test_status_special_renderings() -> None:
    text = status.render(_status(groups=(), comm="", cwd="/my dir ", umask=0o7))
    assert "\ngroups -\n" in text
    assert text.startswith("comm\n")
    assert "\ncwd /my dir\\x20\n" in text
    assert "\numask 0007\n" in text
    assert status.parse(text) == _status(groups=(), comm="", cwd="/my dir ", umask=0o7)
    # A name is any bytes but NUL (prctl PR_SET_NAME), escaped as paths are.
    odd = "\tx\\y\udcff "
    text = status.render(_status(comm=odd))
    assert text.startswith("comm \\x09x\\\\y\\xff\\x20\n"), text
    assert status.parse(text).comm == odd


@st.composite
def status_models(draw: st.DrawFn) -> Status:
    # Any bytes but NUL, as the kernel keeps them: not UTF-8 and control characters too.
    comm = draw(
        st.one_of(
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=15),
            st.binary(max_size=15).map(lambda b: b.decode("utf-8", "surrogateescape")),
        ).filter(lambda s: "\0" not in s and len(s.encode("utf-8", "surrogateescape")) <= 15)
    )

    def limit() -> tuple[int, int]:
        a, b = sorted((draw(st.one_of(u64s, st.just(RLIM_INFINITY))), draw(u64s)))
        return a, b

    ids = st.tuples(u32s, u32s, u32s, u32s)
    return _status(
        comm=comm,
        pid=draw(st.integers(1, (1 << 31) - 1)),
        tgid=draw(st.integers(1, (1 << 31) - 1)),
        ppid=draw(st.integers(0, 1 << 22)),
        pgid=draw(st.integers(0, 1 << 22)),
        sid=draw(st.integers(0, 1 << 22)),
        uids=draw(ids),
        gids=draw(ids),
        groups=tuple(draw(st.lists(u32s, max_size=10))),
        umask=draw(st.integers(0, 0o777)),
        cwd=draw(path_texts),
        root=draw(path_texts),
        personality=draw(u32s),
        no_new_privs=draw(st.integers(0, 1)),
        pdeath_signal=draw(st.integers(0, 64)),
        dumpable=draw(st.integers(0, 2)),
        seccomp=draw(st.integers(0, 2)),
        cap_inh=draw(u64s),
        cap_prm=draw(u64s),
        cap_eff=draw(u64s),
        cap_bnd=draw(u64s),
        cap_amb=draw(u64s),
        timerslack_ns=draw(u64s),
        nice=draw(st.integers(-20, 19)),
        sched_policy=draw(st.sampled_from([0, 1, 2, 3, 5, 6, 0x40000000, 0x40000001])),
        sched_priority=draw(st.integers(0, 99)),
        rlimits=tuple((name, *limit()) for name in RLIMIT_NAMES),
        thp_disable=draw(st.integers(0, 1)),
        child_subreaper=draw(st.integers(0, 1)),
    )


@given(status_models())
def test_status_round_trip(model: Status) -> None:
    text = status.render(model)
    assert status.parse(text) == model
    assert status.render(status.parse(text)) == text


def test_status_lenient_input() -> None:
    lines = STATUS_TEXT.splitlines()
    lines[9] = "umask 0o22"
    lines[12] = "personality 0"
    lines[33] = "rlimit nofile 0x400 1048576"
    lines[26] = "rlimit cpu -1 infinity"
    text = "# a comment\n" + "\n".join(reversed(lines)) + "\n"
    assert status.parse(text) == _status()


def _status_edit(old: str, new: str | None) -> str:
    return _replace_line(STATUS_TEXT, old, new)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_status_edit("child_subreaper", None), "child_subreaper"),
        (_status_edit("rlimit rttime", None), "rlimit rttime"),
        ("", "keys missing"),
        (STATUS_TEXT + "pid 1\n", "pid given twice"),
        (STATUS_TEXT + "rlimit cpu 1 1\n", "rlimit cpu given twice"),
        (_status_edit("rlimit cpu", "rlimit cpus 1 1"), "unknown rlimit 'cpus'"),
        (_status_edit("rlimit cpu", "rlimit cpu 2 1"), "soft limit 2 is above hard limit 1"),
        (_status_edit("rlimit cpu", "rlimit cpu 1"), "expected 'rlimit NAME SOFT HARD'"),
        (_status_edit("rlimit cpu", "rlimit cpu 1 0x10000000000000000"), "out of range"),
        (_status_edit("comm", "comm 0123456789abcdef"), "16 bytes, at most 15"),
        (_status_edit("comm", "comm a\rb"), "control character"),
        (_status_edit("comm", "comm \x00"), "control character"),
        (_status_edit("comm", "comm a\\x00b"), "NUL"),
        (_status_edit("comm", "comm a\\qb"), "comm"),
        (_status_edit("comm", "comm " + "\\xff" * 16), "16 bytes, at most 15"),
        (_status_edit("nice", "nice 20"), "out of range -20..19"),
        (_status_edit("nice", "nice -21"), "out of range"),
        (_status_edit("uids", "uids 1 2 3"), "expected 4 ids"),
        (_status_edit("gids", "gids 1 2 3 4294967296"), "out of range"),
        (_status_edit("groups", "groups a"), "expected a decimal"),
        (_status_edit("seccomp", "seccomp 3"), "out of range"),
        (_status_edit("dumpable", "dumpable 3"), "out of range"),
        (_status_edit("umask", "umask 022x"), "expected octal"),
        (_status_edit("umask", "umask 22"), "expected octal"),
        (_status_edit("umask", "umask 01000"), "out of range"),
        (_status_edit("umask", "umask 0999"), "expected octal"),
        (_status_edit("pid ", "pid 0"), "out of range"),
        (_status_edit("sched_policy", "sched_policy 8"), "unknown policy 8"),
        (_status_edit("sched_policy", "sched_policy 0x40000008"), "out of range"),
        (_status_edit("sched_policy", "sched_policy 0x80000000"), "out of range"),
        (_status_edit("sched_priority", "sched_priority 100"), "out of range"),
        (_status_edit("no_new_privs", "no_new_privs 2"), "out of range"),
        (_status_edit("cwd", "cwd /a\\q"), "bad escape"),
        (_status_edit("cap_eff", "cap_eff 0x1 0x2"), "expected 'cap_eff VALUE'"),
        (STATUS_TEXT + "capabilities 0\n", "unknown key 'capabilities'"),
    ],
)
def test_status_parse_rejects(text: str, needle: str) -> None:
    expect_error(status.parse, text, None, needle)


def test_status_errors_name_lines() -> None:
    expect_error(status.parse, _status_edit("nice", "nice 20"), 24, "nice")
    expect_error(status.parse, STATUS_TEXT + "pid 1\n", 45, "twice")


def test_status_model_rejects() -> None:
    bad: list[dict[str, Any]] = [
        {"comm": "x" * 16}, {"comm": "a\0b"}, {"comm": "\ud800"}, {"comm": "\udcff" * 16},
        {"pid": 0}, {"uids": (1, 2, 3)},
        {"groups": (-1,)}, {"umask": 0o1000}, {"nice": 20}, {"sched_policy": 9},
        {"rlimits": _status().rlimits[:15]},
        {"rlimits": (("fsize", 1, 1),) + _status().rlimits[1:]},
        {"rlimits": (("cpu", 2, 1),) + _status().rlimits[1:]},
        {"cwd": "\ud800"}, {"groups": tuple(range(status.NGROUPS_MAX + 1))},
    ]  # fmt: skip
    for changes in bad:
        with pytest.raises(FormatError):
            _status(**changes)


def test_status_many_groups() -> None:
    model = _status(groups=tuple(range(status.NGROUPS_MAX)))
    assert status.parse(status.render(model)) == model


# =======================================================================================
# fds


def _fd(fd: int, kind: str = "file", **changes: Any) -> Fd:
    base: dict[str, Any] = {
        "fd": fd, "kind": kind, "flags": 0o100002, "pos": 0, "cloexec": False, "mnt_id": 29,
        "ino": 1000 + fd, "shared": fd, "path": f"/tmp/f{fd}", "deleted": False, "extra": (),
    }  # fmt: skip
    base.update(changes)
    return Fd(**base)


FDS_MODEL = Fds(
    (
        _fd(0, "chr", ino=3, path="/dev/pts/0", extra=(("rdev", "0x8800"),)),
        _fd(1, "chr", ino=3, shared=0, path="/dev/pts/0", extra=(("rdev", "0x8800"),)),
        _fd(3, "pipe", flags=0, ino=12345, path="pipe:[12345]"),
        _fd(
            4,
            "eventfd",
            flags=0o2000002,
            cloexec=True,
            mnt_id=15,
            path="anon_inode:[eventfd]",
            extra=(("eventfd-count", "5"), ("eventfd-id", "3")),
        ),
        _fd(7, "file", pos=17, path="/tmp/a b=c (deleted)", deleted=True),
    ),  # fmt: skip
    "/home/user",
    "/",
)
FDS_TEXT = """\
cwd /home/user
root /
fd=0 kind=chr flags=0o100002 pos=0 cloexec=0 mnt_id=29 ino=3 shared=0 deleted=0 path=/dev/pts/0
  extra rdev 0x8800
fd=1 kind=chr flags=0o100002 pos=0 cloexec=0 mnt_id=29 ino=3 shared=0 deleted=0 path=/dev/pts/0
  extra rdev 0x8800
fd=3 kind=pipe flags=0o0 pos=0 cloexec=0 mnt_id=29 ino=12345 shared=3 deleted=0 path=pipe:[12345]
fd=4 kind=eventfd flags=0o2000002 pos=0 cloexec=1 mnt_id=15 ino=1004 shared=4 deleted=0 \
path=anon_inode:[eventfd]
  extra eventfd-count 5
  extra eventfd-id 3
fd=7 kind=file flags=0o100002 pos=17 cloexec=0 mnt_id=29 ino=1007 shared=7 deleted=1 \
path=/tmp/a b=c (deleted)
"""


def test_fds_canonical_text() -> None:
    assert fds.render(FDS_MODEL) == FDS_TEXT
    assert fds.parse(FDS_TEXT) == FDS_MODEL
    assert FDS_MODEL[4].get_extra("eventfd-count") == "5"
    assert FDS_MODEL[4].get_extra("nope") is None
    assert FDS_MODEL.groups() == {0: (0, 1), 3: (3,), 4: (4,), 7: (7,)}
    with pytest.raises(KeyError):
        FDS_MODEL[2]


@st.composite
def fds_models(draw: st.DrawFn) -> Fds:
    numbers = sorted(set(draw(st.lists(st.integers(0, 5000), max_size=12))))
    items: list[Fd] = []
    leaders: list[Fd] = []
    extra_pairs = st.tuples(st.from_regex(r"[A-Za-z0-9_.:+-]{1,12}", fullmatch=True), path_texts)
    for n in numbers:
        common = {
            "flags": draw(u32s),
            "pos": draw(st.integers(-(1 << 63), (1 << 63) - 1)),
            "cloexec": draw(st.booleans()),
            "mnt_id": draw(u64s),
            "path": draw(path_texts),
            "deleted": draw(st.booleans()),
            "extra": tuple(draw(st.lists(extra_pairs, max_size=3))),
        }
        share: bool = draw(st.booleans())
        if leaders and share:
            leader = draw(st.sampled_from(leaders))
            items.append(_fd(n, leader.kind, ino=leader.ino, shared=leader.fd, **common))
        else:
            fd = _fd(n, draw(st.sampled_from(fds.KINDS)), ino=draw(u64s), **common)
            items.append(fd)
            leaders.append(fd)
    return Fds(tuple(items), draw(path_texts), draw(path_texts))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(fds_models())
def test_fds_round_trip(model: Fds) -> None:
    text = fds.render(model)
    assert fds.parse(text) == model
    assert fds.render(fds.parse(text)) == text


def test_fds_parse_sorts_and_accepts_spellings() -> None:
    lines = FDS_TEXT.splitlines()
    # move fd 7 first (no extra lines), write flags in decimal and hex
    fd7 = lines[-1].replace("flags=0o100002", f"flags={0o100002}")
    fd3 = lines[6].replace("flags=0o0", "flags=0x0")
    text = "\n".join([fd7, "# comment", *lines[:6], fd3, *lines[7:-1]]) + "\n"
    assert fds.parse(text) == FDS_MODEL


def test_fds_empty() -> None:
    model = Fds((), "/", "/")
    assert fds.render(model) == "cwd /\nroot /\n"
    assert fds.parse("cwd /\nroot /\n") == model


def _fdline(fd: int, shared: int, kind: str = "file", ino: int = 1, tail: str = "") -> str:
    return (
        f"fd={fd} kind={kind} flags=0o2 pos=0 cloexec=0 mnt_id=1 ino={ino} shared={shared} "
        f"deleted=0 path=/x{tail}\n"
    )


HEAD = "cwd /\nroot /\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (HEAD + _fdline(3, 3) + _fdline(3, 3), 4, "fd 3 given twice"),
        (HEAD + _fdline(3, 3, kind="socket"), 3, "unknown kind 'socket'"),
        (HEAD + _fdline(3, 5), 3, "shared=5 is higher than fd 3"),
        (HEAD + _fdline(5, 3), 3, "shared=3 is not an open fd"),
        (HEAD + _fdline(3, 3) + _fdline(4, 3) + _fdline(5, 4), 5, "fd 4 has shared=3"),
        (HEAD + _fdline(3, 3) + _fdline(4, 3, kind="dir"), 4, "differs in kind or ino"),
        (HEAD + _fdline(3, 3) + _fdline(4, 3, ino=2), 4, "differs in kind or ino"),
        (HEAD + "  extra a b\n", 3, "must follow an fd line"),
        (HEAD + _fdline(3, 3) + "  extras a b\n", 4, "expected 'extra KEY VALUE'"),
        (HEAD + _fdline(3, 3) + "  extra a=b c\n", 4, "bad extra key"),
        (HEAD + _fdline(3, 3, tail="\\q"), 3, "bad escape"),
        (HEAD + _fdline(3, 3, tail="\r"), 3, "control character"),
        (HEAD + "fd=3 kind=file\n", 3, "expected path=... last"),
        (HEAD + "fd=3 kind=file path=/x\n", 3, "missing fields: flags"),
        (HEAD + "fd=3 kind=file fd=4 path=/x\n", 3, "field fd given twice"),
        (HEAD + "fd=3 colour=red path=/x\n", 3, "unknown field 'colour'"),
        (HEAD + "fd=3  kind=file path=/x\n", 3, "single spaces"),
        (HEAD + "fd=3 kind path=/x\n", 3, "expected key=value"),
        (HEAD + _fdline(3, 3).replace("flags=0o2", "flags=0o9"), 3, "flags"),
        (HEAD + _fdline(3, 3).replace("flags=0o2", "flags=0o77777777777"), 3, "out of range"),
        (HEAD + _fdline(3, 3).replace("cloexec=0", "cloexec=yes"), 3, "expected 0 or 1"),
        (HEAD + _fdline(3, 3).replace("deleted=0", "deleted=2"), 3, "expected 0 or 1"),
        (HEAD + _fdline(3, 3).replace("fd=3", "fd=-1"), 3, "out of range"),
        (HEAD + _fdline(3, 3).replace("ino=1", "ino=18446744073709551616"), 3, "out of range"),
        (HEAD + "file 3\n", 3, "expected 'cwd', 'root' or 'fd=N"),
        (HEAD + "cwd /b\n", 3, "cwd given twice"),
        ("root /\n" + _fdline(3, 3), None, "no cwd line"),
        ("cwd /\n", None, "no root line"),
        ("", None, "no cwd line"),
    ],
)
def test_fds_parse_rejects(text: str, line: int | None, needle: str) -> None:
    expect_error(fds.parse, text, line, needle)


def test_fds_model_rejects() -> None:
    with pytest.raises(FormatError):
        _fd(3, "socket")
    with pytest.raises(FormatError):
        _fd(3, shared=4)
    with pytest.raises(FormatError):
        _fd(-1)
    with pytest.raises(FormatError):
        _fd(3, flags=1 << 32)
    with pytest.raises(FormatError):
        _fd(3, extra=(("a b", "c"),))
    with pytest.raises(FormatError):
        Fds((_fd(4), _fd(3)), "/", "/")
    with pytest.raises(FormatError):
        Fds((_fd(3), _fd(3)), "/", "/")
    with pytest.raises(FormatError):
        Fds((_fd(4, shared=3),), "/", "/")


def test_fds_long_path() -> None:
    long_path = "/" + "d" * 4095
    model = Fds((_fd(3, path=long_path),), long_path, "/")
    assert fds.parse(fds.render(model)) == model


# =======================================================================================
# mm


def _vma(start: int, end: int, **changes: Any) -> Vma:
    base: dict[str, Any] = {
        "start": start, "end": end, "perms": "r-xp", "offset": 0, "dev": "08:01",
        "inode": 1234, "path": "/usr/lib/libc.so.6", "vmflags": ("rd", "ex", "mr", "mw", "me"),
    }  # fmt: skip
    base.update(changes)
    return Vma(**base)


MM_FIELD_VALUES = dict(zip(mm.MM_FIELDS, range(0x1000, 0x1000 + 11), strict=True))
MM_MODEL = Mm(
    **MM_FIELD_VALUES,
    exe="/usr/bin/sleep",
    auxv=((33, 0x7FFD7A9F2000), (6, 0x1000)),
    vmas=(
        _vma(0x55D5C4A00000, 0x55D5C4A02000),
        _vma(0x7F0000000000, 0x7F0000021000, perms="rw-p", dev="00:00", inode=0, path="",
             vmflags=()),
        _vma(0x7FFD7A892000, 0x7FFD7A8B4000, perms="rw-p", dev="00:00", inode=0,
             path="[stack]", vmflags=("rd", "wr", "mr", "mw", "me", "gd", "ac")),
        _vma(0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, perms="--xp", dev="00:00", inode=0,
             path="[vsyscall]", vmflags=("ex",)),
    ),
)  # fmt: skip
MM_TEXT = """\
start_code 0x1000
end_code 0x1001
start_data 0x1002
end_data 0x1003
start_brk 0x1004
brk 0x1005
start_stack 0x1006
arg_start 0x1007
arg_end 0x1008
env_start 0x1009
env_end 0x100a
exe /usr/bin/sleep
auxv 33 0x7ffd7a9f2000
auxv 6 0x1000
vma 0x55d5c4a00000-0x55d5c4a02000 r-xp 0x00000000 08:01 1234 flags=rd,ex,mr,mw,me \
path=/usr/lib/libc.so.6
vma 0x7f0000000000-0x7f0000021000 rw-p 0x00000000 00:00 0 flags= path=
vma 0x7ffd7a892000-0x7ffd7a8b4000 rw-p 0x00000000 00:00 0 flags=rd,wr,mr,mw,me,gd,ac path=[stack]
vma 0xffffffffff600000-0xffffffffff601000 --xp 0x00000000 00:00 0 flags=ex path=[vsyscall]
"""


def test_mm_canonical_text() -> None:
    assert mm.render(MM_MODEL) == MM_TEXT
    assert mm.parse(MM_TEXT) == MM_MODEL
    assert MM_MODEL.fields() == MM_FIELD_VALUES
    assert MM_MODEL.find(0x7FFD7A8B3FFF) == MM_MODEL.vmas[2]
    assert MM_MODEL.find(0x7FFD7A8B4000) is None
    assert MM_MODEL.find(0) is None
    assert MM_MODEL.vmas[0].size == 0x2000 and not MM_MODEL.vmas[0].shared
    assert mm.auxv_name(6) == "AT_PAGESZ" and mm.auxv_name(99) == "AT_99"


@st.composite
def mm_models(draw: st.DrawFn) -> Mm:
    cuts = sorted(set(draw(st.lists(st.integers(0, (1 << 52) - 1), max_size=16))))
    vmas = []
    for start, end in zip(cuts[0::2], cuts[1::2], strict=False):
        vmas.append(
            Vma(
                start * PAGE,
                end * PAGE,
                draw(st.from_regex(r"[r-][w-][x-][ps]", fullmatch=True)),
                draw(u64s),
                f"{draw(st.integers(0, 0xFFF)):02x}:{draw(st.integers(0, 0xFFFFF)):02x}",
                draw(u64s),
                draw(path_texts),
                tuple(draw(st.lists(st.sampled_from(["rd", "wr", "ex", "sh", "mr", "??"]),
                                    max_size=6))),
            )
        )  # fmt: skip
    auxv = draw(st.lists(st.tuples(st.integers(1, U64), u64s), max_size=8))
    return Mm(
        **{name: draw(u64s) for name in mm.MM_FIELDS},
        exe=draw(path_texts),
        auxv=tuple(auxv),
        vmas=tuple(vmas),
    )


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mm_models())
def test_mm_round_trip(model: Mm) -> None:
    text = mm.render(model)
    assert mm.parse(text) == model
    assert mm.render(mm.parse(text)) == text


def test_mm_parse_accepts_names_and_any_key_order() -> None:
    lines = MM_TEXT.splitlines()
    shuffled = [lines[14], "auxv AT_SYSINFO_EHDR 0x7ffd7a9f2000", *lines[:12], lines[15],
                "# comment", "auxv 6 4096", lines[16], lines[17]]  # fmt: skip
    text = "\n".join(shuffled) + "\n"
    assert mm.parse(text) == MM_MODEL


def _mm_edit(old: str, new: str | None) -> str:
    return _replace_line(MM_TEXT, old, new)


VMA1 = "vma 0x55d5c4a00000-0x55d5c4a02000 "


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (_mm_edit("env_end", None), "missing env_end"),
        (MM_TEXT + MM_TEXT.splitlines()[-1] + "\n", "overlaps"),
        (_mm_edit("exe", None), "missing exe"),
        ("", "missing start_code"),
        (MM_TEXT + "brk 0x1\n", "brk given twice"),
        (MM_TEXT + "exe /x\n", "exe given twice"),
        (MM_TEXT + "heap 0x1\n", "unknown key 'heap'"),
        (_mm_edit("brk", "brk 0x1 0x2"), "expected 'brk VALUE'"),
        (_mm_edit("brk", "brk 0x10000000000000000"), "out of range"),
        (MM_TEXT + "auxv 0 0x0\n", "AT_NULL"),
        (MM_TEXT + "auxv 6\n", "expected 'auxv TYPE VALUE'"),
        (MM_TEXT + "auxv AT_NOPE 1\n", "auxv type"),
        (MM_TEXT + "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags= path=\n", "overlaps or precedes"),
        (MM_TEXT + "vma 0x55d5c4a01000-0x55d5c4a03000 r--p 0x0 00:00 0 flags= path=\n", "overlaps"),
        (_mm_edit(VMA1, "vma 0x1001-0x2000 r--p 0x0 00:00 0 flags= path="), "not page aligned"),
        (_mm_edit(VMA1, "vma 0x2000-0x2000 r--p 0x0 00:00 0 flags= path="), "not below end"),
        (_mm_edit(VMA1, "vma 0x2000 r--p 0x0 00:00 0 flags= path="), "expected START-END"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags="), "with single spaces"),
        (_mm_edit(VMA1, "vma 0x1000+0x2000 r--p 0x0 00:00 0 flags= path="), "START-END"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 rwxq 0x0 00:00 0 flags= path="), "bad permissions"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 8:1 0 flags= path="), "bad device"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 -1 flags= path="), "inode"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags=rd,WR path="), "VmFlags"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0 vmflags= path="), "flags="),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags= file=/x"), "path="),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0  flags= path="), "single spaces"),
        (_mm_edit(VMA1, "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags= path=\\z"), "bad escape"),
    ],
)
def test_mm_parse_rejects(text: str, needle: str) -> None:
    expect_error(mm.parse, text, None, needle)


def test_mm_errors_name_lines() -> None:
    text = MM_TEXT + "vma 0x55d5c4a01000-0x55d5c4a03000 r--p 0x0 00:00 0 flags= path=\n"
    expect_error(mm.parse, text, 19, "overlaps")
    expect_error(mm.parse, _mm_edit("brk", "brk x"), 6, "brk")


def test_mm_model_rejects() -> None:
    bad: list[dict[str, Any]] = [
        {"start": 0x2000, "end": 0x1000}, {"start": 0x1001}, {"end": 1 << 64},
        {"perms": "rwx"}, {"dev": "8:1"}, {"inode": -1}, {"vmflags": ("toolong",)},
        {"path": "\ud800"}, {"offset": 1 << 64},
    ]  # fmt: skip
    for changes in bad:
        fields: dict[str, Any] = {"start": 0x1000, "end": 0x2000, **changes}
        with pytest.raises(FormatError):
            _vma(**fields)
    with pytest.raises(FormatError):
        replace(MM_MODEL, vmas=(MM_MODEL.vmas[1], MM_MODEL.vmas[0]))
    with pytest.raises(FormatError):
        replace(MM_MODEL, auxv=((0, 0),))
    with pytest.raises(FormatError):
        replace(MM_MODEL, brk=-1)


PROC_MAPS = """\
55d5c4a00000-55d5c4a02000 r--p 00000000 08:01 1234                       /usr/bin/cat
55d5c4a02000-55d5c4a03000 r-xp 00002000 08:01 1234                       /usr/bin/cat
55d5c5a1e000-55d5c5a3f000 rw-p 00000000 00:00 0                          [heap]
7f1a2c600000-7f1a2c601000 rw-s 00000000 00:01 4096                       /memfd:x y (deleted)
7f1a2c700000-7f1a2c710000 rw-p 00000000 00:00 0 
7f1a2c800000-7f1a2c801000 rw-p 00000000 00:00 0
7ffd7a892000-7ffd7a8b4000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""  # noqa: W291 (the kernel leaves a trailing space after an anonymous mapping's inode)

SMAPS = """\
55d5c4a00000-55d5c4a02000 r--p 00000000 08:01 1234                       /usr/bin/cat
Size:                  8 kB
KernelPageSize:        4 kB
VmFlags: rd mr mw me dw 
7ffd7a892000-7ffd7a8b4000 rw-p 00000000 00:00 0                          [stack]
Size:                136 kB
THPeligible:    0
VmFlags: rd wr mr mw me gd ac
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
Size:                  4 kB
"""  # noqa: W291


def test_parse_proc_maps() -> None:
    vmas = mm.parse_proc_maps(PROC_MAPS)
    assert [v.path for v in vmas] == [
        "/usr/bin/cat", "/usr/bin/cat", "[heap]", "/memfd:x y (deleted)", "", "", "[stack]",
        "[vsyscall]",
    ]  # fmt: skip
    assert vmas[1] == Vma(0x55D5C4A02000, 0x55D5C4A03000, "r-xp", 0x2000, "08:01", 1234,
                          "/usr/bin/cat")  # fmt: skip
    assert vmas[3].shared and vmas[3].dev == "00:01" and vmas[3].inode == 4096
    assert vmas[-1].end == 0xFFFFFFFFFF601000
    assert all(v.vmflags == () for v in vmas)
    assert mm.parse_proc_maps("") == []


@pytest.mark.parametrize(
    "text",
    [
        "55d5c4a00000-55d5c4a02000 r--p 00000000 08:01\n",
        "55d5c4a00000 r--p 00000000 08:01 1234 /x\n",
        "0x1000-0x2000 r--p 00000000 08:01 1234 /x\n",
        "1000-2000 r--q 00000000 08:01 1234 /x\n",
        "1001-2000 r--p 00000000 08:01 1234 /x\n",
        "2000-1000 r--p 00000000 08:01 1234 /x\n",
        "2000-3000 r--p 00000000 08:01 1 /x\n1000-2000 r--p 00000000 08:01 1 /x\n",
        "1000-2000 r--p 00000000 08:01 1 /x\n1000-2000 r--p 00000000 08:01 1 /x\n",
    ],
)
def test_parse_proc_maps_rejects(text: str) -> None:
    with pytest.raises(FormatError) as info:
        mm.parse_proc_maps(text)
    assert info.value.line is not None


@pytest.mark.parametrize(
    ("flags", "ok"),
    [
        (("rd",), True),
        (("rd", "wr", "??"), True),
        ((), True),
        (("rd wr",), False),  # one element holding two mnemonics
        ((" a",), False),
        (("r",), False),
        (("RD",), False),
        (("rd", ""), False),
    ],
)
def test_vma_vmflags_are_checked_one_by_one(flags: tuple[str, ...], ok: bool) -> None:
    def make() -> mm.Vma:
        return mm.Vma(0x1000, 0x2000, "r--p", 0, "00:00", 0, "", flags)

    if ok:
        assert make().vmflags == flags
    else:
        with pytest.raises(FormatError):
            make()


def test_parse_smaps_vmflags() -> None:
    flags = mm.parse_smaps_vmflags(SMAPS)
    assert flags == {
        0x55D5C4A00000: ("rd", "mr", "mw", "me", "dw"),
        0x7FFD7A892000: ("rd", "wr", "mr", "mw", "me", "gd", "ac"),
    }
    expect_error(mm.parse_smaps_vmflags, "VmFlags: rd\n", 1, "before any mapping")
    expect_error(mm.parse_smaps_vmflags, SMAPS.replace("gd ac", "gd acc"), 8, "VmFlags")


def test_parse_auxv_bytes() -> None:
    data = struct.pack("<6Q", 33, 0x7FFD7A9F2000, 6, 4096, 0, 0)
    assert mm.parse_auxv_bytes(data) == ((33, 0x7FFD7A9F2000), (6, 4096))
    assert mm.parse_auxv_bytes(data + bytes(32)) == ((33, 0x7FFD7A9F2000), (6, 4096))
    with pytest.raises(FormatError):
        mm.parse_auxv_bytes(data[:-16])  # no AT_NULL
    with pytest.raises(FormatError):
        mm.parse_auxv_bytes(data[:-1])


# =======================================================================================
# pages


def build_stream(runs: list[tuple[int, int, bytes]]) -> bytes:
    return b"".join(pages.encode(runs))


def page_of(byte: int, count: int = 1) -> bytes:
    return bytes([byte]) * (PAGE * count)


@st.composite
def page_runs(draw: st.DrawFn) -> list[tuple[int, int, bytes]]:
    starts = sorted(set(draw(st.lists(st.integers(0, 1 << 20), max_size=8))))
    runs = []
    previous_end = 0
    for start in starts:
        vaddr = max(start, previous_end) * PAGE
        npages = draw(st.integers(1, 5))
        data = draw(st.binary(min_size=npages, max_size=npages))
        runs.append((vaddr, draw(st.integers(0, 1)), b"".join(bytes([b]) * PAGE for b in data)))
        previous_end = vaddr // PAGE + npages + draw(st.integers(0, 1))
    return runs


@settings(deadline=None, max_examples=50)
@given(page_runs(), st.integers(1, 4))
def test_pages_round_trip(runs: list[tuple[int, int, bytes]], chunk: int) -> None:
    stream = build_stream(runs)
    total_pages = sum(len(d) // PAGE for _, _, d in runs)
    assert len(stream) == pages.stream_size(total_pages, len(runs))
    got: dict[int, tuple[int, bytes]] = {}
    for vaddr, npages, flags, data in pages.iter_records(io.BytesIO(stream), chunk):
        assert npages <= chunk and len(data) == npages * PAGE
        for i in range(npages):
            got[vaddr + i * PAGE] = (flags, bytes(data[i * PAGE : (i + 1) * PAGE]))
    want = {
        vaddr + i * PAGE: (flags, data[i * PAGE : (i + 1) * PAGE])
        for vaddr, flags, data in runs
        for i in range(len(data) // PAGE)
    }
    assert got == want
    assert pages.scan(io.BytesIO(stream)) == (total_pages, len(runs))


def test_pages_layout() -> None:
    assert pages.header() == b"SIGFSPG\0" + struct.pack("<IIIIQ", 1, 4096, 0, 0, 0)
    assert len(pages.header()) == pages.HEADER_SIZE == 32
    assert pages.record_header(0x1000, 2, 1) == struct.pack("<QIIQ", 0x1000, 2, 1, 0)
    assert pages.RECORD_HEADER_SIZE == 24
    assert pages.end_marker(5, 2) == struct.pack("<QIIQQQ", 0, 0, 1 << 31, 0, 5, 2)
    stream = build_stream([(0x1000, 0, page_of(1)), (0x3000, 1, page_of(2, 2))])
    assert stream[32:56] == pages.record_header(0x1000, 1, 0)
    assert stream[56 + PAGE : 80 + PAGE] == pages.record_header(0x3000, 2, 1)
    assert stream[-40:] == pages.end_marker(3, 2)
    assert build_stream([]) == pages.header() + pages.end_marker(0, 0)
    assert list(pages.iter_records(io.BytesIO(build_stream([])))) == []


def test_pages_adjacent_records_and_swapped_flag() -> None:
    stream = build_stream([(0x1000, 0, page_of(1)), (0x2000, 1, page_of(2))])
    records = [(v, n, f) for v, n, f, _ in pages.iter_records(io.BytesIO(stream))]
    assert records == [(0x1000, 1, 0), (0x2000, 1, 1)]
    assert pages.scan(io.BytesIO(stream)) == (2, 2)


@pytest.mark.parametrize(
    ("vaddr", "npages", "flags"),
    [(0x1001, 1, 0), (0x1000, 0, 0), (0x1000, 1 << 32, 0), (0x1000, 1, 2), (-4096, 1, 0),
     ((1 << 64) - PAGE, 2, 0), (1 << 64, 1, 0), (0, 1, 1 << 31)],
)  # fmt: skip
def test_record_header_rejects(vaddr: int, npages: int, flags: int) -> None:
    with pytest.raises(FormatError):
        pages.record_header(vaddr, npages, flags)


def test_encode_rejects() -> None:
    with pytest.raises(FormatError):
        build_stream([(0x2000, 0, page_of(1)), (0x1000, 0, page_of(1))])
    with pytest.raises(FormatError):
        build_stream([(0x1000, 0, page_of(1, 2)), (0x2000, 0, page_of(1))])
    with pytest.raises(FormatError):
        build_stream([(0x1000, 0, b"x" * 100)])
    with pytest.raises(FormatError):
        build_stream([(0x1000, 0, b"")])
    with pytest.raises(FormatError):
        pages.end_marker(-1, 0)


def _iterate(data: bytes) -> None:
    for _ in pages.iter_records(io.BytesIO(data), 1):
        pass


def test_pages_truncation_at_every_byte() -> None:
    stream = build_stream([(0x1000, 0, page_of(1, 2)), (0x5000, 1, page_of(2))])
    assert stream[-56:] != b""  # record header, end marker, trailer all present
    kinds = set()
    for cut in range(len(stream)):
        with pytest.raises(FormatError) as info:
            _iterate(stream[:cut])
        message = str(info.value)
        assert message.startswith("pages: at byte "), message
        kinds.add(message.split(": ", 2)[2].split(" (")[0])
    assert kinds == {
        "truncated file header",
        "stream ends without the end marker",
        "truncated record header",
        "truncated data of the record at 0x1000",
        "truncated data of the record at 0x5000",
        "truncated trailer",
    }


def _patch(data: bytes, offset: int, fmt: str, *values: int | bytes) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, *values)
    return bytes(buf)


GOOD = build_stream([(0x1000, 0, page_of(1)), (0x3000, 0, page_of(2))])
SECOND = 32 + 24 + PAGE  # offset of the second record header
END = SECOND + 24 + PAGE  # offset of the end marker


@pytest.mark.parametrize(
    ("data", "offset", "needle"),
    [
        (_patch(GOOD, 0, "<8s", b"SIGFSPG1"), 0, "bad magic"),
        (_patch(GOOD, 8, "<I", 2), 8, "unsupported version 2"),
        (_patch(GOOD, 12, "<I", 8192), 12, "page size 8192"),
        (_patch(GOOD, 16, "<I", 1), 16, "reserved fields must be 0"),
        (_patch(GOOD, 24, "<Q", 1), 16, "reserved fields must be 0"),
        (_patch(GOOD, SECOND, "<Q", 0x3001), SECOND, "not a page-aligned"),
        (_patch(GOOD, SECOND, "<Q", 0x1000), SECOND, "overlaps or precedes"),
        (_patch(GOOD, SECOND, "<Q", 0x0), SECOND, "overlaps or precedes"),
        (_patch(GOOD, SECOND + 8, "<I", 0), SECOND, "npages 0"),
        (_patch(GOOD, SECOND + 12, "<I", 4), SECOND, "flags 0x4"),
        (_patch(GOOD, SECOND + 16, "<Q", 9), SECOND, "reserved field"),
        (_patch(GOOD, SECOND + 8, "<I", 3), END + 40, "truncated data of the record at 0x3000"),
        (_patch(GOOD, END, "<Q", 0x1000), END, "end marker with non-zero"),
        (_patch(GOOD, END + 24, "<Q", 3), END + 24, "trailer says 3 pages in 2 records"),
        (_patch(GOOD, END + 32, "<Q", 1), END + 24, "the stream has 2 in 2"),
        (GOOD + b"\0", END + 40, "data after the trailer"),
        (GOOD[:END], END, "stream ends without the end marker"),
        (_patch(GOOD, 32, "<QI", (1 << 64) - PAGE, 2), 32, "run past the end"),
    ],
)  # fmt: skip
def test_pages_rejects(data: bytes, offset: int, needle: str) -> None:
    with pytest.raises(FormatError) as info:
        _iterate(data)
    message = str(info.value)
    assert needle in message, message
    assert message.startswith(f"pages: at byte {offset}:"), message


class DribbleStream:
    """A stream that returns at most ``step`` bytes per read (like a pipe)."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = step

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = len(self._data)
        n = min(size, self._step, len(self._data) - self._pos)
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out


def test_pages_short_reads() -> None:
    runs = [(0x1000, 0, page_of(1, 3)), (0x9000, 1, page_of(7))]
    stream = build_stream(runs)
    for step in (1, 7, 1000, PAGE + 1):
        records = pages.iter_records(DribbleStream(stream, step))
        got = [(v, n, f, bytes(d)) for v, n, f, d in records]
        assert got == [(0x1000, 3, 0, page_of(1, 3)), (0x9000, 1, 1, page_of(7))]


class SyntheticStream:
    """A pages stream of ``records`` records of ``npages`` pages, generated on demand."""

    def __init__(self, records: int, npages: int) -> None:
        self._parts = self._generate(records, npages)
        self._buffer = memoryview(b"")
        self.produced = 0

    @staticmethod
    def _generate(records: int, npages: int) -> Iterator[bytes]:
        yield pages.header()
        block = bytes(range(256)) * (PAGE * npages // 256)
        for i in range(records):
            yield pages.record_header(0x10000000 + i * (npages + 1) * PAGE, npages, 0)
            yield block
        yield pages.end_marker(records * npages, records)

    def read(self, size: int = -1, /) -> bytes:
        while not self._buffer:
            part = next(self._parts, None)
            if part is None:
                return b""
            self._buffer = memoryview(part)
        out = bytes(self._buffer[:size])
        self._buffer = self._buffer[len(out) :]
        self.produced += len(out)
        return out


def test_pages_100mb_stream_bounded_memory() -> None:
    records, npages = 100, 256  # 100 MiB of page data
    stream = SyntheticStream(records, npages)
    tracemalloc.start()
    try:
        total = 0
        start = time.monotonic()
        for _, count, _, data in pages.iter_records(stream):
            total += count
            assert len(data) == count * PAGE
            del data
        elapsed = time.monotonic() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == records * npages
    assert stream.produced == pages.stream_size(total, records)
    assert peak < 8 * 1024 * 1024, peak
    assert elapsed < HANG


def test_pages_huge_npages_is_not_read_at_once() -> None:
    # A header claiming 2**32-1 pages must not make the reader allocate 16 TiB.
    data = pages.header() + pages.record_header(0, U32, 0) + page_of(1, 2)
    seen = []
    with pytest.raises(FormatError) as info:
        for vaddr, count, _, _ in pages.iter_records(io.BytesIO(data), 1):
            seen.append((vaddr, count))
    assert seen == [(0, 1), (PAGE, 1)]
    assert "truncated data" in str(info.value)


def test_pages_garbage_fails_fast() -> None:
    for data in (b"\0" * TEN_MB, b"SIGFSPG\0" + b"\xff" * TEN_MB, pages.header() + b"\1" * TEN_MB):
        start = time.monotonic()
        with pytest.raises(FormatError):
            _iterate(data)
        assert time.monotonic() - start < HANG


@pytest.mark.parametrize("size", [0, 1, 100, PAGE, 3 * PAGE + 5])
def test_is_zero_page(size: int) -> None:
    buf = bytearray(size)
    assert pages.is_zero_page(buf)
    assert pages.is_zero_page(bytes(buf))
    assert pages.is_zero_page(memoryview(buf))
    for pos in {0, size // 2, size - 1} if size else set():
        buf[pos] = 1
        assert not pages.is_zero_page(buf)
        assert not pages.is_zero_page(memoryview(bytes(buf)))
        buf[pos] = 0


# =======================================================================================
# manifest


def _xxh(data: bytes) -> str:
    """xxh3-128 straight from the library, to check sigfs's own hashing against."""
    import xxhash

    return xxhash.xxh3_128(data).hexdigest()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_HASH_OF: dict[str, Callable[[bytes], str]] = {"xxh3-128": _xxh, "sha256": _sha}


def _manifest(checksum: str = "xxh3-128", **changes: Any) -> Manifest:
    base: dict[str, Any] = {
        "format_version": 3, "checksum": checksum, "sigfs_version": "0.1.0",
        "kernel": "6.8.0-45-generic", "machine": "x86_64", "xfeatures": 0xE7,
        "xsave_size": 2432, "pid": 4242, "created": "2024-05-01T12:00:00Z",
        "files": (
            ("fds", 4, _HASH_OF[checksum](b"abcd")),
            ("task/4242/regs", 0, _HASH_OF[checksum](b"")),
            ("with space ", 1, _HASH_OF[checksum](b"x")),
        ),
    }  # fmt: skip
    base.update(changes)
    return Manifest(**base)


def _manifest_text(checksum: str | None) -> str:
    """Canonical text: format 3 with ``checksum``, or format 1 (sha256) for ``None``."""
    head = "format_version 1\n" if checksum is None else f"format_version 3\nchecksum {checksum}\n"
    h = _HASH_OF[checksum or "sha256"]
    return head + (
        "sigfs_version 0.1.0\n"
        "kernel 6.8.0-45-generic\n"
        "machine x86_64\n"
        "xfeatures 0x00000000000000e7\n"
        "xsave_size 2432\n"
        "pid 4242\n"
        "created 2024-05-01T12:00:00Z\n"
        f"file {h(b'abcd')} 4 fds\n"
        f"file {h(b'')} 0 task/4242/regs\n"
        f"file {h(b'x')} 1 with space\\x20\n"
    )


MANIFEST_TEXT = _manifest_text("xxh3-128")
MANIFEST_SHA256_TEXT = _manifest_text("sha256")
MANIFEST_V1_TEXT = _manifest_text(None)
SHA_EMPTY = _sha(b"")
XXH_EMPTY = _xxh(b"")


def test_manifest_constants() -> None:
    assert manifest.FORMAT_VERSION == 3
    assert manifest.SUPPORTED_VERSIONS == (1, 2, 3)
    assert manifest.CHECKSUMS == ("xxh3-128", "sha256")
    assert manifest.DEFAULT_CHECKSUM == "xxh3-128"
    assert manifest.KEYS[:2] == ("format_version", "checksum")


@pytest.mark.parametrize("checksum", ["xxh3-128", "sha256"])
def test_manifest_canonical_text(checksum: str) -> None:
    text = _manifest_text(checksum)
    assert text.splitlines()[:2] == ["format_version 3", f"checksum {checksum}"]
    model = _manifest(checksum)
    assert manifest.render(model) == text
    assert manifest.parse(text) == model
    assert model.file("fds") == (4, _HASH_OF[checksum](b"abcd"))
    assert model.file("nope") is None


def test_manifest_version_1_still_read() -> None:
    assert "checksum" not in MANIFEST_V1_TEXT
    model = manifest.parse(MANIFEST_V1_TEXT)
    assert model.format_version == 1
    assert model.checksum == "sha256"
    assert model == _manifest("sha256", format_version=1)
    assert model.file("fds") == (4, _sha(b"abcd"))
    assert manifest.render(model) == MANIFEST_V1_TEXT


def test_manifest_keys_in_any_order() -> None:
    # The digests are checked once the checksum line is known, wherever it is.
    lines = MANIFEST_TEXT.splitlines()
    moved = "\n".join([lines[0], *lines[2:], lines[1]]) + "\n"
    assert manifest.parse(moved) == _manifest()
    bad = "\n".join([lines[0], *lines[2:9], f"file {SHA_EMPTY} 0 a", *lines[9:], lines[1]])
    expect_error(manifest.parse, bad + "\n", 9, "expected 32 lowercase hex digits of xxh3-128")


def test_manifest_digest_known_answers() -> None:
    import xxhash

    assert manifest.digest("xxh3-128", b"abc") == xxhash.xxh3_128(b"abc").hexdigest()
    assert manifest.digest("xxh3-128", b"abc") == "06b05ab6733a618578af5f94892f3950"
    assert manifest.digest("sha256", b"") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert manifest.digest("sha256", bytearray(b"abc")) == _sha(b"abc")
    assert manifest.digest("xxh3-128", memoryview(b"abc")) == _xxh(b"abc")
    assert manifest.entry("a", b"abc") == ("a", 3, _xxh(b"abc"))
    assert manifest.entry("a", b"abc", "sha256") == ("a", 3, _sha(b"abc"))


@pytest.mark.parametrize("checksum", ["xxh3-128", "sha256"])
def test_manifest_hasher_streams(checksum: str) -> None:
    data = bytes(range(256)) * 1000
    first, second = manifest.hasher(checksum), manifest.hasher(checksum)
    for start in range(0, len(data), 4096):
        first.update(memoryview(data)[start : start + 4096])
    assert first.hexdigest() == _HASH_OF[checksum](data)
    assert second.hexdigest() == _HASH_OF[checksum](b"")  # each hasher starts fresh


def test_manifest_unknown_checksum() -> None:
    for call in (
        lambda: manifest.hasher("md5"),
        lambda: manifest.digest("SHA256", b""),
        lambda: manifest.entry("a", b"", "xxh128"),
    ):
        with pytest.raises(
            FormatError, match=r"unknown algorithm '\w+' \(known: xxh3-128, sha256\)"
        ):
            call()


@st.composite
def manifest_models(draw: st.DrawFn) -> Manifest:
    version, checksum = draw(
        st.sampled_from([(3, "xxh3-128"), (2, "xxh3-128"), (2, "sha256"), (1, "sha256")])
    )
    hexdigits = 32 if checksum == "xxh3-128" else 64
    segment = st.one_of(fs_bytes, any_text).filter(
        lambda s: s not in ("", ".", "..") and "/" not in s and "\0" not in s
    )
    paths = draw(st.lists(st.lists(segment, min_size=1, max_size=3).map("/".join), max_size=8))
    files = tuple(
        sorted((p, draw(u64s), draw(st.from_regex(f"[0-9a-f]{{{hexdigits}}}", fullmatch=True)))
               for p in set(paths))
    )  # fmt: skip
    created = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(seconds=draw(st.integers(0, 10**9)))
    return _manifest(
        checksum,
        format_version=version,
        sigfs_version=draw(st.from_regex(r"[A-Za-z0-9._+~:-]{1,20}", fullmatch=True)),
        kernel=draw(st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1,
                            max_size=40)),
        xfeatures=draw(u64s),
        xsave_size=draw(st.integers(0, 1 << 20)),
        pid=draw(st.integers(1, (1 << 31) - 1)),
        created=manifest.format_created(created),
        files=files,
    )  # fmt: skip


@given(manifest_models())
def test_manifest_round_trip(model: Manifest) -> None:
    text = manifest.render(model)
    assert ("\nchecksum " in text) == (model.format_version != 1)
    assert manifest.parse(text) == model
    assert manifest.render(manifest.parse(text)) == text


def test_format_created() -> None:
    when = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert manifest.format_created(when) == "2024-05-01T12:00:00Z"
    with pytest.raises(FormatError):
        manifest.format_created(datetime(2024, 5, 1))
    assert _manifest(created="2024-05-01T12:00:00.5+00:00").created.endswith("+00:00")


@pytest.mark.parametrize(
    ("version", "checksum"), [(3, "xxh3-128"), (2, "xxh3-128"), (2, "sha256"), (1, "sha256")]
)
def test_manifest_verify(version: int, checksum: str) -> None:
    files = {"fds": b"abcd", "task/4242/regs": b"", "with space ": b"x"}

    def reader(contents: dict[str, bytes]) -> Callable[[str], bytes]:
        def read(path: str) -> bytes:
            if path not in contents:
                raise FileNotFoundError(2, "No such file or directory", path)
            return contents[path]

        return read

    model = _manifest(checksum, format_version=version)
    assert manifest.verify(model, reader(files)) == []
    assert manifest.verify(model, reader(files), present=[*files, "MANIFEST"]) == []
    # One byte changed, same size: only the checksum can tell.
    changed = {**files, "fds": b"abce"}
    assert manifest.verify(model, reader(changed)) == [
        f"fds: {checksum} is {_HASH_OF[checksum](b'abce')}, "
        f"the manifest says {_HASH_OF[checksum](b'abcd')}"
    ]
    broken = {"fds": b"abce", "with space ": b"xx"}
    problems = manifest.verify(model, reader(broken), present=[*broken, "extra"])
    assert len(problems) == 4
    assert problems[0].startswith(f"fds: {checksum} is ")
    assert problems[1] == "task/4242/regs: missing (No such file or directory)"
    assert problems[2] == "with space : size is 2, the manifest says 1"
    assert problems[3] == "extra: not listed in the manifest"

    def failing(path: str) -> bytes:
        raise PermissionError(13, "Permission denied")

    assert all("missing (Permission denied)" in p for p in manifest.verify(model, failing))


def _manifest_edit(old: str, new: str | None, text: str = MANIFEST_TEXT) -> str:
    return _replace_line(text, old, new)


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        (_manifest_edit("format_version", "format_version 4"), 1, "format_version 4 is not"),
        (_manifest_edit("format_version", "format_version 0"), 1, "reads 1, 2, 3"),
        (_manifest_edit("format_version", "format_version x"), 1, "format_version"),
        (_manifest_edit("format_version", None), 11, "missing format_version"),
        ("", 1, "missing format_version checksum sigfs_version"),
        (MANIFEST_TEXT + "pid 1\n", 13, "pid given twice"),
        (MANIFEST_TEXT + "owner me\n", 13, "unknown key 'owner'"),
        (_manifest_edit("pid", "pid 0"), 8, "out of range"),
        (_manifest_edit("machine", "machine x86 64"), 5, "expected one word"),
        (_manifest_edit("kernel", "kernel"), 4, "kernel: expected 1..256"),
        (_manifest_edit("created", "created yesterday"), 9, "ISO-8601"),
        (_manifest_edit("created", "created 2024-13-01T12:00:00Z"), 9, "not a valid date"),
        (_manifest_edit("created", "created 2024-05-01T12:00:00+02:00"), 9, "ISO-8601"),
        (_manifest_edit("xfeatures", "xfeatures 0x1ffffffffffffffff"), 6, "out of range"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 a\n", 13, "out of order"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 with space\\x20\n", 13, "given twice"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 zz/../x\n", 13, "not a clean relative path"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 /zz\n", 13, "not a clean relative path"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 zz//x\n", 13, "not a clean relative path"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 \n", 13, "not a clean relative path"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY.upper()} 0 zz\n", 13, "digits of xxh3-128"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY[:-1]} 0 zz\n", 13, "digits of xxh3-128"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} -1 zz\n", 13, "out of range"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0\n", 13, "expected 'file DIGEST SIZE PATH'"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY}  0 zz\n", 13, "single spaces"),
        (MANIFEST_TEXT + f"file {XXH_EMPTY} 0 z\\z\n", 13, "bad escape"),
        # checksum
        (_manifest_edit("checksum", None), 11, "end of input: missing checksum"),
        (_manifest_edit("checksum", "checksum md5"), 2, "unknown algorithm 'md5'"),
        (_manifest_edit("checksum", "checksum SHA256"), 2, "(known: xxh3-128, sha256)"),
        (_manifest_edit("checksum", "checksum sha256 "), 2, "unknown algorithm 'sha256 '"),
        (_manifest_edit("checksum", "checksum"), 2, "unknown algorithm ''"),
        (MANIFEST_TEXT + "checksum xxh3-128\n", 13, "checksum given twice (also on line 2)"),
        (MANIFEST_SHA256_TEXT + f"file {XXH_EMPTY} 0 zz\n", 13, "digits of sha256"),
        (MANIFEST_SHA256_TEXT + f"file {SHA_EMPTY.upper()} 0 zz\n", 13, "digits of sha256"),
        # format 1: no checksum line, sha256 only
        (MANIFEST_V1_TEXT.replace("\n", "\nchecksum sha256\n", 1), 2, "format_version 1 has no"),
        (MANIFEST_V1_TEXT.replace("\n", "\nchecksum xxh3-128\n", 1), 2, "no checksum line"),
        (MANIFEST_V1_TEXT + f"file {XXH_EMPTY} 0 zz\n", 12, "64 lowercase hex digits of sha256"),
        (_manifest_edit("pid", None, MANIFEST_V1_TEXT), 10, "end of input: missing pid"),
    ],
)
def test_manifest_parse_rejects(text: str, line: int, needle: str) -> None:
    expect_error(manifest.parse, text, line, needle)


def test_manifest_digest_length_must_match_checksum() -> None:
    with pytest.raises(
        FormatError, match=r"expected 32 lowercase hex digits of xxh3-128, got 'e3b0"
    ):
        manifest.parse(MANIFEST_TEXT + f"file {SHA_EMPTY} 0 zz\n")
    with pytest.raises(FormatError, match=r"expected 64 lowercase hex digits of sha256, got '99aa"):
        manifest.parse(MANIFEST_SHA256_TEXT + f"file {XXH_EMPTY} 0 zz\n")
    with pytest.raises(FormatError, match=r"'zz': expected 32 lowercase hex digits of xxh3-128"):
        _manifest(files=(("zz", 0, SHA_EMPTY),))
    with pytest.raises(FormatError, match=r"'zz': expected 64 lowercase hex digits of sha256"):
        _manifest("sha256", files=(("zz", 0, XXH_EMPTY),))


def test_manifest_model_rejects() -> None:
    sha, xxh = SHA_EMPTY, XXH_EMPTY
    for changes in (
        {"format_version": 4}, {"format_version": 0}, {"machine": "x 86"}, {"sigfs_version": ""},
        {"kernel": "a\nb"}, {"pid": 0}, {"xfeatures": -1}, {"created": "now"},
        {"files": (("b", 0, xxh), ("a", 0, xxh))}, {"files": (("a", 0, xxh), ("a", 0, xxh))},
        {"files": (("../a", 0, xxh),)}, {"files": (("a", -1, xxh),)}, {"files": (("a", 0, "x"),)},
        {"files": (("a", 0, sha),)},
    ):  # fmt: skip
        with pytest.raises(FormatError):
            _manifest(**changes)
    with pytest.raises(FormatError, match=r"unknown algorithm 'md5' \(known: xxh3-128, sha256\)"):
        replace(_manifest(), checksum="md5")
    with pytest.raises(FormatError, match="format_version 1 is always sha256, not 'xxh3-128'"):
        _manifest(format_version=1)
    with pytest.raises(FormatError, match="expected 64 lowercase hex digits of sha256"):
        replace(_manifest(), checksum="sha256")
    fields = {k: v for k, v in vars(_manifest()).items() if k != "checksum"}
    with pytest.raises(TypeError, match="checksum"):  # no default: callers must choose
        Manifest(**fields)


# =======================================================================================
# hostile input: every text parser fails fast, with FormatError only

PARSERS: dict[str, Callable[[str], Any]] = {
    "regs": regs.parse,
    "fpu": fpu.parse,
    "status": status.parse,
    "fds": fds.parse,
    "mm": mm.parse,
    "manifest": manifest.parse,
    "proc_maps": mm.parse_proc_maps,
}
LENIENT: dict[str, Callable[[str], Any]] = {"smaps_vmflags": mm.parse_smaps_vmflags}

HUGE: dict[str, Callable[[], str]] = {
    "zeros": lambda: "0" * TEN_MB,
    "hex": lambda: "0x" + "f" * TEN_MB,
    "letters": lambda: "x" * TEN_MB,
    "short_lines": lambda: "1\n" * (TEN_MB // 2),
    "spaces": lambda: " " * TEN_MB + "1",
    "reg_lines": lambda: "rax 0x0\n" * (TEN_MB // 8),
    "xsave_lines": lambda: ("xsave 0000 " + "00" * 32 + "\n") * (TEN_MB // 76),
    "fd_lines": lambda: _fdline(3, 3) * (TEN_MB // 90),
    "vma_lines": lambda: "vma 0x1000-0x2000 r--p 0x0 00:00 0 flags= path=\n" * (TEN_MB // 50),
    "escapes": lambda: "cwd " + "\\x41" * (TEN_MB // 4),
    "file_lines": lambda: f"file {SHA_EMPTY} 0 a\n" * (TEN_MB // 80),
    "status_keys": lambda: "pid 1\n" * (TEN_MB // 6),
}


@pytest.mark.parametrize("parser", list(PARSERS))
@pytest.mark.parametrize("kind", list(HUGE))
def test_huge_input_fails_fast(parser: str, kind: str) -> None:
    text = HUGE[kind]()
    start = time.monotonic()
    with pytest.raises(FormatError):
        PARSERS[parser](text)
    assert time.monotonic() - start < HANG


@pytest.mark.parametrize("kind", list(HUGE))
def test_huge_input_lenient_parsers_are_fast(kind: str) -> None:
    text = HUGE[kind]()
    for parse in LENIENT.values():
        start = time.monotonic()
        try:
            parse(text)
        except FormatError:
            pass
        assert time.monotonic() - start < HANG


def test_size_limits_refuse_without_scanning() -> None:
    for parse, limit in (
        (regs.parse, regs.MAX_TEXT),
        (fpu.parse, fpu.MAX_TEXT),
        (status.parse, status.MAX_TEXT),
    ):
        start = time.monotonic()
        with pytest.raises(FormatError) as info:
            parse("\n" * (limit + 1))
        assert "at most" in str(info.value)
        assert time.monotonic() - start < HANG


@pytest.mark.parametrize("parser", [*PARSERS, *LENIENT])
@pytest.mark.parametrize(
    "text",
    ["\x00", "\u2028", "１", "0x", "--", "=", "path=", "fd=", "vma", "xsave", "rlimit",
     "\r\n\r\n+", "\ufeffcwd /", "file", "auxv", "comm\x00"],
)  # fmt: skip
def test_garbage_raises_format_error_only(parser: str, text: str) -> None:
    parse = {**PARSERS, **LENIENT}[parser]
    try:
        parse(text)
    except FormatError as exc:
        assert exc.reason


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes(text: str) -> None:
    for parse in [*PARSERS.values(), *LENIENT.values()]:
        try:
            parse(text)
        except FormatError:
            pass


@settings(max_examples=200)
@given(st.text(alphabet="0123456789abcdefx-=:#, \n\\pathfdvmaxsveuidrlimt[]/", max_size=400))
def test_arbitrary_near_miss_text_never_crashes(text: str) -> None:
    for parse in [*PARSERS.values(), *LENIENT.values()]:
        try:
            parse(text)
        except FormatError:
            pass


@given(st.binary(max_size=200))
def test_arbitrary_pages_bytes_never_crash(data: bytes) -> None:
    with pytest.raises(FormatError):
        _iterate(data)
    with pytest.raises(FormatError):
        _iterate(pages.header() + data)
