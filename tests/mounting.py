"""Start and stop real sigfs mounts for tests (a daemon in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sigfs.procfs import is_mounted

SIGFS = str(Path(sys.executable).parent / "sigfs")


@dataclass
class Mount:
    path: str
    proc: subprocess.Popen[bytes]
    log_path: str

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def read(self, rel: str) -> str:
        with open(os.path.join(self.path, rel)) as f:
            return f.read()

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_mount(
    path: str | None = None, options: tuple[str, ...] = (), debug: bool = False
) -> Mount:
    path = path or tempfile.mkdtemp(prefix="sigfs-mnt-")
    log_fd, log_path = tempfile.mkstemp(prefix="sigfs-log-")
    cmd = [SIGFS, "mount", path, "-f"]
    if debug:
        cmd.append("-d")
    if options:
        cmd += ["-o", ",".join(options)]
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=log_fd, stdin=subprocess.DEVNULL)
    os.close(log_fd)
    m = Mount(path, proc, log_path)
    deadline = time.monotonic() + 20
    while not os.path.ismount(path):
        if proc.poll() is not None:
            raise RuntimeError(f"sigfs daemon exited ({proc.returncode}): {m.log()}")
        if time.monotonic() > deadline:
            stop_mount(m)
            raise RuntimeError(f"sigfs did not mount within 20 s: {m.log()}")
        time.sleep(0.02)
    return m


def stop_mount(m: Mount) -> None:
    if is_mounted(m.path):
        subprocess.run(["fusermount3", "-u", "-z", m.path], capture_output=True)
    try:
        m.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        m.proc.kill()
        m.proc.wait()
    try:
        os.rmdir(m.path)
    except OSError:
        pass
    try:
        os.unlink(m.log_path)
    except OSError:
        pass
