"""Which pages a process writes from a given moment: for ``sigfs checkpoint
--pre-copy``, which copies the memory while the process runs and then, frozen,
copies again only the pages written since.

The kernel's soft-dirty bits would tell, but kernels built without
CONFIG_MEM_SOFT_DIRTY (this machine's among them) never set them.  So this
uses userfaultfd's asynchronous write protection (Linux 6.7+): a userfaultfd
is made *in* the process by one injected syscall (the whole process frozen
for it), taken out with pidfd_getfd() and closed there again (its descriptor
table is as before); its private anonymous mappings are registered for write
protection in async mode, where the kernel itself lifts the protection of a
page at its first write (no fault handler: the process takes a minor fault,
and a transparent huge page is split), and PAGEMAP_SCAN on its pagemap
protects every populated page and later lists the pages written since
(present or swapped: the kernel counts an empty entry as written).
Only populated entries are protected: protecting a range also writes a
marker into each empty entry (the kernel turns UFFD_FEATURE_WP_UNPOPULATED on
with WP_ASYNC), which for a large reservation would allocate page tables for
all of it.  While registered, the mappings show ``uw`` in the process's smaps
VmFlags (``mm`` leaves it out) and the process cannot register them with a
userfaultfd of its own.  :meth:`WriteTracker.stop` unregisters, after the
thaw; were this command to die first, the kernel drops the registration with
its last descriptor.

A mapping that cannot be registered (a MAP_DROPPABLE one, one the process
registered itself) is left untracked: its pages are copied again whole.
Refused (:class:`TrackingUnavailable`, and the checkpoint copies everything
while frozen) for a process under a seccomp filter (an injected
``userfaultfd`` could kill it), one with io_uring, RDMA or VFIO descriptors
or an io_uring's or kernel AIO's rings in its maps (the kernel or a device
writes pinned pages without a fault, which the protection cannot see: looked
at before and after protecting), and a kernel without userfaultfd or
PAGEMAP_SCAN.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from sigfs import procfs
from sigfs.pages import pagemap_scan

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from sigfs.tracer import Tracer

SYS_USERFAULTFD = 323  # x86-64
SYS_PIDFD_GETFD = 438
SYS_CLOSE = 3
UFFD_USER_MODE_ONLY = 1
UFFD_API = 0xAA
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 2
# _IOWR(0xAA, 0x3F, struct uffdio_api), _IOWR(0xAA, 0x00, struct
# uffdio_register), _IOR(0xAA, 0x01, struct uffdio_range)
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_UNREGISTER = 0x8010AA01
# PAGEMAP_SCAN's flags and categories (its request and argument: sigfs.pages)
PM_SCAN_WP_MATCHING = 1
PM_SCAN_CHECK_WPASYNC = 2
PAGE_IS_WRITTEN = 1 << 1
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE = 4096

_API = struct.Struct("<QQQ")
_REGISTER = struct.Struct("<QQQQ")
_RANGE = struct.Struct("<QQ")
_VEC_LEN = 512  # regions per PAGEMAP_SCAN call

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.restype = ctypes.c_int


class TrackingUnavailable(Exception):
    """Writes to this process cannot be tracked; the reason is the message."""


class WriteTracker:
    """Write tracking over some ranges of one process; see the module."""

    def __init__(self, pid: int, uffd: int, ranges: list[tuple[int, int]]) -> None:
        self.pid = pid
        self.wanted = ranges
        #: The ranges registered, in address order: writes there are tracked.
        self.ranges: list[tuple[int, int]] = []
        self._uffd = uffd
        try:
            self._pagemap = os.open(f"{procfs.proc_dir(pid)}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            os.close(uffd)
            raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
        self._vec = (ctypes.c_uint64 * (3 * _VEC_LEN))()

    def _start(self) -> None:
        api = bytearray(_API.pack(UFFD_API, UFFD_FEATURE_WP_ASYNC, 0))
        try:
            _ioctl(self._uffd, UFFDIO_API, api)
        except OSError as exc:
            raise TrackingUnavailable(
                f"userfaultfd has no asynchronous write protection here ({exc.strerror})"
            ) from None
        for start, end in self.wanted:
            reg = bytearray(_REGISTER.pack(start, end - start, UFFDIO_REGISTER_MODE_WP, 0))
            try:
                _ioctl(self._uffd, UFFDIO_REGISTER, reg)
            except OSError:
                continue  # left untracked: copied again whole
            self.ranges.append((start, end))
        # Protect every populated page now: what is written from here on
        # shows.  Empty entries are left alone (a write there makes a page
        # present, which the layout check sees); UFFDIO_WRITEPROTECT would
        # put a marker in each, page tables and all.
        for start, end in self.ranges:
            self._scan(start, end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC, 0)

    def _scan(self, start: int, end: int, flags: int, mask: int) -> list[tuple[int, int]]:
        """The regions in [start, end) of pages present or swapped and in
        every category of ``mask``, in address order; with
        PM_SCAN_WP_MATCHING they are write-protected as well."""
        anyof = PAGE_IS_PRESENT | PAGE_IS_SWAPPED
        try:
            return pagemap_scan(self._pagemap, start, end, self._vec, flags, mask, anyof, anyof)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL):
                raise TrackingUnavailable("this kernel has no PAGEMAP_SCAN (Linux 6.7+)") from None
            if exc.errno == errno.EPERM:
                raise TrackingUnavailable(f"{start:#x}-{end:#x} is no longer tracked") from None
            raise OSError(
                exc.errno, f"PAGEMAP_SCAN of process {self.pid}: {exc.strerror}"
            ) from None

    def written(self) -> list[tuple[int, int]]:
        """Every region (start, end) written since the tracking began, in
        address order.  Raises TrackingUnavailable if a range is no longer
        what was registered (unmapped, remapped).  Pages never touched are
        not in it (the kernel counts an empty entry as written)."""
        out: list[tuple[int, int]] = []
        for start, end in self.ranges:
            out.extend(self._scan(start, end, PM_SCAN_CHECK_WPASYNC, PAGE_IS_WRITTEN))
        return out

    def stop(self) -> None:
        """Unregister every range and let the userfaultfd go (idempotent;
        raises nothing: a range gone with its mapping needs nothing)."""
        for start, end in self.ranges if self._uffd >= 0 else ():
            try:
                _ioctl(self._uffd, UFFDIO_UNREGISTER, bytearray(_RANGE.pack(start, end - start)))
            except OSError:
                pass
        for fd in (self._uffd, self._pagemap):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._uffd = self._pagemap = -1


def _ioctl(fd: int, request: int, buf: bytearray) -> None:
    c_buf = (ctypes.c_char * len(buf)).from_buffer(buf)
    if _libc.ioctl(fd, ctypes.c_ulong(request), c_buf) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


async def _userfaultfd_of(tracer: Tracer, pid: int) -> int:
    """A userfaultfd for ``pid``'s memory, held here: made in the process by
    an injected syscall, taken with pidfd_getfd, closed there again.  The
    whole process is frozen meanwhile: no other thread may fork with the
    descriptor, or dup2 onto its number, while it is there."""
    from sigfs import aio, inject, state

    pidfd = os.pidfd_open(pid)
    mine = -1
    try:
        # Shielded: a Ctrl-C must not leave the process holding a userfaultfd.
        with aio.shield():
            await tracer.freeze(pid)
            try:
                tid = state.live_thread(pid)
                async with tracer.stopped(pid, tid) as att:
                    async with inject.Injection(tracer, att) as inj:
                        flags = os.O_CLOEXEC | os.O_NONBLOCK
                        fd = await inj.syscall(SYS_USERFAULTFD, flags)
                        if fd == -errno.EPERM:
                            # vm.unprivileged_userfaultfd=0: user faults only
                            # (the kernel lifts async protection for its own
                            # writes all the same).
                            fd = await inj.syscall(SYS_USERFAULTFD, flags | UFFD_USER_MODE_ONLY)
                        if fd < 0:
                            raise TrackingUnavailable(
                                f"the process cannot make a userfaultfd ({os.strerror(-fd)})"
                            )
                        try:
                            mine = int(_libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0))
                            err = ctypes.get_errno()
                        finally:
                            await inj.check(SYS_CLOSE, fd)
            finally:
                await tracer.thaw(pid)
    except BaseException:
        if mine >= 0:
            os.close(mine)
        raise
    finally:
        os.close(pidfd)
    if mine < 0:
        raise TrackingUnavailable(f"pidfd_getfd of its userfaultfd failed ({os.strerror(err)})")
    return mine


# Descriptors and mappings through which the kernel (or a device) writes
# pinned pages of the process without a page fault, which write protection
# cannot see: io_uring (its rings stay mapped after its descriptor is
# closed), kernel AIO (io_setup maps a ring, with no descriptor), RDMA, VFIO.
_PINNING_FDS = (
    "anon_inode:[io_uring]",
    "anon_inode:[aio]",
    "/dev/infiniband/",
    "/dev/vfio/",
    "/dev/iommu",
)
_PINNING_MAPS = ("[io_uring]", "/[aio]")


def _pinning(pid: int) -> str | None:
    """What of the process lets the kernel write its memory unseen, or None."""
    try:
        where = procfs.proc_dir(pid)
        names = os.listdir(f"{where}/fd")
        with open(f"{where}/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except FileNotFoundError:
        raise ProcessLookupError(errno.ESRCH, f"no such process: {pid}") from None
    for name in names:
        try:
            target = os.readlink(f"{where}/fd/{name}")
        except OSError:
            continue
        if target.startswith(_PINNING_FDS):
            return f"{target} open"
    for line in maps.split("\n"):  # only "\n" ends a line (a name may hold \r)
        parts = line.split(None, 5)
        path = parts[5] if len(parts) > 5 else ""
        if any(mark in path for mark in _PINNING_MAPS):
            return f"{path} mapped"
    return None


async def start(
    tracer: Tracer, pid: int, ranges: list[tuple[int, int]], holder: list[WriteTracker]
) -> WriteTracker:
    """Track writes to ``ranges`` (whole private mappings) of ``pid`` from
    now on.  Raises TrackingUnavailable with the reason where it cannot.
    The tracker is put in ``holder`` the moment it exists, so that whoever
    catches an interrupt can stop it."""
    seccomp = procfs.read_status(pid).get("Seccomp") or "0"
    if seccomp != "0":
        raise TrackingUnavailable("the process runs under seccomp; userfaultfd is not injected")
    _check_pinning(pid)
    from sigfs import aio

    with aio.shield():  # the descriptor is never without an owner
        uffd = await _userfaultfd_of(tracer, pid)
        try:
            tracker = WriteTracker(pid, uffd, ranges)
        except BaseException:
            os.close(uffd)
            raise
        holder.append(tracker)
    try:
        tracker._start()
        # Again: a buffer pinned between the first look and the protection
        # would be written through its pin without a fault.  (One pinned
        # after it faults on the way, and shows as written.)
        _check_pinning(pid)
    except BaseException:
        tracker.stop()
        raise
    return tracker


def _check_pinning(pid: int) -> None:
    pinning = _pinning(pid)
    if pinning is not None:
        raise TrackingUnavailable(
            f"the process has {pinning}, through which the kernel writes its "
            "memory without a fault that write protection would see"
        )
