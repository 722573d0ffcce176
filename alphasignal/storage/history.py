"""Optimizer history in SQLite (stdlib ``sqlite3``, WAL): runs, rounds, proposals and agent messages.

Each round is written in ONE transaction (round row + its proposals + its messages), so a process killed mid-round
loses at most that round and a resumed run continues after the last committed one. Stage 06 stores exploration
metrics as ``metrics_is`` and selection metrics as ``metrics_oos``, the segment boundaries in round 0's state, and
the hold-out figures of every winner (scored once, at the end) in the run's summary. A file that is not a readable
history database raises :class:`HistoryError` and is never modified.

This is the one place the typed records of :mod:`.records` meet SQL: they go in as records and come back as
records, in the JSON the history has always stored (older files open unchanged).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .records import Candidate, LoopState, Message, Proposal, Round, Run, RunDetails, RunSummary
from .sqlite import check_sqlite_file, read_only_uri

SCHEMA_VERSION = 1
APPLICATION_ID = 0x41534748  # "ASGH": PRAGMA application_id marks the databases this project created

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, status TEXT NOT NULL,
    strategy TEXT NOT NULL, config_hash TEXT NOT NULL, data_hash TEXT NOT NULL, models TEXT NOT NULL,
    seed INTEGER NOT NULL, config TEXT NOT NULL, summary TEXT);
CREATE TABLE IF NOT EXISTS rounds (
    run_id TEXT NOT NULL REFERENCES runs(run_id), round_no INTEGER NOT NULL, created REAL NOT NULL,
    baseline TEXT NOT NULL, best TEXT, improved INTEGER NOT NULL, state TEXT NOT NULL, timings TEXT NOT NULL,
    PRIMARY KEY (run_id, round_no));
CREATE TABLE IF NOT EXISTS proposals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, round_no INTEGER NOT NULL, name TEXT NOT NULL,
    source TEXT NOT NULL, raw_params TEXT NOT NULL, params TEXT, status TEXT NOT NULL, notes TEXT NOT NULL,
    reason TEXT NOT NULL, rationale TEXT NOT NULL, metrics_is TEXT, metrics_oos TEXT, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, round_no INTEGER NOT NULL, agent TEXT NOT NULL,
    provider TEXT NOT NULL, model TEXT NOT NULL, prompt_version TEXT NOT NULL, raw TEXT NOT NULL, parsed TEXT,
    error TEXT, latency_s REAL NOT NULL);
CREATE INDEX IF NOT EXISTS proposals_run ON proposals (run_id, round_no);
CREATE INDEX IF NOT EXISTS messages_run ON messages (run_id, round_no);
"""


class HistoryError(UsageError):
    """The history database cannot be used (corrupt, foreign, or unknown run)."""


def _dumps(v: Any) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True, default=_jsonable)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if hasattr(v, "model_dump"):
        return v.model_dump()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def _loads(v: str | None) -> Any:
    return None if v is None else json.loads(v)


