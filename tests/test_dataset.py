"""Stage 01 dataset: labels, time split + embargo, JSONL contract, determinism, resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from fixtures_dataset import small_dataset_config

from alphasignal.dataset import build_dataset
from alphasignal.dataset.build import SPLITS, assign_splits, plan_windows
from alphasignal.dataset.labels import LabelInputs, classify, confidence, make_signal
from alphasignal.market import load_ohlcv
from alphasignal.prompts import load_prompt
from alphasignal.signals.schemas import TradingSignal

ROOT = Path(__file__).resolve().parents[1]


def _lines(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "training_data.jsonl").read_text().splitlines()]


# ---- labels ----

def _sig(r, *, mode="volatility", sigma=0.01, atr=2.0, entry=100.0):
    inp = LabelInputs(entry=entry, forward_return=r, sigma=sigma, atr=atr, horizon=4)
    return make_signal(inp, mode=mode, buy_threshold=0.5, sell_threshold=-0.5, stop_atr=1.5, take_profit_atr=3.0,
                       rationale="a test label rationale")


def test_label_actions_levels_and_confidence():
    # volatility mode: z = r / (0.01 * sqrt(4)) = r / 0.02
    buy, sell, hold = _sig(0.02), _sig(-0.02), _sig(0.005)
    assert (buy.action, sell.action, hold.action) == ("BUY", "SELL", "HOLD")
    assert (buy.stop_loss, buy.entry_price, buy.take_profit) == (97.0, 100.0, 106.0)
    assert (sell.stop_loss, sell.take_profit) == (103.0, 94.0)
    assert hold.stop_loss is None and hold.take_profit is None
    assert buy.confidence == 0.5  # |z| = 1 -> 1 / 2
    assert _sig(0.06).confidence > buy.confidence  # a bigger move relative to volatility: more confident
    assert hold.confidence > _sig(0.009).confidence
    assert classify(LabelInputs(100, 0.009, 0.01, 1, 4), "volatility", 0.5, -0.5)[0] == "HOLD"
    # absolute mode compares the raw return
    assert _sig(0.02, mode="absolute").action == "HOLD" and _sig(0.6, mode="absolute").action == "BUY"
    assert 0.05 <= confidence("HOLD", 1e9) <= confidence("BUY", 1e9) <= 0.95


def test_levels_always_validate_even_with_huge_atr():
    s = _sig(-0.5, atr=80.0)  # 1.5 * 80 = 120 > entry: capped at 45% of entry
    assert s.action == "SELL" and s.stop_loss == 145.0 and s.take_profit == 55.0
    TradingSignal.model_validate_json(s.model_dump_json())


# ---- windows, splits, embargo ----

@pytest.mark.parametrize("embargo", [0, 12])
def test_splits_are_time_ordered_and_label_bars_never_touch_another_split(embargo):
    ds = small_dataset_config("unused", stride=1, horizon=7, embargo=embargo)
    frames = {t: load_ohlcv(t, ds.start, ds.end, source="offline") for t in ds.tickers}
    wins = assign_splits(plan_windows(frames, ds), frames, ds)
    gap = ds.effective_embargo
    assert gap == max(embargo, 7)
    by_split = {s: [w for w in wins if w.split == s] for s in SPLITS}
    assert all(len(v) > 50 for v in by_split.values())
    for earlier, later in (("train", "val"), ("val", "test"), ("train", "test")):
        last_date = max(frames[w.ticker].index[w.end] for w in by_split[earlier])
        assert last_date < min(frames[w.ticker].index[w.end] for w in by_split[later])
        for t in ds.tickers:
            a_last = max((w.end for w in by_split[earlier] if w.ticker == t), default=None)
            b_first = min((w.end for w in by_split[later] if w.ticker == t), default=None)
            if a_last is None or b_first is None:
                continue
            a_labels = set(range(a_last - 100, a_last + ds.horizon + 1))  # every bar a window or label of `a` used
            b_labels = set(range(b_first + 1, b_first + ds.horizon + 1))
            assert not a_labels & b_labels
            # at least `gap` bars lie between the last label bar of the earlier split and the first of the later
            assert (b_first + 1) - (a_last + ds.horizon) - 1 >= gap


def test_window_plus_horizon_longer_than_data_is_a_usage_error():
    ds = small_dataset_config("unused", tickers=("GOOG",), start="2012-01-01", end="2012-03-01", window=60)
    frames = {"GOOG": load_ohlcv("GOOG", ds.start, ds.end, source="offline")}
    with pytest.raises(Exception, match=r"GOOG: \d+ bars are too few for window 60 \+ horizon 5") as exc:
        plan_windows(frames, ds)
    assert exc.value.exit_code == 2


# ---- the JSONL contract ----

def test_jsonl_lines_follow_the_contract(small_dataset):
    ds, summary = small_dataset
    out = Path(ds.output_dir)
    lines = _lines(out)
    assert len(lines) == summary["samples"] > 100
    assert len({r["id"] for r in lines}) == len(lines)
    prompt = load_prompt("chart_signal")
    frames = {t: load_ohlcv(t, ds.start, ds.end, source="offline") for t in ds.tickers}
    for r in lines:
        sys_msg, user, assistant = r["messages"]
        assert sys_msg == {"role": "system", "content": [{"type": "text", "text": prompt.system}]}
        assert user["role"] == "user" and user["content"][0] == {"type": "image", "image": f"images/{r['id']}.png"}
        assert (out / user["content"][0]["image"]).stat().st_size > 500
        sig = TradingSignal.model_validate_json(assistant["content"][0]["text"])
        assert sig.model_dump() == r["label"]
        assert user["content"][1]["text"] == prompt.format(last_close=sig.entry_price)
        assert r["split"] in SPLITS and r["prompt_version"] == prompt.id and r["horizon"] == ds.horizon
        # hide_context: prices rebased to a last close of 100, and the scale converts back to the real close
        df = frames[r["ticker"]]
        real_close = df.loc[r["window_end"], "Close"]
        assert sig.entry_price == 100.0 and r["indicators"]["close"] == 100.0
        assert real_close * r["price_scale"] == pytest.approx(100.0)
        # the label comes from the bars after the window, exactly `horizon` of them
        i = df.index.get_loc(pd.Timestamp(r["window_end"]))
        assert df.index[i + ds.horizon] == pd.Timestamp(r["label_end"])
        assert r["forward_return"] == pytest.approx(df["Close"].iloc[i + ds.horizon] / real_close - 1, abs=1e-6)
        assert df.index.get_loc(pd.Timestamp(r["window_start"])) == i - ds.window + 1
    assert {r["label"]["action"] for r in lines} == {"BUY", "SELL", "HOLD"}
    card = (out / "dataset_card.md").read_text()
    assert summary["config_hash"] in card and "| train |" in card
    assert (out / "demo_chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"


def test_context_mode_keeps_real_prices(tmp_path):
    ds = small_dataset_config(tmp_path, tickers=("GOOG",), hide_context=False, limit=12)
    build_dataset(ds, quiet=True)
    r = _lines(tmp_path)[-1]
    real = load_ohlcv("GOOG", ds.start, ds.end, source="offline").loc[r["window_end"], "Close"]
    assert r["price_scale"] == 1.0 and r["label"]["entry_price"] == pytest.approx(real, abs=1e-4)


def test_mplfinance_renderer_and_the_demo_chart(tmp_path, monkeypatch):
    """dataset.renderer=mplfinance draws every image with mpf.plot (counted by a spy around the real renderer);
    the demo chart is drawn by mplfinance with either renderer, and the chart reader reads the images."""
    import alphasignal.charts.mpf_render as mpf_render
    from alphasignal.charts.read import read_chart

    calls = []
    real = mpf_render.render_mplfinance
    monkeypatch.setattr(mpf_render, "render_mplfinance", lambda *a, **k: calls.append(1) or real(*a, **k))
    for renderer in ("fast", "mplfinance"):
        calls.clear()
        ds = small_dataset_config(tmp_path / renderer, tickers=("GOOG",), limit=12, workers=1, renderer=renderer)
        samples = build_dataset(ds, quiet=True)["samples"]
        assert len(calls) == 1 + (samples if renderer == "mplfinance" else 0)  # the demo chart (+ every image)
        first = sorted((tmp_path / renderer / "images").iterdir())[0]
        assert len(read_chart(first)) == ds.window
    fast, drawn = (sorted((tmp_path / r / "images").iterdir())[0].read_bytes() for r in ("fast", "mplfinance"))
    assert fast != drawn


# ---- determinism and resume ----

def test_same_config_gives_byte_identical_output(small_dataset, tmp_path):
    ds, _ = small_dataset
    again = dataclasses.replace(ds, output_dir=str(tmp_path), workers=2)  # worker count must not matter
    build_dataset(again, quiet=True)
    a, b = Path(ds.output_dir), tmp_path
    assert (a / "training_data.jsonl").read_bytes() == (b / "training_data.jsonl").read_bytes()
    names = sorted(p.name for p in (a / "images").iterdir())
    assert names == sorted(p.name for p in (b / "images").iterdir())
    assert all((a / "images" / n).read_bytes() == (b / "images" / n).read_bytes() for n in names[::10])


def _run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "01_generate_dataset.py", "-q", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, **kw)


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_resume_after_kill_has_no_duplicates_or_truncation(tmp_path):
    out = tmp_path / "ds"
    args = ["--output-dir", str(out), "--set", "dataset.source=offline", "--set", "dataset.image_size=160",
            "--set", "dataset.stride=2", "--limit", "500", "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "01_generate_dataset.py", "-q", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    images = out / "images"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if images.is_dir() and len(list(images.glob("*.png"))) >= 40:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)  # like a power cut: no cleanup handlers run
    proc.wait()
    done_before = len(list(images.glob("*.png")))
    assert 40 <= done_before < 490
    assert not (out / "training_data.jsonl").exists()  # never a partial JSONL
    assert json.loads((out / "manifest.json").read_text())["status"] == "rendering"

    res = _run(*args)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["reused"] >= done_before - 1 and summary["rendered"] + summary["reused"] == summary["samples"]
    lines = (out / "training_data.jsonl").read_text().splitlines()
    assert len(lines) == summary["samples"] and all(json.loads(x)["id"] for x in lines)
    assert len({json.loads(x)["id"] for x in lines}) == len(lines)
    assert not list(images.glob(".*")) and len(list(images.glob("*.png"))) == len(lines)
    from PIL import Image

    for p in sorted(images.glob("*.png"))[:: max(1, len(lines) // 25)]:
        Image.open(p).verify()  # no truncated image survives a kill


def test_resume_renders_damaged_charts_again(tmp_path):
    ds = small_dataset_config(tmp_path / "ds", limit=30, image_size=160)
    build_dataset(ds, quiet=True)
    images = sorted((tmp_path / "ds" / "images").glob("*.png"))
    originals = {p: p.read_bytes() for p in images[:3]}
    images[0].write_bytes(originals[images[0]][:500])  # truncated
    images[1].write_bytes(b"not a png at all")  # overwritten
    images[2].write_bytes(originals[images[2]][:-12])  # lost its IEND chunk
    summary = build_dataset(ds, quiet=True)
    assert summary["rendered"] == 3 and summary["reused"] == summary["samples"] - 3
    assert all(p.read_bytes() == data for p, data in originals.items())  # deterministic: the same bytes again


# ---- bad input: one line, exit 2 or 4, nothing written ----

@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--tickers", "ZZZZ", "--set", "dataset.source=offline"], 2, "names ticker(s) with no offline data: ZZZZ"),
    (["--tickers", "GOOG", "--set", "dataset.source=offline", "--set", "dataset.start=2013-01-01",
      "--set", "dataset.window=200", "--set", "dataset.min_length=10"], 2, "too few for window 200 + horizon 5"),
    (["--set", "dataset.source=offline", "--set", "dataset.start=2030-01-01", "--set", "dataset.end=2031-01-01"], 4,
     "AAPL: no data in the requested range"),
    (["--set", "dataset.buy_threshold=-1"], 2, "sell_threshold < 0 < buy_threshold"),
    (["--set", "dataset.label_mode=absolute", "--set", "dataset.sell_threshold=-2"], 2, "impossible for label_mode"),
])
def test_bad_input_one_line_error_and_nothing_written(tmp_path, args, code, needle):
    out = tmp_path / "out"
    res = _run("--output-dir", str(out), *args)
    assert res.returncode == code, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr
    assert not out.exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _run("--output-dir", str(blocker / "sub"), "--set", "dataset.source=offline", "--limit", "5")
    assert res.returncode == 2
    assert "is not writable" in res.stderr and "--output-dir" in res.stderr and len(res.stderr.splitlines()) == 1
    assert blocker.read_text() == "x"


def test_corrupt_cache_exits_4(tmp_path):
    (tmp_path / "AAPL_1d.parquet").write_bytes(b"\x00broken")
    res = _run("--output-dir", str(tmp_path / "out"), "--set", "dataset.source=yfinance",
               "--set", f"dataset.cache_dir={tmp_path}", "--limit", "5")
    assert res.returncode == 4 and "is corrupt: delete it and run again" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # an integration test (subprocess or a real model/replay): ~3-13 s
def test_other_config_in_same_dir_needs_overwrite(tmp_path, aapl):
    csv = tmp_path / "acme.csv"
    aapl.to_csv(csv)
    out = tmp_path / "out"
    first = _run("--csv", str(csv), "--output-dir", str(out), "--limit", "10")
    assert first.returncode == 0, first.stderr
    assert {r["ticker"] for r in _lines(out)} == {"ACME"}  # the ticker is the file name
    res = _run("--csv", str(csv), "--output-dir", str(out), "--limit", "12")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert len(_lines(out)) == json.loads(first.stdout)["samples"]  # untouched
    res = _run("--csv", str(csv), "--output-dir", str(out), "--limit", "12", "--overwrite")
    assert res.returncode == 0 and len(_lines(out)) == json.loads(res.stdout)["samples"]


@pytest.mark.parametrize(("val", "test", "expected"), [(0.0, 0.0, {"train"}), (0.2, 0.0, {"train", "val"}),
                                                       (0.0, 0.2, {"train", "test"})])
def test_empty_splits_purge_nothing_at_the_end(val, test, expected):
    ds = small_dataset_config("unused", tickers=("GOOG",), stride=1, val_fraction=val, test_fraction=test)
    frames = {"GOOG": load_ohlcv("GOOG", ds.start, ds.end, source="offline")}
    planned = plan_windows(frames, ds)
    wins = assign_splits(planned, frames, ds)
    assert {w.split for w in wins} == expected
    assert wins[-1].end == planned[-1].end  # the last split keeps its latest windows
    assert len(planned) - len(wins) <= (len(expected) - 1) * (ds.horizon + ds.effective_embargo)
