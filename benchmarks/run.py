"""sigfs benchmarks: latencies through a real mount, as ratios to baselines
measured in the same run (never absolute thresholds).

    make bench            # or: .venv/bin/python benchmarks/run.py [--n N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "targets"))

from build import build  # noqa: E402
from mounting import start_mount, stop_mount  # noqa: E402


def stop_target(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stdin):
        if pipe is not None:
            pipe.close()


def interleaved_latency(paths: list[str], n: int) -> list[float]:
    """Median seconds of open+read+close for each path, measured round-robin
    (one read of each per round) so all see the same machine conditions."""
    samples: list[list[float]] = [[] for _ in paths]
    for _ in range(n):
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            fd = os.open(path, os.O_RDONLY)
            os.read(fd, 65536)
            os.close(fd)
            samples[i].append(time.perf_counter() - t0)
    return [statistics.median(s) for s in samples]


def read_latency(path: str, n: int) -> float:
    """Median seconds of open+read+close."""
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 65536)
        os.close(fd)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def stats(mount: str) -> dict[str, float]:
    out = {}
    for line in open(os.path.join(mount, "stats")):
        k, v = line.split()
        out[k] = float(v)
    return out


target_ready: dict[int, str] = {}


def start_target(name: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [str(build(name)), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} exited before ready")
        if line.startswith("ready"):
            target_ready[proc.pid] = line.strip()
            return proc


def bench_signal_files(n: int) -> None:
    m = start_mount()
    target = start_target("forker")
    try:
        pid = target.pid
        libc = ctypes.CDLL(None)
        libc.syscall(234, pid, pid, signal.SIGUSR1)  # tgkill: a private queue entry
        base = f"{m.path}/{pid}"
        for p in (f"{m.path}/version", f"{base}/sig/blocked", f"{base}/sig/pending"):
            read_latency(p, 50)  # warm up
        s0 = stats(m.path)
        floor, kernel, blocked, pending, shared = interleaved_latency(
            [
                f"{m.path}/version",
                f"/proc/{pid}/status",
                f"{base}/sig/blocked",
                f"{base}/sig/pending",
                f"{base}/sig/shared_pending",
            ],
            n,
        )
        s1 = stats(m.path)
        stops = s1["stops"] - s0["stops"]
        stopped = (s1["stopped_seconds"] - s0["stopped_seconds"]) / max(stops, 1)
        asked = (
            s1["mean_stop_wait_us"] * s1["stops"] - s0["mean_stop_wait_us"] * s0["stops"]
        ) / max(stops, 1)
        action = read_latency(f"{base}/sig/action", max(n // 20, 20))
        us = 1e6
        print(
            f"signal files, median of {n} open+read+close each, interleaved "
            "(us; ratio to the FUSE floor):"
        )
        print(f"  /proc/PID/status (kernel)   {kernel * us:8.1f}  {kernel / floor:5.2f}x")
        print(f"  constant file (FUSE floor)  {floor * us:8.1f}  1.00x")
        print(
            f"  sig/blocked                 {blocked * us:8.1f}  {blocked / floor:5.2f}x"
            "   (aim <= 1.3x)"
        )
        print(
            f"  sig/pending (1 queued)      {pending * us:8.1f}  {pending / floor:5.2f}x"
            "   (aim <= 2x)"
        )
        print(f"  sig/shared_pending (1)      {shared * us:8.1f}  {shared / floor:5.2f}x")
        print(f"  sig/action (injected stub)   {action * us:8.1f}  {action / floor:5.2f}x")
        print(
            f"  target stopped per stop: {stopped * us:.1f} us over {stops:.0f} stops; "
            f"{asked:.1f} us from PTRACE_INTERRUPT until seen stopped"
            "   (aim < 100 us)"
        )
        writes = write_latencies(base, max(n // 10, 50))
        print(
            f"writes, median of {max(n // 10, 50)} open+write+close each (us; ratio to the floor):"
        )
        for name, seconds in writes:
            print(f"  {name:<34}{seconds * us:8.1f}  {seconds / floor:5.2f}x")
    finally:
        stop_target(target)
        stop_mount(m)


def write_latencies(base: str, n: int) -> list[tuple[str, float]]:
    """Median seconds of open+write+close for each writable file, with a
    write that changes the process and one that puts it back, in turns (so
    the process ends as it began)."""

    def once(rel: str, data: bytes, append: bool = False) -> float:
        flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)
        t0 = time.perf_counter()
        fd = os.open(f"{base}/{rel}", flags)
        os.write(fd, data)
        os.close(fd)
        return time.perf_counter() - t0

    with open(f"{base}/sig/action") as f:
        usr2 = next(line for line in f if line.startswith("12 "))
    with open(f"{base}/sig/altstack") as f:
        altstack = f.read().encode()
    with open(f"{base}/status") as f:
        umask = next(line for line in f if line.startswith("umask ")).encode()
    with open(f"{base}/regs") as f:
        rax = next(line for line in f if line.startswith("rax ")).encode()
    cases = [
        (
            "sig/blocked (+SIG, -SIG)",
            ("sig/blocked", b"+SIGTERM\n", False),
            ("sig/blocked", b"-SIGTERM\n", False),
        ),
        (
            "sig/pending (>> a signal, > empty)",
            ("sig/pending", b"SIGUSR2\n", True),  # blocked in the target
            ("sig/pending", b"\n", False),
        ),
        (
            "sig/action (one line, injected)",
            ("sig/action", b"SIGUSR2 ignore\n", False),
            ("sig/action", usr2.encode(), False),
        ),
        (
            "sig/altstack (injected)",
            ("sig/altstack", b"0x0 0 2\n", False),
            ("sig/altstack", altstack, False),
        ),
        ("regs (rax, as it is)", ("regs", rax, False), ("regs", rax, False)),
        (
            "status (umask, injected)",
            ("status", b"umask 0077\n", False),
            ("status", umask, False),
        ),
    ]
    out = []
    for name, change, back in cases:
        samples = []
        for _ in range(n):
            samples.append(once(*change))
            samples.append(once(*back))
        out.append((name, statistics.median(samples)))
    return out


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


def baseline_copy(pid: int, addr: int, size: int, dest: str) -> float:
    """Seconds to copy the target's touched memory to a file with
    process_vm_readv in 1 MiB chunks, from Python: the floor to compare with."""
    libc = ctypes.CDLL(None, use_errno=True)
    chunk = 1 << 20
    buf = ctypes.create_string_buffer(chunk)
    local = _Iovec(ctypes.cast(buf, ctypes.c_void_p), chunk)
    t0 = time.perf_counter()
    with open(dest, "wb") as out:
        for off in range(0, size, chunk):
            remote = _Iovec(addr + off, chunk)
            n = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
            if n != chunk:
                raise OSError(ctypes.get_errno(), "process_vm_readv")
            out.write(memoryview(buf)[:n])
    return time.perf_counter() - t0


def run_checkpoint(pid: int, dest: str, *extra: str) -> tuple[float, float, int]:
    """(wall seconds, frozen seconds, peak RSS KiB) of one `sigfs checkpoint`.

    The peak RSS is the command's own VmHWM, which ``--timings`` prints: the
    ru_maxrss of a child started with vfork (as subprocess does) would also
    count this benchmark's own memory, carried over exec."""
    sigfs = str(Path(sys.executable).parent / "sigfs")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sigfs, "checkpoint", str(pid), dest, "--leave-running", "--timings", *extra],
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    if "--pre-copy" in extra and (
        "--pre-copy:" in proc.stderr or "pages copied again)" not in proc.stderr
    ):
        # A fallback to a plain checkpoint would be measured under the
        # pre-copy's name.
        raise RuntimeError(f"the pre-copy was not done:\n{proc.stderr}")
    frozen = float(proc.stderr.split("frozen ")[1].split(" ms")[0]) / 1e3
    peak_mib = float(proc.stderr.split("peak RSS ")[1].split(" MiB")[0])
    return wall, frozen, int(peak_mib * 1024)


