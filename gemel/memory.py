"""Handing memory the process no longer uses back to the system.

glibc's malloc keeps freed heap for reuse instead of returning it: loading a linker frees ~40-80 MB of
temporary buffers (tokenising 10k KB names, building the pools, reading the weights) that would stay in the
serving process's RSS for ever. `trim` collects garbage and asks glibc to release free pages
(``malloc_trim(0)``); elsewhere (musl, macOS) it only collects garbage. It never changes a value the process
holds, so answers are unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def trim() -> bool:
    """Collect garbage, then return malloc's free memory to the system; True when glibc released some."""
    gc.collect()
    libc = _libc()
    release = getattr(libc, "malloc_trim", None) if libc is not None else None
    return bool(release(0)) if release is not None else False
