"""Atomic writes keep the old file on failure and give results the usual permissions."""
import errno
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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EDQUOT])
def test_a_write_failing_midway_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, code):
    target = tmp_path / "model.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(OSError) as caught:
        with atomic_write(target) as file:
            file.write(b"half of the new file")
            raise OSError(code, os.strerror(code))  # what write() or torch.save raises on a full disk
    assert caught.value.errno == code and str(target) in str(caught.value)
    assert "previous file is unchanged" in str(caught.value)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_a_failing_fsync_or_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "thresholds.json"
    target.write_text("old")
    for name in ("fsync", "replace"):
        with monkeypatch.context() as patch:
            patch.setattr(os, name, lambda *args: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
            with pytest.raises(OSError, match=f"I/O error: could not write {target}"):
                with atomic_write(target, "w") as file:
                    file.write("new")
        assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]


def test_a_directory_that_cannot_be_written_is_named(tmp_path):
    missing = tmp_path / "no-such-dir" / "model.ckpt"
    with pytest.raises(FileNotFoundError, match="could not write .*no-such-dir.*nothing was written"):
        with atomic_write(missing):
            pass
