"""The tracer process: owns every ptrace attachment a mount makes.

Why a separate process: when a tracer dies, the kernel releases its tracees
at once, from wherever they are.  A thread released in the middle of an
injected syscall runs on with the injected registers and crashes.  So the
FUSE daemon does not trace anything itself: it sends each request that needs
ptrace to this process over a socketpair.  When the daemon dies, in any way,
this process reads EOF, lets every request in flight finish (an injection
always puts its thread back), detaches every thread it holds (frozen
processes thaw) and exits.  Only a SIGKILL of this process itself, during an
injected syscall, can still hurt a target; it runs in its own session, so
terminal signals and a kill of the daemon do not reach it.

Inside, it is the same single-threaded tracer as before (:mod:`sigfs.tracer`):
the trio thread owns the attachments and never blocks.

Protocol: length-prefixed pickles (both ends are this package, over a private
socketpair).  Request ``(id, op, args)``; reply ``(id, ok, payload, logs)``
where ``payload`` is the result, or ``(kind, errno, message)`` on failure and
``logs`` are ``(where, message)`` lines for the process's ``errors`` file.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import traceback
from typing import Any

import trio

from sigfs import procfs
from sigfs.files import TREE, ErrorLog, FileContext
from sigfs.tracer import Tracer
from sigfs.tree import Entry, Place

HEADER = struct.Struct("<I")
MAX_MESSAGE = 256 << 20


class TracerUnavailable(OSError):
    def __init__(self, why: str) -> None:
        super().__init__(errno.EIO, f"the tracer process is not available: {why}")


async def _recv_exact(sock: trio.socket.SocketType, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


async def recv_message(sock: trio.socket.SocketType) -> Any:
    head = await _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    (size,) = HEADER.unpack(head)
    if size > MAX_MESSAGE:
        raise OSError(errno.EPROTO, f"tracer message of {size} bytes")
    body = await _recv_exact(sock, size)
    if body is None:
        return None
    return pickle.loads(body)


async def send_message(sock: trio.socket.SocketType, obj: Any) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    data = memoryview(HEADER.pack(len(body)) + body)
    while data:
        sent = await sock.send(data)
        data = data[sent:]


def find_entry(place: str, path: str) -> Entry:
    node = TREE.find(Place(place), tuple(path.split("/")))
    if node is None or node.entry is None:
        raise OSError(errno.ENOENT, f"no file {path}")
    return node.entry


class _CollectingLog(ErrorLog):
    """Collects the lines a request logs, to send back with its reply."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def add(self, pid: int, where: str, message: str) -> None:
        self.lines.append((where, message))


def _failure(exc: BaseException) -> tuple[str, int, str]:
    if isinstance(exc, ProcessLookupError):
        return ("gone", errno.ESRCH, str(exc))
    if isinstance(exc, OSError):
        return ("oserror", exc.errno or errno.EIO, exc.strerror or str(exc))
    # A bug: keep the traceback (stderr is the daemon's log).
    traceback.print_exception(exc, file=sys.stderr)
    return ("internal", errno.EIO, f"internal error in the tracer process: {type(exc).__name__}")


async def _run(tracer: Tracer, op: str, args: dict[str, Any], log: ErrorLog) -> Any:
    if op == "stats":
        count, seconds = tracer.stopped_stats
        return {
            "stops": int(count),
            "stopped_seconds": seconds,
            "stop_wait_seconds": tracer.stop_wait_seconds,
            "injected_syscalls": tracer.injected,
            "attached_now": len(tracer.attached),
            "frozen_now": len(tracer.frozen),
        }
    entry = find_entry(args["place"], args["path"])
    raw = args.get("status")
    ctx = FileContext(
        tracer,
        log,
        args["pid"],
        args["tid"],
        args["where"],
        procfs.Status(raw) if raw is not None else None,
        append=bool(args.get("append", False)),
        opener=args.get("opener"),
        started=int(args.get("started", 0)),
    )
    if op == "load":
        return await entry.load(ctx)
    if op == "store":
        if entry.store is None:
            raise OSError(errno.EACCES, f"{args['path']} is read-only")
        await entry.store(ctx, args["data"])
        return None
    raise OSError(errno.EINVAL, f"unknown tracer request {op!r}")


