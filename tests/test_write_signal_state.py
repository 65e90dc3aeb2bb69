"""The state of a checkpoint image written back into the process, in
the order the README gives, after every piece of it was changed: each file
then reads as in the image, and the process's own view is as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_file as write

from sigfs.formats.sigset import render_bitmap

pytestmark = pytest.mark.mount

SIGFS = str(Path(sys.executable).parent / "sigfs")
# The README's order: handlers and stacks before anything can be delivered,
# the mask before the queues it holds back.
ORDER = ["sig/altstack", "sig/action", "sig/blocked", "sig/shared_pending", "sig/pending"]


def checkpoint(pid: int, image: Path) -> Path:
    subprocess.run(
        [SIGFS, "checkpoint", str(pid), str(image), "--leave-running", "--quiet"],
        check=True,
        timeout=60,
    )
    return image


def own_view(t) -> list[str]:  # type: ignore[no-untyped-def]
    t.send("dump")
    lines = []
    while (line := t.readline()) != "end":
        lines.append(line)
    return lines


def test_an_image_s_signal_state_written_back_in_order(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    image = checkpoint(t.pid, tmp_path / "img")
    before = own_view(t)
    d = f"{mnt.path}/{t.pid}"
    # Everything changed: queues emptied, nothing blocked, no altstack,
    # every action back to SIG_DFL.
    write(f"{d}/sig/shared_pending", b"\n")
    write(f"{d}/sig/pending", b"\n")
    write(f"{d}/sig/blocked", b"\n")
    write(f"{d}/sig/altstack", b"0x0 0 2\n")
    zero = render_bitmap(0)
    write(f"{d}/sig/action", "".join(f"{k} 0x0 {zero} 0x0 0x0\n" for k in range(1, 65)).encode())
    changed = own_view(t)
    assert changed != before
    for rel in ORDER:
        write(f"{d}/{rel}", (image / rel).read_bytes())
    for rel in ORDER:
        assert mnt.read(f"{t.pid}/{rel}") == (image / rel).read_text(), rel
    assert own_view(t) == before
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def test_an_image_s_thread_state_written_back_into_the_frozen_process(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Settings, signal state, FPU and registers changed while frozen (rax
    and orig_rax set to make its read return EINTR), then the image's files
    written back in the README's order: every file reads as in the image,
    and after the thaw the process runs on."""
    from sigfs.formats import fpu as fpu_fmt

    t = spawn("handlers")
    image = checkpoint(t.pid, tmp_path / "img")
    before = own_view(t)
    d = f"{mnt.path}/{t.pid}"
    write(f"{d}/ctl", b"freeze\n")
    try:
        write(f"{d}/status", b"comm changed\numask 0077\nnice 3\n")
        write(f"{d}/sig/shared_pending", b"\n")
        write(f"{d}/sig/blocked", b"\n")
        blob = bytearray(fpu_fmt.parse(mnt.read(f"{t.pid}/fpu")).xsave)
        blob[160:176] = bytes(range(16))  # xmm0
        write(f"{d}/fpu", fpu_fmt.render(fpu_fmt.Fpu(bytes(blob))).encode())
        write(f"{d}/regs", b"rax -4\norig_rax -1\n")
        order = ["status", *ORDER, "fpu", "regs"]
        assert any(mnt.read(f"{t.pid}/{rel}") != (image / rel).read_text() for rel in order)
        for rel in order:
            write(f"{d}/{rel}", (image / rel).read_bytes())
        for rel in order:
            assert mnt.read(f"{t.pid}/{rel}") == (image / rel).read_text(), rel
    finally:
        write(f"{d}/ctl", b"thaw\n")
    assert own_view(t) == before
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"
    assert t.status()["Name"] == "handlers" and t.status()["Umask"] == "0022"
