"""--eval metrics: hand-checked values, and an end-to-end run on a small stage-01-format dataset."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from alphasignal.config import Config
from alphasignal.signals.evaluate import (
    classification,
    eval_table,
    follow_the_signal,
    load_test_samples,
    run_eval,
)


def test_classification_metrics_by_hand() -> None:
    m = classification(["BUY", "BUY", "SELL", "HOLD"], [0.9, 0.6, 0.8, 0.5], ["BUY", "SELL", "SELL", "HOLD"])
    assert m["accuracy"] == pytest.approx(0.75)
    # F1: BUY 2/3, SELL 2/3, HOLD 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["brier"] == pytest.approx((0.1**2 + 0.6**2 + 0.2**2 + 0.5**2) / 4)
    # bins: 0.5 (correct), 0.6 (wrong), 0.8 (correct), 0.9 (correct): each alone in its bin
    assert m["ece"] == pytest.approx((0.5 + 0.6 + 0.2 + 0.1) / 4)


def test_follow_the_signal_by_hand() -> None:
    m = follow_the_signal(["BUY", "SELL", "HOLD", "BUY"], [0.02, 0.01, 0.05, -0.01], horizon=5)
    r = [0.02, -0.01, 0.0, -0.01]
    mean, sd = sum(r) / 4, math.sqrt(sum((x - sum(r) / 4) ** 2 for x in r) / 3)
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(252 / 5))
    assert m["hit_rate"] == pytest.approx(1 / 3) and m["trades"] == 3
    assert m["total_return"] == pytest.approx(1.02 * 0.99 * 1.0 * 0.99 - 1)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """A real stage-01 dataset (offline AAPL, most recent 40 windows)."""
    from alphasignal.dataset import build_dataset

    root = tmp_path_factory.mktemp("ds")
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, output_dir=str(root), source="offline", limit=40, workers=1),
                  pipeline=replace(cfg.pipeline, provider="builtin"))
    build_dataset(cfg.dataset, quiet=True)
    return cfg


def test_samples_come_from_the_test_split_with_past_only_news(small_dataset) -> None:
    root = Path(small_dataset.dataset.output_dir)
    recs = [json.loads(x) for x in (root / "training_data.jsonl").read_text().splitlines()]
    test = sorted((r for r in recs if r["split"] == "test"), key=lambda r: r["window_end"])
    samples = load_test_samples(small_dataset)
    assert len(samples) == len(test) > 0 and all(s.image.is_file() for s in samples)
    first, rec = samples[0], test[0]
    assert first.label == rec["label"]["action"] and first.forward_return == rec["forward_return"]
    assert first.last_close == rec["label"]["entry_price"]
    assert first.atr == rec["indicators"]["atr_14"] > 0  # the data's ATR bounds a model's levels in --eval
    d = (rec["indicators"]["close"] / rec["indicators"]["sma_20"] - 1) * 100
    assert f"{abs(d):.1f}%" in first.news
    assert len(load_test_samples(small_dataset, limit=2)) == 2


def test_eval_end_to_end_offline(small_dataset, tmp_path, capsys) -> None:
    out = tmp_path / "eval.json"
    returned, path = run_eval(small_dataset, small_dataset.pipeline, str(out), quiet=True)
    result = json.loads(out.read_text())
    assert path == out and json.loads(json.dumps(returned)) == result
    assert result["samples"] == len(load_test_samples(small_dataset)) and result["engine"] == "builtin"
    assert {"chart", "fused", "buy & hold"} <= set(result["metrics"])
    assert result["level_atr_sources"] == {"data": result["samples"]}  # levels measured in the data's ATR
    assert result["levels_rejected"] == 0  # the builtin rules' levels (1.5 / 3 ATR) are inside the bound
    assert 0 <= result["metrics"]["fused"]["accuracy"] <= 1 and "api_key" not in result["pipeline"]
    table = eval_table(result)
    assert table.startswith(f"signal eval: {result['samples']} test samples") and "buy & hold" in table
    assert capsys.readouterr().out == ""  # the library prints nothing; the command line prints the table


def test_eval_command_line(small_dataset, tmp_path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "04_signal_pipeline.py"), "--eval", "--limit", "3", "--provider",
                           "builtin", "--set", f"dataset.output_dir={small_dataset.dataset.output_dir}", "--output",
                           "eval.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["samples"] == 3 and "signal eval: 3 test samples" in proc.stdout and "fused" in proc.stdout


def test_eval_without_dataset_says_how_to_build_one(tmp_path) -> None:
    from alphasignal.errors import UsageError

    cfg = replace(Config(), dataset=replace(Config().dataset, output_dir=str(tmp_path)))
    with pytest.raises(UsageError, match="01_generate_dataset.py"):
        load_test_samples(cfg)
