"""Atomic file writes: a reader sees the old file or the new one, never half of one.

The data goes to a temporary file in the same directory, is flushed to disk, and replaces the
target with one rename. The temporary file is created with the usual permissions (0666 less
the umask), unlike `tempfile.mkstemp`'s private 0600, so results stay readable by others.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it becomes `path`."""
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    temporary = f"{path}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(descriptor, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(err, OSError) and err.errno is not None:
            raise _naming(err, path) from err
        raise


def _naming(err: OSError, path: str) -> OSError:
    """The same error (errno, and so the same OSError subclass) with the target in its text:
    an ENOSPC raised inside torch.save names no file."""
    reason = err.strerror or str(err)
    kept = "the previous file is unchanged" if os.path.exists(path) else "nothing was written"
    return OSError(err.errno, f"{reason}: could not write {path} ({kept})", path)


def atomic_save(payload, path: str | os.PathLike) -> None:
    """torch.save(payload, path), atomically."""
    import torch

    with atomic_write(path) as file:
        torch.save(payload, file)
