"""`sigfs checkpoint --pre-copy`: the memory copied while the process runs,
its writes tracked by userfaultfd's asynchronous write protection
(sigfs.tracking), and only the pages written since copied again while
frozen.  Checked against a target that never stops writing (every page
carries its generation, so a missed write shows as an older one), against
a plain checkpoint of a process that cannot change, and against the
process's own view afterwards (descriptors, mappings, VmFlags, memory)."""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import subprocess
import sys
import time

import pytest
from test_image import _manifest_problems, stop_on_one_cpu, tree_digest
from test_image import checkpoint as run

from sigfs import aio, checkpoint, procfs
from sigfs.formats import pages as pages_fmt
from sigfs.pages import zero_pfn

pytestmark = pytest.mark.skipif(
    not zero_pfn(), reason="pre-copy needs CAP_SYS_ADMIN (page frames in the pagemap)"
)

PAGE = 4096


def run_in_process(pid: int, img: str) -> checkpoint.Result:
    """`checkpoint --pre-copy --leave-running` in this process (so that a
    test can patch what it calls)."""
    prep = checkpoint.prepare(pid, img)
    return aio.run(
        checkpoint.run_checkpoint,
        prep,
        True,
        checkpoint.Progress(False),
        checkpoint.DEFAULT_CHECKSUM,
        True,
    )


