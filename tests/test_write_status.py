"""Writing ``status`` through a real mount: every setting a process can make
for itself, set by it and checked against the kernel's own view (/proc),
its privileges (not the daemon's) deciding, and every refused write
leaving the process as it was."""

from __future__ import annotations

import errno
import os

import pytest
from conftest import write_file as write

pytestmark = pytest.mark.mount


def limits(pid: int, name: str) -> tuple[str, str]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                words = line[len(name) :].split()
                return words[0], words[1]
    raise AssertionError(name)


def proc(pid: int, name: str) -> str:
    with open(f"/proc/{pid}/{name}") as f:
        return f.read().strip()


CHANGES = (
    "comm renamed\n"
    "umask 0077\n"
    "personality 0x00040000\n"
    "pdeath_signal 15\n"
    "child_subreaper 1\n"
    "thp_disable 1\n"
    "timerslack_ns 123456\n"
    "nice 5\n"
)


def test_settings_are_made_and_the_kernel_shows_them(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/status"
    original = mnt.read(f"{t.pid}/status")
    # Soft limits lowered only: raising a hard one back takes
    # CAP_SYS_RESOURCE, which a container's root may lack.
    hard_nofile = original.split("rlimit nofile ")[1].split()[1]
    hard_core = original.split("rlimit core ")[1].split()[1]
    changes = CHANGES + f"rlimit nofile 512 {hard_nofile}\nrlimit core 0 {hard_core}\n"
    if "rlimit core 0 " in original:
        changes = changes.replace("rlimit core 0 ", "rlimit core 4096 ")
    write(path, changes.encode())
    st = t.status()
    assert st["Name"] == "renamed"
    assert st["Umask"] == "0077"
    assert proc(t.pid, "personality") == "00040000"
    assert proc(t.pid, "timerslack_ns") == "123456"
    assert os.getpriority(os.PRIO_PROCESS, t.pid) == 5
    assert limits(t.pid, "Max open files")[0] == "512"
    text = mnt.read(f"{t.pid}/status")
    for line in changes.splitlines():
        assert line + "\n" in text, line
    # The file as it read before, written back: every setting as it was.
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/status") == original
    write(path, original.encode())
    assert mnt.read(f"{t.pid}/errors").endswith("status: unchanged\n")
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def test_the_process_s_own_privileges_decide(mnt, spawn, unpriv_user) -> None:  # type: ignore[no-untyped-def]
    """Root writes an ordinary user's process: a hard limit raised or a
    nice lowered is refused by the kernel for that process, as it would be
    if it asked itself; lowering a limit works."""
    name, _uid, _gid = unpriv_user
    t = spawn("handlers", user=name)
    soft, hard = limits(t.pid, "Max open files")
    before = mnt.read(f"{t.pid}/status")
    cases = [
        (f"rlimit nofile {soft} {int(hard) + 1}\n", errno.EPERM),
        ("nice -5\n", errno.EACCES),
        ("umask 0027\nnice -5\n", errno.EACCES),  # the umask is set back
        # A raised nice it could not lower again is made after the refused
        # limit, so it is never made.
        (f"nice 10\nrlimit nofile {soft} {int(hard) + 1}\n", errno.EPERM),
        # no_new_privs, which nothing undoes, comes after the refused step.
        ("no_new_privs 1\nnice -5\n", errno.EACCES),
    ]
    for data, err in cases:
        with pytest.raises(OSError) as info:
            write(f"{mnt.path}/{t.pid}/status", data.encode())
        assert info.value.errno == err, data
        assert "the process may not set it" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert mnt.read(f"{t.pid}/status") == before
        assert os.getpriority(os.PRIO_PROCESS, t.pid) == 0
        assert t.status()["NoNewPrivs"] == "0"
    write(f"{mnt.path}/{t.pid}/status", f"rlimit nofile 64 {hard}\n".encode())
    assert limits(t.pid, "Max open files") == ("64", hard)


def test_what_the_process_cannot_set_itself_is_refused(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/status"
    text = mnt.read(f"{t.pid}/status")
    # Written as it is: accepted.
    write(path, f"pid {t.pid}\ntgid {t.pid}\n".encode())
    before = (text, t.status()["Umask"])
    for data in (b"pid 1\n", b"uids 1 1 1 1\n", b"umask 0077\nseccomp 2\n"):
        with pytest.raises(OSError) as info:
            write(path, data)
        assert info.value.errno == errno.EOPNOTSUPP
        assert "cannot be changed through status" in mnt.read(f"{t.pid}/errors").splitlines()[-1]
        assert (mnt.read(f"{t.pid}/status"), t.status()["Umask"]) == before


BAD = [
    (b"colour blue\n", errno.EINVAL, "unknown key"),
    (b"umask 01000\n", errno.EINVAL, "umask"),
    (b"comm abcdefghijklmnopq\n", errno.EINVAL, "comm"),
    (b"nice 20\n", errno.EINVAL, "nice"),
    (b"rlimit nofile 10 5\n", errno.EINVAL, "rlimit nofile"),
    (b"umask 0022\numask 0077\n", errno.EINVAL, "given twice"),
    (b"dumpable 2\n", errno.EINVAL, "2 is the kernel's suid_dumpable"),
    (b"umask 0077\ncwd /tmp\n", errno.EOPNOTSUPP, "cwd: not set through status"),
    (b"timerslack_ns 0\n", errno.EINVAL, "timerslack_ns 0"),
    (b"personality 0xffffffff\n", errno.EINVAL, "only asks"),
    (b"\xff\n", errno.EINVAL, "not UTF-8 text (byte 1)"),
    (b"# nothing\n", errno.EINVAL, "end of input"),
    # 2.2 MB: FUSE hands it over in pieces, the first already refused.
    (b"umask 0022\n" * 200000, errno.EINVAL, "given twice"),
]


@pytest.mark.parametrize(("data", "err", "message"), BAD, ids=[repr(d[:20]) for d, _, _ in BAD])
def test_bad_input_is_refused_and_changes_nothing(mnt, spawn, data, err, message) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")

    def now() -> tuple[str, str, str, str]:
        st = t.status()
        return (
            mnt.read(f"{t.pid}/status"),
            st["Umask"],
            st["NoNewPrivs"],
            os.readlink(f"/proc/{t.pid}/cwd"),
        )

    before = now()
    with pytest.raises(OSError) as info:
        write(f"{mnt.path}/{t.pid}/status", data)
    assert info.value.errno == err
    last = mnt.read(f"{t.pid}/errors").splitlines()[-1]
    assert "status: write refused:" in last and message in last, last
    assert now() == before


def test_no_new_privs_is_set_last_and_never_cleared(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    t = spawn("handlers")
    path = f"{mnt.path}/{t.pid}/status"
    write(path, b"no_new_privs 1\numask 0007\n")
    assert t.status()["NoNewPrivs"] == "1" and t.status()["Umask"] == "0007"
    with pytest.raises(OSError) as info:
        write(path, b"no_new_privs 0\n")
    assert info.value.errno == errno.EINVAL
    assert t.status()["NoNewPrivs"] == "1"
    with pytest.raises(OSError) as info:
        write(path, b"no_new_privs 1\n", append=True)
    assert info.value.errno == errno.EINVAL


def test_a_frozen_process_s_settings_read_back_as_written(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """While frozen, the values the action stub fetched for status are kept
    until the thaw: a write replaces them, and status shows what was set."""
    t = spawn("handlers")
    ctl = f"{mnt.path}/{t.pid}/ctl"
    write(ctl, b"freeze\n")
    try:
        mnt.read(f"{t.pid}/sig/action")  # fills the frozen facts
        write(f"{mnt.path}/{t.pid}/status", b"pdeath_signal 9\nchild_subreaper 1\n")
        text = mnt.read(f"{t.pid}/status")
        assert "pdeath_signal 9\n" in text and "child_subreaper 1\n" in text
    finally:
        write(ctl, b"thaw\n")
    assert "pdeath_signal 9\n" in mnt.read(f"{t.pid}/status")


def test_a_name_of_any_bytes_is_shown_escaped_and_checkpointed(mnt, spawn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A process may name itself any 15 bytes but NUL (prctl PR_SET_NAME):
    a tab, a backslash, a multibyte character cut in half.  status shows the
    name escaped as paths are, a checkpoint of the process works, and the
    image's status line sets the same bytes in another process."""
    import subprocess
    import sys
    from pathlib import Path

    raw = b"a\tb\\c\xe2\x82\xac\xe2\x82 "  # a euro sign, then the first 2 of another's 3 bytes
    shown = "a\\x09b\\\\c\u20ac\\xe2\\x82\\x20"
    t = spawn("handlers")
    write(f"{mnt.path}/{t.pid}/status", f"comm {shown}\n".encode())
    with open(f"/proc/{t.pid}/comm", "rb") as f:
        assert f.read() == raw + b"\n"
    text = mnt.read(f"{t.pid}/status")
    assert text.startswith(f"comm {shown}\n"), text.splitlines()[0]
    sigfs = str(Path(sys.executable).parent / "sigfs")
    image = tmp_path / "img"
    subprocess.run(
        [sigfs, "checkpoint", str(t.pid), str(image), "--leave-running", "--quiet"],
        check=True,
        timeout=60,
    )
    saved = (image / "status").read_text()
    assert saved.startswith(f"comm {shown}\n")
    other = spawn("handlers")
    write(f"{mnt.path}/{other.pid}/status", saved.splitlines()[0].encode() + b"\n")
    with open(f"/proc/{other.pid}/comm", "rb") as f:
        assert f.read() == raw + b"\n"
    for bad, needle in ((b"comm a\\x00b\n", "NUL"), (b"comm " + b"\\xff" * 16 + b"\n", "16 bytes")):
        with pytest.raises(OSError) as info:
            write(f"{mnt.path}/{other.pid}/status", bad)
        assert info.value.errno == errno.EINVAL
        assert needle in mnt.read(f"{other.pid}/errors").splitlines()[-1]
    with open(f"/proc/{other.pid}/comm", "rb") as f:
        assert f.read() == raw + b"\n"
    assert t.command("counts") == "counts h1=0 h2=0 h3=0"


def test_a_name_ending_in_a_newline_keeps_it(mnt, spawn) -> None:  # type: ignore[no-untyped-def]
    """The kernel ends /proc/PID/comm with one newline of its own: only that
    one is dropped, so a name that ends in "\\n" itself reads, and is written
    back, whole (stripping every newline made the write's read-back fail)."""
    t = spawn("handlers")
    write(f"{mnt.path}/{t.pid}/status", b"comm ab\\x0a\n")
    with open(f"/proc/{t.pid}/comm", "rb") as f:
        assert f.read() == b"ab\n\n"
    assert mnt.read(f"{t.pid}/status").startswith("comm ab\\x0a\n")
    assert (
        mnt.read(f"{t.pid}/errors")
        .splitlines()[-1]
        .endswith("status: changed: comm 'ab\\n' (was 'handlers')")
    )