# `--pre-copy` needs page frames in the pagemap (CAP_SYS_ADMIN); without
# them its columns are left empty (nan).
PRE_COPY = os.geteuid() == 0


def bench_checkpoint(sizes: list[int], runs: int) -> None:
    import shutil
    import tempfile

    print(
        f"\ncheckpoint (--leave-running), median of {runs} runs; baseline: process_vm_readv "
        "of the same memory to a file, same run:"
    )
    print(
        f"  {'MiB':>5} {'checkpoint ms':>14} {'frozen ms':>10} {'baseline ms':>12} "
        f"{'ratio':>6} {'peak RSS MiB':>13}   {'--pre-copy ms':>13} {'frozen ms':>10}"
    )
    # tmpfs, so both sides measure memory copies, not the disk.
    work = tempfile.mkdtemp(prefix="sigfs-bench-", dir="/dev/shm")
    try:
        for mib in sizes:
            target = start_target("mem", str(mib))
            try:
                info = dict(kv.split("=") for kv in target_ready[target.pid].split()[1:])
                addr, size = int(info["addr"], 16), int(info["size"])
                walls, frozens, rss, bases, pre_walls, pre_frozens = [], [], [], [], [], []
                for i in range(runs):
                    dest = f"{work}/img{i}"
                    # Plain and --pre-copy in turns, each first every other
                    # time: neither always meets a warmer target.
                    modes = (False, True) if i % 2 == 0 else (True, False)
                    for pre in modes if PRE_COPY else (False,):
                        w, f, r = run_checkpoint(target.pid, dest, *(["--pre-copy"] if pre else []))
                        (pre_walls if pre else walls).append(w)
                        (pre_frozens if pre else frozens).append(f)
                        if not pre:
                            rss.append(r)
                        shutil.rmtree(dest)
                    bases.append(baseline_copy(target.pid, addr, size, f"{work}/base"))
                    os.unlink(f"{work}/base")
                w, f, b = (statistics.median(x) for x in (walls, frozens, bases))
                pw = statistics.median(pre_walls) if pre_walls else float("nan")
                pf = statistics.median(pre_frozens) if pre_frozens else float("nan")
                print(
                    f"  {mib:>5} {w * 1e3:>14.1f} {f * 1e3:>10.1f} {b * 1e3:>12.1f} "
                    f"{w / b:>5.1f}x {max(rss) / 1024:>13.1f}   {pw * 1e3:>13.1f} {pf * 1e3:>10.1f}"
                )
            finally:
                stop_target(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        "  (peer: CRIU 4.2 dumps 1/64/512 MiB in about 50/87/377 ms and keeps a 64 MiB "
        "target frozen about 41 ms on this machine class)"
    )


