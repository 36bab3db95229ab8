"""Giving freed memory back to the system: for the predictors, and for training between its phases
(no torch here)."""
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


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def map_large_buffers(threshold: int = 1 << 20) -> None:
    """Allocate every buffer of `threshold` bytes or more with its own mapping, returned to the
    system when freed, for the whole process. glibc otherwise raises its threshold to the
    largest buffer freed so far (up to 32 MB), after which decoded images (3.7 MB at 960x1280)
    come from the heap, fragment it and stay: `msgf infer --runtime onnx` over 200 such JPEGs
    peaked at 342-420 MB with glibc's rule and at 248 MB with this one (batch 8)."""
    if _LIBC is not None and hasattr(_LIBC, "mallopt"):
        _LIBC.mallopt(M_MMAP_THRESHOLD, int(threshold))
