"""Write an `.npz` whose large arrays grow along axis 0 without holding them in memory.

Rows are appended to one raw temporary file per array; `finish` writes the zip (the same
layout as `np.savez`: one stored `NAME.npy` member per array), copying each raw file in
chunks behind its `.npy` header, then renames it into place.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile

import numpy as np

_COPY_CHUNK = 1 << 22


class NpzStreamWriter:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._dir = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(self.path)), prefix=".npz-stream-")
        self._rows: dict[str, tuple[np.dtype, tuple[int, ...], int]] = {}
        self._files: dict[str, object] = {}

    def append(self, name: str, rows: np.ndarray) -> None:
        """Append `rows` (n, ...) to array `name`; dtype and trailing shape must stay the same."""
        rows = np.ascontiguousarray(rows)
        if name not in self._files:
            self._files[name] = open(os.path.join(self._dir, name), "wb")
            self._rows[name] = (rows.dtype, rows.shape[1:], 0)
        dtype, tail, count = self._rows[name]
        if rows.dtype != dtype or rows.shape[1:] != tail:
            raise ValueError(f"{name}: rows {rows.dtype} {rows.shape[1:]} do not continue {dtype} {tail}")
        self._files[name].write(rows.tobytes())
        self._rows[name] = (dtype, tail, count + rows.shape[0])

    def finish(self, fixed: dict[str, np.ndarray]) -> None:
        """Write the streamed arrays plus the small `fixed` ones, atomically."""
        for handle in self._files.values():
            handle.close()
        partial = os.path.join(self._dir, "out.npz")
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, value in fixed.items():
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            for name, (dtype, tail, count) in self._rows.items():
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (count, *tail)}
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member, \
                        open(os.path.join(self._dir, name), "rb") as raw:
                    np.lib.format.write_array_header_2_0(member, header)
                    shutil.copyfileobj(raw, member, _COPY_CHUNK)
        os.replace(partial, self.path)
        self.close()

    def close(self) -> None:
        """Drop the temporary files (also after an error)."""
        for handle in self._files.values():
            handle.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "NpzStreamWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
