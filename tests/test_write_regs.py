"""Writing ``regs`` and ``fpu`` through a real mount: a changed register
seen by the program itself (a read(2) made to return EINTR), vector
registers checked with gdb, and every refused write leaving the thread's
registers exactly as they were."""

from __future__ import annotations

import errno
import subprocess

import pytest
from conftest import write_file as write

from sigfs.formats import fpu as fpu_fmt

pytestmark = pytest.mark.mount


def gdb(pid: int, *exprs: str) -> str:
    cmd = ["gdb", "-batch", "-nx", "-p", str(pid)]
    for e in exprs:
        cmd += ["-ex", e]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return res.stdout


def test_a_read_made_to_return_eintr(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The thread sleeps in read(2) (rax -ERESTARTSYS, orig_rax 0): with
    rax -EINTR and orig_rax -1 the kernel does not restart it, and the
    program sees read() fail with EINTR, as gdb's `return` would make it."""
    t = spawn("sleeper", "read")
    path = f"{mnt.path}/{t.pid}/regs"
    before = mnt.read(f"{t.pid}/regs")
    assert "# syscall 0 read" in before
    write(path, before.encode())  # the file as it reads: nothing changes
    assert mnt.read(f"{t.pid}/errors").endswith("regs: unchanged\n")
    write(path, b"rax -4\norig_rax -1\n")
    assert t.readline() == "read rc=-1 errno=4"
    # It reads again, undisturbed.
    t.send("write")
    assert t.readline() == "read rc=1 errno=0"
    assert "regs: changed: rax 0xfffffffffffffffc (was 0xfffffffffffffe00), orig_rax " in (
        mnt.read(f"{t.pid}/errors")
    )


def test_a_frozen_thread_takes_them_at_the_thaw(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "read")
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        write(f"{mnt.path}/{t.pid}/regs", b"rax -4\norig_rax -1\n")
        text = mnt.read(f"{t.pid}/regs")
        assert "rax 0xfffffffffffffffc\n" in text and "orig_rax 0xffffffffffffffff\n" in text
    finally:
        write(ctl, b"thaw\n")
    assert t.readline() == "read rc=-1 errno=4"


BAD_REGS = [
    (b"rbq 0x0\n", "unknown register"),
    (b"rax 1 2\n", "expected 2 fields"),
    (b"rax 0x10000000000000000\n", "rax"),
    (b"rax 1\nrax 2\n", "given twice"),
    (b"rip 0x1000\n", "not in executable memory"),
    (b"rsp 0x1000\n", "not in read-write memory"),
    (b"eflags 0x0\n", "the kernel keeps eflags"),
    (b"cs 0x10\n", "a user thread runs with 0x33"),
    (b"cs 0x2b\n", "a user thread runs with 0x33"),
    (b"ss 0x33\n", "a user thread runs with 0x2b"),
    (b"eflags 0x346\n", "the trap flag"),
    # The kernel writes rax, then refuses fs_base: rax is set back too.
    (b"rax 5\nfs_base 0xffff888000000000\n", "the kernel refuses these registers"),
    (b"fs_base 0xffff888000000000\n", "the kernel refuses these registers"),
    (b"\xff\n", "not UTF-8 text (byte 1)"),
    (b"# nothing\n", "end of input"),
    (b"rax 0\n" * 20000, "more than the registers take"),
]


@pytest.mark.parametrize(("data", "message"), BAD_REGS, ids=[repr(d[:20]) for d, _ in BAD_REGS])
def test_bad_registers_are_refused_and_change_nothing(mnt, spawn, data, message) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "read")
    before = mnt.read(f"{t.pid}/regs")
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/regs", data)
    assert info.value.errno == errno.EINVAL
    last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert "regs: write refused:" in last and message in last, last
    assert mnt.read(f"{t.pid}/regs") == before
    t.send("write")
    assert t.readline() == "read rc=1 errno=0"


