"""Writing ``sig/action`` through a real mount: each write checked against
the process's own view (the handlers target reads every sigaction back with
the raw rt_sigaction syscall), a newly installed handler running when its
signal comes, and every refused write leaving all 64 actions as they were."""

from __future__ import annotations

import errno
import os
import signal
import time

import pytest
from conftest import write_file as write

from sigfs.formats.sigset import render_bitmap

pytestmark = pytest.mark.mount

SIGINT, SIGUSR1, SIGUSR2 = 2, 10, 12
SA_SIGINFO, SA_RESTORER, SA_RESTART = 0x4, 0x4000000, 0x10000000
ZERO = render_bitmap(0)


def own_view(t) -> dict[int, str]:  # type: ignore[no-untyped-def]
    """signal -> "handler flags restorer mask" as the target's own
    rt_sigaction(sig, NULL, &old) gives them."""
    t.send("dump")
    out = {}
    while True:
        line = t.readline()
        if line.startswith("act "):
            words = line.split()
            out[int(words[1])] = " ".join(words[2:])
        if line == "end":
            return out


def line_of(text: str, sig: int) -> str:
    return next(x for x in text.splitlines() if x.split()[0] == str(sig))


def test_a_new_handler_is_installed_and_runs(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    h1 = int(t.ready_info["h1"], 16)
    text = mnt.read(f"{t.pid}/sig/action")
    restorer = line_of(text, SIGUSR1).split()[4]
    before = own_view(t)
    assert before[SIGINT].startswith("handler=0x1 ")  # SIG_IGN
    new = f"{SIGINT} {SA_SIGINFO | SA_RESTORER | SA_RESTART:#x} {ZERO} {h1:#x} {restorer}\n"
    write(f"{mnt.path}/{t.pid}/sig/action", new.encode())
    after = own_view(t)
    flags = SA_SIGINFO | SA_RESTORER | SA_RESTART
    assert after[SIGINT] == f"handler={h1:#x} flags={flags:#x} restorer={restorer} mask={ZERO}"
    assert {k: v for k, v in after.items() if k != SIGINT} == {
        k: v for k, v in before.items() if k != SIGINT
    }
    assert line_of(mnt.read(f"{t.pid}/sig/action"), SIGINT) == new.strip()
    os.kill(t.pid, signal.SIGINT)
    deadline = time.monotonic() + 5
    while t.command("counts") != "counts h1=1 h2=0 h3=0" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert t.command("counts") == "counts h1=1 h2=0 h3=0"
    errors = mnt.read(f"{t.pid}/errors")
    assert f"sig/action: changed: {new.strip()} (was {line_of(text, SIGINT)})\n" in errors


def test_a_signal_ignored_or_defaulted_by_name(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """`echo SIGUSR1 ignore > sig/action`: the short form people write."""
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/action"
    write(path, b"SIGUSR1 ignore\nint SIG_DFL\n")
    view = own_view(t)
    assert view[SIGUSR1] == f"handler=0x1 flags=0x0 restorer=0x0 mask={ZERO}"
    assert view[SIGINT] == f"handler=0x0 flags=0x0 restorer=0x0 mask={ZERO}"
    os.kill(t.pid, signal.SIGUSR1)
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"
    with pytest.raises(OSError) as info:
        write(path, b"SIGUSR1 sometimes\n")
    assert info.value.errno == errno.EINVAL
    assert "expected 5 fields" in mnt.read(f"{t.pid}/errors").splitlines()[-1]


def test_the_file_copied_back_restores_every_action(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/sig/action"
    original = mnt.read(f"{t.pid}/sig/action")
    before = own_view(t)
    # Every handler to SIG_DFL (SIGKILL and SIGSTOP's lines as they are).
    write(path, "".join(f"{k} 0x0 {ZERO} 0x0 0x0\n" for k in range(1, 65)).encode())
    assert all(v == f"handler=0x0 flags=0x0 restorer=0x0 mask={ZERO}" for v in own_view(t).values())
    write(path, original.encode())
    assert own_view(t) == before
    assert mnt.read(f"{t.pid}/sig/action") == original
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/errors").endswith("sig/action: unchanged\n")


def test_ignoring_a_signal_discards_what_is_pending_of_it(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """As the process's own sigaction(SIG_IGN) would (POSIX)."""
    t = spawn("handlers")
    f = t.sigmask_fields()
    assert f["SigPnd"] & f["ShdPnd"] & 1 << (SIGUSR2 - 1)
    write(f"{mnt.path}/{t.pid}/sig/action", f"SIGUSR2 0x0 {ZERO} 0x1 0x0\n".encode())
    f = t.sigmask_fields()
    assert not (f["SigPnd"] | f["ShdPnd"]) & 1 << (SIGUSR2 - 1)
    assert own_view(t)[SIGUSR2] == f"handler=0x1 flags=0x0 restorer=0x0 mask={ZERO}"


def test_a_frozen_process_and_one_refusing_the_stub(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """Frozen, and under a seccomp filter (the sigactions are then read one
    injected syscall each): the same write, the same result."""
    for args in ((), ("seccomp",)):
        t = spawn("handlers", *args)
        ctl = f"{mnt.path}/{t.pid}/ctl"
        write(ctl, b"freeze\n")
        try:
            write(f"{mnt.path}/{t.pid}/sig/action", f"SIGUSR1 0x0 {ZERO} 0x1 0x0\n".encode())
        finally:
            write(ctl, b"thaw\n")
        assert own_view(t)[SIGUSR1] == f"handler=0x1 flags=0x0 restorer=0x0 mask={ZERO}"
        os.kill(t.pid, signal.SIGUSR1)  # ignored now
        assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def _bad(t) -> list[tuple[bytes, str, bool]]:  # type: ignore[no-untyped-def]
    h1 = int(t.ready_info["h1"], 16)
    heap = int(t.ready_info["altstack"], 16)
    r = "0x" + format(h1, "x")  # executable, but it is checked as a restorer too
    return [
        (b"10 0x0 " + ZERO.encode() + b" 0x1\n", "expected 5 fields", False),
        (f"65 0x0 {ZERO} 0x0 0x0\n".encode(), "out of range 1..64", False),
        (f"SIGFOO 0x0 {ZERO} 0x0 0x0\n".encode(), "unknown signal", False),
        (f"10 0x0 {ZERO} 0x1 0x0\n10 0x0 {ZERO} 0x0 0x0\n".encode(), "given twice", False),
        (f"SIGKILL 0x0 {ZERO} 0x1 0x0\n".encode(), "SIGKILL's action cannot be changed", False),
        (
            f"10 0x4000000 {render_bitmap(1 << 8)} {h1:#x} {r}\n".encode(),
            "SIGKILL and SIGSTOP cannot be in a mask",
            False,
        ),
        (f"10 0x4000400 {ZERO} {h1:#x} {r}\n".encode(), "flags 0x400 are not kept", False),
        (f"10 0x0 {ZERO} {h1:#x} 0x0\n".encode(), "without SA_RESTORER", False),
        (f"10 0x4000000 {ZERO} {heap:#x} {r}\n".encode(), "not in executable memory", False),
        (f"10 0x4000000 {ZERO} {h1:#x} 0x1000\n".encode(), "restorer 0x1000 is not", False),
        (f"10 0x0 {ZERO} 0x1 0x0\n".encode(), "use >", True),
        (b"10 0x0 \xff\n", "not UTF-8 text (byte 8)", False),
        (b"# nothing\n", "end of input", False),
        # Over 1 MiB: FUSE hands it over in pieces, the first already refused.
        (b"#" * (1024 * 1024 + 1), "line 1: line is longer than 1024", False),
    ]


def test_bad_input_is_refused_and_changes_nothing(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    before = own_view(t)
    pending = t.sigmask_fields()
    for data, message, append in _bad(t):
        with pytest.raises(OSError) as info:
            write(f"{mnt.path}/{t.pid}/sig/action", data, append)
        assert info.value.errno == errno.EINVAL, message
        last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert "sig/action: write refused:" in last and message in last, (message, last)
    assert own_view(t) == before
    assert t.sigmask_fields() == pending
