#!/usr/bin/env python3
"""Compile the C test targets in tests/targets/*.c into tests/targets/bin/.

Usable three ways:

* from tests/conftest.py (the ``target_bin`` fixture) and other Python code::

      build("counter")   # -> Path of tests/targets/bin/counter
      build_all()        # -> list of Paths, one per tests/targets/*.c

* as a script, e.g. from a demo or a benchmark::

      python tests/targets/build.py counter sleeper   # prints one path per line
      python tests/targets/build.py                   # builds (and prints) all

A binary is only rebuilt when its source, a header here, or this file is newer than it. Builds
are serialised with a per-target ``flock`` and the compiler writes to a temporary
file that is renamed into place, so parallel test runs never see a half-written
binary.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from pathlib import Path

TARGETS_DIR = Path(__file__).resolve().parent
BIN_DIR = TARGETS_DIR / "bin"
CC = os.environ.get("CC", "gcc")
CFLAGS = ["-O1", "-g", "-Wall", "-Werror", "-pthread"]

__all__ = ["BIN_DIR", "TARGETS_DIR", "BuildError", "binary", "build", "build_all", "names"]


class BuildError(RuntimeError):
    """The compiler failed; the message holds its command line and output."""


def names() -> list[str]:
    """Names of all targets (the stems of tests/targets/*.c), sorted."""
    return sorted(p.stem for p in TARGETS_DIR.glob("*.c"))


def source(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad target name {name!r}")
    src = TARGETS_DIR / f"{name}.c"
    if not src.is_file():
        raise FileNotFoundError(f"no such target source: {src}")
    return src


def binary(name: str) -> Path:
    """Where the binary for target *name* lives (whether or not it is built)."""
    return BIN_DIR / name


def _up_to_date(src: Path, out: Path) -> bool:
    try:
        built = out.stat().st_mtime_ns
    except FileNotFoundError:
        return False
    headers = [h.stat().st_mtime_ns for h in TARGETS_DIR.glob("*.h")]
    newest_input = max(src.stat().st_mtime_ns, Path(__file__).stat().st_mtime_ns, *headers)
    return built >= newest_input


def build(name: str) -> Path:
    """Compile tests/targets/<name>.c if needed and return the binary's path."""
    src = source(name)
    out = binary(name)
    if _up_to_date(src, out):
        return out
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    # Targets may run as an unprivileged user (spawn(..., user=...)): keep the
    # directory and binaries world-executable whatever the umask.
    if BIN_DIR.stat().st_mode & 0o755 != 0o755:
        with contextlib.suppress(PermissionError):
            os.chmod(BIN_DIR, 0o755)
    with open(BIN_DIR / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Somebody else may have built it while we waited for the lock.
        if _up_to_date(src, out):
            return out
        tmp = BIN_DIR / f".{name}.{os.getpid()}.tmp"
        cmd = [CC, *CFLAGS, "-o", str(tmp), str(src)]
        try:
            res = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
            )
            if res.returncode != 0:
                raise BuildError(
                    f"building target {name!r} failed (exit {res.returncode}):\n"
                    f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}"
                )
            os.chmod(tmp, 0o755)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return out


def build_all() -> list[Path]:
    """Build every target; returns their paths in name order."""
    return [build(n) for n in names()]


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: {sys.argv[0]} [NAME...]  (targets: {' '.join(names())})")
        return 0
    try:
        paths = [build(n) for n in argv] if argv else build_all()
    except (BuildError, FileNotFoundError, ValueError) as e:
        print(e, file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
