"""`sigfs verify DIR`: a checkpoint image checked against its MANIFEST.

Real images of real targets (made with `sigfs checkpoint`), damaged the
ways a copy or a disk damages files; each damage must be named, with exit
status 1, and the image left as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_image import checkpoint

from sigfs.formats import manifest as manifest_fmt
from sigfs.formats import pages as pages_fmt


def tree_digest(root: str) -> dict[str, str]:
    """Every entry under ``root``: a regular file's sha256, else its type
    and target (a FIFO is not opened: that would block)."""
    import hashlib
    import stat

    out = {}
    for dirpath, dirnames, files in os.walk(root):
        for name in dirnames + files:
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISREG(mode):
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
            else:
                link = os.readlink(p) if stat.S_ISLNK(mode) else ""
                out[os.path.relpath(p, root)] = f"{stat.S_IFMT(mode):o} {link}"
    return out


def verify(img: str | Path, *extra: str) -> subprocess.CompletedProcess[str]:
    sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
    return subprocess.run(
        [sigfs, "verify", str(img), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def image(spawn, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    t = spawn("mem", "16")
    img = tmp_path / "img"
    res = checkpoint(t.pid, str(img), "--leave-running")
    assert res.returncode == 0, res.stderr
    return img


def _rewrite_manifest(img: Path, rel: str) -> None:
    """Make MANIFEST agree with ``rel`` as it is now (size and checksum)."""
    man = manifest_fmt.parse((img / "MANIFEST").read_text())
    data = (img / rel).read_bytes()
    files = tuple(
        manifest_fmt.entry(path, data, man.checksum) if path == rel else (path, size, value)
        for path, size, value in man.files
    )
    man = manifest_fmt.Manifest(**{**{k: getattr(man, k) for k in _fields(man)}, "files": files})
    (img / "MANIFEST").write_text(manifest_fmt.render(man))


def _fields(man: manifest_fmt.Manifest) -> tuple[str, ...]:
    from sigfs.record import fields

    return fields(man)


@pytest.mark.parametrize("checksum", ["xxh3-128", "sha256"])
def test_a_fresh_image_is_whole(spawn, tmp_path: Path, checksum: str) -> None:  # type: ignore[no-untyped-def]
    t = spawn("mem", "16")
    img = tmp_path / "img"
    assert checkpoint(t.pid, str(img), "--leave-running", "--checksum", checksum).returncode == 0
    before = tree_digest(str(img))
    res = verify(img)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    man = manifest_fmt.parse((img / "MANIFEST").read_text())
    assert res.stdout == (
        f"{img}: {len(man.files)} files, {sum(s for _, s, _ in man.files) >> 10} KiB, "
        f"every {checksum} checksum matches; process {t.pid}, format "
        f"{manifest_fmt.FORMAT_VERSION}, sigfs {man.sigfs_version}, Linux {os.uname().release} "
        f"({os.uname().machine})\n"
    )
    assert verify(img, "-q").stdout == ""
    assert tree_digest(str(img)) == before


def _flip_byte(img: Path) -> None:
    _flip_byte_at(img / "pages", 8 << 20)


def _truncate(img: Path) -> None:
    with open(img / "fds", "r+b") as f:
        f.truncate(os.path.getsize(img / "fds") - 1)


def _symlink_file(img: Path) -> None:
    target = img / "fds"
    data = target.read_bytes()
    (img / "elsewhere").write_bytes(data)
    target.unlink()
    target.symlink_to(img / "elsewhere")


DAMAGE: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "one byte of pages": (_flip_byte, ["pages: xxh3-128 is "]),
    "a truncated file": (_truncate, ["fds: size is "]),
    "a missing file": (lambda img: (img / "sig" / "blocked").unlink(), ["sig/blocked: missing"]),
    "an unlisted file": (
        lambda img: (img / "notes.txt").write_text("x"),
        ["notes.txt: not listed in the manifest"],
    ),
    "a file made a link": (
        _symlink_file,
        [
            "elsewhere: not listed in the manifest",
            "fds: a symbolic link (an image holds only files)",
            "fds: reached through a symbolic link",
        ],
    ),
    "a directory made a link": (
        lambda img: (img / "task" / "outside").symlink_to("/etc"),
        ["task/outside: a symbolic link (an image holds only files)"],
    ),
    "a file made a FIFO": (
        lambda img: ((img / "status").unlink(), os.mkfifo(img / "status")),
        ["status: not a regular file"],
    ),
    "a file made a directory": (
        lambda img: ((img / "regs").unlink(), (img / "regs").mkdir()),
        ["regs: not a regular file"],
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_damage_is_named_and_nothing_is_changed(image: Path, damage: str) -> None:
    harm, expected = DAMAGE[damage]
    harm(image)
    before = tree_digest(str(image))
    res = verify(image)
    assert res.returncode == 1, res
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    problems = sorted(line.removeprefix(f"sigfs: verify: {image}: ") for line in lines[:-1])
    assert len(problems) == len(expected), lines
    for got, want in zip(problems, sorted(expected), strict=True):
        assert got.startswith(want), (got, want)
    assert (
        lines[-1] == f"sigfs: verify: {image}: {len(expected)} problem(s); the image is not whole"
    )
    assert tree_digest(str(image)) == before


def test_a_broken_pages_stream_is_caught_even_when_its_checksum_matches(image: Path) -> None:
    """A pages file rewritten with its manifest (a buggy writer, say): the
    checksums agree, the stream does not parse."""
    pages = image / "pages"
    data = pages.read_bytes()
    # The end marker gone: the stream stops in the middle.
    pages.write_bytes(data[: -pages_fmt.TRAILER_SIZE])
    _rewrite_manifest(image, "pages")
    res = verify(image)
    assert res.returncode == 1
    first = res.stderr.splitlines()[0]
    assert first.startswith(f"sigfs: verify: {image}: pages: not a valid pages stream: "), first


@pytest.mark.parametrize(
    ("harm", "message"),
    [
        (lambda img: (img / "MANIFEST").unlink(), "no MANIFEST (not a sigfs image"),
        (lambda img: (img / "MANIFEST").write_text("format_version 3\nbogus 1\n"), "line 2"),
        (
            lambda img: (img / "MANIFEST").write_text(
                (img / "MANIFEST")
                .read_text()
                .replace("file ", "file ", 1)
                .replace(" fds\n", " ../fds\n")
            ),
            "is not a clean relative path",
        ),
        (
            lambda img: (img / "MANIFEST").write_text(
                (img / "MANIFEST").read_text().replace("format_version 3", "format_version 99")
            ),
            "format_version 99 is not supported",
        ),
    ],
)
def test_a_manifest_that_cannot_be_used_is_one_clear_line(
    image: Path, harm: Callable[[Path], None], message: str
) -> None:
    harm(image)
    res = verify(image)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("sigfs: verify: "), res.stderr
    assert message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_not_an_image_and_bad_arguments(tmp_path: Path) -> None:
    res = verify(tmp_path / "nowhere")
    assert (res.returncode, res.stderr) == (
        1,
        f"sigfs: verify: {tmp_path / 'nowhere'}: not a directory\n",
    )
    res = verify(tmp_path)
    assert res.returncode == 1 and "no MANIFEST" in res.stderr
    sigfs = os.path.join(os.path.dirname(sys.executable), "sigfs")
    res = subprocess.run([sigfs, "verify"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "the following arguments are required: dir" in res.stderr


def test_memory_stays_flat_for_a_large_image(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """256 MiB of pages are read in 1 MiB pieces: the command's peak RSS stays
    far below the file's size."""
    t = spawn("mem", "256")
    img = tmp_path / "img"
    assert checkpoint(t.pid, str(img), "--leave-running").returncode == 0
    assert os.path.getsize(img / "pages") > 256 << 20
    probe = (
        "import sys\n"
        "from sigfs.verify import main\n"
        f"rc = main({str(img)!r}, quiet=True)\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(rc, int(hwm.split()[1]) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert out[0] == "0"
    assert int(out[1]) < 64, f"peak RSS {out[1]} MiB"


def test_a_format_1_image_still_verifies(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Format 1 (no checksum line, every digest sha256), as older sigfs wrote
    it: made here by rewriting a sha256 image's MANIFEST as version 1."""
    t = spawn("mem", "4")
    img = tmp_path / "img"
    assert checkpoint(t.pid, str(img), "--leave-running", "--checksum", "sha256").returncode == 0
    text = (img / "MANIFEST").read_text()
    v1 = text.replace("format_version 3\n", "format_version 1\n").replace("checksum sha256\n", "")
    assert v1 != text
    (img / "MANIFEST").write_text(v1)
    res = verify(img)
    assert res.returncode == 0, res.stderr
    assert "every sha256 checksum matches" in res.stdout and "format 1," in res.stdout
    _flip_byte_at(img / "pages", 1 << 20)
    res = verify(img)
    assert res.returncode == 1 and "pages: sha256 is " in res.stderr, res.stderr


def _flip_byte_at(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_an_image_copied_elsewhere_still_verifies(image: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(image, copy)
    assert verify(copy).returncode == 0
