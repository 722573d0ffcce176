"""Optimizer history (real SQLite files): round trip, one transaction per round, corrupt and foreign files."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from alphasignal.storage.history import History, HistoryError
from alphasignal.storage.records import (
    Analysis,
    Candidate,
    DebateVote,
    LoopState,
    Message,
    OptimizerResult,
    Proposal,
    Round,
    RunSummary,
)

PROPOSAL = Proposal("Conservative", "repaired", raw_params={"short_period": "20"}, params={"short_period": 20},
                    notes=("string read as a number",), rationale="near the plateau", metrics_is={"sharpe": 1.1},
                    metrics_oos={"sharpe": 0.4}, label="wins in-sample only")
MESSAGE = Message("analyst", "builtin", "builtin", "analyst@1", '{"patterns": ["x"]}', {"patterns": ["x"]},
                  latency_s=0.01)
STATE = LoopState(baseline={"short_period": 10}, baseline_is={"sharpe": 1.0}, baseline_oos={"sharpe": 0.5},
                  initial={"short_period": 10}, initial_is={"sharpe": 1.0}, initial_oos={"sharpe": 0.5}, stale=1,
                  budget_used=1, sweep_configs=4, segments={"bars": 100, "exploration": [0, 50]},
                  report=Analysis(("p",), ("r",)), review="", votes=(DebateVote(1, "analyst", "Conservative", True,
                                                                                 "fine"),))


def _run(h: History) -> str:
    return h.create_run(strategy="MA_Crossover", config_hash="c1", data_hash="d1", models={"analyst": "builtin"},
                        seed=7, config={"optimizer": {"objective": "sharpe"}})


def _summary(**changes) -> RunSummary:
    winner = Candidate("Conservative (round 1)", {"short_period": 20}, {"sharpe": 1.1}, {"sharpe": 0.6},
                       {"sharpe": 0.3, "sharpe_ci": [-0.1, 0.7], "ci_level": 0.95})
    initial = Candidate("initial baseline", {"short_period": 10}, {"sharpe": 1.0}, {"sharpe": 0.5},
                        {"sharpe": 0.2, "sharpe_ci": [-0.2, 0.6], "ci_level": 0.95})
    wfo = OptimizerResult("wfo", 12, {"short_period": 30}, {"sharpe": 0.9}, {"sharpe": 0.4}, 0.3,
                          {"sharpe": 0.1}, {"wfo_stitched_sharpe": 0.2, "wfo_efficiency": None})
    return RunSummary(winner, initial, "better on exploration and selection", warnings=("w",), dsr=0.5, pbo=0.25,
                      configs_tried=9, segments={"bars": 100}, compare=(wfo,), improvement_pct=50.0,
                      holdout_label="the hold-out confirms the selection winner", **changes)


def test_round_trip(tmp_path):
    path = tmp_path / "h.sqlite"
    best = Candidate("Conservative", {"short_period": 20}, {"sharpe": 1.1}, {"sharpe": 0.4})
    with History(path) as h:
        run_id = _run(h)
        h.save_round(run_id, Round(1, {"short_period": 10}, STATE, best, True, {"total": 0.1}), [PROPOSAL],
                     [MESSAGE])
        h.finish_run(run_id, "finished", _summary())
    with History(path) as h:  # reopened: everything persisted, as the same records
        run = h.run(run_id)
        assert run.summary == _summary() and run.status == "finished" and run.objective == "sharpe"
        (rd,) = h.rounds(run_id)
        assert (rd.round_no, rd.baseline, rd.state, rd.best, rd.improved, rd.timings) == \
            (1, {"short_period": 10}, STATE, best, True, {"total": 0.1})
        (p,) = h.proposals(run_id)
        assert p == replace(PROPOSAL, round_no=1)
        (m,) = h.messages(run_id, 1)
        assert m == replace(MESSAGE, round_no=1)
        assert h.runs()[0].rounds == 1 and h.details(run_id, messages=True).messages == (m,)
        assert h.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_records_are_stored_in_the_json_the_history_always_held(tmp_path):
    # the on-disk format is unchanged: optional keys absent (not null), extra comparator figures at the top level
    path = tmp_path / "h.sqlite"
    round0 = LoopState(baseline={"a": 1}, initial={"a": 1}, sweep_configs=2, segments={"bars": 10})
    with History(path) as h:
        run_id = _run(h)
        h.save_round(run_id, Round(0, {"a": 1}, round0), [Proposal("sweep 0", "ok", source="sweep")], [])
        h.finish_run(run_id, "finished", replace(_summary(), compare=None, improvement_pct=None, holdout_label=None))
    con = sqlite3.connect(path)
    state = json.loads(con.execute("SELECT state FROM rounds").fetchone()[0])
    summary = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
    notes, params = con.execute("SELECT notes, params FROM proposals").fetchone()
    con.close()
    assert set(state) == {"baseline", "baseline_is", "baseline_oos", "initial", "initial_is", "initial_oos", "stale",
                          "budget_used", "stop", "sweep_configs", "segments"} and state["stop"] is None
    assert "compare" not in summary and "improvement_pct" not in summary and "holdout_label" not in summary
    assert set(summary["winner"]) == {"name", "params", "metrics_is", "metrics_oos", "metrics_holdout"}
    assert (notes, params) == ("[]", None)
    wfo = _summary().compare[0].to_json()
    assert wfo["wfo_stitched_sharpe"] == 0.2 and "extra" not in wfo and OptimizerResult.from_json(wfo) == \
        _summary().compare[0]


def test_a_history_written_before_the_records_reads_back(tmp_path):
    # rows as an earlier version wrote them (a run from before the hold-out split: no segments, no hold-out figures)
    path = tmp_path / "h.sqlite"
    with History(path) as h:
        run_id = _run(h)
    old = {"winner": {"name": "initial baseline", "params": {"a": 1}, "metrics_is": {"sharpe": 1.0},
                      "metrics_oos": {"sharpe": 0.5}},
           "initial": {"name": "initial baseline", "params": {"a": 1}, "metrics_is": {"sharpe": 1.0},
                       "metrics_oos": {"sharpe": 0.5}},
           "label": "no proposal beat the baseline", "warnings": [], "configs_tried": 3, "dsr": 0.4, "pbo": None,
           "improvement_pct": 0.0, "retired_key": 1}
    con = sqlite3.connect(path)
    con.execute("UPDATE runs SET summary = ?", (json.dumps(old),))
    con.execute("INSERT INTO rounds VALUES (?, 0, 1.0, '{\"a\": 1}', NULL, 0, ?, '{}')",
                (run_id, json.dumps({"baseline": {"a": 1}, "stale": 0, "stop": "rounds"})))
    con.commit()
    con.close()
    with History(path, create=False) as h:
        s = h.run(run_id).summary
        (rd,) = h.rounds(run_id)
    assert not s.holdout_scored and s.improvement_pct == 0.0 and s.compare is None and s.winner.metrics("holdout") == {}
    assert rd.state.stop == "rounds" and rd.state.segments is None and rd.state.report is None


def test_a_failed_round_writes_nothing(tmp_path):
    with History(tmp_path / "h.sqlite") as h:
        run_id = _run(h)
        bad = replace(PROPOSAL, status=None)  # fails half way through the round's inserts (status NOT NULL)
        with pytest.raises(sqlite3.IntegrityError):
            h.save_round(run_id, Round(1, {}, LoopState()), [PROPOSAL, bad], [MESSAGE])
        assert h.rounds(run_id) == [] and h.proposals(run_id) == [] and h.messages(run_id) == []
        with pytest.raises(sqlite3.IntegrityError):  # a round is written once
            for _ in range(2):
                h.save_round(run_id, Round(1, {}, LoopState()), [], [])
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
        assert h.run(run_id).strategy == "MA_Crossover"
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["h.sqlite"]
    with History(path, create=False) as h, pytest.raises(sqlite3.OperationalError, match="readonly"):
        h.conn.execute("DELETE FROM runs")
