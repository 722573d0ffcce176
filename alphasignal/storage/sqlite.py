"""Checks shared by this project's SQLite files: an existing file is inspected read-only before it is opened for
writing, so a corrupt or foreign file is reported in one line and never modified."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..errors import AlphaSignalError

SQLITE_HEADER = b"SQLite format 3\x00"


def check_sqlite_file(path: Path, table: str, what: str, setting: str, error: type[AlphaSignalError]) -> None:
    """Raise ``error`` when ``path`` exists and is not an SQLite file, is corrupt, or holds tables but not
    ``table`` (another program's database). An empty file passes (SQLite initialises it). ``what`` names the file
    in the message and ``setting`` is the config key that moves it."""
    hint = f"{what} {str(path)!r}"
    try:
        with path.open("rb") as fh:
            header = fh.read(16)
        if header and header != SQLITE_HEADER:
            raise error(f"{hint} is not an SQLite file: move it away or set {setting} to another path")
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            if header:
                ok = ro.execute("PRAGMA quick_check").fetchone()[0]
                if ok != "ok":
                    raise error(f"{hint} is corrupt ({ok}): move it away or set {setting}")
                tables = {r[0] for r in ro.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if tables and table not in tables:
                    raise error(f"{hint} is an SQLite file of another program: move it away or set {setting} to "
                                "another path")
        finally:
            ro.close()
    except sqlite3.DatabaseError as exc:
        raise error(f"{hint} is corrupt ({exc}): move it away or set {setting}") from None
    except OSError as exc:
        raise error(f"{hint} cannot be read ({exc.strerror}): fix its permissions or set {setting}") from None
