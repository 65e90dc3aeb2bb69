"""The ``sigfs`` command.

    sigfs mount MOUNTPOINT [-f] [-d] [-o OPTS]   mount (daemon unless -f)
    sigfs MOUNTPOINT -o OPTS                     the form mount.fuse3 runs
    sigfs umount MOUNTPOINT
    sigfs show PID                               the signal state, for people
    sigfs checkpoint PID DIR [--leave-running] [--pre-copy] [--buffer-mib N] [-q]
                                                 freeze, copy the state out, kill or thaw
    sigfs verify DIR [-q]                        check an image against its MANIFEST

User errors are one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import gc
import os
import sys

from sigfs import __version__

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    import argparse
    from typing import Any

COMMANDS = ("mount", "umount", "unmount", "show", "checkpoint", "verify")
# Commands that run once and exit (os._exit, skipping the interpreter's teardown).
ONE_SHOT = ("checkpoint", "show", "verify")


def _split_opts(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for value in values or []:
        out.extend(o for o in value.split(",") if o)
    return out


def _parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="sigfs",
        description="A FUSE filesystem showing each traceable process's signal and "
        "execution state as text files.",
    )
    p.add_argument("--version", action="version", version=f"sigfs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mount", help="mount sigfs on MOUNTPOINT")
    m.add_argument("mountpoint")
    m.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    m.add_argument("-d", "--debug", action="store_true", help="debug log to stderr (implies -f)")
    m.add_argument(
        "-o",
        dest="options",
        action="append",
        metavar="OPTS",
        help="comma-separated mount options, e.g. allow_other",
    )
    m.add_argument("--log", metavar="FILE", help="daemon log file (default: none)")

    u = sub.add_parser("umount", aliases=["unmount"], help="unmount MOUNTPOINT")
    u.add_argument("mountpoint")

    c = sub.add_parser("checkpoint", help="freeze PID and copy its state into DIR")
    c.add_argument("pid", type=int)
    c.add_argument("dir")
    c.add_argument(
        "--leave-running",
        action="store_true",
        help="thaw the process afterwards instead of killing it",
    )
    c.add_argument(
        "--pre-copy",
        action="store_true",
        help="copy the memory while the process runs, then freeze it and copy again only "
        "the pages written since (tracked with userfaultfd write protection, Linux 6.7+, as "
        "root): a much shorter freeze for a process with much memory",
    )
    c.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    c.add_argument(
        "--buffer-mib",
        type=int,
        default=1024,
        metavar="N",
        help="how much of the pages file to allocate before the freeze, so the "
        "frozen copy only copies; past it the file grows while frozen (default 1024)",
    )
    c.add_argument(
        "--checksum",
        choices=("xxh3-128", "sha256"),
        default="xxh3-128",
        help="MANIFEST's checksum: xxh3-128 (fast; catches corruption) or sha256 "
        "(also catches tampering; about 15x slower) (default xxh3-128)",
    )
    c.add_argument(
        "--timings", action="store_true", help="print how long each phase took, on stderr"
    )

    v = sub.add_parser(
        "verify",
        help="check a checkpoint image: every file's size and checksum against its "
        "MANIFEST, no file missing or unlisted, and the pages stream whole",
    )
    v.add_argument("dir", help="the image: a directory `sigfs checkpoint` wrote")
    v.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")

    s = sub.add_parser("show", help="print a process's signal state for people")
    s.add_argument("pid", type=int)
    s.add_argument("--tid", type=int, help="a thread other than the leader")
    return p


class _Args:
    """What :func:`_quick_args` parsed: the attributes argparse would set."""

    def __init__(self, **values: object) -> None:
        self.__dict__.update(values)

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


# The one-shot commands' options, for _quick_args: flags (store_true) and
# options taking a value, by their full names, with the attribute each sets.
_QUICK: dict[str, tuple[tuple[str, ...], dict[str, str], dict[str, str], dict[str, object]]] = {
    # command: (positionals, flags, valued options, defaults)
    "checkpoint": (
        ("pid", "dir"),
        {
            "--leave-running": "leave_running",
            "--pre-copy": "pre_copy",
            "-q": "quiet",
            "--quiet": "quiet",
            "--timings": "timings",
        },
        {"--buffer-mib": "buffer_mib", "--checksum": "checksum"},
        {
            "leave_running": False,
            "pre_copy": False,
            "quiet": False,
            "buffer_mib": 1024,
            "checksum": "xxh3-128",
            "timings": False,
        },
    ),
    "verify": (("dir",), {"-q": "quiet", "--quiet": "quiet"}, {}, {"quiet": False}),
    "show": (("pid",), {}, {"--tid": "tid"}, {"tid": None}),
}
_INTS = ("pid", "buffer_mib", "tid")
_CHOICES = {"checksum": ("xxh3-128", "sha256")}


def _quick_args(argv: list[str]) -> _Args | None:
    """A one-shot command's usual, well-formed command line, parsed without
    argparse: importing it and building the parser cost about 13 ms, a fifth
    of a small checkpoint, all before the pages file starts being prepared.
    Only full option names, separate values, decimal numbers and arguments
    not starting with ``-`` are taken; anything else (help, a mistake, an
    abbreviation, ``--opt=value``, ``--``) returns None and goes to argparse,
    which parses whatever this accepts to the same values (a test compares
    the two)."""
    if not argv or argv[0] not in _QUICK:
        return None
    names, flags, valued, defaults = _QUICK[argv[0]]
    values: dict[str, object] = {"command": argv[0], **defaults}
    positionals: list[str] = []
    rest = iter(argv[1:])
    for arg in rest:
        if arg in flags:
            values[flags[arg]] = True
        elif arg in valued:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None
            values[valued[arg]] = value
        elif arg.startswith("-"):
            return None
        else:
            positionals.append(arg)
    if len(positionals) != len(names):
        return None
    values.update(zip(names, positionals, strict=True))
    for name in _INTS:
        number = values.get(name)
        if isinstance(number, str):
            if not (number.isascii() and number.isdigit()) or len(number) > 18:
                return None  # (int() refuses over 4300 digits; argparse says so)
            values[name] = int(number)
    for name, choices in _CHOICES.items():
        if name in values and values[name] not in choices:
            return None
    return _Args(**values)


def _mount_helper_form(argv: list[str]) -> list[str] | None:
    """mount.fuse3 runs ``sigfs MOUNTPOINT -o OPTS``: rewrite it as ``mount``."""
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        return ["mount", *argv]
    return None


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    rewritten = _mount_helper_form(args_list)
    if rewritten is not None:
        args_list = rewritten
    if argv is None:
        # No cyclic garbage collection while a one-shot command (checkpoint,
        # show, verify) imports and runs: its passes over all the objects
        # the imports make cost 5% of the imports and 3% of a frozen copy of
        # many small mappings (callgrind), and such a command makes little
        # cyclic garbage before it exits.  The others (the mount's daemon)
        # get it back once the command is known.
        gc.disable()
    args = _quick_args(args_list) or _parser().parse_args(args_list)
    if argv is None and args.command not in ONE_SHOT:
        gc.enable()
    try:
        rc = _run(args)
        if argv is None and args.command in ONE_SHOT:
            _flush()
    except KeyboardInterrupt:
        # Ctrl-C outside the steps that handle it themselves: no traceback,
        # and die of the signal, as a shell expects.
        print(f"sigfs: {args.command}: interrupted", file=sys.stderr)
        sys.stderr.flush()
        import signal

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 130
    except BrokenPipeError:
        # The reader went away (`sigfs show PID | head`): nothing left to
        # tell it; no traceback, and no second error when Python flushes.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        rc = 1
    except OSError as exc:
        # Writing the output failed otherwise (a full disk): say so.
        print(f"sigfs: {args.command}: cannot write the output: {exc.strerror}", file=sys.stderr)
        rc = 1
    if argv is None and args.command in ONE_SHOT:
        # The command line's own run of a one-shot command: every file is
        # closed, every thread joined and the output flushed by now, so skip
        # the interpreter's teardown of some 150 modules (about 13 ms here).
        try:
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
        os._exit(rc)
    return rc


def _flush() -> None:
    """Flush stdout and stderr (either may be closed: None)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def _run(args: argparse.Namespace | _Args) -> int:
    if args.command == "mount":
        from sigfs.daemon import run_mount

        return run_mount(
            args.mountpoint, _split_opts(args.options), args.foreground, args.debug, args.log
        )
    if args.command in ("umount", "unmount"):
        return _umount(args.mountpoint)
    if args.command == "checkpoint":
        from sigfs.checkpoint import main as checkpoint_main

        if args.buffer_mib < 0:
            print("sigfs: checkpoint: --buffer-mib must be 0 or more", file=sys.stderr)
            return 2
        return checkpoint_main(
            args.pid,
            args.dir,
            args.leave_running,
            args.quiet,
            args.buffer_mib,
            args.checksum,
            args.timings,
            args.pre_copy,
        )
    if args.command == "verify":
        from sigfs.verify import main as verify_main

        return verify_main(args.dir, args.quiet)
    if args.command == "show":
        from sigfs.show import run_show

        return run_show(args.pid, args.tid)
    _parser().print_help()
    return 2


def _umount(mountpoint: str) -> int:
    from sigfs.procfs import is_mounted

    mountpoint = os.path.abspath(mountpoint)
    if not is_mounted(mountpoint):
        print(f"sigfs: {mountpoint} is not mounted", file=sys.stderr)
        return 1
    import subprocess

    res = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
    if res.returncode != 0:
        msg = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "fusermount3 failed"
        print(f"sigfs: cannot unmount {mountpoint}: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
