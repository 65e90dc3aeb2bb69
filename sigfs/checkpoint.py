"""``sigfs checkpoint PID DIR [--leave-running]``.

Freezes every thread, writes each file of the process's tree into ``DIR``
(same names, same bytes as a copy of the mounted tree, through the same
loaders), streams ``pages``, writes ``DIR/MANIFEST`` with a checksum per file,
then kills the process or, with ``--leave-running``, thaws it.

The image is built in ``DIR.partial`` and renamed to ``DIR`` only when whole:
a target that exits mid-checkpoint, or any other failure, leaves no half image
presented as whole.  The process is thawed on every failure path.
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
import time
from collections.abc import Callable

from sigfs import __version__, aio, procfs
from sigfs.sink import BufferSink

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from typing import Any

    from sigfs.formats.fpu import Fpu
    from sigfs.pages import Layout, PagesStream
    from sigfs.tracer import Tracer
    from sigfs.tracking import WriteTracker
    from sigfs.tree import Node

# The heavy modules (the loaders, the formats) are imported only once the
# pages file is being prepared by a thread, so that the two overlap.  trio is
# not imported at all: the command runs its one task with sigfs.aio.run.

# The MANIFEST's checksum unless told otherwise: the formats' own default
# (sigfs.formats.manifest.DEFAULT_CHECKSUM; a test keeps the two equal),
# spelled out so this module need not import the formats before the
# pages file is being prepared.
DEFAULT_CHECKSUM = "xxh3-128"

# How much of the pages file is allocated before a freeze (--buffer-mib).
DEFAULT_BUFFER = 1 << 30

# The --timings mark under which the copy's cost per file is printed.
COPIED = "copied the state and the pages"

# Files that describe the mount, not the process: not part of an image.
NOT_STATE = {"errors"}


class CheckpointError(Exception):
    pass


# Plain classes, not dataclasses: importing dataclasses (and inspect with
# it) would delay the start of the pages file's allocation by a few ms.


class Progress:
    """A progress line on stderr, shown only when the copy takes a while."""

    __slots__ = ("enabled", "label", "started", "_last", "shown")

    def __init__(self, enabled: bool, label: str = "sigfs checkpoint") -> None:
        self.enabled = enabled
        self.label = label
        self.started = time.monotonic()
        self._last = 0.0
        self.shown = False

    def update(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.started < 0.5 or now - self._last < 0.1:
            return
        self._last = now
        self.shown = True
        pct = 100.0 * done / total if total else 100.0
        width = 30
        filled = int(width * min(pct, 100.0) / 100)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r{self.label}: {what:<8} [{bar}] {pct:5.1f}% {done >> 20} / {total >> 20} MiB"
        )
        sys.stderr.flush()

    def finish(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()


class Result:
    __slots__ = (
        "path",
        "files",
        "bytes",
        "pages",
        "frozen_seconds",
        "marks",
        "costs",
        "recopied",
        "notes",
    )

    def __init__(
        self,
        path: str,
        files: int,
        nbytes: int,
        pages: int,
        frozen_seconds: float,
        marks: list[tuple[str, float]],
        costs: list[tuple[str, float]],
        recopied: int | None = None,
        notes: list[str] | None = None,
    ) -> None:
        self.path = path
        self.files = files
        self.bytes = nbytes
        self.pages = pages
        self.frozen_seconds = frozen_seconds
        self.marks = marks
        #: (file, seconds) of the copy while frozen, for ``--timings``.
        self.costs = costs
        #: After a pre-copy, the pages copied again while frozen.
        self.recopied = recopied
        #: What the user should know (one line each).
        self.notes = notes or []


def _cost_key(rel: str) -> str:
    """``task/123/sig/blocked`` -> ``task/*/sig/blocked``: the threads'
    files are timed together."""
    parts = rel.split("/")
    if len(parts) > 2 and parts[0] == "task":
        parts[1] = "*"
    return "/".join(parts)


def _image_files(tids: list[int], leader: int = 0) -> list[tuple[str, Node, int | None]]:
    """(relative path, node, tid or None for the leader) in tree order.  A
    leader that has exited (``leader`` not among ``tids``) has no thread
    files of its own: the ones under ``<pid>/`` are left out, as the mount
    refuses them; the live threads' are under ``task/``."""
    from sigfs.files import TREE
    from sigfs.tree import Place

    per_thread = {n.entry.path for n in TREE.nodes if n.entry is not None and n.place is Place.TASK}
    leader_gone = bool(leader) and leader not in tids
    out: list[tuple[str, Node, int | None]] = []
    for node in TREE.nodes:
        if node.entry is None or node.entry.path in NOT_STATE:
            continue
        if leader_gone and node.entry.path in per_thread:
            continue
        if node.place is Place.PROCESS:
            out.append((node.entry.path, node, None))
    for tid in tids:
        for node in TREE.nodes:
            if node.entry is not None and node.place is Place.TASK:
                out.append((f"task/{tid}/{node.entry.path}", node, tid))
    # Memory last: the syscalls injected for the other files return through
    # user mode, where the kernel may refresh a thread's rseq area.
    out.sort(key=lambda item: item[1].entry is not None and item[1].entry.open_stream is not None)
    return out


# An image holds the process's memory, registers (keys live in vector
# registers) and open files: its owner's only, as CRIU's images are.
DIR_MODE = 0o700
FILE_MODE = 0o600


def _private_dirs(path: str) -> None:
    """mkdir -p with DIR_MODE at every level (os.makedirs gives its mode
    to the last one only); the image's own directory exists already."""
    if os.path.isdir(path):
        return
    _private_dirs(os.path.dirname(path))
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass


def _write(path: str, data: bytes) -> None:
    _private_dirs(os.path.dirname(path))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with open(fd, "wb") as f:
        f.write(data)


class _Dump:
    __slots__ = (
        "files",
        "pages",
        "fpu",
        "started",
        "costs",
        "deferred",
        "digests",
        "recopied",
        "refused",
    )

    def __init__(
        self,
        files: list[tuple[str, int]],
        pages: int,
        fpu: Fpu,
        started: str,
        costs: list[tuple[str, float]],
        deferred: list[tuple[str, Callable[[], bytes]]],
    ) -> None:
        self.files = files
        self.pages = pages
        self.fpu = fpu
        self.started = started
        #: (file, seconds) while frozen, the threads' files summed: ``--timings``.
        self.costs = costs
        #: (relative path, render) of the files read while frozen but
        #: rendered (``Entry.collect``) or written only afterwards: see
        #: :func:`_render_deferred`.
        self.deferred = deferred
        #: Their checksums, computed from the bytes as they are written.
        self.digests: dict[str, str] = {}
        #: After a pre-copy: pages copied again while frozen (None: the
        #: whole stream was copied while frozen).
        self.recopied: int | None = None
        #: Why a pre-copy was copied again whole ("layout", "most"), or "".
        self.refused = ""


def _pages_progress(progress: Progress, stream: PagesStream) -> None:
    progress.update("pages", stream.bytes_scanned, stream.bytes_planned)


def buffer_capacity(pid: int, budget: int) -> int:
    """How much of the pages file to allocate before the freeze: the
    process's resident anonymous, shared and swapped memory with a little
    slack, at most ``budget`` bytes (beyond it the copy goes on with pwrite
    while frozen)."""
    st = procfs.read_status(pid)
    kib = 0
    for key in ("RssAnon", "RssShmem", "VmSwap"):
        value = (st.get(key) or "0 kB").split()[0]
        kib += int(value) if value.isdigit() else 0
    # Every page's data, a 24-byte record header at worst per page, and room
    # for what grows while we look (first touch of memory is costly here).
    want = kib * 1024 * 101 // 100 + (4 << 20)
    return min(want, budget)


async def _pre_copy(
    tracer: Tracer,
    pid: int,
    progress: Progress,
    sink: BufferSink,
    notes: list[str],
    holder: list[WriteTracker],
) -> tuple[WriteTracker, Layout] | None:
    """``--pre-copy``: start tracking the process's writes (see
    :mod:`sigfs.tracking`), then copy its memory while it runs; the freeze
    then copies only the pages written since (:meth:`PagesStream.patch`).
    None, with a note saying why, if its writes cannot be tracked.  The
    tracker goes into ``holder`` as soon as it exists: the caller stops it
    whatever happens.  The tracking is set up while the pages file may still
    be being prepared (both take a while for a big process); the copy waits
    for the file (``sink.ready()``)."""
    from sigfs import tracking
    from sigfs.pages import Layout, PagesStream, dumpable_vmas, mostly, untracked, zero_pfn

    if not zero_pfn():
        notes.append(
            "--pre-copy: needs CAP_SYS_ADMIN (the pagemap's swap entries tell the "
            "tracking's marks from swapped pages only then); the memory was copied while frozen"
        )
        return None
    spans = dumpable_vmas(procfs.read_maps(pid))
    # Private anonymous mappings (PagesStream.patch copies the rest again).
    private = [(v.start, v.end) for v in spans if v.perms[3] == "p" and v.inode == 0]
    try:
        tracker = await tracking.start(tracer, pid, private, holder)
    except tracking.TrackingUnavailable as exc:
        notes.append(f"--pre-copy: {exc}; the memory was copied while frozen")
        return None
    try:
        sink.ready()
        layout = Layout()
        # The very mappings registered: one made since is caught at the
        # freeze (the maps differ), one made again in the place of a tracked
        # one too (its range is no longer tracked: written() refuses).
        # process_vm_readv: this command's own credentials are checked at
        # each call (an exec of a set-user-ID program ends its reads).
        stream = PagesStream(pid, spans, follow_pid=True)
        with stream:
            stream.dump(sink, functools.partial(_pages_progress, progress, stream), layout)
        if mostly(*untracked(layout, tracker.ranges), layout):
            # Shared memory, say, which is copied again whatever happens:
            # the freeze would be no shorter.
            tracker.stop()
            sink.restart()
            notes.append(
                "--pre-copy: most of the memory is shared or cannot be tracked; "
                "it was copied while frozen"
            )
            return None
    except BaseException:
        tracker.stop()
        raise
    return tracker, layout


async def _dump(
    tracer: Tracer,
    pid: int,
    progress: Progress,
    sink: BufferSink,
    pre: tuple[WriteTracker, Layout] | None = None,
) -> _Dump:
    """Everything that needs the process frozen, and nothing else: the pages
    go into the prepared pages file (``sink``), written and hashed by its
    writer thread as they are copied; or, after a pre-copy (``pre``), only
    the pages written since are copied again over theirs.  The tracking
    stays on until after the thaw (:meth:`WriteTracker.stop`, 10-15 ms for
    512 MiB): the pages written are asked for in the `pages` step, after the
    injected syscalls of the other files, which write (and put back) stack
    bytes, and `mm` does not show the `uw` VmFlag it puts on the mappings."""
    from sigfs.files import ErrorLog, FileContext
    from sigfs.image import read_fpu
    from sigfs.pages import PagesStream, dumpable_vmas
    from sigfs.tracking import TrackingUnavailable

    layout = pre[1] if pre is not None else None
    refused = "layout"  # why a pre-copy was not patched: see PagesStream.patch
    tracked = tuple(pre[0].ranges) if pre is not None else ()
    tids = sorted(a.tid for a in tracer.frozen[pid])
    errors = ErrorLog()
    files: list[tuple[str, int]] = []
    deferred: list[tuple[str, Callable[[], bytes]]] = []
    batches: dict[str, dict[int, bytes]] = {}  # Entry.batch results, by path
    pages_count = 0
    recopied: int | None = None
    costs: dict[str, float] = {}
    for rel, node, tid in _image_files(tids, pid):
        entry = node.entry
        assert entry is not None
        began = time.monotonic()
        ctx = FileContext(tracer, errors, pid, tid or pid, rel, tracked=tracked)
        if entry.open_stream is not None:
            written: list[tuple[int, int]] = []
            if pre is not None:
                try:
                    written = pre[0].written()
                except TrackingUnavailable:
                    layout = None  # a tracked mapping went away: copy it all again
            # Frozen by this command (no exec can happen): process_vm_readv.
            stream = PagesStream(pid, dumpable_vmas(procfs.read_maps(pid)), follow_pid=True)
            with stream:
                copied = None
                if pre is not None and layout is not None:
                    copied = stream.patch(sink, layout, written, pre[0].ranges)
                    refused = stream.refused
                if copied is None:
                    if pre is not None:
                        sink.restart()  # the whole stream again
                    stream.dump(sink, functools.partial(_pages_progress, progress, stream))
                recopied = copied
            pages_count = stream.total_pages
            files.append((rel, sink.size))
        elif entry.collect is not None:
            deferred.append((rel, await entry.collect(ctx)))
        elif entry.batch is not None:
            if entry.path not in batches:
                batches[entry.path] = await entry.batch(ctx)
            deferred.append((rel, functools.partial(bytes, batches[entry.path][tid or pid])))
        else:
            # Written after the thaw too: a file write costs some 30 us, and
            # a process with a hundred threads has five hundred files.
            data = await entry.load(ctx)
            deferred.append((rel, functools.partial(bytes, data)))
        key = _cost_key(rel)
        costs[key] = costs.get(key, 0.0) + time.monotonic() - began
    began = time.monotonic()
    fpu: Fpu = await read_fpu(tracer, pid, pid if pid in tids else tids[0])  # the main thread's
    costs["fpu (for MANIFEST)"] = time.monotonic() - began
    dump = _Dump(files, pages_count, fpu, _process_start(pid), list(costs.items()), deferred)
    dump.recopied = recopied
    dump.refused = refused if pre is not None and recopied is None else ""
    return dump


def _render_deferred(tmp: str, dump: _Dump, algo: str) -> None:
    """Render and write the files whose reading was all the freeze needed,
    and checksum them on the way."""
    from sigfs.formats import manifest as manifest_fmt

    for rel, render in dump.deferred:
        data = render()
        _write(os.path.join(tmp, rel), data)
        dump.files.append((rel, len(data)))
        dump.digests[rel] = manifest_fmt.digest(algo, data)
    dump.deferred.clear()


def _write_manifest(
    pid: int, tmp: str, dump: _Dump, progress: Progress, sink: BufferSink, algo: str
) -> int:
    """Write MANIFEST: the small files were checksummed as they were
    written, ``pages`` by the sink's writer thread."""
    from sigfs.formats import manifest as manifest_fmt

    total = sum(size for _, size in dump.files)
    done = 0
    entries = []
    for rel, size in dump.files:
        value = sink.digest(algo) if rel == "pages" else dump.digests[rel]
        entries.append((rel, size, value))
        done += size
        progress.update("checksum", done, total)
    manifest = manifest_fmt.Manifest(
        format_version=manifest_fmt.FORMAT_VERSION,
        checksum=algo,
        sigfs_version=__version__,
        kernel=os.uname().release,
        machine=os.uname().machine,
        xfeatures=dump.fpu.xfeatures,
        xsave_size=len(dump.fpu.xsave),
        pid=pid,
        created=dump.started,
        files=tuple(sorted(entries)),
    )
    _write(os.path.join(tmp, "MANIFEST"), manifest_fmt.render(manifest).encode())
    return total


def _process_start(pid: int) -> str:
    """When the process started (UTC, ISO-8601): the same for every image of
    one process, so checkpointing an unchanged process twice gives the same
    bytes."""
    with open(f"/proc/{pid}/stat", "rb") as f:  # the name in it need not be UTF-8
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = int(fields[19])
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    started = btime + ticks / os.sysconf("SC_CLK_TCK")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))


async def _kill_frozen(tracer: Tracer, pid: int) -> None:
    """SIGKILL a frozen process and reap its traced threads' exits.

    All threads are polled together: a traced thread's exit waits for its
    tracer, and the leader's is reported only once every other thread is
    gone, so waiting for the leader first would wait out the deadline."""
    held = tracer.frozen.pop(pid, [])
    os.kill(pid, signal.SIGKILL)
    for att in held:
        tracer.attached.pop(att.tid, None)
    left = {att.tid for att in held}
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        for tid in list(left):
            try:
                got, status = os.waitpid(tid, os.WNOHANG | 0x40000000)
            except ChildProcessError:
                left.discard(tid)
                continue
            if got and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
                left.discard(tid)
        if left:
            await aio.sleep(0.001)


def _rmtree(path: str) -> None:
    import shutil  # only on failure: shutil imports bz2, lzma and zlib

    shutil.rmtree(path, ignore_errors=True)


def _publish(tmp: str, dest: str) -> None:
    if os.path.isdir(dest):
        os.rmdir(dest)
    os.rename(tmp, dest)


class Prepared:
    """What is set up before the freeze: the checked destination, the
    ``DIR.partial`` being built and the pages file with its memory (allocated
    by a thread while the rest starts).  :meth:`abandon` undoes it all."""

    __slots__ = ("pid", "dest", "tmp", "pages_fd", "sink", "marks", "published", "killed")

    def __init__(self, pid: int, dest: str, tmp: str, pages_fd: int, sink: BufferSink) -> None:
        self.pid = pid
        self.dest = dest
        self.tmp = tmp
        self.pages_fd = pages_fd
        self.sink = sink
        #: (what was done, when): the phases ``--timings`` prints.
        self.marks: list[tuple[str, float]] = []
        #: How far it got, for the message when it is interrupted.
        self.published = False
        self.killed = False

    def mark(self, what: str) -> None:
        self.marks.append((what, time.monotonic()))
        _check_interrupted()

    def abandon(self) -> None:
        """Remove everything (idempotent): no DIR.partial is left behind to
        block the next checkpoint."""
        self.sink.discard()
        if self.pages_fd >= 0:
            os.close(self.pages_fd)
            self.pages_fd = -1
        _rmtree(self.tmp)


def prepare(
    pid: int,
    dest: str,
    buffer_budget: int = DEFAULT_BUFFER,
    checksum: str = DEFAULT_CHECKSUM,
) -> Prepared:
    """Check the arguments and start allocating the pages file in the
    background (see :class:`BufferSink`)."""
    if os.path.lexists(dest) and (not os.path.isdir(dest) or os.listdir(dest)):
        raise CheckpointError(f"{dest} exists and is not an empty directory")
    if procfs.tgid_of(pid) != pid:
        raise CheckpointError(f"{pid} is a thread, not a process")
    tmp = dest.rstrip("/") + ".partial"
    if os.path.lexists(tmp):
        raise CheckpointError(f"{tmp} exists (left by an interrupted checkpoint?); remove it first")
    capacity = buffer_capacity(pid, buffer_budget)
    parent = os.path.dirname(os.path.abspath(tmp))
    os.makedirs(parent, exist_ok=True)
    os.mkdir(tmp, DIR_MODE)
    pages_fd = -1
    try:
        pages_fd = os.open(
            os.path.join(tmp, "pages"), os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE
        )
        sink = BufferSink(pages_fd, capacity, checksum, background=True)
    except BaseException:
        if pages_fd >= 0:
            os.close(pages_fd)
        _rmtree(tmp)
        raise
    prep = Prepared(pid, dest, tmp, pages_fd, sink)
    # Not mark(): nothing may raise between making prep and returning it.
    prep.marks.append(("checked arguments, started preparing the pages file", time.monotonic()))
    return prep


def _complete(prep: Prepared, dump: _Dump, progress: Progress, checksum: str) -> int:
    """Render what was left to render, checksum, write MANIFEST, cut
    ``pages`` to length, write it all to disk and rename ``DIR.partial`` to
    ``DIR``: the image is whole.  Returns its bytes."""
    _render_deferred(prep.tmp, dump, checksum)
    prep.mark("wrote the files read while frozen")
    nbytes = _write_manifest(prep.pid, prep.tmp, dump, progress, prep.sink, checksum)
    prep.mark("checksummed, wrote MANIFEST")
    prep.sink.finish()
    # On disk before it is named DIR, and named before the process is
    # killed: a crash then leaves either DIR.partial or a whole DIR, and
    # never a killed process whose image was still in the page cache.
    _sync_filesystem(prep.pages_fd)
    prep.mark("flushed to disk")
    _publish(prep.tmp, prep.dest)
    prep.published = True
    try:
        _sync_directory(os.path.dirname(os.path.abspath(prep.dest)))
    except OSError as exc:
        # The image is whole and named DIR, its name maybe not yet on disk:
        # not a reason to kill the process.
        raise CheckpointError(
            f"{prep.dest} is written, but the disk failed to record its name: {exc.strerror or exc}"
        ) from None
    prep.mark("published the image")
    return nbytes


def _sync_filesystem(fd: int) -> None:
    """syncfs(2): every file of the image (and anything else waiting on its
    filesystem) written out; one call, where a few hundred fsyncs would each
    wait for a journal commit.  Immediate on tmpfs."""
    import ctypes

    from sigfs.sink import libc

    if libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot write the image to disk: {os.strerror(err)}")


def _sync_directory(path: str) -> None:
    """fsync a directory: the rename into it is on disk (a filesystem that
    cannot fsync a directory, EINVAL, has nothing to write)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


async def run_checkpoint(
    prep: Prepared,
    leave_running: bool,
    progress: Progress,
    checksum: str = DEFAULT_CHECKSUM,
    pre_copy: bool = False,
) -> Result:
    """Freeze, dump, then either thaw and checksum (the process runs on as soon
    as its state is copied), or checksum, publish and only then kill: a
    process is never killed before its image is whole on disk.  With
    ``pre_copy``, the memory is copied before the freeze and only what
    changed since is copied while frozen."""
    # Everything the frozen part needs is imported before the freeze.
    import sigfs.files  # noqa: F401
    import sigfs.image  # noqa: F401
    import sigfs.tree  # noqa: F401
    from sigfs.tracer import Tracer

    prep.mark("imported the tracer and the loaders")
    pid, sink = prep.pid, prep.sink
    tracer = Tracer()
    notes: list[str] = []
    pre: tuple[WriteTracker, Layout] | None = None
    trackers: list[WriteTracker] = []  # stopped on every way out
    frozen_at = thawed_at = time.monotonic()
    try:
        if pre_copy:
            pre = await _pre_copy(tracer, pid, progress, sink, notes, trackers)
            if pre is not None:
                prep.mark("pages file prepared, tracking set up, memory copied while it ran")
        if pre is None:
            # The pages file must be allocated before the freeze, so the
            # frozen copy allocates nothing.
            sink.ready()
            prep.mark("pages file prepared")
        await tracer.freeze(pid)
        frozen_at = time.monotonic()
        prep.mark("froze every thread")
        dump = await _dump(tracer, pid, progress, sink, pre)
        if dump.refused == "layout":
            notes.append(
                "--pre-copy: the memory's layout changed before the freeze; "
                "it was all copied again while frozen"
            )
        elif dump.refused == "most":
            notes.append(
                "--pre-copy: most of the memory had to be copied again (written since, "
                "shared or not trackable); it was all copied again while frozen"
            )
        prep.mark(COPIED)
        if not leave_running:
            nbytes = _complete(prep, dump, progress, checksum)
    except BaseException:
        # Every step here must happen whatever the others do: the process
        # runs on, and no DIR.partial is left to block the next checkpoint.
        for tracker in trackers:
            tracker.stop()  # idempotent
        try:
            with aio.shield():
                if pid in tracer.frozen:
                    await tracer.thaw(pid)
                await tracer.finish_handed_over(_note)
        finally:
            prep.abandon()
            progress.finish()
        raise
    with aio.shield():
        if leave_running:
            await tracer.thaw(pid)
            prep.mark("thawed")
        else:
            await _kill_frozen(tracer, pid)
            prep.killed = True
            prep.mark("killed")
        thawed_at = time.monotonic()
        if trackers:
            for tracker in trackers:
                tracker.stop()
            prep.mark("stopped tracking writes")
    if leave_running:
        try:
            nbytes = _complete(prep, dump, progress, checksum)
        except BaseException:
            prep.abandon()
            raise
        finally:
            progress.finish()
    else:
        progress.finish()
    os.close(prep.pages_fd)
    prep.pages_fd = -1
    prep.mark("closed")
    return Result(
        prep.dest,
        len(dump.files) + 1,
        nbytes,
        dump.pages,
        thawed_at - frozen_at,
        prep.marks,
        dump.costs,
        dump.recopied,
        notes,
    )


def main(
    pid: int,
    dest: str,
    leave_running: bool,
    quiet: bool = False,
    buffer_mib: int = 1024,
    checksum: str = DEFAULT_CHECKSUM,
    timings: bool = False,
    pre_copy: bool = False,
) -> int:
    progress = Progress(enabled=not quiet and sys.stderr.isatty())
    prep: Prepared | None = None
    _interrupts_raise()
    try:
        with aio.interrupts_held():  # prep is set, or nothing was made
            prep = prepare(pid, dest, buffer_mib << 20, checksum)
        result = aio.run(run_checkpoint, prep, leave_running, progress, checksum, pre_copy)
    except BaseException as exc:
        _interrupts_ignore()  # the clean-up is not cut short by a second one
        if prep is not None:
            prep.abandon()
        if isinstance(exc, Interrupted):
            _interrupted(pid, prep, exc.signum)
        if not isinstance(exc, Exception):
            raise
        return _failed(pid, exc)
    _interrupts_ignore()  # done: a late signal changes nothing
    if _pending:  # one that came while Python could not raise it
        _interrupted(pid, prep, _pending[0])
    if not quiet:
        what = "left running" if leave_running else "killed"
        again = ""
        if result.recopied is not None:
            again = f" ({result.recopied} pages copied again)"
        for note in result.notes:
            print(f"sigfs: checkpoint: {note}", file=sys.stderr)
        print(
            f"sigfs: checkpoint of {pid} in {result.path}: {result.files} files, "
            f"{result.bytes >> 10} KiB, {result.pages} pages; frozen "
            f"{result.frozen_seconds * 1e3:.1f} ms{again}, "
            f"{(time.monotonic() - _started_at()) * 1e3:.0f} ms in all; "
            f"process {what}",
            file=sys.stderr,
        )
    if timings:
        last = _started_at()
        for what, when in result.marks:
            print(f"  {(when - last) * 1e3:8.1f} ms  {what}", file=sys.stderr)
            last = when
            if what == COPIED:
                for name, seconds in result.costs:
                    print(f"    {seconds * 1e3:8.2f} ms  {name}", file=sys.stderr)
        print(f"  peak RSS {_peak_rss_kib() / 1024:.1f} MiB", file=sys.stderr)
    return 0


def _peak_rss_kib() -> int:
    """This command's peak resident memory (VmHWM).  Not getrusage's
    ru_maxrss: that also counts the parent's memory when the command was
    started with vfork (as Python's subprocess does), carried over exec."""
    value = procfs.read_status(os.getpid()).get("VmHWM") or "0 kB"
    return int(value.split()[0])


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived (see :func:`_interrupts_raise`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Interrupting signals received: the handler raises at once, but Python
# swallows an exception raised while it runs a callback (a weakref's, an
# import lock's), so the phases look here too (Prepared.mark).
_pending: list[int] = []


def _raise_interrupted(signum: int, frame: object) -> None:
    _pending.append(signum)
    raise Interrupted(signum)


def _check_interrupted() -> None:
    if _pending:
        raise Interrupted(_pending[0])


def _quiet_unraisable(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """sys.unraisablehook without the report of a swallowed Interrupted
    (it is acted on at the next phase)."""

    def quiet(unraisable: Any) -> object:
        if isinstance(unraisable.exc_value, Interrupted):
            return None
        return hook(unraisable)

    return quiet


def _interrupts_raise() -> None:
    """SIGINT, SIGTERM and SIGHUP become an exception, so that whatever
    was going on is undone (the process thawed, DIR.partial removed); the
    tracer's critical steps hold them back until they are over (see
    :func:`sigfs.aio.shield`).  A signal the caller ignores stays ignored."""
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
    for signum in aio.INTERRUPTS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise_interrupted)


def _interrupts_ignore() -> None:
    for signum in aio.INTERRUPTS:
        if signal.getsignal(signum) is _raise_interrupted:
            signal.signal(signum, signal.SIG_IGN)


def _interrupted(pid: int, prep: Prepared | None, signum: int) -> None:
    """Say what an interrupted checkpoint left, then die of the signal (as
    a shell expects of a command it interrupted)."""
    name = signal.Signals(signum).name
    if prep is not None and prep.published:
        fate = "killed" if prep.killed else "left running"
        what = f"the image in {prep.dest} is whole; process {pid} {fate}"
    else:
        what = f"no image written; process {pid} left running"
    print(f"sigfs: checkpoint: interrupted ({name}); {what}", file=sys.stderr)
    sys.stderr.flush()
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)


def _started_at() -> float:
    """When this process started, on the monotonic clock (to the kernel's
    clock tick): so ``--timings`` shows the interpreter's start-up too."""
    with open("/proc/self/stat", "rb") as f:
        ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
    since_boot = ticks / os.sysconf("SC_CLK_TCK")
    return since_boot - (time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic())


def _note(message: str) -> None:
    print(f"sigfs: checkpoint: {message}", file=sys.stderr, flush=True)


def _failed(pid: int, exc: Exception) -> int:
    """One line on stderr for a failed checkpoint; exit status 1."""
    if isinstance(exc, CheckpointError):
        print(f"sigfs: checkpoint: {exc}", file=sys.stderr)
    elif isinstance(exc, ProcessLookupError):
        print(
            f"sigfs: checkpoint: process {pid} does not exist or exited during the "
            "checkpoint; no image written",
            file=sys.stderr,
        )
    elif isinstance(exc, OSError):
        if exc.errno == errno.EPERM:
            print(f"sigfs: checkpoint: not permitted to trace {pid}", file=sys.stderr)
        else:
            print(f"sigfs: checkpoint: {exc.strerror or exc}; no image written", file=sys.stderr)
    else:
        raise exc
    return 1
