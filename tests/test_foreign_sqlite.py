"""A SQLite file the project did not create is never written: a file holding only a view, or another program's
application_id with no tables, is refused as the call cache and as the optimizer history -- its bytes unchanged --
while a new empty file is taken."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from alphasignal.errors import AlphaSignalError
from alphasignal.providers.cache import CallCache
from alphasignal.storage.history import History


def _view_only(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE VIEW answers AS SELECT 42 AS answer")
    con.commit()
    con.close()


def _marked_by_another_program(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA application_id = 1234567")
    con.execute("PRAGMA user_version = 3")  # forces the header to be written
    con.commit()
    con.close()


OPENERS = {"call cache": lambda p: CallCache(p), "history": lambda p: History(p)}


@pytest.mark.parametrize("make", [_view_only, _marked_by_another_program], ids=["view only", "foreign app id"])
@pytest.mark.parametrize("what", sorted(OPENERS))
def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path, make, what):
    path = tmp_path / "theirs.sqlite"
    make(path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(AlphaSignalError, match="SQLite file of another program") as info:
        OPENERS[what](path)
    assert "\n" not in str(info.value)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs.sqlite"]  # no -wal/-shm left beside it


@pytest.mark.parametrize("what", sorted(OPENERS))
def test_a_new_empty_file_is_taken(tmp_path, what):
    path = tmp_path / "new.sqlite"
    path.touch()
    opened = OPENERS[what](path)
    opened.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] != 0
    con.close()


def _filled_tmpfs(mnt: Path) -> None:
    """Fill a small tmpfs until one more byte does not fit."""
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:  # no space left: full
        pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("fs", ["read_only_fs", "full_disk"])
def test_a_history_that_cannot_be_created_is_one_error_and_leaves_no_file(fs, request):
    mnt = request.getfixturevalue(fs)
    if fs == "full_disk":
        _filled_tmpfs(mnt)
    before = sorted(p.name for p in mnt.iterdir())
    with pytest.raises(AlphaSignalError, match="cannot be written") as info:
        History(mnt / "h.sqlite")
    assert "\n" not in str(info.value) and "optimizer.history_db" in str(info.value)
    assert sorted(p.name for p in mnt.iterdir()) == before  # no h.sqlite, -wal or -shm left behind
