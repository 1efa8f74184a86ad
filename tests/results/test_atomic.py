"""Atomic writes are durable: the data is flushed before the rename, the folder after it,
and a full disk that only the flush finds is the usual one-line error."""

from __future__ import annotations

import errno
import os

import pytest

from vrsearch.errors import VrsearchError
from vrsearch.results import atomic


def _trace(monkeypatch, fail: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """Record every fsync (the path its descriptor names) and rename, in order; ``fail``
    makes the fsync of a file (``"file"``) or a folder (``"dir"``) raise that errno."""
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def traced_fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        kind = "dir" if os.path.isdir(target) else "file"
        events.append(("fsync " + kind, target))
        if fail and kind in fail:
            raise OSError(fail[kind], os.strerror(fail[kind]))
        fsync(fd)

    def traced_replace(src, dst) -> None:
        events.append(("replace", str(dst)))
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", traced_fsync)
    monkeypatch.setattr(atomic.os, "replace", traced_replace)
    return events


def test_the_data_is_flushed_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = _trace(monkeypatch)
    target = tmp_path / "sub" / "status.json"
    atomic.write_text_atomic(target, '{"status": "completed"}')
    assert target.read_text() == '{"status": "completed"}'
    assert [kind for kind, _ in events] == ["fsync file", "replace", "fsync dir"]
    assert events[0][1] == str(atomic.temporary(target))  # the temporary file, not the target
    assert events[2][1] == str(target.parent)
    assert not list(target.parent.glob(".*.tmp"))


def test_a_full_disk_found_by_the_flush_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "history.parquet"
    target.write_text("old")
    events = _trace(monkeypatch, fail={"file": errno.ENOSPC})
    with pytest.raises(VrsearchError) as err:
        atomic.write_text_atomic(target, "new")
    assert "\n" not in str(err.value) and str(target) in str(err.value) and "intact" in str(err.value)
    assert target.read_text() == "old"
    assert "replace" not in [kind for kind, _ in events]
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_io_error_of_the_flush_is_raised_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    target.write_text("old")
    _trace(monkeypatch, fail={"file": errno.EIO})
    with pytest.raises(OSError) as err:
        atomic.write_text_atomic(target, "new")
    assert err.value.errno == errno.EIO and not isinstance(err.value, VrsearchError)
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTSUP])
def test_a_folder_its_file_system_cannot_flush_is_left_as_it_is(tmp_path, monkeypatch, code):
    _trace(monkeypatch, fail={"dir": code})
    target = tmp_path / "trials.parquet"
    atomic.write_text_atomic(target, "new")
    assert target.read_text() == "new"


def test_a_folder_that_cannot_be_flushed_for_want_of_space_is_one_line_and_says_the_file_is_in(tmp_path, monkeypatch):
    target = tmp_path / "trials.parquet"
    target.write_text("old")
    _trace(monkeypatch, fail={"dir": errno.ENOSPC})
    with pytest.raises(VrsearchError) as err:
        atomic.write_text_atomic(target, "new")
    assert "\n" not in str(err.value) and "is in place" in str(err.value) and "intact" not in str(err.value)
    assert target.read_text() == "new"
