"""sigfs benchmarks: latencies through a real mount, as ratios to baselines
measured in the same run (never absolute thresholds).

    make bench            # or: .venv/bin/python benchmarks/run.py [--n N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
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


def start_target(name: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([str(build(name)), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{name} exited before ready")
        if line.startswith("ready"):
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
        floor = read_latency(f"{m.path}/version", n)
        kernel = read_latency(f"/proc/{pid}/status", n)
        blocked = read_latency(f"{base}/sig/blocked", n)
        s0 = stats(m.path)
        pending = read_latency(f"{base}/sig/pending", n)
        s1 = stats(m.path)
        shared = read_latency(f"{base}/sig/shared_pending", n)
        stops = s1["stops"] - s0["stops"]
        stopped = (s1["stopped_seconds"] - s0["stopped_seconds"]) / max(stops, 1)
        action = read_latency(f"{base}/sig/action", max(n // 20, 20))
        us = 1e6
        print(f"signal files, median of {n} open+read+close (us; ratio to the FUSE floor):")
        print(f"  /proc/PID/status (kernel)   {kernel * us:8.1f}  {kernel / floor:5.2f}x")
        print(f"  constant file (FUSE floor)  {floor * us:8.1f}  1.00x")
        print(f"  sig/blocked                 {blocked * us:8.1f}  {blocked / floor:5.2f}x"
              "   (aim <= 1.3x)")
        print(f"  sig/pending (1 queued)      {pending * us:8.1f}  {pending / floor:5.2f}x"
              "   (aim <= 2x)")
        print(f"  sig/shared_pending (1)      {shared * us:8.1f}  {shared / floor:5.2f}x")
        print(f"  sig/action (64 injected)    {action * us:8.1f}  {action / floor:5.2f}x")
        print(f"  target stopped per pending read: {stopped * us:.1f} us over {stops:.0f} stops"
              "   (aim < 100 us)")
    finally:
        target.kill()
        target.wait()
        assert target.stdout is not None and target.stdin is not None
        target.stdout.close()
        target.stdin.close()
        stop_mount(m)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000, help="reads per measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it mounts and traces)", file=sys.stderr)
        return 1
    bench_signal_files(args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
