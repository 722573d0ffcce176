"""Checks shared by this project's SQLite files: an existing file is inspected read-only, without writing anything
beside it, before it is opened for writing, so a corrupt or foreign file is reported in one line and never modified.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..errors import AlphaSignalError

SQLITE_HEADER = b"SQLite format 3\x00"


def read_only_uri(path: Path) -> str:
    """An SQLite URI that reads ``path`` without writing anything beside it. With no write-ahead log next to the
    file, everything is in the file and ``immutable=1`` avoids creating -wal/-shm files; while a writer is active
    (its -wal exists) a plain read-only connection sees its commits."""
    flags = "mode=ro" if path.with_name(path.name + "-wal").exists() else "mode=ro&immutable=1"
    return f"{path.resolve().as_uri()}?{flags}"  # as_uri quotes spaces, ? and #


def check_sqlite_file(path: Path, what: str, setting: str, error: type[AlphaSignalError],
                      ours: Callable[[sqlite3.Connection, set[str]], bool]) -> None:
    """Raise ``error`` when ``path`` exists and is not an SQLite file, is corrupt, or is another program's database:
    schema objects but no tables (a view alone), or tables or an application_id that ``ours(connection,
    table_names)`` does not recognise. Only an empty file (no schema objects, application_id 0) passes unclaimed.
    ``what`` names the file in the message and ``setting`` is the config key that moves it."""
    hint = f"{what} {str(path)!r}"
    try:
        with path.open("rb") as fh:
            header = fh.read(16)
        if header and header != SQLITE_HEADER:
            raise error(f"{hint} is not an SQLite file: move it away or set {setting} to another path")
        ro = sqlite3.connect(read_only_uri(path), uri=True)
        try:
            if header:
                ok = ro.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise error(f"{hint} is corrupt ({ok}): move it away or set {setting}")
                objects = dict(ro.execute("SELECT name, type FROM sqlite_master").fetchall())
                tables = {name for name, kind in objects.items() if kind == "table"}
                marked = ro.execute("PRAGMA application_id").fetchone()[0] != 0
                # only a new empty file (no schema objects, no program's mark) is free to take; a view alone or
                # another program's application_id with no tables is someone's file too
                if (objects and not tables) or ((tables or marked) and not ours(ro, tables)):
                    raise error(f"{hint} is an SQLite file of another program: move it away or set {setting} to "
                                "another path")
        finally:
            ro.close()
    except sqlite3.DatabaseError as exc:
        raise error(f"{hint} is corrupt ({exc}): move it away or set {setting}") from None
    except OSError as exc:
        raise error(f"{hint} cannot be read ({exc.strerror}): fix its permissions or set {setting}") from None
