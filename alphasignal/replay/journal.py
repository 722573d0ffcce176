"""The replay's decision journal: one JSON line per decision, appended and fsynced as each decision is made.

Every line carries the decision's input key (a hash of everything the decision depends on), so a re-run reuses
exactly the decisions whose inputs did not change, whatever else changed (sizing, costs, date range). After a
kill -9 the only damage is a torn last line, which ``load`` drops and cuts off: at most one decision is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import UsageError


class Journal:
    """Append-only JSONL of decision records keyed by ``record["key"]``."""

    def __init__(self, path: str | Path, fsync: bool = True) -> None:
        self.path, self.fsync = Path(path), fsync
        self._fh = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Records by key (the last one wins). A line is written with its newline last, so bytes after the
        final newline are a write cut short by a kill: they are dropped and cut from the file."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        complete = data[:data.rfind(b"\n") + 1]
        out: dict[str, dict[str, Any]] = {}
        for n, line in enumerate(complete.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                out[rec["key"]] = rec
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"replay journal {self.path} line {n} is corrupt: delete the file to decide "
                                 "everything again") from None
        if len(complete) < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(len(complete))
        return out

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as a line and make it durable before returning."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
