"""The one-shot commands' command lines parsed without argparse
(``cli._quick_args``) must mean exactly what argparse makes of them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sigfs import cli

# Each is either taken by the quick parser (and must then equal argparse's
# result) or left to argparse.
TAKEN = [
    ["checkpoint", "123", "/tmp/img"],
    ["checkpoint", "123", "/tmp/img", "--leave-running"],
    ["checkpoint", "--leave-running", "123", "/tmp/img"],
    ["checkpoint", "123", "--leave-running", "/tmp/img"],
    ["checkpoint", "123", "img", "-q", "--timings", "--pre-copy"],
    ["checkpoint", "123", "img", "--quiet", "--quiet"],
    ["checkpoint", "123", "img", "--buffer-mib", "0"],
    ["checkpoint", "123", "img", "--buffer-mib", "007", "--buffer-mib", "64"],
    ["checkpoint", "123", "img", "--checksum", "sha256"],
    ["checkpoint", "0123", ""],
    ["checkpoint", "1", "a b", "--checksum", "xxh3-128", "--leave-running"],
    ["verify", "img"],
    ["verify", "-q", "img"],
    ["verify", "img", "--quiet"],
    ["show", "1"],
    ["show", "1", "--tid", "22"],
    ["show", "--tid", "22", "1"],
]
LEFT = [
    [],
    ["mount", "/mnt"],
    ["checkpoint"],
    ["checkpoint", "123"],
    ["checkpoint", "123", "img", "extra"],
    ["checkpoint", "-h"],
    ["checkpoint", "123", "img", "--help"],
    ["checkpoint", "123", "img", "--leave"],  # an abbreviation
    ["checkpoint", "123", "img", "--buffer-mib=5"],
    ["checkpoint", "123", "img", "--buffer-mib"],
    ["checkpoint", "123", "img", "--buffer-mib", "-1"],
    ["checkpoint", "123", "img", "--buffer-mib", "5.0"],
    ["checkpoint", "123", "img", "--buffer-mib", "\u0663"],  # a digit, not ASCII
    ["checkpoint", "123", "img", "--checksum", "md5"],
    ["checkpoint", "x", "img"],
    ["checkpoint", "1" * 5000, "img"],  # int() refuses over 4300 digits
    ["checkpoint", "-5", "img"],
    ["checkpoint", "123", "--", "-img"],
    ["checkpoint", "123", "-"],
    ["checkpoint", "123", "img", "-qv"],
    ["verify"],
    ["verify", "a", "b"],
    ["show", "1", "--tid"],
    ["show", "1", "--tid", "x"],
    ["show", "1", "--tid=3"],
    ["--version"],
]


# What the installed `sigfs` script runs.
ENTRY = "import sys; from sigfs.cli import main; sys.exit(main())"


def argparse_values(argv: list[str]) -> dict[str, object] | None:
    try:
        return vars(cli._parser().parse_args(argv))
    except SystemExit:
        return None


@pytest.mark.parametrize("argv", TAKEN, ids=" ".join)
def test_quick_parse_equals_argparse(argv: list[str]) -> None:
    quick = cli._quick_args(argv)
    assert quick is not None, "a usual command line must not need argparse"
    assert vars(quick) == argparse_values(argv)


@pytest.mark.parametrize("argv", LEFT, ids=" ".join)
def test_anything_unusual_goes_to_argparse(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli._quick_args(argv) is None
    argparse_values(argv)  # whatever argparse makes of it, help or error
    capsys.readouterr()


def test_one_shot_commands_do_not_import_argparse(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The point of the quick parser: argparse (with the gettext, locale and
    shutil it pulls in) is not loaded by a checkpoint's usual command line
    (-X importtime lists every import on stderr; the command itself fails
    here, on a process that does not exist, after parsing)."""
    for argv in (
        ["checkpoint", "999999999", str(tmp_path / "img"), "--leave-running"],
        ["verify", str(tmp_path / "none")],
    ):
        res = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", ENTRY, *argv],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode != 0
        imported = {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()}
        assert "sigfs.cli" in imported and "sigfs.procfs" in imported
        assert "argparse" not in imported, argv
    # The same line with a typo does go through argparse: the probe can fail.
    res = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, "verify", "--quiett", "x"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 2 and "unrecognized arguments" in res.stderr
    assert "argparse" in {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines()}
