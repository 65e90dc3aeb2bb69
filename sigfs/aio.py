"""The few async primitives the tracer, the injection engine and the loaders
use: trio's in the daemon, or a minimal synchronous stand-in for the one-shot
commands (``sigfs checkpoint``, ``sigfs show``).  Those have one task and
nothing to run beside it, and importing trio alone would cost them 60-80 ms
of start-up.

The same code runs under either.  Under :func:`run` there is one task and no
cancellation: :func:`sleep` sleeps and a lock is always free (taking a held
one is a bug, and raises).  What can interrupt it is a signal turned into an
exception (Ctrl-C's KeyboardInterrupt), so there :func:`shield` holds SIGINT,
SIGTERM and SIGHUP back until the block is over: a thread is never left with
sigfs's registers or mask because of an exception raised half-way.  Anywhere else
(inside ``trio.run``) each call is trio's own.  A coroutine run by
:func:`run` that awaits something else (a trio primitive) gets a
RuntimeError thrown into it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from types import TracebackType

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import Any, Protocol, TypeVar

    T = TypeVar("T")
else:
    Protocol = object

# True while run() drives a coroutine.
_sync = False


class Lock(Protocol):
    """What sigfs uses of a lock (trio.Lock has all of it)."""

    def acquire_nowait(self) -> None: ...

    async def acquire(self) -> None: ...

    def release(self) -> None: ...

    def locked(self) -> bool: ...

    async def __aenter__(self) -> None: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Sleep:
    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __await__(self) -> Generator[_Sleep, None, None]:
        yield self


class _SyncLock:
    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    def acquire_nowait(self) -> None:
        if self._held:
            raise RuntimeError("lock already held (only one task runs under aio.run)")
        self._held = True

    async def acquire(self) -> None:
        self.acquire_nowait()

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("releasing a lock that is not held")
        self._held = False

    def locked(self) -> bool:
        return self._held

    async def __aenter__(self) -> None:
        self.acquire_nowait()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def run(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run ``fn(*args)`` to completion in this thread, without trio.

    An exception raised while sleeping (KeyboardInterrupt) is thrown into
    the coroutine, as trio would, so its cleanup (a thaw) runs."""
    global _sync
    if _sync:
        raise RuntimeError("aio.run() is not reentrant")
    _sync = True
    coro = fn(*args)
    try:
        error: BaseException | None = None
        while True:
            try:
                request = coro.throw(error) if error is not None else coro.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            error = None
            if not isinstance(request, _Sleep):
                error = RuntimeError(f"aio.run() cannot wait for {request!r}")
                continue
            try:
                time.sleep(request.seconds)
            except BaseException as exc:
                error = exc
    finally:
        coro.close()
        _sync = False


def sleep(seconds: float) -> Coroutine[Any, Any, None]:
    """``await sleep(s)``: trio.sleep, or a plain sleep under :func:`run`."""
    if _sync:
        return _sleep(seconds)
    import trio

    return trio.sleep(seconds)


async def _sleep(seconds: float) -> None:
    await _Sleep(seconds)


# The signals a one-shot command turns into exceptions (see shield()).
INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def shield() -> contextlib.AbstractContextManager[object]:
    """A block that cancellation cannot interrupt: a shielded trio
    CancelScope, or under :func:`run` (in the main thread, where Python runs
    signal handlers) the interrupting signals blocked until the block ends;
    one that arrived meanwhile is handled just after it."""
    if _sync:
        if threading.current_thread() is threading.main_thread():
            return interrupts_held()
        return contextlib.nullcontext()
    import trio

    return trio.CancelScope(shield=True)


@contextlib.contextmanager
def interrupts_held() -> Generator[None, None, None]:
    """SIGINT, SIGTERM and SIGHUP blocked in this thread for the block."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def block_interrupts() -> None:
    """Keep the interrupting signals away from the calling (helper)
    thread for good, so that the kernel hands them to the main thread: one
    that arrived while a helper ran would otherwise be acted on in the main
    thread at once, shield or not."""
    signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)


def new_lock() -> Lock:
    if _sync:
        return _SyncLock()
    import trio

    return trio.Lock()


def try_acquire(lock: Lock) -> bool:
    """Take ``lock`` if it is free, without waiting."""
    if isinstance(lock, _SyncLock):
        lock.acquire_nowait()
        return True
    import trio

    try:
        lock.acquire_nowait()
    except trio.WouldBlock:
        return False
    return True
