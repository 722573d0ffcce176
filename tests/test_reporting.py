"""Stage 06 report: console summary, Markdown, comparison and equity PNGs, from a real (offline) run's history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from alphasignal.agents.evaluate import Evaluator
from alphasignal.agents.honesty import finalise
from alphasignal.agents.loop import optimize
from alphasignal.cli.optimize import print_report
from alphasignal.config import load_config
from alphasignal.reporting.plots import comparison_png, equity_png
from alphasignal.reporting.report import markdown, write_report
from alphasignal.reporting.tables import changes, fmt, load_run
from alphasignal.storage.history import History


@pytest.fixture(scope="module")
def finished(tmp_path_factory, aapl):
    tmp = tmp_path_factory.mktemp("report")
    cfg = load_config(None, ["optimizer.provider=builtin", "optimizer.rounds=2", "optimizer.min_trades=3",
                             "optimizer.compare=['random']",
                             "sweep.grid={short_period=[5, 10, 20], long_period=[50, 100], use_ema=[false, true]}",
                             f"optimizer.history_db={tmp / 'h.sqlite'}"])
    with History(cfg.optimizer.history_db) as h:
        run_id = optimize(aapl, cfg, h, progress=False)
        ev = Evaluator.from_config(aapl, cfg)
        s = finalise(ev, h, run_id, cfg.optimizer)
        h.finish_run(run_id, "finished", s)
        return tmp, ev, load_run(h, run_id)


def test_formatting_helpers():
    assert fmt("max_drawdown", 0.25) == "25.0%" and fmt("trades", 12.0) == "12" and fmt("sharpe", None) == "-"
    assert changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == "b 3->2"
    assert changes({"a": 1}, {"a": 1}) == "(same as baseline)"


def test_console_summary_has_every_section(finished):
    _, _, data = finished
    console = Console(record=True, width=200)
    print_report(data, console)
    text = console.export_text()
    for needle in ("Top 3 of the exploration sweep", "Analyst", "Strategist proposals, round 1", "changes vs baseline",
                   "best configuration", "hold-out sharpe improvement", "DSR of the winner's selection Sharpe",
                   "PBO over all trials", "configurations tried", "segments: exploration", "embargo 5 bars"):
        assert needle in text, needle
    header = next(line for line in text.splitlines() if "exploration: initial" in line)
    assert header.index("exploration: best") < header.index("selection: initial") < header.index("hold-out: best")
    sharpe = data.summary.winner.metrics_holdout["sharpe"]
    assert fmt("sharpe", sharpe) in text and "sharpe 95% CI" in text
    assert "hold-out Sharpe 95% CI" in text and "random" in text


def test_markdown_report_is_atomic_and_complete(finished):
    tmp, _, data = finished
    path = write_report(data, tmp / "out" / "r.md", {"plot": "p.png"})
    md = path.read_text()
    assert md == markdown(data, {"plot": "p.png"}) and not list(path.parent.glob("*.tmp"))
    assert "## Result" in md and "## Round 1" in md and "![plot](p.png)" in md
    assert f"Configurations tried: **{data.summary.configs_tried}**" in md
    header = "| metric | exploration: initial | exploration: best | selection: initial | selection: best | " \
             "hold-out: initial | hold-out: best |"
    assert header in md and "hold-out Sharpe 95% CI" in md and "segments: exploration" in md
    ci = data.summary.winner.metrics_holdout["sharpe_ci"]
    assert f"[{fmt('sharpe', ci[0])}, {fmt('sharpe', ci[1])}]" in md


def test_pngs_are_written_and_show_the_data(finished):
    tmp, ev, data = finished
    p = comparison_png(data, tmp / "out" / "cmp.png")
    with Image.open(p) as im:
        assert im.size[0] >= 600 and im.size[1] >= 800
        arr = np.asarray(im.convert("RGB"))
    # all three bar colours (exploration blue, selection orange, hold-out green) are present
    assert ((arr[..., 0] < 100) & (arr[..., 2] > 150)).sum() > 500
    assert ((arr[..., 0] > 200) & (arr[..., 1] < 160) & (arr[..., 2] < 120)).sum() > 500
    assert ((arr[..., 1] > 150) & (arr[..., 0] < 110) & (arr[..., 2] < 130)).sum() > 300
    eq = ev.equity(data.summary.initial.params)
    assert eq.iloc[0] == pytest.approx(1.0, abs=0.05) and len(eq) == len(ev.data)
    q = equity_png({"baseline": eq}, data.segments["dates"], tmp / "out" / "eq.png")
    with Image.open(q) as im:
        assert im.size[0] > 600
        shaded = np.asarray(im.convert("RGB"))
    # the hold-out span is shaded green (a light tint of #55A868)
    assert ((shaded[..., 1] > shaded[..., 0] + 5) & (shaded[..., 1] > shaded[..., 2] + 3)).sum() > 1000


def test_a_run_made_before_the_holdout_split_still_prints(finished):
    _, _, data = finished
    s = data.summary
    old_summary = replace(s, winner=replace(s.winner, metrics_holdout=None),
                          initial=replace(s.initial, metrics_holdout=None),
                          compare=tuple(replace(r, metrics_holdout=None) for r in s.compare))
    round0 = replace(data.rounds[0], state=replace(data.rounds[0].state, segments=None))
    old = replace(data, run=replace(data.run, summary=old_summary), rounds=(round0, *data.rounds[1:]))
    console = Console(record=True, width=200)
    print_report(old, console)
    text = console.export_text()
    assert "segments: not recorded" in text and "no hold-out (run made before the split)" in text
    assert "hold-out sharpe improvement" not in text