def test_a_new_rip_in_a_syscall_is_not_restarted_on(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """Only rip written, to the syscall instruction itself, of a thread
    asleep in read(2): without the kernel's restart step (orig_rax is made
    -1, as gdb does) it runs `syscall` with rax -512, which fails ENOSYS;
    with it, rip would have moved two bytes further back."""
    from sigfs.formats import regs as regs_fmt

    t = spawn("sleeper", "read")
    regs = regs_fmt.parse(mnt.read(f"{t.pid}/regs")).as_dict()
    assert regs["orig_rax"] == 0 and regs["rax"] == 2**64 - 512
    write(f"{mnt.path}/{t.pid}/regs", f"rip {regs['rip'] - 2:#x}\n".encode())
    assert t.readline() == "read rc=-1 errno=38"
    t.send("write")
    assert t.readline() == "read rc=1 errno=0"
    assert "orig_rax 0xffffffffffffffff (was 0x0)" in mnt.read(f"{t.pid}/errors")


def test_an_empty_stack_is_a_stack(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """rsp at the very end of a read-write mapping (an empty stack) or in the
    room [stack] grows into is accepted; set while frozen and put back
    before the thread runs."""
    from sigfs.formats import regs as regs_fmt

    t = spawn("sleeper", "read")
    original = mnt.read(f"{t.pid}/regs")
    with open(f"/proc/{t.pid}/maps") as f:
        lo, hi = next(
            (int(a, 16), int(b, 16))
            for a, b in (line.split()[0].split("-") for line in f if "[stack]" in line)
        )
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        for rsp in (hi, lo - 4096):
            write(f"{mnt.path}/{t.pid}/regs", f"rsp {rsp:#x}\n".encode())
            assert regs_fmt.parse(mnt.read(f"{t.pid}/regs")).as_dict()["rsp"] == rsp
        write(f"{mnt.path}/{t.pid}/regs", original.encode())
    finally:
        write(ctl, b"thaw\n")
    t.send("write")
    assert t.readline() == "read rc=1 errno=0"


def test_appending_to_regs_is_refused(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("sleeper", "read")
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/regs", b"rax 0\n", append=True)
    assert info.value.errno == errno.EINVAL


XMM3 = 160 + 3 * 16  # offset of xmm3 in the legacy (fxsave) area


def test_vector_registers_set_as_gdb_then_sees_them(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("vectors")
    path = f"{mnt.path}/{t.pid}/fpu"
    original = mnt.read(f"{t.pid}/fpu")
    blob = bytearray(fpu_fmt.parse(original).xsave)
    blob[XMM3 : XMM3 + 16] = bytes(range(0xF0, 0x100))
    text = fpu_fmt.render(fpu_fmt.Fpu(bytes(blob)))
    write(path, text.encode())
    assert mnt.read(f"{t.pid}/fpu") == text
    value = int.from_bytes(bytes(range(0xF0, 0x100)), "little")
    assert f"$1 = {value:#x}" in gdb(t.pid, "p/x $xmm3.uint128")
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/fpu") == original
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/errors").endswith("fpu: unchanged\n")


def _bad_fpu(original: str) -> list[tuple[bytes, str]]:
    fpu = fpu_fmt.parse(original)
    mxcsr = bytearray(fpu.xsave)
    mxcsr[24:28] = (0xFFFF1F80).to_bytes(4, "little")  # reserved MXCSR bits
    header = bytearray(fpu.xsave)
    header[512 + 7] |= 0x40  # an xfeatures bit no CPU has (62)
    lines = original.splitlines(keepends=True)
    no_size = "".join(x for x in lines if not x.startswith("xsave_size"))
    wrong = original.replace(next(x for x in lines if x.startswith("xmm0 ")), "xmm0 0x1\n", 1)
    return [
        (fpu_fmt.render(fpu_fmt.Fpu(bytes(mxcsr))).encode(), "the kernel refuses"),
        (fpu_fmt.render(fpu_fmt.Fpu(bytes(header))).encode(), "the kernel refuses"),
        (fpu_fmt.render(fpu_fmt.Fpu(fpu.xsave[:576] + bytes(64))).encode(), "this CPU's is"),
        (no_size.encode(), "no 'xsave_size N' line"),
        (wrong.encode(), "does not match the xsave area"),
        (b"xsave 0 zz\n", "line 1"),
    ]


def test_bad_fpu_state_is_refused_and_changes_nothing(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("vectors")
    path = f"{mnt.path}/{t.pid}/fpu"
    original = mnt.read(f"{t.pid}/fpu")
    for data, message in _bad_fpu(original):
        with pytest.raises(OSError) as info:
            write(path, data)
        assert info.value.errno == errno.EINVAL, message
        last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert "fpu: write refused:" in last and message in last, (message, last)
        assert mnt.read(f"{t.pid}/fpu") == original
    with pytest.raises(OSError) as info:
        write(path, original.encode(), append=True)
    assert info.value.errno == errno.EINVAL
    t.send("x")
    assert t.readline().startswith("woke rc=")  # it runs on