def _legacy_version(conn: sqlite3.Connection) -> str | None:
    """A history written before databases were marked with application_id has meta.schema_version."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else row[0]


class History:
    """One history database file; use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, *, create: bool = True):
        """``create=False`` opens an existing database read-only (``mode=ro``: listing never writes)."""
        self.path = Path(path).expanduser()
        existed = self.path.exists()
        if existed:
            self._check_existing()
        elif not create:
            raise HistoryError(f"no history database at {str(self.path)!r}: run python 06_multi_llm_optimize.py "
                               "first, or set optimizer.history_db")
        if not create:
            self.conn = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=10, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            # one transaction: the file holds the whole marked schema or nothing of it
            self.conn.executescript(f"BEGIN IMMEDIATE; PRAGMA application_id={APPLICATION_ID}; {_SCHEMA}"
                                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', "
                                    f"'{SCHEMA_VERSION}'); COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            self._abandon(created=not existed)
            raise HistoryError(f"history database {str(self.path)!r} cannot be written ({exc}): free some space, "
                               "fix the folder's permissions or set optimizer.history_db to another path") from None

    def _abandon(self, created: bool) -> None:
        """Close a connection that failed while opening; a file this call created goes, with its -wal and -shm."""
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
        if created:
            for suffix in ("", "-wal", "-shm", "-journal"):
                with contextlib.suppress(OSError):  # a read-only folder: nothing was created there
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _check_existing(self) -> None:
        """Open read-only first, so a corrupt or foreign file is reported and never touched."""
        def ours(ro: sqlite3.Connection, tables: set[str]) -> bool:
            app_id = ro.execute("PRAGMA application_id").fetchone()[0]
            return app_id == APPLICATION_ID or (app_id == 0 and {"meta", "runs", "rounds"} <= tables
                                                and _legacy_version(ro) is not None)

        check_sqlite_file(self.path, "history database", "optimizer.history_db", HistoryError, ours)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- runs -------------------------------------------------------------------------------------------------
    def create_run(self, *, strategy: str, config_hash: str, data_hash: str, models: Mapping[str, str], seed: int,
                   config: Mapping[str, Any]) -> str:
        """Insert a new run and return its id."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,NULL)",
                      (run_id, now, now, "running", strategy, config_hash, data_hash, _dumps(dict(models)), seed,
                       _dumps(dict(config))))
        return run_id

    def run(self, run_id: str) -> Run:
        """One run; an unknown id fails with the list command to use."""
        row = self.conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise HistoryError(f"run {run_id!r} not found in {str(self.path)!r}: list runs with --history")
        return _run(row)

    def runs(self) -> list[Run]:
        """All runs, newest first, with their numbers of agent rounds."""
        rows = self.conn.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
        return [_run(r, self.conn.execute("SELECT COUNT(*) FROM rounds WHERE run_id = ? AND round_no > 0",
                                          (r["run_id"],)).fetchone()[0]) for r in rows]

    def finish_run(self, run_id: str, status: str, summary: RunSummary | None = None) -> None:
        """Mark a run finished (or failed) and store its summary."""
        with self._tx() as c:
            c.execute("UPDATE runs SET status = ?, updated = ?, summary = ? WHERE run_id = ?",
                      (status, time.time(), _dumps(None if summary is None else summary.to_json()), run_id))

    # --- rounds -----------------------------------------------------------------------------------------------
    def save_round(self, run_id: str, rnd: Round, proposals: Sequence[Proposal], messages: Sequence[Message]) -> None:
        """Write a completed round with its proposals and messages in one transaction."""
        with self._tx() as c:
            c.execute("INSERT INTO rounds VALUES (?,?,?,?,?,?,?,?)",
                      (run_id, rnd.round_no, time.time(), _dumps(dict(rnd.baseline)),
                       _dumps(None if rnd.best is None else rnd.best.to_json()), int(rnd.improved),
                       _dumps(rnd.state.to_json()), _dumps(dict(rnd.timings))))
            c.executemany(
                "INSERT INTO proposals (run_id, round_no, name, source, raw_params, params, status, notes, reason, "
                "rationale, metrics_is, metrics_oos, label) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, rnd.round_no, p.name, p.source, _dumps(dict(p.raw_params)), _dumps(p.params), p.status,
                  _dumps(list(p.notes)), p.reason, p.rationale, _dumps(p.metrics_is), _dumps(p.metrics_oos), p.label)
                 for p in proposals])
            c.executemany(
                "INSERT INTO messages (run_id, round_no, agent, provider, model, prompt_version, raw, parsed, error, "
                "latency_s) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(run_id, rnd.round_no, m.agent, m.provider, m.model, m.prompt_version, m.raw, _dumps(m.parsed),
                  m.error, float(m.latency_s)) for m in messages])
            c.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))

    def rounds(self, run_id: str) -> list[Round]:
        """Committed rounds of a run, in order (round 0 is the initial sweep)."""
        return [Round(round_no=d["round_no"], baseline=d["baseline"], state=LoopState.from_json(d["state"]),
                      best=None if d["best"] is None else Candidate.from_json(d["best"]), improved=bool(d["improved"]),
                      timings=d["timings"], created=d["created"], run_id=d["run_id"])
                for d in self._rows("rounds", run_id, None, ("baseline", "best", "state", "timings"),
                                    order="round_no")]

    def proposals(self, run_id: str, round_no: int | None = None) -> list[Proposal]:
        """Proposals of a run (optionally one round), in insertion order."""
        return [Proposal.from_json(d) for d in self._rows("proposals", run_id, round_no,
                                                          ("raw_params", "params", "notes", "metrics_is",
                                                           "metrics_oos"))]

    def messages(self, run_id: str, round_no: int | None = None) -> list[Message]:
        """Agent messages of a run (optionally one round), in order."""
        return [Message.from_json(d) for d in self._rows("messages", run_id, round_no, ("parsed",))]

    def details(self, run_id: str, *, messages: bool = False) -> RunDetails:
        """A run with its rounds and proposals (and, with ``messages``, its agent messages)."""
        return RunDetails(self.run(run_id), tuple(self.rounds(run_id)), tuple(self.proposals(run_id)),
                          tuple(self.messages(run_id)) if messages else ())

    def _rows(self, table: str, run_id: str, round_no: int | None, json_columns: tuple[str, ...],
              order: str = "id") -> list[dict[str, Any]]:
        """The rows of one of our tables for a run (optionally one round) by ``order``, JSON columns decoded."""
        sql, args = f"SELECT * FROM {table} WHERE run_id = ?", [run_id]
        if round_no is not None:
            sql, args = sql + " AND round_no = ?", [*args, round_no]
        out = [dict(r) for r in self.conn.execute(f"{sql} ORDER BY {order}", args).fetchall()]
        for d in out:
            d.update({k: _loads(d[k]) for k in json_columns})
        return out


def _run(row: sqlite3.Row, rounds: int = 0) -> Run:
    """A runs row as a record (its JSON columns decoded)."""
    summary = _loads(row["summary"])
    return Run(run_id=row["run_id"], created=row["created"], updated=row["updated"], status=row["status"],
               strategy=row["strategy"], config_hash=row["config_hash"], data_hash=row["data_hash"],
               models=_loads(row["models"]), seed=row["seed"], config=_loads(row["config"]),
               summary=None if not summary else RunSummary.from_json(summary), rounds=rounds)
