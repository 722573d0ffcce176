"""Optimizer history (real SQLite files): round trip, one transaction per round, corrupt and foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from alphasignal.storage.history import History, HistoryError

PROPOSAL = {"name": "Conservative", "source": "agent", "raw_params": {"short_period": "20"},
            "params": {"short_period": 20}, "status": "repaired", "notes": ["string read as a number"], "reason": "",
            "rationale": "near the plateau", "metrics_is": {"sharpe": 1.1}, "metrics_oos": {"sharpe": 0.4},
            "label": "wins in-sample only"}
MESSAGE = {"agent": "analyst", "provider": "builtin", "model": "builtin", "prompt_version": "analyst@1",
           "raw": '{"patterns": ["x"]}', "parsed": {"patterns": ["x"]}, "latency_s": 0.01}


def _run(h: History) -> str:
    return h.create_run(strategy="MA_Crossover", config_hash="c1", data_hash="d1", models={"analyst": "builtin"},
                        seed=7, config={"optimizer": {"objective": "sharpe"}})


def test_round_trip(tmp_path):
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        run_id = _run(h)
        h.save_round(run_id, 1, baseline={"short_period": 10}, best=None, improved=False, state={"stale": 1},
                     timings={"total": 0.1}, proposals=[PROPOSAL], messages=[MESSAGE])
        h.finish_run(run_id, "finished", {"dsr": 0.5})
    with History(path) as h:  # reopened: everything persisted
        assert h.run(run_id)["summary"] == {"dsr": 0.5} and h.run(run_id)["status"] == "finished"
        (rd,) = h.rounds(run_id)
        assert rd["round_no"] == 1 and rd["state"] == {"stale": 1} and rd["improved"] is False
        (p,) = h.proposals(run_id)
        assert p["raw_params"] == {"short_period": "20"} and p["params"] == {"short_period": 20}
        assert p["notes"] == ["string read as a number"] and p["label"] == "wins in-sample only"
        (m,) = h.messages(run_id, 1)
        assert m["prompt_version"] == "analyst@1" and m["parsed"] == {"patterns": ["x"]} and m["latency_s"] == 0.01
        assert h.runs()[0]["rounds"] == 1
        assert h.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_failed_round_writes_nothing(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        run_id = _run(h)
        bad = dict(PROPOSAL)
        del bad["status"]  # fails half way through the round's inserts
        with pytest.raises(KeyError):
            h.save_round(run_id, 1, baseline={}, best=None, improved=False, state={}, timings={},
                         proposals=[PROPOSAL, bad], messages=[MESSAGE])
        assert h.rounds(run_id) == [] and h.proposals(run_id) == [] and h.messages(run_id) == []
        with pytest.raises(sqlite3.IntegrityError):  # a round is written once
            for _ in range(2):
                h.save_round(run_id, 1, baseline={}, best=None, improved=False, state={}, timings={},
                             proposals=[], messages=[])
        assert len(h.rounds(run_id)) == 1


def test_unknown_run_names_the_fix(tmp_path):
    with History(tmp_path / "h.sqlite") as h, pytest.raises(HistoryError, match="--history"):
        h.run("nope")


def _foreign(path: Path, *sql: str) -> Path:
    """An SQLite file another program made with ``sql``."""
    con = sqlite3.connect(path)
    for statement in sql:
        con.execute(statement)
    con.commit()
    con.close()
    return path


def _refused_untouched(path: Path, match: str) -> None:
    """Opening ``path`` fails with a HistoryError matching ``match`` and leaves the file byte for byte as it was."""
    before = path.read_bytes()
    with pytest.raises(HistoryError, match=match):
        History(path)
    assert path.read_bytes() == before


def test_corrupt_file_is_reported_and_untouched(tmp_path):
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        _run(h)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # smash the schema page
    path.write_bytes(bytes(data))
    _refused_untouched(path, "corrupt")


def test_not_sqlite_and_foreign_sqlite(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, not a database\n" * 10)
    _refused_untouched(text, "not an SQLite file")
    assert text.read_text().startswith("hello")
    _refused_untouched(_foreign(tmp_path / "other.sqlite", "CREATE TABLE invoices (id INTEGER)"), "another program")


def test_a_foreign_database_with_a_runs_table_is_refused_and_untouched(tmp_path):
    crm = _foreign(tmp_path / "crm.sqlite", "CREATE TABLE runs (run_id TEXT, created REAL, status TEXT)",
                   "INSERT INTO runs VALUES ('r1', 1.0, 'ok')")
    _refused_untouched(crm, "another program")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crm.sqlite"]


def test_our_databases_are_marked_and_listing_opens_read_only(tmp_path):
    path = tmp_path / "h.sqlite"
    with pytest.raises(HistoryError, match="no history database"):
        History(path, create=False)
    assert not path.exists()  # listing created nothing
    with History(path) as h:
        run_id = _run(h)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x41534748
    con.close()
    before = path.read_bytes()
    with History(path, create=False) as h:
        assert h.run(run_id)["strategy"] == "MA_Crossover"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite"]
    with History(path, create=False) as h, pytest.raises(sqlite3.OperationalError, match="readonly"):
        h.conn.execute("DELETE FROM runs")
