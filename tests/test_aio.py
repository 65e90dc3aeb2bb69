"""sigfs.aio: the synchronous driver the one-shot commands use instead of
trio, and the same calls under trio; and that `sigfs checkpoint` and
`sigfs show` really run without importing trio."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from sigfs import aio


def test_run_returns_sleeps_and_raises() -> None:
    async def work(n: int) -> int:
        t0 = time.monotonic()
        await aio.sleep(0.02)
        assert time.monotonic() - t0 >= 0.02
        with aio.shield():
            await aio.sleep(0)
        return n * 2

    assert aio.run(work, 21) == 42

    async def fails() -> None:
        await aio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        aio.run(fails)


def test_an_interrupt_while_sleeping_runs_the_coroutines_cleanup() -> None:
    """As under trio: Ctrl-C reaches the coroutine, so a checkpoint's thaw
    in a finally block still runs."""
    cleaned = []

    async def long() -> None:
        try:
            await aio.sleep(10)
        finally:
            cleaned.append(True)

    timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        aio.run(long)
    timer.join()
    assert cleaned == [True]
    assert time.monotonic() - t0 < 5


def test_awaiting_a_trio_primitive_under_run_is_an_error() -> None:
    async def wrong() -> None:
        await trio.sleep(0)

    with pytest.raises(RuntimeError, match="cannot wait for"):
        aio.run(wrong)


def test_run_is_not_reentrant_and_locks_are_plain() -> None:
    async def inner() -> None:
        pass

    async def outer() -> None:
        with pytest.raises(RuntimeError, match="not reentrant"):
            aio.run(inner)
        lock = aio.new_lock()
        assert aio.try_acquire(lock)
        assert lock.locked()
        with pytest.raises(RuntimeError, match="already held"):
            aio.try_acquire(lock)
        lock.release()
        async with lock:
            assert lock.locked()
        assert not lock.locked()

    aio.run(outer)
    assert not aio._sync


def test_under_trio_the_calls_are_trios() -> None:
    async def main() -> None:
        lock = aio.new_lock()
        assert isinstance(lock, trio.Lock)
        assert isinstance(aio.shield(), trio.CancelScope)
        held, release = trio.Event(), trio.Event()

        async def holder() -> None:
            async with lock:
                held.set()
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await held.wait()
            assert not aio.try_acquire(lock)  # held by another task: no wait
            release.set()
        assert aio.try_acquire(lock)
        lock.release()
        with trio.move_on_after(0.01) as scope:
            await aio.sleep(10)  # trio's: cancellable
        assert scope.cancelled_caught

    trio.run(main)


_NO_TRIO = """
import sys
from sigfs.cli import main
sys.argv = ["sigfs", *sys.argv[1:]]
rc = main(sys.argv[1:])  # an argv: main() returns, and does not _exit
assert "trio" not in sys.modules, "trio was imported"
sys.exit(rc)
"""


@pytest.mark.parametrize("command", ["checkpoint", "show"])
def test_one_shot_commands_do_not_import_trio(spawn, tmp_path: Path, command: str) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    args = [str(t.pid)]
    if command == "checkpoint":
        args += [str(tmp_path / "img"), "--leave-running", "-q"]
    res = subprocess.run(
        [sys.executable, "-c", _NO_TRIO, command, *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    if command == "checkpoint":
        assert (tmp_path / "img" / "MANIFEST").is_file()
    else:
        assert "SIGUSR1" in res.stdout


def test_shield_holds_an_interrupt_until_the_block_is_over() -> None:
    """Under run(), Ctrl-C inside a shielded block (a thread holding sigfs's
    registers) is raised only once the block is done, and then at once."""
    steps: list[str] = []

    async def work() -> None:
        with aio.shield():
            # At the main thread itself: this test process has other threads
            # (target readers), which do not block it the way sigfs's do.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
            await aio.sleep(0.05)  # it would be raised here, unshielded
            steps.append("block finished")
        steps.append("after the block")  # not reached: raised on the way out

    with pytest.raises(KeyboardInterrupt):
        aio.run(work)
    assert steps == ["block finished"]
    # The mask is as it was: the signal is deliverable again.
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_helper_thread_that_blocks_interrupts_leaves_them_to_the_main_thread() -> None:
    got: list[str] = []

    def helper() -> None:
        aio.block_interrupts()
        got.append(str(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())))

    t = threading.Thread(target=helper)
    t.start()
    t.join()
    assert got == ["True"]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
