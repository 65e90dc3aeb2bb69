"""Mounting: the daemon's life from ``mount`` to the last detach.

``run_mount`` forks before any thread exists: the child mounts, tells the
parent over a pipe whether that worked, and serves; the parent waits until the
mount answers a stat() and exits 0, or prints the child's one-line error and
exits non-zero.  That is what mount.fuse3 (``sigfs MNT -o OPTS``) expects.

On unmount, SIGTERM, SIGINT or SIGHUP the daemon stops serving, detaches every
thread it holds (shielded, so no thread is left half-restored) and unmounts.
On SIGKILL the kernel detaches its tracees itself: sigfs never stops a thread
with SIGSTOP and never sets PTRACE_O_EXITKILL on a live process, so they run on.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Iterable

import pyfuse3
import trio

from sigfs import procfs
from sigfs.fs import SigFS
from sigfs.tracerd import TracerClient

log = logging.getLogger("sigfs")

# mount(8)/fstab options that mean nothing to FUSE itself.
_DROPPED = {
    "defaults",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "nofail",
    "_netdev",
    "owner",
    "group",
}


class MountError(Exception):
    """A mount that failed, with the one line to tell the user."""


def fuse_options(opts: Iterable[str], debug: bool) -> set[str]:
    out = {"fsname=sigfs", "subtype=sigfs"}
    for opt in opts:
        opt = opt.strip()
        if not opt or opt in _DROPPED or opt.startswith("x-") or opt.startswith("comment="):
            continue
        if opt.startswith("fsname=") or opt.startswith("subtype="):
            continue
        out.add(opt)
    if debug:
        out.add("debug")
    return out


def _check_mountpoint(mountpoint: str) -> None:
    if procfs.is_mounted(mountpoint):
        raise MountError(
            f"{mountpoint} is already a mount point (a dead one? fusermount3 -u {mountpoint})"
        )
    if not os.path.isdir(mountpoint):
        raise MountError(f"mount point {mountpoint} is not a directory")
    if not os.path.exists("/dev/fuse"):
        raise MountError("/dev/fuse is missing (load the fuse module: modprobe fuse)")


async def _serve(ops: SigFS) -> None:
    async with trio.open_nursery() as nursery:
        if ops.remote is not None:
            await ops.remote.start(nursery)
        nursery.start_soon(ops.tracer.tend_stuck)

        async def on_signals() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
                async for signum in sigs:
                    log.info("signal %d: unmounting", signum)
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signals)
        await pyfuse3.main(min_tasks=2, max_tasks=32)
        nursery.cancel_scope.cancel()


def serve(mountpoint: str, options: set[str], ready_fd: int | None = None) -> int:
    """Mount and serve until unmounted or told to stop.  Returns an exit code."""
    ops = SigFS(remote=TracerClient())
    assert ops.remote is not None
    ops.remote.on_restart = ops.frozen.clear  # a new tracer process holds nothing
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        msg = f"sigfs: cannot mount {mountpoint}: {exc}"
        if ready_fd is not None:
            os.write(ready_fd, msg.encode())
            os.close(ready_fd)
        else:
            print(msg, file=sys.stderr)
        return 1
    ops.mount_id = procfs.mount_id_of(mountpoint)
    if ready_fd is not None:
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
    unmounted_by_us = False
    try:
        trio.run(_serve, ops)
        unmounted_by_us = True
    except BaseException:
        log.exception("sigfs daemon failed")
        unmounted_by_us = True
        raise
    finally:
        if ops.remote is not None:
            ops.remote.close()  # the tracer process detaches every thread
        failed = ops.tracer.detach_all()
        if failed:
            log.error("could not detach threads %s cleanly", failed)
        try:
            pyfuse3.close(unmount=unmounted_by_us)
        except Exception:  # the mount may already be gone
            log.debug("close failed", exc_info=True)
    return 0


def run_mount(
    mountpoint: str, opts: list[str], foreground: bool, debug: bool, logfile: str | None
) -> int:
    # Resolved as the kernel does: the mount table names the real path.
    mountpoint = os.path.realpath(mountpoint)
    try:
        _check_mountpoint(mountpoint)
    except MountError as exc:
        print(f"sigfs: {exc}", file=sys.stderr)
        return 1
    options = fuse_options(opts, debug)
    level = logging.DEBUG if debug else logging.INFO
    if foreground or debug:
        logging.basicConfig(level=level, format="sigfs: %(message)s", stream=sys.stderr)
        return serve(mountpoint, options)

    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(rfd)
        os.setsid()
        os.chdir("/")  # keep no caller's directory busy
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        if logfile:
            out = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        else:
            out = devnull
        os.dup2(out, 1)
        os.dup2(out, 2)
        logging.basicConfig(level=level, format="%(asctime)s sigfs[%(process)d]: %(message)s")
        code = 1
        try:
            code = serve(mountpoint, options, ready_fd=wfd)
        finally:
            os._exit(code)
    os.close(wfd)
    answer = b""
    while True:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        answer += chunk
    os.close(rfd)
    if answer != b"ok":
        _, status = os.waitpid(pid, 0)
        msg = (
            answer.decode(errors="replace")
            or f"sigfs: daemon exited before mounting (status {status})"
        )
        print(msg, file=sys.stderr)
        return 1
    # Wait until the mount answers (the kernel's INIT handshake is done).
    try:
        os.stat(mountpoint)
    except OSError as exc:
        print(f"sigfs: mount of {mountpoint} does not answer: {exc.strerror}", file=sys.stderr)
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            os.system(f"fusermount3 -u -z {mountpoint} 2>/dev/null")
        return 1
    return 0