def assert_pre_copy_equals_plain(t, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Checkpoint ``t`` plainly and with --pre-copy while it cannot change
    (group-stopped, pinned to one CPU, as in test_image's identical-images
    test): the two images are the same bytes.  Returns the pre-copy's stderr."""
    stop_on_one_cpu(t)
    try:
        plain, pre = str(tmp_path / "plain"), str(tmp_path / "pre")
        res = run(t.pid, plain, "--leave-running")
        assert res.returncode == 0, res.stderr
        res = run(t.pid, pre, "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert "--pre-copy:" not in res.stderr, res.stderr
        assert tree_digest(plain) == tree_digest(pre)
        return res.stderr
    finally:
        os.kill(t.pid, signal.SIGCONT)


def image_memory(img: str) -> dict[int, bytes]:
    """Page address -> bytes, from an image's pages file."""
    with open(os.path.join(img, "pages"), "rb") as f:
        data = f.read()
    out = {}
    for vaddr, npages, _flags, payload in pages_fmt.iter_records(io.BytesIO(data)):
        for i in range(npages):
            out[vaddr + i * PAGE] = bytes(payload[i * PAGE : (i + 1) * PAGE])
    return out


def check_generations(memory: dict[int, bytes], addr: int, pages: int) -> int:
    """The scribbler's invariant (see tests/targets/scribbler.c) in an image;
    returns G, the generations it had written."""
    (g,) = struct.unpack_from("<Q", memory[addr])
    assert g > pages, "the scribbler had not gone round its pages yet"
    for k in range(1, pages):
        want = g - k
        page = memory[addr + PAGE * (1 + want % pages)]
        words = set(struct.unpack(f"<{PAGE // 8}Q", page))
        assert words == {want}, f"page of generation {want} holds {sorted(words)[:3]} (G={g})"
    return g


def wait_round(t, pages: int) -> None:  # type: ignore[no-untyped-def]
    """Until the scribbler has written every page once: before that, each
    first write makes a page present, a layout change."""
    deadline = time.monotonic() + 30
    while True:
        t.send("count")
        if int(t.readline().split()[1]) > 2 * pages:
            return
        assert time.monotonic() < deadline
        time.sleep(0.02)


def assert_manifest_holds(img: str) -> None:
    """Every file's size and checksum in MANIFEST (and no file missing from
    it or extra), and the pages stream whole."""
    assert _manifest_problems(img)[1] == []
    with open(os.path.join(img, "pages"), "rb") as f:
        pages_fmt.scan(f)


def recopied(stderr: str) -> int:
    m = re.search(r"\((\d+) pages copied again\)", stderr)
    assert m, stderr
    return int(m.group(1))


def _anon_huge_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("AnonHugePages:"))


# Writing flat out; a write every 20 us; flat out in transparent huge pages
# (whose write protection the kernel splits at the first write).
@pytest.mark.parametrize("usec,thp", [(0, False), (20, False), (0, True)])
def test_every_page_written_before_the_freeze_is_in_the_image(spawn, tmp_path, usec, thp) -> None:  # type: ignore[no-untyped-def]
    pages = 2048
    t = spawn("scribbler", str(pages), str(usec), *(["thp"] if thp else []))
    addr = int(t.ready_info["addr"], 16)
    wait_round(t, pages)
    if thp and not _anon_huge_kib(t.pid):
        pytest.skip("no transparent huge pages here")
    again = []
    for i in range(3):
        img = str(tmp_path / f"img{i}")
        res = run(t.pid, img, "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert "--pre-copy:" not in res.stderr, res.stderr  # no fallback
        again.append(recopied(res.stderr))
        check_generations(image_memory(img), addr, pages)
    # The writes during the copy were found and copied again (at least the
    # count page, which every generation writes).
    assert all(n >= 1 for n in again), again
    t.send("count")
    assert t.readline().startswith("count ")


def test_without_leave_running_the_process_dies_after_its_image(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    pages = 512
    t = spawn("scribbler", str(pages), "0")
    addr = int(t.ready_info["addr"], 16)
    wait_round(t, pages)
    img = str(tmp_path / "img")
    res = run(t.pid, img, "--pre-copy")
    assert res.returncode == 0, res.stderr
    assert "process killed" in res.stderr and "copied again" in res.stderr, res.stderr
    assert t.proc.wait(timeout=10) == -signal.SIGKILL
    check_generations(image_memory(img), addr, pages)


def test_a_pre_copy_image_equals_a_plain_one(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process that cannot change: the same bytes either way, and nothing
    to copy again but the copied-on-write pages of file mappings, which are
    not tracked."""
    t = spawn("mem", "16")
    stderr = assert_pre_copy_equals_plain(t, tmp_path)
    assert recopied(stderr) < 64  # nothing of the 16 MiB
    t.send("check")
    assert t.readline() == "mem ok"


def _vmflags(pid: int) -> list[str]:
    with open(f"/proc/{pid}/smaps") as f:
        return [ln for ln in f if ln.startswith(("VmFlags", "7", "5"))]


def test_the_process_is_left_as_it_was(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Its descriptors (the userfaultfd was made in it and closed again),
    mappings and their VmFlags (no `uw` left), mask and memory."""
    t = spawn("mem", "8")
    fds = sorted(os.listdir(f"/proc/{t.pid}/fd"))
    flags = _vmflags(t.pid)
    mask = t.status()["SigBlk"]
    for i in range(3):
        res = run(t.pid, str(tmp_path / f"img{i}"), "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds
        after = _vmflags(t.pid)
        assert after == flags
        assert " uw" not in "".join(after)
        assert t.status()["SigBlk"] == mask
        assert t.status()["TracerPid"] == "0"
    t.send("check")
    assert t.readline() == "mem ok"


def checkpoint_with_a_change(t, img: str, command: str, monkeypatch):  # type: ignore[no-untyped-def]
    """`checkpoint --pre-copy --leave-running` in this process, with the
    scribbler sent ``command`` between the pre-copy and the freeze; returns
    the Result and the scribbler's answer."""
    original = checkpoint._pre_copy
    answer: list[str] = []

    async def pre_copy_then_change(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = await original(*args, **kwargs)
        assert result is not None, "no pre-copy"
        t.send(command)
        answer.append(t.readline())
        return result

    monkeypatch.setattr(checkpoint, "_pre_copy", pre_copy_then_change)
    result = run_in_process(t.pid, img)
    return result, answer[0]


def test_a_mapping_made_before_the_freeze_means_a_full_copy(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The layout changed between the pre-copy and the freeze (a new
    mapping): the whole memory is copied again while frozen, and said so."""
    pages = 256
    t = spawn("scribbler", str(pages), "20")
    addr = int(t.ready_info["addr"], 16)
    wait_round(t, pages)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "map", monkeypatch)
    assert line.startswith("mapped "), line
    assert result.recopied is None
    assert any("layout changed" in note for note in result.notes), result.notes
    memory = image_memory(img)
    assert memory[int(line.split()[1], 16)][:1] == b"\x01"  # the new page is in the image
    check_generations(memory, addr, pages)
    assert procfs.read_status(t.pid)["TracerPid"] == "0"


def test_memory_mapped_again_in_place_means_a_full_copy(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """New memory mapped over a tracked mapping (same address, same size:
    the maps read the same) is no longer tracked: the scan refuses it, and
    the stream is made again from its first byte, with the new contents."""
    t = spawn("scribbler", "256", "20")
    spare = int(t.ready_info["spare"], 16)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "remap", monkeypatch)
    assert line == "remapped"
    assert result.recopied is None
    assert any("layout changed" in note for note in result.notes), result.notes
    assert_manifest_holds(img)  # one whole stream, nothing after its trailer
    memory = image_memory(img)
    for i in range(16):
        assert memory[spare + i * PAGE] == b"\x22" * PAGE


def test_most_of_the_memory_written_again_means_a_new_stream(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every page written between the pre-copy and the freeze (with what it
    held): patching 32 MiB page by page would cost more than a new stream,
    so a new one is made, and said so."""
    pages = 8192
    t = spawn("scribbler", str(pages), "20")
    addr = int(t.ready_info["addr"], 16)
    wait_round(t, pages)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "dirty", monkeypatch)
    assert line == "dirtied"
    assert result.recopied is None
    assert any("most of the memory had to be copied" in n for n in result.notes), result.notes
    check_generations(image_memory(img), addr, pages)
    assert_manifest_holds(img)


SHARED_CHILD = """
import mmap, sys
maps = [mmap.mmap(-1, 4096) for _ in range(600)]  # MAP_SHARED: not tracked
for m in maps: m[0:1] = b'x'
print('ready', flush=True); sys.stdin.readline()
"""


def test_mostly_shared_memory_is_copied_while_frozen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Shared memory is copied again at every freeze (another process may
    write it): a process made mostly of it gains nothing from a pre-copy,
    which is dropped, and said so."""
    from conftest import start_python, stop_process

    proc, _ = start_python(SHARED_CHILD)
    try:
        img = str(tmp_path / "img")
        res = run(proc.pid, img, "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert "--pre-copy: most of the memory is shared" in res.stderr, res.stderr
        assert "copied again" not in res.stderr
        assert_manifest_holds(img)
    finally:
        stop_process(proc)


def assert_copied_again(result, img: str, addr: int, pages: int, fill: bytes) -> None:  # type: ignore[no-untyped-def]
    """``pages`` pages at ``addr``, changed to ``fill`` after the pre-copy,
    were copied again while frozen: the image holds what they held then."""
    assert result.recopied is not None and result.recopied >= pages, result.notes
    memory = image_memory(img)
    for i in range(pages):
        assert memory[addr + i * PAGE] == fill * PAGE
    assert_manifest_holds(img)


def test_a_written_page_that_cannot_be_read_remotely(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Pages written and then made PROT_NONE before the freeze: process_vm_readv
    cannot read them, so they are copied again through /proc/PID/mem, with
    what they hold now."""
    t = spawn("scribbler", "64", "20")
    wait_round(t, 64)
    spare = int(t.ready_info["spare"], 16)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "hide", monkeypatch)
    assert line == "hidden"
    assert_copied_again(result, img, spare, 16, b"\x55")


def test_a_tracked_mapping_split_shows_no_uw_in_mm(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    t = spawn("scribbler", "256", "20")
    spare = int(t.ready_info["spare"], 16)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "split", monkeypatch)
    assert line == "split"
    with open(os.path.join(img, "mm")) as f:
        mm = f.read()
    assert f"{spare + 8 * PAGE:x}" in mm  # the second half is its own mapping
    assert not any("uw" in flags.split(",") for flags in re.findall(r"flags=(\S*)", mm))


def test_only_written_pages_are_reported(spawn) -> None:  # type: ignore[no-untyped-def]
    """The tracker itself: the page of the count, which every generation
    writes, is reported; the spare mapping, never written, is not."""
    from sigfs import tracking
    from sigfs.tracer import Tracer

    t = spawn("scribbler", "64", "20")
    addr = int(t.ready_info["addr"], 16)
    spare = int(t.ready_info["spare"], 16)

    async def main() -> list[tuple[int, int]]:
        holder: list[tracking.WriteTracker] = []
        ranges = [(addr, addr + 65 * PAGE), (spare, spare + 16 * PAGE)]
        tracker = await tracking.start(Tracer(), t.pid, ranges, holder)
        assert holder == [tracker]
        try:
            assert tracker.ranges == [(addr, addr + 65 * PAGE), (spare, spare + 16 * PAGE)]
            await aio.sleep(0.05)
            return tracker.written()
        finally:
            tracker.stop()

    written = aio.run(main)
    assert any(lo <= addr < hi for lo, hi in written), written
    assert not any(lo < spare + 16 * PAGE and spare < hi for lo, hi in written), written


def test_a_large_reservation_costs_no_page_tables(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Write-protecting a whole range would put a marker in every empty
    entry, page tables and all: 16 GiB of reservation would cost 32 MiB of
    them.  Only populated entries are protected."""
    t = spawn("scribbler", "64", "20")
    wait_round(t, 64)
    t.send("reserve")
    assert t.readline().startswith("reserved ")
    before = int(t.status()["VmPTE"].split()[0])
    res = run(t.pid, str(tmp_path / "img"), "--leave-running", "--pre-copy")
    assert res.returncode == 0, res.stderr
    assert "--pre-copy:" not in res.stderr, res.stderr
    after = int(t.status()["VmPTE"].split()[0])
    assert after - before < 1024, (before, after)  # KiB


def test_a_mapping_that_cannot_be_tracked_is_copied_again_whole(
    spawn, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """MAP_DROPPABLE memory (glibc's getrandom state) cannot be registered:
    it is left untracked and copied again while frozen, so what it held at
    the freeze is in the image, not what the pre-copy saw."""
    t = spawn("scribbler", "64", "20")
    wait_round(t, 64)  # else a page touched first during the copy is a new layout
    t.send("droppable")
    line = t.readline()
    if line == "droppable none":
        pytest.skip("no MAP_DROPPABLE on this kernel")
    dropp = int(line.split()[1], 16)
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "redrop", monkeypatch)
    assert line == "redropped"
    assert_copied_again(result, img, dropp, 4, b"\x44")


IO_URING_CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # io_uring_setup
print("ready", fd, flush=True)
sys.stdin.readline()
"""


def test_a_process_with_io_uring_is_copied_while_frozen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The kernel writes an io_uring's buffers through pinned pages, without
    the fault that write protection sees: no pre-copy, and a line says why."""
    from conftest import start_python, stop_process

    proc, words = start_python(IO_URING_CHILD)
    try:
        if int(words[1]) < 0:
            pytest.skip("no io_uring here")
        res = run(proc.pid, str(tmp_path / "img"), "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert "--pre-copy: the process has anon_inode:[io_uring] open," in res.stderr, res.stderr
        assert "copied again" not in res.stderr
    finally:
        stop_process(proc)


def test_a_process_under_seccomp_is_copied_while_frozen(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No userfaultfd is injected into a process with a seccomp filter (the
    filter might kill it for that): one line says so, and the image is made
    the usual way."""
    t = spawn("handlers", "seccomp")
    assert procfs.read_status(t.pid)["Seccomp"] == "2"
    fds = sorted(os.listdir(f"/proc/{t.pid}/fd"))
    res = run(t.pid, str(tmp_path / "img"), "--leave-running", "--pre-copy")
    assert res.returncode == 0, res.stderr
    assert "--pre-copy: the process runs under seccomp" in res.stderr
    assert "copied again" not in res.stderr
    assert os.path.exists(tmp_path / "img" / "MANIFEST")
    assert sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds
    t.send("counts")
    assert t.readline().startswith("counts ")


GUARD_CHILD = """
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
m = mmap.mmap(-1, 4 * 4096)
m[:] = b"\\x07" * (4 * 4096)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
MADV_GUARD_INSTALL = 102
ok = libc.madvise(ctypes.c_void_p(addr + 4096), 4096, MADV_GUARD_INSTALL) == 0
print("ready", hex(addr), int(ok), flush=True)
sys.stdin.readline()
"""


def test_a_guard_page_is_no_page(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A guard page (MADV_GUARD_INSTALL, Linux 6.13+) is a marker in the page
    table that the pagemap shows as a swap entry: it holds no data and must
    not be read (that faults)."""
    from conftest import start_python, stop_process

    proc, words = start_python(GUARD_CHILD)
    try:
        if words[2] != "1":
            pytest.skip("no MADV_GUARD_INSTALL on this kernel")
        addr = int(words[1], 16)
        img = str(tmp_path / "img")
        res = run(proc.pid, img, "--leave-running")
        assert res.returncode == 0, res.stderr
        memory = image_memory(img)
        assert addr + PAGE not in memory  # the guard page
        for page in (addr, addr + 2 * PAGE, addr + 3 * PAGE):
            assert memory[page] == b"\x07" * PAGE
    finally:
        stop_process(proc)


def test_a_many_threaded_process(spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Ten threads with their own stacks and altstacks: the same image as a
    plain checkpoint while the process cannot change, and every thread
    keeps its mask and pending signal afterwards."""
    t = spawn("threads", "10")
    before = {tid: (t.status(tid)["SigBlk"], t.status(tid)["SigPnd"]) for tid in t.tids()}
    assert_pre_copy_equals_plain(t, tmp_path)
    after = {tid: (t.status(tid)["SigBlk"], t.status(tid)["SigPnd"]) for tid in t.tids()}
    assert after == before


def _uffd_held(pid: int) -> bool:
    """Whether process ``pid`` (the checkpoint command) holds a userfaultfd."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:[userfaultfd]":
                return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize("phase", ["tracking", "frozen"])
def test_an_interrupted_pre_copy_leaves_the_process_as_it_was(spawn, tmp_path, phase) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C while the writes are tracked (the copy while the process runs)
    or while it is frozen with them tracked: the process runs on untraced
    with its own descriptors, mappings (no `uw` left), mask and memory, and
    no DIR.partial is left.  The moment is found by watching the command
    hold its userfaultfd (and, for frozen, the process traced)."""
    hits = 0
    for i in range(12):
        t = spawn("mem", "256")
        mask = t.status()["SigBlk"]
        fds = sorted(os.listdir(f"/proc/{t.pid}/fd"))
        flags = _vmflags(t.pid)
        img = str(tmp_path / f"img{i}")
        sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
        cmd = [sigfs, "checkpoint", str(t.pid), img, "--leave-running", "--pre-copy"]
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        hit = False
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            if _uffd_held(proc.pid) and (
                phase == "tracking" or procfs.read_status(t.pid)["TracerPid"] != "0"
            ):
                proc.send_signal(signal.SIGINT)
                hit = True
                break
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        assert not os.path.exists(img + ".partial"), err
        assert proc.returncode in (0, -signal.SIGINT), err
        if hit and proc.returncode == -signal.SIGINT:
            hits += 1
        st = t.status()
        assert st["TracerPid"] == "0", st
        assert not st["State"].startswith(("t", "T")), st["State"]
        assert st["SigBlk"] == mask
        assert sorted(os.listdir(f"/proc/{t.pid}/fd")) == fds
        assert _vmflags(t.pid) == flags
        t.send("check")
        assert t.readline(timeout=10) == "mem ok"
        t.close()  # 256 MiB each: do not keep them all
        if hits >= 3:
            break
    assert hits >= 1, f"never interrupted in the {phase} phase"


AIO_CHILD = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
ctx = ctypes.c_ulong(0)
rc = libc.syscall(206, 8, ctypes.byref(ctx))  # io_setup: a ring, no descriptor
print("ready", rc, flush=True)
sys.stdin.readline()
"""

RING_CHILD = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long)
params = ctypes.create_string_buffer(120)
fd = libc.syscall(425, 4, params)  # io_uring_setup
if fd >= 0:
    # The SQ ring (offset 0), by libc: Python's mmap would keep a dup of fd.
    ring = libc.mmap(None, 4096, 3, 1, fd, 0)  # PROT_READ|WRITE, MAP_SHARED
    os.close(fd)  # the ring lives on in the mapping, with no descriptor
    assert not any(os.readlink(f"/proc/self/fd/{n}").startswith("anon_inode:[io_uring]")
                   for n in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{n}"))
print("ready", fd, flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("child,what", [(AIO_CHILD, "/[aio]"), (RING_CHILD, "[io_uring]")])
def test_kernel_writes_without_a_descriptor_are_seen_too(tmp_path, child, what) -> None:  # type: ignore[no-untyped-def]
    """Kernel AIO has no descriptor, and an io_uring outlives its descriptor
    in its mapped rings: both are found in the maps, and refused."""
    from conftest import start_python, stop_process

    proc, words = start_python(child)
    try:
        if int(words[1]) < 0:
            pytest.skip("not available here")
        res = run(proc.pid, str(tmp_path / "img"), "--leave-running", "--pre-copy")
        assert res.returncode == 0, res.stderr
        assert "--pre-copy: the process has " in res.stderr and what in res.stderr, res.stderr
        assert "copied again" not in res.stderr
    finally:
        stop_process(proc)


def test_a_stack_grown_before_the_freeze_shows_no_uw(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The stack grew down past the range registered: the mapping now starts
    below it, and its `uw` (sigfs's) is still left out of `mm`."""
    t = spawn("scribbler", "64", "20")
    img = str(tmp_path / "img")
    result, line = checkpoint_with_a_change(t, img, "grow", monkeypatch)
    assert line == "grown"
    with open(os.path.join(img, "mm")) as f:
        mm = f.read()
    stack = [ln for ln in mm.splitlines() if "[stack]" in ln]
    assert stack, mm
    assert not any("uw" in flags.split(",") for flags in re.findall(r"flags=(\S*)", mm)), stack
    assert_manifest_holds(img)


def test_a_new_stream_made_at_the_freeze_equals_a_plain_image(spawn, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """When the patch is refused the stream is made again from its first
    byte: the image, MANIFEST included, is a plain checkpoint's."""
    from sigfs import pages

    t = spawn("mem", "16")
    stop_on_one_cpu(t)
    try:
        plain, pre = str(tmp_path / "plain"), str(tmp_path / "pre")
        res = run(t.pid, plain, "--leave-running")
        assert res.returncode == 0, res.stderr

        def refuse(self, *args):  # type: ignore[no-untyped-def]
            self.refused = "layout"
            return None

        monkeypatch.setattr(pages.PagesStream, "patch", refuse)
        result = run_in_process(t.pid, pre)
        assert result.recopied is None and result.notes, result.notes
        assert tree_digest(plain) == tree_digest(pre)
    finally:
        os.kill(t.pid, signal.SIGCONT)
