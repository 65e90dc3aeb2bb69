"""Resolve a code address in a live process to ``symbol+offset``, for people.

The address is mapped back to the ELF file that ``/proc/PID/maps`` shows
there, and looked up in that file's .symtab (or .dynsym when stripped).
Best effort: anything that cannot be resolved is simply left as the address.
"""

from __future__ import annotations

import bisect
import functools

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from sigfs import procfs


@functools.lru_cache(maxsize=64)
def _symbols(path: str, mtime_ns: int) -> tuple[bool, list[int], list[tuple[int, int, str]]]:
    """(is_pie_or_shared, sorted starts, [(start, size, name)]) of one ELF file."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        dyn = elf.header["e_type"] == "ET_DYN"
        syms: dict[int, tuple[int, int, str]] = {}
        for name in (".dynsym", ".symtab"):
            sec = elf.get_section_by_name(name)
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                if (
                    sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC")
                    or not sym["st_value"]
                ):
                    continue
                syms[sym["st_value"]] = (sym["st_value"], sym["st_size"], sym.name)
    table = sorted(syms.values())
    return dyn, [s[0] for s in table], table


def _maps(pid: int) -> list[tuple[int, int, int, str]]:
    out = []
    with open(f"{procfs.proc_dir(pid)}/maps", "rb") as f:
        text = f.read().decode("utf-8", "surrogateescape")
    for line in text.split("\n"):  # only "\n" ends a line (a name may hold \r)
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        start, _, end = parts[0].partition("-")
        out.append((int(start, 16), int(end, 16), int(parts[2], 16), parts[5]))
    return out


def resolve(pid: int, addr: int) -> str | None:
    """``name+0xoff`` (and the file's base name) for ``addr``, or None."""
    import os

    try:
        maps = _maps(pid)
    except OSError:
        return None
    for start, end, _offset, path in maps:
        if not start <= addr < end:
            continue
        base = min((s - o) for s, _, o, p in maps if p == path)
        try:
            st = os.stat(f"{procfs.proc_dir(pid)}/map_files/{start:x}-{end:x}")
            dyn, starts, table = _symbols(path, st.st_mtime_ns)
        except (OSError, ELFError, ValueError):
            return None
        rel = addr - base if dyn else addr
        i = bisect.bisect_right(starts, rel) - 1
        if i < 0:
            return None
        sym_start, size, name = table[i]
        if size and rel >= sym_start + size:
            return None
        off = rel - sym_start
        where = os.path.basename(path)
        return f"{name}+{off:#x} ({where})" if off else f"{name} ({where})"
    return None
