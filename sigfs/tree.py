"""The shape of the tree: one table of entries drives lookup, readdir and open.

As in the kernel's fs/proc/base.c (``tgid_base_stuff[]``/``tid_base_stuff[]``),
each file is one row: its path under ``<pid>/``, its scope, how to render it.
A thread-scoped row appears under ``<pid>/`` (for the leader) and under every
``task/<tid>/`` from that one line.  Adding a file is adding a row in
:mod:`sigfs.files`.

Inode numbers are computed, not stored: ``node << 44 | pid << 22 | tid``
(pid_max is at most 2**22), so the daemon keeps no per-inode state and the
kernel can forget inodes whenever it likes.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

from sigfs.record import record

TYPE_CHECKING = False  # typing is not imported at run time (sigfs/record.py)
if TYPE_CHECKING:
    from sigfs.files import FileContext
    from sigfs.pages import StreamReader

ROOT_INODE = 1
PID_BITS = 22
PID_MASK = (1 << PID_BITS) - 1
NODE_SHIFT = 2 * PID_BITS


class Scope(enum.Enum):
    PROCESS = "process"  # one per process: shown under <pid>/ only
    THREAD = "thread"  # per thread: under <pid>/ (the leader) and task/<tid>/


class Place(enum.Enum):
    PROCESS = "process"  # under MOUNT/<pid>/
    TASK = "task"  # under MOUNT/<pid>/task/<tid>/


@record
class Entry:
    path: str
    scope: Scope
    load: Callable[[FileContext], Awaitable[bytes]]
    needs_ptrace: bool
    doc: str
    mode: int = 0o444
    # Its load runs syscalls inside the target (or holds it frozen): must run
    # in the tracer process, which outlives the daemon long enough to put it
    # back.  (Every store runs there, whatever this says: see SigFS.write.)
    injects: bool = False
    # Applies one write(2) of text to the process; raises OSError to refuse.
    store: Callable[[FileContext, bytes], Awaitable[None]] | None = None
    # A later write through the same open adds to what the first set (as
    # `>>` does), rather than setting what it names: a mask, a queue.
    adds: bool = False
    # For streams too large to render at open (pages): a sequential reader.
    open_stream: Callable[[FileContext], Awaitable[StreamReader]] | None = None
    # ``load`` in two steps, for `sigfs checkpoint`: the reading, done while
    # the process is frozen, returns the rendering, which can wait until it
    # runs again.  ``load`` must be the two run back to back.
    collect: Callable[[FileContext], Awaitable[Callable[[], bytes]]] | None = None
    # For a thread-scoped file of a frozen process, in `sigfs checkpoint`:
    # the file of every held thread at once, {tid: bytes}, equal to what
    # ``load`` gives for each (altstack: one injection stepped in all
    # threads together instead of one thread after another).
    batch: Callable[[FileContext], Awaitable[dict[int, bytes]]] | None = None


@record
class Node:
    id: int
    place: Place
    path: tuple[str, ...]
    entry: Entry | None  # None for a directory

    @property
    def is_dir(self) -> bool:
        return self.entry is None

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""


class Tree:
    """All node templates, built once from the entry table."""

    def __init__(self, entries: list[Entry]) -> None:
        self.nodes: list[Node] = []
        self._by_path: dict[tuple[Place, tuple[str, ...]], Node] = {}
        self._children: dict[int, list[Node]] = {}
        self._add(Place.PROCESS, ())
        self._add(Place.PROCESS, ("task",))
        self._add(Place.TASK, ())
        for entry in entries:
            places = [Place.PROCESS]
            if entry.scope is Scope.THREAD:
                places.append(Place.TASK)
            for place in places:
                parts = tuple(entry.path.split("/"))
                for i in range(1, len(parts)):
                    if (place, parts[:i]) not in self._by_path:
                        self._add(place, parts[:i])
                self._add(place, parts, entry)

    def _add(self, place: Place, path: tuple[str, ...], entry: Entry | None = None) -> None:
        node = Node(len(self.nodes) + 1, place, path, entry)
        self.nodes.append(node)
        self._by_path[(place, path)] = node
        if path:
            parent = self._by_path[(place, path[:-1])]
            self._children.setdefault(parent.id, []).append(node)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def find(self, place: Place, path: tuple[str, ...]) -> Node | None:
        return self._by_path.get((place, path))

    def children(self, node: Node) -> list[Node]:
        return self._children.get(node.id, [])

    @property
    def process_dir(self) -> Node:
        return self._by_path[(Place.PROCESS, ())]

    @property
    def task_dir(self) -> Node:
        return self._by_path[(Place.PROCESS, ("task",))]

    @property
    def thread_dir(self) -> Node:
        return self._by_path[(Place.TASK, ())]


def encode(node: Node, pid: int, tid: int) -> int:
    return node.id << NODE_SHIFT | pid << PID_BITS | tid


def decode(inode: int) -> tuple[int, int, int]:
    """(node id, pid, tid) of a computed inode."""
    return inode >> NODE_SHIFT, (inode >> PID_BITS) & PID_MASK, inode & PID_MASK