def bench_pages_memory(mib: int) -> None:
    """The daemon's peak memory while `pages` of a large process streams through."""
    m = start_mount()
    target = start_target("mem", str(mib))
    try:

        def hwm() -> int:
            with open(f"/proc/{m.proc.pid}/status") as f:
                return next(int(x.split()[1]) for x in f if x.startswith("VmHWM"))

        before = hwm()
        t0 = time.perf_counter()
        total = 0
        with open(f"{m.path}/{target.pid}/pages", "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
        dt = time.perf_counter() - t0
        print(
            f"\npages of a {mib} MiB process through the mount: {total >> 20} MiB in "
            f"{dt * 1e3:.0f} ms ({total / dt / 1e9:.2f} GB/s); daemon peak RSS "
            f"{before / 1024:.1f} -> {hwm() / 1024:.1f} MiB"
        )
    finally:
        stop_target(target)
        stop_mount(m)


# `--timings` lines of one file's cost while frozen ("    %8.2f ms  name").
COST_LINE = re.compile(r"^    +(\d+\.\d\d) ms  (.+)$")

# Processes of the shapes that cost a checkpoint per thread, per mapping or
# per descriptor, each printing "ready" once it is set up.
SCALE_SHAPES = {
    "100 threads": (
        "import sys, threading, time\n"
        "for _ in range(100):\n"
        "    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
    ),
    "5000 mappings": (
        "import mmap, sys\n"
        "rw = mmap.PROT_READ | mmap.PROT_WRITE\n"
        "maps = [mmap.mmap(-1, 8192, prot=rw if i % 2 else mmap.PROT_READ) for i in range(5000)]\n"
        "for m in maps[1::2]: m[0:1] = b'x'\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
    ),
    "1000 fds": (
        "import os, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))\n"
        "fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(1000)]\n"
        "print('ready', flush=True); sys.stdin.readline()\n"
    ),
}


def bench_scale(runs: int) -> None:
    """`sigfs checkpoint --leave-running` of processes with many threads,
    mappings or descriptors: the costs that grow with each (no baseline: the
    table shows where the frozen time goes)."""
    import shutil
    import tempfile

    print(f"\ncheckpoint of large shapes (--leave-running), median of {runs} runs:")
    print(f"  {'shape':<15} {'checkpoint ms':>14} {'frozen ms':>10}  largest costs while frozen")
    work = tempfile.mkdtemp(prefix="sigfs-bench-", dir="/dev/shm")
    sigfs = str(Path(sys.executable).parent / "sigfs")
    try:
        for shape, code in SCALE_SHAPES.items():
            proc = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
                walls, frozens, costs = [], [], {}
                for i in range(runs):
                    dest = f"{work}/img{i}"
                    t0 = time.perf_counter()
                    res = subprocess.run(
                        [sigfs, "checkpoint", str(proc.pid), dest, "--leave-running", "--timings"],
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    walls.append(time.perf_counter() - t0)
                    if res.returncode != 0:
                        raise RuntimeError(res.stderr)
                    frozens.append(float(res.stderr.split("frozen ")[1].split(" ms")[0]))
                    for line in res.stderr.splitlines():
                        m = COST_LINE.match(line)  # a file's cost, not a phase
                        if m:
                            costs.setdefault(m[2], []).append(float(m[1]))
                    shutil.rmtree(dest)
                top = sorted(costs.items(), key=lambda kv: -statistics.median(kv[1]))[:3]
                shown = ", ".join(f"{name} {statistics.median(v):.1f}" for name, v in top)
                print(
                    f"  {shape:<15} {statistics.median(walls) * 1e3:>14.1f} "
                    f"{statistics.median(frozens):>10.1f}  {shown}"
                )
            finally:
                stop_target(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="reads per measurement")
    ap.add_argument("--runs", type=int, default=7, help="checkpoints per size")
    ap.add_argument("--sizes", default="1,64,512", help="checkpoint sizes in MiB")
    ap.add_argument(
        "--only",
        choices=("signal", "checkpoint", "scale", "pages"),
        help="run one part (default: all four)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it mounts and traces)", file=sys.stderr)
        return 1
    if args.only in (None, "signal"):
        bench_signal_files(args.n)
    if args.only in (None, "checkpoint"):
        bench_checkpoint([int(x) for x in args.sizes.split(",")], args.runs)
    if args.only in (None, "scale"):
        bench_scale(args.runs)
    if args.only in (None, "pages"):
        bench_pages_memory(1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
