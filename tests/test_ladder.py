"""The ladder (--eval --compare): scores by hand, the date-blocked bootstrap, the paired test, the rungs on a real
stage-01 dataset, and the command line end to end with its bad input."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_dataset import small_dataset_config

from alphasignal.config import Config, ConfigError, PipelineConfig
from alphasignal.errors import DataError, UsageError
from alphasignal.evaluation.classification import (
    LOG_LOSS_EPS,
    block_resamples,
    bootstrap_scores,
    date_blocks,
    encode,
    from_confidence,
    one_hot,
    prior,
    scores,
)
from alphasignal.evaluation.ladder import RUNGS, Rung, build_ladder, parse_rungs, read_csv, to_csv, to_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_scores_by_hand() -> None:
    y, pred = encode(["BUY", "SELL", "SELL", "HOLD"]), encode(["BUY", "BUY", "SELL", "HOLD"])
    m = scores(y, pred, from_confidence(pred, [0.9, 0.6, 0.8, 0.5]))
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)  # recall BUY 1/1, SELL 1/2, HOLD 1/1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # p(true class): 0.9; (1 - 0.6) / 2 for SELL under a BUY call; 0.8; 0.5
    assert m["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.8) + math.log(0.5)) / 4)
    brier = [0.1**2 + 2 * 0.05**2, 0.6**2 + 0.8**2 + 0.2**2, 0.2**2 + 2 * 0.1**2, 0.5**2 + 2 * 0.25**2]
    assert m["brier"] == pytest.approx(sum(brier) / 4)
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.2 + 0.5) / 4)  # each confidence alone in its bin


def test_one_hot_log_loss_is_clipped_and_prior_is_constant() -> None:
    y, pred = encode(["BUY", "SELL"]), encode(["BUY", "BUY"])
    m = scores(y, pred, one_hot(pred))
    assert m["log_loss"] == pytest.approx(-math.log(LOG_LOSS_EPS) / 2)
    assert m["brier"] == pytest.approx(1.0) and m["ece"] == pytest.approx(0.5)
    p = prior(pred, [2, 1, 1])
    assert p.tolist() == [[0.5, 0.25, 0.25]] * 2
    with pytest.raises(ValueError, match="unknown action 'UP'"):
        encode(["UP"])


def test_blocks_group_dates_and_resamples_keep_blocks_whole() -> None:
    # two tickers per date: the samples of one date always share a block
    dates = [f"2020-01-{d:02d}" for d in range(1, 11) for _ in range(2)]
    blocks = date_blocks(dates[::-1], 3)[::-1]  # input order does not matter, dates do
    assert blocks.tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 2
    idx, rid = block_resamples(blocks, 50, seed=1)
    for b in range(50):
        taken = idx[rid == b]
        for k in range(4):
            members = np.flatnonzero(blocks == k)
            counts = [int(np.sum(taken == i)) for i in members]
            assert len(set(counts)) == 1  # a block is drawn whole, or not at all (or whole several times)
    assert len({tuple(idx[rid == b]) for b in range(50)}) > 10  # and the draws differ


def _planted(n: int = 300, seed: int = 3):
    rng = np.random.default_rng(seed)
    labels = rng.choice(["BUY", "SELL", "HOLD"], size=n, p=[0.35, 0.3, 0.35]).tolist()
    dates = [f"2021-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(n // 2) for _ in range(2)]
    y = encode(labels)
    hold = encode(["HOLD"] * n)
    good = np.where(rng.random(n) < 0.8, y, rng.integers(0, 3, n))  # right 80 % of the time
    freq = [labels.count(a) for a in ("BUY", "SELL", "HOLD")]
    return labels, dates, {"majority": (hold, prior(hold, freq)), "copy": (hold.copy(), prior(hold, freq)),
                           "good": (good, from_confidence(good, np.full(n, 0.8)))}


def test_paired_test_flags_a_planted_rung_and_not_a_copy_of_majority() -> None:
    labels, dates, preds = _planted()
    out = bootstrap_scores(encode(labels), preds, dates, reference="majority", block=5, n_boot=500, seed=2)
    good, copy = out["good"], out["copy"]
    assert good["accuracy"].value > 0.8 and good["accuracy"].p_value < 0.01 and good["accuracy"].diff > 0.4
    assert good["log_loss"].p_value < 0.01 and good["log_loss"].diff < 0
    assert good["accuracy"].lo < good["accuracy"].value < good["accuracy"].hi
    for m, iv in copy.items():
        assert iv.diff == 0 and iv.p_value == 1.0, m
    assert out["majority"]["accuracy"].value == pytest.approx(labels.count("HOLD") / len(labels))


def test_ladder_table_files_round_trip(tmp_path) -> None:
    labels, dates, preds = _planted(60)
    rungs = [Rung(k, tuple(("BUY", "SELL", "HOLD")[i] for i in p), prob, "x") for k, (p, prob) in preds.items()]
    ladder = build_ladder(labels, dates, rungs, block=5, n_boot=200)
    (tmp_path / "l.csv").write_text(to_csv(ladder))
    rows = read_csv(tmp_path / "l.csv")
    assert [r["rung"] for r in rows] == ["majority", "copy", "good"]
    assert float(rows[2]["accuracy"]) == pytest.approx(ladder.rows["good"]["accuracy"].value, rel=1e-5)
    md = to_markdown(ladder)
    assert md.count("\n| ") == 4 and "60 test windows" in md and "reference" in md
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UsageError, match="not a ladder table"):
        read_csv(tmp_path / "bad.csv")
    with pytest.raises(UsageError, match="test split is empty"):
        build_ladder([], [], rungs)


def test_parse_rungs_orders_adds_majority_and_names_the_valid_ones() -> None:
    assert parse_rungs("builtin, momentum") == ("majority", "momentum", "builtin")
    with pytest.raises(UsageError, match="unknown rung 'lstm'.*majority, momentum, builtin, cnn, vlm"):
        parse_rungs("momentum,lstm")
    assert set(RUNGS) == {"majority", "momentum", "builtin", "cnn", "vlm"}
    with pytest.raises(ConfigError, match="unknown rung"):
        PipelineConfig(compare=("momentum", "lstm"))
    PipelineConfig(compare=RUNGS)  # the config accepts exactly the ladder's rungs


def test_momentum_actions_and_majority_from_train_only() -> None:
    from alphasignal.signals.ladder import majority_rung, momentum_actions

    assert momentum_actions([0.02, -0.01, 0.0, 0.004], hold=0.005) == ("BUY", "SELL", "HOLD", "HOLD")
    assert momentum_actions([0.004, -0.0001]) == ("BUY", "SELL")
    r = majority_rung({"BUY": 5, "SELL": 7, "HOLD": 3}, 2)
    assert r.actions == ("SELL", "SELL") and r.prob[0].tolist() == pytest.approx([5 / 15, 7 / 15, 3 / 15])


@pytest.fixture(scope="module")
def ladder_cfg(tmp_path_factory) -> Config:
    from alphasignal.dataset import build_dataset

    ds = small_dataset_config(tmp_path_factory.mktemp("ladder_ds"))
    build_dataset(ds, quiet=True)
    base = Config()
    return dataclasses.replace(base, dataset=ds, pipeline=dataclasses.replace(base.pipeline, provider="builtin",
                                                                              eval_bootstrap=200))


def test_rungs_on_a_real_dataset(ladder_cfg) -> None:
    from alphasignal.signals.evaluate import load_test_samples, train_label_counts
    from alphasignal.signals.ladder import evaluate_ladder, window_returns

    samples = load_test_samples(ladder_cfg)
    recs = [json.loads(x) for x in (Path(ladder_cfg.dataset.output_dir) / "training_data.jsonl").open()]
    train = [r["label"]["action"] for r in recs if r["split"] == "train"]
    assert train_label_counts(ladder_cfg) == {a: train.count(a) for a in ("BUY", "SELL", "HOLD")}
    # the window return the dataset's own rationale states ("The window moved +1.2%"), to its printed precision
    rets = window_returns(ladder_cfg, samples)
    by_id = {r["id"]: r for r in recs}
    for s, r in zip(samples, rets, strict=True):
        assert f"window moved {r:+.1%}" in by_id[s.id]["label"]["rationale"]
    ladder, windows = evaluate_ladder(ladder_cfg, ladder_cfg.pipeline, "momentum,builtin")
    assert list(ladder.rows) == ["majority", "momentum", "builtin"] and ladder.samples == len(samples)
    majority = max(("BUY", "SELL", "HOLD"), key=train.count)
    assert ladder.rows["majority"]["accuracy"].value == pytest.approx(
        sum(s.label == majority for s in windows) / len(windows))
    moved = [dataclasses.replace(s, price_scale=s.price_scale * 1.01) for s in samples[:1]]
    with pytest.raises(DataError, match="differs from the dataset"):
        window_returns(ladder_cfg, moved)


def _run(args: list[str], cwd: Path, ds: Path) -> subprocess.CompletedProcess:
    sets = [f"dataset.output_dir={ds}", "dataset.source=offline", "dataset.tickers=AAPL,GOOG",
            "dataset.start=2008-01-01", "dataset.end=2012-12-31", "pipeline.eval_bootstrap=200"]
    cmd = [sys.executable, str(ROOT / "04_signal_pipeline.py"), *(x for s in sets for x in ("--set", s)), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"})


def test_eval_compare_command_line(ladder_cfg, tmp_path) -> None:
    ds = Path(ladder_cfg.dataset.output_dir)
    proc = _run(["--eval", "--compare", "builtin,momentum", "--provider", "builtin", "--quiet", "--output",
                 "out/eval.json"], tmp_path, ds)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out/eval.json").read_text())
    assert list(result["rows"]) == ["majority", "momentum", "builtin"]
    with open(tmp_path / "out/eval_ladder.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["rung"] for r in rows] == ["majority", "momentum", "builtin"]
    assert float(rows[1]["accuracy"]) == pytest.approx(result["rows"]["momentum"]["accuracy"]["value"], rel=1e-5)
    assert "| momentum" in (tmp_path / "out/eval_ladder.md").read_text()
    header = next(line for line in proc.stdout.splitlines() if line.strip().startswith("majority"))
    assert header.split() == ["majority", "momentum", "builtin"] and "vs majority" in proc.stdout


def test_eval_compare_bad_input_is_one_line_and_writes_nothing(ladder_cfg, tmp_path) -> None:
    ds = Path(ladder_cfg.dataset.output_dir)
    proc = _run(["--eval", "--compare", "momentum,lstm", "--output", "out/eval.json"], tmp_path, ds)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error:")
    assert "majority, momentum, builtin, cnn, vlm" in proc.stderr and not (tmp_path / "out").exists()
    proc = _run(["--eval", "--compare", "momentum", "--set", "pipeline.provider=builtin", "--set",
                 f"dataset.output_dir={tmp_path / 'none'}"], tmp_path, ds)
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1


def test_empty_test_split_is_one_line(tmp_path) -> None:
    from alphasignal.dataset import build_dataset

    ds = small_dataset_config(tmp_path / "ds", test_fraction=0.0)
    build_dataset(ds, quiet=True)
    proc = _run(["--eval", "--compare", "momentum", "--provider", "builtin"], tmp_path, Path(ds.output_dir))
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1
    assert "test" in proc.stderr and not (tmp_path / "results").exists()


def test_dashboard_signals_page_shows_the_ladder_table(tmp_path) -> None:
    from fixtures_dashboard import dashboard_config
    from streamlit.testing.v1 import AppTest

    from alphasignal.signals.ladder import write_ladder

    labels, dates, preds = _planted(60)
    rungs = [Rung(k, tuple(("BUY", "SELL", "HOLD")[i] for i in p), prob, "x") for k, (p, prob) in preds.items()]
    (tmp_path / "results").mkdir()
    write_ladder(build_ladder(labels, dates, rungs, block=5, n_boot=200), tmp_path / "results" / "signal_eval.json")
    at = AppTest.from_file(str(ROOT / "alphasignal" / "dashboard" / "views" / "signals.py"), default_timeout=120)
    at.session_state["alphasignal_config"] = dashboard_config(tmp_path)
    at.run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    table = at.dataframe[0].value
    assert list(table["rung"]) == ["majority", "copy", "good"]
    assert table["accuracy vs majority"].iloc[0] == "reference" and "better" in table["accuracy vs majority"].iloc[2]
    assert any("60 test windows" in str(c.value) for c in at.caption)


@pytest.mark.slow  # the tiny random Qwen2.5-VL trains 2 steps on the CPU and answers 6 test windows: ~1-2 min
def test_finetune_ends_with_the_ladder_on_the_test_split(ladder_cfg, tiny_qwen_vl, tmp_path) -> None:
    from alphasignal.finetune import finetune
    from alphasignal.finetune.data import parse_answer
    from alphasignal.signals.evaluate import load_test_samples

    training = dataclasses.replace(
        ladder_cfg.training, backend="hf", base_model=str(tiny_qwen_vl), load_in_4bit=False, max_steps=2,
        batch_size=2, grad_accumulation=1, eval_samples=1, eval_max_new_tokens=8, output_dir=str(tmp_path),
        ladder=("majority", "momentum"), ladder_samples=6)
    jsonl = Path(ladder_cfg.dataset.output_dir) / "training_data.jsonl"
    report = finetune(training, dataset=str(jsonl), limit=4, export_gguf=False, quiet=True, ladder=ladder_cfg)
    rows = report["ladder"]["rows"]
    assert list(rows) == ["majority", "momentum", "vlm"] and report["ladder"]["samples"] == 6
    windows = load_test_samples(ladder_cfg, 6)
    answers = report["ladder_answers"]
    assert list(answers) == [w.id for w in windows]  # the model answered exactly the ladder's windows
    acts = [(parse_answer(answers[w.id])[1] or TradingSignalHold).action for w in windows]
    hits = sum(a == w.label for a, w in zip(acts, windows, strict=True)) / 6
    assert rows["vlm"]["accuracy"]["value"] == pytest.approx(hits)
    assert "vlm" in report["ladder_table"] and all(Path(f).is_file() for f in report["ladder_files"])
    assert json.loads((tmp_path / "finetune_report.json").read_text())["ladder"]["rows"].keys() == rows.keys()


class TradingSignalHold:
    """What the ladder counts an invalid answer as."""

    action = "HOLD"


def test_the_vlm_rung_refuses_the_builtin_reader(ladder_cfg) -> None:
    from alphasignal.signals.ladder import evaluate_ladder

    with pytest.raises(UsageError, match="the vlm rung needs a vision model"):
        evaluate_ladder(ladder_cfg, ladder_cfg.pipeline, "vlm")
    no_server = dataclasses.replace(ladder_cfg.pipeline, provider="auto", ollama_host="http://127.0.0.1:9",
                                    openai_base_url="http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="found no vision model"):
        evaluate_ladder(ladder_cfg, no_server, "majority,vlm", limit=2)


def test_the_vlm_rung_reads_every_window_through_a_model_server(ladder_cfg) -> None:
    from fixtures_llm import start_ollama_compat

    from alphasignal.signals.ladder import evaluate_ladder

    reply = '{"action": "HOLD", "confidence": 0.6, "entry_price": 100.0}'
    with start_ollama_compat({}, canned={"chart:canned": reply}) as srv:
        pc = dataclasses.replace(ladder_cfg.pipeline, provider="ollama", ollama_host=srv.url,
                                 vlm_model="chart:canned", eval_bootstrap=100)
        ladder, windows = evaluate_ladder(ladder_cfg, pc, "vlm", limit=8)
    labels = [w.label for w in windows]
    vlm = ladder.rows["vlm"]
    assert ladder.details["vlm"] == "ollama chart:canned" and ladder.samples == 8
    assert vlm["accuracy"].value == pytest.approx(labels.count("HOLD") / 8)
    # the server's confidence 0.6 on HOLD, 0.2 on each other class
    assert vlm["log_loss"].value == pytest.approx(
        -sum(math.log(0.6 if a == "HOLD" else 0.2) for a in labels) / 8)
