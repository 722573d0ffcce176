"""Files the dashboard reads beside a path it accepted -- a replay's CSVs, a sweep's metadata -- stay inside
that path's folder: a symlink planted there that leads to an outside file is refused, never read and shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasignal.dashboard import data
from alphasignal.dashboard.paths import PathRefused, confined

EQUITY = "date,equity\n2024-01-02,100\n2024-01-03,101\n"
TRADES = "entry_date,exit_date,side,pnl\n2024-01-02,2024-01-03,long,1\n"
SECRET = "entry_date,exit_date,side,pnl\n1999-01-01,1999-01-02,long,123456\n"


@pytest.fixture
def replay(tmp_path: Path) -> Path:
    folder = tmp_path / "results" / "r"
    folder.mkdir(parents=True)
    (folder / "equity.csv").write_text(EQUITY)
    (tmp_path / "outside.csv").write_text(SECRET)
    return folder


def test_a_replay_read_in_its_folder_works(replay: Path) -> None:
    (replay / "trades.csv").write_text(TRADES)
    frames = data.read_replay(replay)
    assert list(frames["trades"]["pnl"]) == [1] and list(frames["equity"]["equity"]) == [100, 101]


@pytest.mark.parametrize("name", ["trades.csv", "equity.csv"])
def test_a_replay_file_linked_out_of_its_folder_is_refused(replay: Path, name: str) -> None:
    target = replay.parent.parent / "outside.csv"
    if name == "equity.csv":
        (replay / name).unlink()
        target.write_text(EQUITY.replace("100", "999"))
    (replay / name).symlink_to(target)
    with pytest.raises(PathRefused, match="symlink that leads outside"):
        data.read_replay(replay)


def test_a_sweep_metadata_file_linked_out_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (tmp_path / "meta.json").write_text('{"strategy": "someone else\'s"}')
    (folder / "s.meta.json").symlink_to(tmp_path / "meta.json")
    with pytest.raises(PathRefused, match="symlink that leads outside"):
        data.read_meta(folder / "s.csv")
    (folder / "t.meta.json").write_text('{"strategy": "MA_Crossover"}')
    assert data.read_meta(folder / "t.csv") == {"strategy": "MA_Crossover"}


def test_confined_accepts_links_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    (tmp_path / "b.csv").symlink_to(tmp_path / "a.csv")
    assert confined(tmp_path / "b.csv", tmp_path) == tmp_path / "b.csv"
    assert confined(tmp_path / "missing.csv", tmp_path) == tmp_path / "missing.csv"
