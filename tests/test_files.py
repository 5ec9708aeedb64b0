import os
import stat

import pytest

from verl_difficulty.files import atomic_path, atomic_write_bytes, atomic_write_text


def test_write_replaces_whole_file_with_open_permissions(tmp_path):
    target = tmp_path / "sub" / "state.json"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no temporary left behind


def test_error_inside_leaves_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.parquet"
    target.write_text("before")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
