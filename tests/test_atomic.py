"""Atomic writes keep the old file on failure and give results the usual permissions."""
import os
import stat

import pytest

from msgf.atomic import atomic_write


def test_replaces_whole_file_with_umask_permissions(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with atomic_write(target, "w") as file:
        file.write("new")
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert list(tmp_path.iterdir()) == [target]  # no temporary left behind


def test_failure_keeps_the_old_file_and_cleans_up(tmp_path):
    target = tmp_path / "model.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as file:
            file.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        with atomic_write("x", "a"):
            pass
