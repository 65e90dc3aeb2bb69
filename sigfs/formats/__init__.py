"""Text formats of the sigfs ``sig/`` files: pure parse/render functions, no I/O.

Each module has a frozen model (a :func:`sigfs.record.record`, a light
dataclass; a plain ``int`` for signal sets), a ``render(model) -> str``
producing the canonical text and a ``parse(text) -> model`` accepting it (and
some friendlier spellings), with ``render(parse(t)) == t`` for canonical ``t``.
Bad input raises :class:`FormatError`, which names the line.

Modules: :mod:`.sigset` (``blocked``), :mod:`.siginfo` (one queued siginfo_t),
:mod:`.pending` (``pending``, ``shared_pending``), :mod:`.action`, :mod:`.altstack`,
:mod:`.waiters`.  Only the error type is imported here, so that ``sigfs.signals`` (which
the modules use) can itself use it without an import cycle.
"""

from sigfs.formats.errors import FormatError

__all__ = ["FormatError"]
