"""Writing ``sig/altstack`` through a real mount: each write checked against
the process's own view (its sigaltstack(NULL, &old), printed by the
handlers target), a handler with SA_ONSTACK still running on the new stack,
and every refused write leaving the stack as it was."""

from __future__ import annotations

import errno

import pytest
from conftest import write_file as write

pytestmark = pytest.mark.mount

SS_DISABLE, SS_AUTODISARM = 2, 1 << 31


def own_view(t) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    """(sp, size, flags) as the handlers target's own sigaltstack() says."""
    t.send("dump")
    while True:
        line = t.readline()
        if line.startswith("altstack "):
            f = dict(kv.split("=") for kv in line.split()[1:])
            found = (int(f["sp"], 16), int(f["size"]), int(f["flags"]) & 0xFFFFFFFF)
        if line == "end":
            return found


def file_view(mnt, t, tid: int | None = None) -> tuple[int, int, int]:  # type: ignore[no-untyped-def]
    where = f"{t.pid}/sig/altstack" if tid is None else f"{t.pid}/task/{tid}/sig/altstack"
    sp, size, flags = mnt.read(where).split()
    return int(sp, 16), int(size), int(flags)


def test_a_new_stack_is_the_one_the_process_sees_and_uses(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    base = int(t.ready_info["altstack"], 16)
    original = mnt.read(f"{t.pid}/sig/altstack")
    assert own_view(t) == (base, 65536, 0)
    path = f"{mnt.path}/{t.pid}/sig/altstack"
    # The upper half of its own 64 KiB buffer, with SS_AUTODISARM.
    write(path, f"{base + 32768:#x} 32768 {SS_AUTODISARM}\n".encode())
    assert own_view(t) == (base + 32768, 32768, SS_AUTODISARM)
    assert file_view(mnt, t) == (base + 32768, 32768, SS_AUTODISARM)
    # SIGUSR2's handler is SA_ONSTACK: it runs there, and the process lives on.
    write(f"{mnt.path}/{t.pid}/sig/blocked", b"-SIGUSR2\n")
    assert t.command("counts") == "counts h1=0 h2=2 h3=0"
    assert own_view(t) == (base + 32768, 32768, SS_AUTODISARM)
    # Disabled (with and without SS_AUTODISARM, which the kernel keeps),
    # then the original back (the file copied out and in).
    write(path, f"0x0 0 {SS_DISABLE | SS_AUTODISARM}\n".encode())
    assert file_view(mnt, t) == (0, 0, SS_DISABLE | SS_AUTODISARM)
    write(path, b"0x0 0 2\n")
    assert own_view(t) == (0, 0, SS_DISABLE)
    write(path, original.encode())
    assert own_view(t) == (base, 65536, 0)
    assert mnt.read(f"{t.pid}/sig/altstack") == original
    errors = mnt.read(f"{t.pid}/errors")
    assert (
        f"sig/altstack: changed: {base + 32768:#x} 32768 {SS_AUTODISARM} (was {base:#x} 65536 0)\n"
        in errors
    )
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/errors").endswith("sig/altstack: unchanged\n")


def test_each_thread_has_its_own_stack_and_a_frozen_one_keeps_it(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("threads", "3")
    tids = [int(x) for x in t.ready_info["tids"].split(",")]
    # Somewhere read-write in the process: the main thread's stack mapping.
    with open(f"/proc/{t.pid}/maps") as f:
        lo, hi = next(
            (int(a, 16), int(b, 16))
            for a, b in (line.split()[0].split("-") for line in f if "[stack]" in line)
        )
    before = {tid: file_view(mnt, t, tid) for tid in [t.pid, *tids]}
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        write(f"{mnt.path}/{t.pid}/task/{tids[1]}/sig/altstack", f"{lo:#x} 16384 0\n".encode())
        assert file_view(mnt, t, tids[1]) == (lo, 16384, 0)
    finally:
        write(ctl, b"thaw\n")
    after = {tid: file_view(mnt, t, tid) for tid in [t.pid, *tids]}
    assert after == {**before, tids[1]: (lo, 16384, 0)}
    assert hi - lo >= 16384
    assert t.alive() and int(t.status()["TracerPid"]) == 0


BAD = [
    (b"0x1000 4096\n", "expected 3 fields"),
    (b"zz 4096 0\n", "line 1"),
    (b"0x1000 4096 0\n0x2000 4096 0\n", "only one"),
    (b"0x1000 -1 0\n", "line 1"),
    (b"0x1000 4096 4\n", "only SS_DISABLE (2) and SS_AUTODISARM"),
    (b"0x1000 0 0\n", "is not a stack"),
    (b"0x1000 65536 0\n", "is not read-write memory of the process"),
    (b"\xff 0 2\n", "not UTF-8 text (byte 1)"),
    (b"# only a comment\n", "end of input"),
    (b"0x0 0 2 " + b"x" * 70000 + b"\n", "more than a stack line takes"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[repr(d[:20]) for d, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(mnt, spawn, data, message) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = own_view(t)
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/sig/altstack", data)
    assert info.value.errno == errno.EINVAL
    assert own_view(t) == before
    last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert "sig/altstack: write refused:" in last and message in last, last


def test_what_the_kernel_refuses_changes_nothing(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    base = int(t.ready_info["altstack"], 16)
    h1 = int(t.ready_info["h1"], 16)
    before = own_view(t)
    cases = [
        # Under the kernel's minimum (MINSIGSTKSZ and the xsave frame).
        (f"{base:#x} 1024 0\n", errno.EINVAL, "less than the kernel's minimum"),
        # Code, not data.
        (f"{h1 & ~0xFFF:#x} 8192 0\n", errno.EINVAL, "not read-write memory"),
        # Nothing to add to.
        (f"{base:#x} 65536 0\n", errno.EINVAL, "use >"),
    ]
    for i, (data, err, message) in enumerate(cases):
        with pytest.raises(OSError) as info:
            write(f"{mnt.path}/{t.pid}/sig/altstack", data.encode(), append=i == 2)
        assert info.value.errno == err
        assert message in mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert own_view(t) == before


def test_the_stack_of_a_thread_running_on_it_is_left_alone(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """A thread inside a handler on its alternate stack (asleep in read()
    there): the kernel refuses to change that stack (EBUSY here), writing
    back what the file reads is no change, and once the handler returns
    the same write works."""
    t = spawn("onstack")
    base = int(t.ready_info["altstack"], 16)
    path = f"{mnt.path}/{t.pid}/sig/altstack"
    assert t.command("raise") == "in handler onstack=1"
    text = mnt.read(f"{t.pid}/sig/altstack")
    assert text == f"{base:#x} 65536 1\n"  # SS_ONSTACK
    with pytest.raises(OSError) as info:
        write(path, f"{base:#x} 32768 0\n".encode())
    assert info.value.errno == errno.EBUSY
    assert "running a signal handler on its alternate stack" in mnt.read(f"{t.pid}/errors")
    assert t.command("where") == f"altstack sp={base:#x} size=65536 flags=1"
    write(path, text.encode())  # what it reads: no change
    assert mnt.read(f"{t.pid}/errors").endswith("sig/altstack: unchanged\n")
    assert t.command("return") == "returned onstack=0"
    write(path, f"{base:#x} 32768 0\n".encode())
    assert t.command("where") == f"altstack sp={base:#x} size=32768 flags=0"
