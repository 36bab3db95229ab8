"""Giving freed memory back to the system, for both predictors (no torch here)."""
from __future__ import annotations

import ctypes
import ctypes.util


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()


def release_memory() -> None:
    """Give freed batch memory back to the system: a long-running pipeline should sit at the
    footprint of one batch, not at its high-water mark (glibc keeps freed heap otherwise)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)