async def serve(fd: int) -> None:
    sock = trio.socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM)
    os.close(fd)
    tracer = Tracer()
    send_lock = trio.Lock()

    async def handle(req_id: int, op: str, args: dict[str, Any]) -> None:
        log = _CollectingLog()
        try:
            reply = (req_id, True, await _run(tracer, op, args, log), log.lines)
        except Exception as exc:  # every failure goes back to the daemon
            reply = (req_id, False, _failure(exc), log.lines)
        try:
            async with send_lock:
                await send_message(sock, reply)
        except OSError:
            pass  # the daemon is gone; the work itself is done

    async with trio.open_nursery() as background:
        background.start_soon(tracer.tend_stuck)
        with trio.open_signal_receiver(signal.SIGTERM) as sigterm:
            async with trio.open_nursery() as requests:

                async def on_sigterm() -> None:
                    async for _ in sigterm:
                        reading.cancel()
                        return

                requests.start_soon(on_sigterm)
                with trio.CancelScope() as reading:
                    while True:
                        try:
                            msg = await recv_message(sock)
                        except OSError:
                            msg = None
                        if msg is None:
                            break  # the daemon closed or died
                        req_id, op, args = msg
                        requests.start_soon(handle, req_id, op, args)
                # No more requests: let those in flight finish, then go.
                await _wait_for_requests(requests)
        # From here on a SIGTERM (the daemon's close sends one after 10 s) is
        # ignored, not fatal: with the receiver closed, its default action
        # would kill us in the wait below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # Every held thread let go first (a frozen process runs on), then a
        # thread still inside a syscall sigfs injected is put back before we
        # go: our exit would let the kernel release it with our registers.
        failed = [t for t in tracer.detach_all(timeout=0.0) if t not in tracer._stuck]
        with trio.CancelScope(shield=True):
            await tracer.finish_handed_over(
                lambda message: print(f"sigfs tracer: {message}", file=sys.stderr, flush=True)
            )
        background.cancel_scope.cancel()
    failed += tracer.detach_all()  # the threads still on their way to a stop
    sock.close()
    if failed:
        print(f"sigfs tracer: could not detach {failed} cleanly", file=sys.stderr)


async def _wait_for_requests(nursery: trio.Nursery) -> None:
    """Return once only the signal watcher is left in ``nursery``."""
    while len(nursery.child_tasks) > 1:
        await trio.sleep(0.001)
    nursery.cancel_scope.cancel()


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fd = int(sys.argv[1])
    trio.run(serve, fd)
    return 0


# -- the daemon's side ----------------------------------------------------------


class TracerClient:
    """The daemon's handle on its tracer process (started with the mount,
    and again on the next request if it ever went away)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: trio.socket.SocketType | None = None
        self._next = 0
        self._waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self._send_lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        self.on_restart: Any = None

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await self._spawn()

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else 0

    async def _spawn(self) -> None:
        assert self._nursery is not None
        if self._proc is not None:
            # The previous one went away: reap it.  Whatever it held, the
            # kernel released when it exited.
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if self.on_restart is not None:
                self.on_restart()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.set_inheritable(False)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sigfs.tracerd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._sock = trio.socket.from_stdlib_socket(ours)
        self._nursery.start_soon(self._reader, self._sock)

    async def _reader(self, sock: trio.socket.SocketType) -> None:
        try:
            while True:
                msg = await recv_message(sock)
                if msg is None:
                    break
                req_id, ok, payload, logs = msg
                waiter = self._waiting.pop(req_id, None)
                if waiter is not None:
                    waiter[1].extend((ok, payload, logs))
                    waiter[0].set()
        except OSError:
            pass
        finally:
            if sock is self._sock:
                self._sock = None
            for event, box in self._waiting.values():
                box.extend((False, ("oserror", errno.EIO, "the tracer process exited"), []))
                event.set()
            self._waiting.clear()

    async def call(self, op: str, **args: Any) -> tuple[Any, list[tuple[str, str]]]:
        """Run one request in the tracer process: (result, log lines)."""
        if self._sock is None:
            if self._nursery is None:
                raise TracerUnavailable("not started")
            await self._spawn()
        assert self._sock is not None
        self._next += 1
        req_id = self._next
        event = trio.Event()
        box: list[Any] = []
        self._waiting[req_id] = (event, box)
        try:
            async with self._send_lock:
                await send_message(self._sock, (req_id, op, args))
        except OSError as exc:
            self._waiting.pop(req_id, None)
            raise TracerUnavailable(str(exc)) from None
        with trio.CancelScope(shield=True):
            # The tracer finishes the request anyway; wait for its answer so
            # that the process lock is not released while it still works.
            await event.wait()
        ok, payload, logs = box
        if ok:
            return payload, logs
        kind, err, message = payload
        if kind == "gone":
            raise ProcessLookupError(err, message)
        raise OSError(err, message)

    def close(self, timeout: float = 10.0) -> None:
        """Let the tracer process detach everything and exit.  It is never
        SIGKILLed (that alone could hurt a target mid-injection): after
        ``timeout`` it gets SIGTERM, which it handles the same way (and
        ignores once all it does is wait for a thread still inside a syscall
        it injected), and if it still has not gone it is left to finish on
        its own."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    print(
                        f"sigfs: tracer process {self._proc.pid} still busy; left to finish",
                        file=sys.stderr,
                    )
            self._proc = None


if __name__ == "__main__":
    sys.exit(main())
