"""``make demo``: mount sigfs, start a small target, and show what sigfs sees.

The target (tests/targets/handlers.c) installs handlers with distinct flags
and masks, sets an altstack, blocks SIGUSR2 and SIGRTMIN+5 and queues signals
to itself.  The demo reads its files through the mount, changes its signal
mask live through ``sig/blocked`` (unblocking SIGUSR2 delivers the two that
were pending to its handler), queues signals through ``sig/pending`` and
copies its shared queue out and back, freezes and thaws it through ``ctl``,
checkpoints it with ``--leave-running`` and checks the image with ``sigfs
verify`` (then checkpoints it with ``--pre-copy`` too), and cleans up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGFS = str(Path(sys.executable).parent / "sigfs")


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def show_cmd(cmd: str) -> None:
    print(f"$ {cmd}", flush=True)
    subprocess.run(["bash", "-c", cmd], check=False)


def main() -> int:
    if os.geteuid() != 0:
        print("demo: run as root (make demo): it mounts and traces", file=sys.stderr)
        return 1
    binary = subprocess.run(
        [sys.executable, str(ROOT / "tests/targets/build.py"), "handlers"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    mnt = tempfile.mkdtemp(prefix="sigfs-demo-")
    image = tempfile.mkdtemp(prefix="sigfs-image-")
    os.rmdir(image)
    step(f"mount sigfs on {mnt}")
    show_cmd(f"{SIGFS} mount {mnt}")
    target = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout is not None
        while not target.stdout.readline().startswith("ready"):
            pass
        pid = target.pid
        d = f"{mnt}/{pid}"
        step(f"a target (pid {pid}) with handlers, an altstack, blocked and pending signals")
        show_cmd(f"ls {d} {d}/sig")
        step("blocked: character k is signal k (SIGUSR2=12 and SIGRTMIN+5=39 are blocked)")
        show_cmd(f"cat {d}/sig/blocked")
        step("pending (this thread) and shared_pending (the process), with each siginfo")
        show_cmd(f"cat {d}/sig/pending")
        show_cmd(f"cat {d}/sig/shared_pending")
        step("action: signum flags mask handler restorer (only the non-default ones)")
        show_cmd(f"grep -v ' 0x0 0x0$' {d}/sig/action")
        step("altstack: sp size flags")
        show_cmd(f"cat {d}/sig/altstack")
        step("the same, decoded for people")
        show_cmd(f"{SIGFS} show {pid}")
        if os.path.exists(f"{d}/regs"):
            step("registers (the thread sleeps in a syscall)")
            show_cmd(f"head -30 {d}/regs")
        step("change it live: block SIGUSR1, then unblock SIGUSR2 (its two pending arrive)")
        show_cmd(f"echo +SIGUSR1 > {d}/sig/blocked; cat {d}/sig/blocked")
        show_cmd(
            f"echo -SIGUSR2 > {d}/sig/blocked; grep -E 'SigPnd|ShdPnd|SigBlk' /proc/{pid}/status"
        )
        assert target.stdin is not None
        target.stdin.write("counts\n")
        target.stdin.flush()
        print(f"the target says: {target.stdout.readline().strip()}", flush=True)
        show_cmd(f"echo +SIGKILL > {d}/sig/blocked; tail -3 {d}/errors")
        step("queue signals: SIGRTMIN+5 (blocked: it stays pending), SIGUSR2 (handled at once)")
        show_cmd(f"echo SIGRTMIN+5 >> {d}/sig/pending; cat {d}/sig/pending")
        show_cmd(f"echo SIGUSR2 >> {d}/sig/shared_pending")
        target.stdin.write("counts\n")
        target.stdin.flush()
        print(f"the target says: {target.stdout.readline().strip()}", flush=True)
        step("copy a queue out and back: > replaces, each siginfo byte for byte")
        show_cmd(
            f"cp {d}/sig/shared_pending /tmp/sigfs-demo-queue; echo > {d}/sig/shared_pending; "
            f"cat {d}/sig/shared_pending; cat /tmp/sigfs-demo-queue > {d}/sig/shared_pending; "
            f"cat {d}/sig/shared_pending; rm /tmp/sigfs-demo-queue; tail -3 {d}/errors"
        )
        step("freeze and thaw through ctl: no signal the process could see")
        show_cmd(f"echo freeze > {d}/ctl; cat {d}/ctl; grep State /proc/{pid}/status")
        show_cmd(f"echo thaw > {d}/ctl; cat {d}/ctl; grep State /proc/{pid}/status")
        step("checkpoint it, leaving it running")
        show_cmd(
            f"{SIGFS} checkpoint {pid} {image} --leave-running && ls {image} && "
            f"head -12 {image}/MANIFEST"
        )
        show_cmd(f"diff {image}/sig/action {d}/sig/action && echo 'image matches the live files'")
        show_cmd(f"{SIGFS} verify {image}")
        step("again with --pre-copy: memory copied while it runs, then only what it wrote since")
        show_cmd(f"{SIGFS} checkpoint {pid} {image}.pre --leave-running --pre-copy")
        step("the target is still running, untraced")
        show_cmd(f"grep -E 'State|TracerPid' /proc/{pid}/status")
    finally:
        # Clean up first, print after: stdout may be a closed pipe (| head).
        target.kill()
        target.wait()
        if target.stdout:
            target.stdout.close()
        if target.stdin:
            target.stdin.close()
        time.sleep(0.1)
        res = subprocess.run([SIGFS, "umount", mnt], capture_output=True, text=True)
        if res.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)
        os.rmdir(mnt)
        subprocess.run(["rm", "-rf", image, image + ".pre"])
        step("unmounted")
        print(f"$ {SIGFS} umount {mnt}", flush=True)
    print("\nRestore (writing the files back into a skeleton) is not built yet; see the README.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
