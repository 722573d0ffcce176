"""The chart CNN (issue 26): bitmaps, training on stage 01's splits, the ONNX model folder and the cnn provider.

A synthetic market plants a visible motif before each label: blocks of 10 bars, 5 bars of motif (a staircase up,
a staircase down, or a zigzag) then 5 bars of outcome (+6 %, -6 %, flat). Stage 01 builds its real dataset from
that CSV (window 10, stride 10, horizon 5: each window ends on a motif's last bar), and the CNN learns from the
5-day bitmap of the motif.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.charts.bitmap import SIZES, render_bitmap, render_bitmaps
from alphasignal.config import DatasetConfig, TrainingConfig
from alphasignal.errors import UsageError

BLOCKS = 240
LABELS = ("BUY", "SELL", "HOLD")


def synthetic_bars(seed: int, blocks: int = BLOCKS, start_block: int = 0, base: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """Motif-then-outcome blocks of 10 bars; with ``base``, its first ``start_block`` blocks are kept as they are
    and the rest drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    closes, price = [], 100.0
    for _ in range(blocks):
        kind = rng.integers(3)
        steps = {0: [0.012] * 5 + [0.012] * 5, 1: [-0.012] * 5 + [-0.012] * 5,
                 2: [0.01, -0.01, 0.01, -0.01, 0.01] + [0.0] * 5}[int(kind)]
        for s in steps:
            price *= 1 + s + rng.normal(0, 0.0005)
            closes.append(price)
    close = np.array(closes)
    opens = np.concatenate([[close[0]], close[:-1]])
    frame = pd.DataFrame({"Open": opens, "High": np.maximum(opens, close) * 1.002,
                          "Low": np.minimum(opens, close) * 0.998, "Close": close,
                          "Volume": rng.uniform(1e6, 2e6, len(close))},
                         index=pd.bdate_range("2001-01-01", periods=len(close), name="Date"))
    if base is not None:
        keep = start_block * 10
        scale = base["Close"].iloc[keep - 1] / frame["Close"].iloc[keep - 1]
        frame.iloc[keep:, :4] *= scale
        frame = pd.concat([base.iloc[:keep], frame.iloc[keep:]])
    return frame


def dataset_config(csv: Path, out: Path) -> DatasetConfig:
    return dataclasses.replace(
        DatasetConfig(), tickers=("SYN",), source="csv", csv_path=str(csv), start="2000-01-01", end="2030-01-01",
        window=10, stride=10, horizon=5, label_mode="absolute", buy_threshold=0.03, sell_threshold=-0.03,
        moving_averages=(5,), image_size=128, workers=1, output_dir=str(out), min_length=50)


def build(frame: pd.DataFrame, where: Path) -> DatasetConfig:
    from alphasignal.dataset import build_dataset

    where.mkdir(parents=True, exist_ok=True)
    frame.to_csv(where / "syn.csv")
    ds = dataset_config(where / "syn.csv", where / "ds")
    build_dataset(ds, quiet=True)
    return ds


def training(out: Path, **kw) -> TrainingConfig:
    base = {"backend": "cnn", "cnn_width": 8, "cnn_epochs": 8, "cnn_patience": 3, "cnn_batch": 32,
            "cnn_learning_rate": 1e-3, "cnn_output_dir": str(out), "seed": 11}
    return dataclasses.replace(TrainingConfig(), **{**base, **kw})


def train(ds: DatasetConfig, out: Path, dataset: str | None = None, **kw) -> dict:
    from alphasignal.finetune import finetune

    return finetune(training(out, **kw), dataset=dataset or str(Path(ds.output_dir) / "training_data.jsonl"),
                    quiet=True, market=ds)


def handmade_dataset(frame: pd.DataFrame, path: Path, splits=(("train", 40), ("val", 10), ("test", 10))) -> Path:
    """Stage 01 lines written by hand for ``frame`` (one window per 10-bar block, ending on the motif's last bar):
    only the fields the CNN reads, so the fast tests need no chart rendering."""
    dates = list(frame.index.strftime("%Y-%m-%d"))
    close = frame["Close"].to_numpy()
    lines, k = [], 0
    for split, n in splits:
        for _ in range(n):
            end = 10 * (k + 1) + 4  # the last motif bar of block k + 1; the window starts in block k's outcome
            fwd = close[end + 5] / close[end] - 1
            action = "BUY" if fwd >= 0.03 else ("SELL" if fwd <= -0.03 else "HOLD")
            lines.append({"ticker": "SYN", "window_start": dates[end - 9], "window_end": dates[end],
                          "label_end": dates[end + 5], "split": split, "forward_return": round(fwd, 6),
                          "horizon": 5, "label": {"action": action}})
            k += 1
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(frame, model folder) of a 2-epoch, 4-channel CNN trained on 40 hand-made windows (about a second)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from alphasignal.finetune.cnn import train_cnn

    root = tmp_path_factory.mktemp("cnn_tiny")
    frame = synthetic_bars(2, blocks=70)
    jsonl = handmade_dataset(frame, root / "training_data.jsonl")
    cfg = training(root / "model", cnn_width=4, cnn_epochs=2)
    train_cnn(cfg, DatasetConfig(tickers=("SYN",)), dataset=str(jsonl), quiet=True, frames={"SYN": frame})
    return frame, root / "model"


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """(DatasetConfig, the frame, the report and folder of a model trained on it)."""
    pytest.importorskip("torch")  # training needs the fine-tuning extra (requirements-finetune.txt)
    pytest.importorskip("onnx")
    root = tmp_path_factory.mktemp("cnn_planted")
    frame = synthetic_bars(1)
    ds = build(frame, root)
    report = train(ds, root / "model")
    return ds, frame, report, root / "model"


# ---- bitmaps ---------------------------------------------------------------------------------------------------

def test_bitmap_sizes_layout_and_determinism():
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (7, 80)), 1))
    bars = np.stack([close, close * 1.01, close * 0.99, close, rng.uniform(1, 2, close.shape)], 2)
    for window, (h, w) in SIZES.items():
        imgs = render_bitmaps(bars, window)
        assert imgs.shape == (7, h, w) and imgs.dtype == np.uint8
        assert set(np.unique(imgs)) <= {0, 255}
        assert np.array_equal(imgs, render_bitmaps(bars.copy(), window))
        assert np.array_equal(imgs[3], render_bitmap(bars[3], window))
        assert not imgs[:, h - h // 5 - 1].any()  # the blank row between price and volume
        assert imgs[:, h - 1, 1::3].all()  # every day has volume (> 0) at the bottom row, in its middle column
    with pytest.raises(ValueError, match="no bitmap design"):
        render_bitmaps(bars, 7)


def test_bitmap_uses_only_bars_up_to_the_window_end():
    """A window's bitmap depends on its own bars only: bars after its end, anywhere in the series, change nothing,
    and a bar inside the drawn days does change it."""
    rng = np.random.default_rng(3)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, 200)))
    series = np.stack([close, close * 1.01, close * 0.98, close * 1.001, rng.uniform(1, 3, 200)], 1)
    for end in (30, 99, 150):
        before = render_bitmap(series[end - 29:end + 1], 20)
        changed = series.copy()
        changed[end + 1:] *= rng.uniform(0.5, 2.0, changed[end + 1:].shape)
        assert np.array_equal(before, render_bitmap(changed[end - 29:end + 1], 20))
        changed[end, 1] *= 1.5  # the last day's high
        assert not np.array_equal(before, render_bitmap(changed[end - 29:end + 1], 20))


@pytest.mark.slow
def test_split_windows_are_cut_at_their_end(planted, tmp_path):
    """load_split reads a record's bars up to its window end: bars after every label end may change freely."""
    from alphasignal.finetune.cnn_data import BarSource, load_split, read_records

    ds, frame, _, _ = planted
    records = read_records(Path(ds.output_dir) / "training_data.jsonl")
    first = load_split(records, "train", BarSource(ds, {"SYN": frame}), "action")
    last_label = max(r["label_end"] for r in records if r["split"] == "train")
    changed = frame.copy()
    changed.loc[changed.index > last_label, ["Open", "High", "Low", "Close"]] *= 3.0
    again = load_split(records, "train", BarSource(ds, {"SYN": changed}), "action")
    assert np.array_equal(first.bars, again.bars) and np.array_equal(first.labels, again.labels)
    assert first.bars.shape[1:] == (10, 5)


# ---- training ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_planted_pattern_is_learned(planted):
    """Dataset -> train -> predictions through the ONNX model: test accuracy >= 0.95."""
    from alphasignal.finetune.cnn_data import BarSource, load_split, read_records
    from alphasignal.providers.cnn import load_model

    ds, frame, report, folder = planted
    assert report["eval"]["test"]["accuracy"] >= 0.95, report["eval"]
    records = read_records(Path(ds.output_dir) / "training_data.jsonl")
    test = load_split(records, "test", BarSource(ds, {"SYN": frame}), "action")
    probs = load_model(folder).predict_bars(test.bars)
    assert len(test) >= 20 and np.mean(probs.argmax(1) == test.labels) >= 0.95
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["window"] == 5 and meta["image_size"] == [32, 15] and meta["classes"] == list(LABELS)
    assert meta["knowledge_cutoff"] < report["splits"]["test"]["first_window_end"]
    card = (folder / "model_card.md").read_text()
    assert "ECE before" in card and "--backend cnn" in card and report["data"]["jsonl_sha256"] in card


@pytest.mark.slow
def test_the_ladder_cnn_rung_is_the_model_on_each_windows_bars(planted):
    """01 -> 02 --backend cnn -> 04 --eval --compare majority,cnn: the ladder scores the model's own calibrated
    probabilities on the test windows' bars (>= 0.95 accuracy on the planted motif), equal to predict_bars."""
    from alphasignal.config import Config
    from alphasignal.finetune.cnn_data import BarSource, load_split, read_records
    from alphasignal.providers.cnn import load_model
    from alphasignal.signals.evaluate import load_test_samples
    from alphasignal.signals.ladder import cnn_rung, evaluate_ladder

    ds, frame, _, folder = planted
    cfg = Config(dataset=ds, training=training(folder))
    windows = load_test_samples(cfg)
    rung = cnn_rung(cfg, cfg.pipeline, windows, str(folder))
    test = load_split(read_records(Path(ds.output_dir) / "training_data.jsonl"), "test",
                      BarSource(ds, {"SYN": frame}), "action")
    assert [w.window_end for w in windows] == list(test.ends) and rung.prob_source == "model"
    assert np.allclose(rung.prob, load_model(folder).predict_bars(test.bars), atol=1e-12)  # classes BUY, SELL, HOLD
    ladder, _ = evaluate_ladder(cfg, cfg.pipeline, "majority,cnn")
    assert ladder.rows["cnn"]["accuracy"].value >= 0.95 > ladder.rows["majority"]["accuracy"].value


@pytest.mark.slow
def test_shuffled_train_labels_learn_nothing(planted, tmp_path):
    """Labels replaced by labels independent of the windows (test labels kept): test accuracy is not above the
    majority's beyond its interval. Val's labels are replaced too: early stopping and the temperature choose on
    val, and choosing among epochs by real val labels is itself learning the motif. On a noise-free motif even a
    chance correlation between shuffled and true labels is learnable, so the new labels are exactly balanced
    within each true class (its windows trimmed to a multiple of 3, BUY, SELL and HOLD equally often, in a seeded
    random order)."""
    ds, _, _, _ = planted
    recs = [json.loads(x) for x in (Path(ds.output_dir) / "training_data.jsonl").read_text().splitlines()]
    rng = np.random.default_rng(5)
    drop, true = set(), [r["label"]["action"] for r in recs]
    for split in ("train", "val"):
        for action in LABELS:
            group = [i for i, r in enumerate(recs) if r["split"] == split and true[i] == action]
            drop |= set(group[len(group) - len(group) % 3:])
            group = group[:len(group) - len(group) % 3]
            for i, new in zip(group, rng.permutation(np.repeat(LABELS, len(group) // 3)), strict=True):
                recs[i]["label"]["action"] = str(new)
    shuffled = tmp_path / "training_data.jsonl"
    shuffled.write_text("".join(json.dumps(r) + "\n" for i, r in enumerate(recs) if i not in drop))
    test = train(ds, tmp_path / "model", dataset=str(shuffled))["eval"]["test"]
    assert test["accuracy_ci95"][0] <= test["majority_accuracy"], test
    assert test["accuracy"] < 0.6, test


@pytest.mark.slow
def test_test_split_is_never_seen(planted, tmp_path):
    """Every bar from the first test window's end on, and so every test label, changed: identical weights."""
    ds, frame, _, folder = planted
    recs = [json.loads(x) for x in (Path(ds.output_dir) / "training_data.jsonl").read_text().splitlines()]
    cut = min(r["window_end"] for r in recs if r["split"] == "test")
    block = int(frame.index.get_loc(pd.Timestamp(cut))) // 10 + 1
    other = synthetic_bars(99, start_block=block, base=frame)
    assert other.index.equals(frame.index) and not np.allclose(other["Close"].iloc[-50:], frame["Close"].iloc[-50:])
    ds2 = build(other, tmp_path)
    recs2 = [json.loads(x) for x in (Path(ds2.output_dir) / "training_data.jsonl").read_text().splitlines()]
    test_labels = ([r["label"]["action"] for r in rs if r["split"] == "test"] for rs in (recs, recs2))
    assert next(test_labels) != next(test_labels)
    train(ds2, tmp_path / "model")
    for name in ("model.pt", "model.onnx"):
        assert (tmp_path / "model" / name).read_bytes() == (folder / name).read_bytes(), name


@pytest.mark.slow
def test_same_seed_same_bytes_and_onnx_matches_torch(planted, tmp_path):
    import torch

    from alphasignal.finetune.cnn import build_network, to_input
    from alphasignal.providers.cnn import load_model

    ds, frame, _, folder = planted
    train(ds, tmp_path / "again")
    for name in ("model.pt", "model.onnx", "meta.json"):
        assert (tmp_path / "again" / name).read_bytes() == (folder / name).read_bytes(), name
    saved = torch.load(io.BytesIO((folder / "model.pt").read_bytes()))
    net = build_network(saved["architecture"])
    net.load_state_dict(saved["state_dict"])
    net.eval()
    bars = np.stack([frame.iloc[k:k + 10][["Open", "High", "Low", "Close", "Volume"]].to_numpy()
                     for k in range(0, 600, 7)])
    x = to_input(render_bitmaps(bars, 5))
    temperature = json.loads((folder / "meta.json").read_text())["temperature"]
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(x)).double() / temperature, 1).numpy()
    got = load_model(folder).predict_bars(bars)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.array_equal(got, load_model(tmp_path / "again").predict_bars(bars))


# ---- the provider and bad input ------------------------------------------------------------------------------------

def _copy(folder: Path, to: Path) -> Path:
    shutil.copytree(folder, to)
    return to


def test_bad_model_folders_are_one_line(tiny, tmp_path):
    from alphasignal.providers import get_provider

    _, folder = tiny
    cases = {"missing": (tmp_path / "nope", "not found")}
    corrupt = _copy(folder, tmp_path / "corrupt_meta")
    (corrupt / "meta.json").write_text("{not json")
    cases["meta"] = (corrupt, "corrupt meta.json")
    onnx = _copy(folder, tmp_path / "corrupt_onnx")
    (onnx / "model.onnx").write_bytes((onnx / "model.onnx").read_bytes()[:500])
    cases["onnx"] = (onnx, "does not match its meta.json")
    other = _copy(folder, tmp_path / "window20")
    meta = json.loads((other / "meta.json").read_text())
    (other / "meta.json").write_text(json.dumps({**meta, "window": 20}))
    cases["window"] = (other, "trained for a 20-day 32x15 image")
    size = _copy(folder, tmp_path / "size")
    (size / "meta.json").write_text(json.dumps({**meta, "window": 20, "image_size": [64, 60]}))
    cases["size"] = (size, "takes 32x15 images but its meta.json says 64x60")
    for name, (path, text) in cases.items():
        with pytest.raises(UsageError, match=text) as err:
            get_provider("cnn", model=str(path))
        assert "\n" not in str(err.value) and "--backend cnn" in str(err.value), name


def _generic_chart() -> bytes:
    """A candlestick chart in colours no stage 01 style uses (teal up, orange down, grey background)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (448, 448), (40, 40, 40))
    draw = ImageDraw.Draw(img)
    rng = np.random.default_rng(2)
    y = 220.0
    for k in range(30):
        step = rng.normal(0, 8)
        top, bottom = sorted((y, y + step))
        colour = (0, 200, 170) if step < 0 else (255, 140, 0)
        x = 20 + 13 * k
        draw.line([(x + 4, top - 6), (x + 4, bottom + 6)], fill=colour)
        draw.rectangle([x, top, x + 8, bottom + 1], fill=colour)
        y += step
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.slow
def test_cli_image_decisions_and_refusals(planted, tmp_path):
    """04 --image with the cnn provider: a project chart gives a CNN decision; a foreign chart and a missing
    model folder each give one error line, exit 2, and no decision file."""
    ds, _, _, folder = planted
    chart = next((Path(ds.output_dir) / "images").glob("*.png"))
    (tmp_path / "generic.png").write_bytes(_generic_chart())

    def run(image: Path, model: Path, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "04_signal_pipeline.py", "--image", str(image), "--last-close", "100",
                               "--provider", "builtin", "--set", "pipeline.vlm_provider=cnn", "--set",
                               f"pipeline.vlm_model={model}", "--output", str(out)],
                              capture_output=True, text=True, timeout=300)

    ok = run(chart, folder, tmp_path / "ok.json")
    assert ok.returncode == 0, ok.stderr
    decision = json.loads((tmp_path / "ok.json").read_text())
    assert decision["meta"]["providers"]["vlm"] == "cnn"
    assert decision["meta"]["rationale"].startswith("CNN p(BUY)=")
    for image, model, text in ((tmp_path / "generic.png", folder, "a bitmap model needs the bars"),
                               (chart, tmp_path / "missing", "not found")):
        out = tmp_path / "bad.json"
        bad = run(image, model, out)
        errors = [x for x in bad.stderr.splitlines() if x.startswith("error:")]
        assert bad.returncode == 2 and len(errors) == 1 and text in errors[0], bad.stderr
        assert "Traceback" not in bad.stderr
        assert not out.exists()


def test_provider_reads_a_project_chart_and_refuses_a_foreign_one(tiny):
    """In process: a stage-01-style chart of the bars gives the CNN's signal on the bars read back from it (the same
    probabilities as the bars themselves give, up to the reader's pixel rounding); a foreign chart is refused."""
    from alphasignal.charts.render import render_chart
    from alphasignal.providers import get_provider
    from alphasignal.providers.cnn import load_model
    from alphasignal.signals.schemas import TradingSignal

    frame, folder = tiny
    provider = get_provider("cnn", model=str(folder))
    assert provider.name == "cnn" and provider.supports_vision
    window = frame.iloc[200:260]
    png = render_chart(window, size=448, moving_averages=(10, 20), hide_context=True)
    reply = provider.structured(TradingSignal, "system", "Analyse this chart. The last close is 123.5000.",
                                images=[png])
    signal = reply.value
    assert signal.entry_price == 123.5 and reply.provider == "cnn"
    assert signal.rationale.startswith("CNN p(BUY)=") and "5-day bitmap" in signal.rationale
    model = load_model(folder)
    probs = model.predict_bars(window[["Open", "High", "Low", "Close", "Volume"]].to_numpy()[None])[0]
    assert signal.action == model.classes[int(probs.argmax())]
    assert abs(signal.confidence - probs.max()) < 0.05
    if signal.action == "BUY":
        assert signal.stop_loss < 123.5 < signal.take_profit
    with pytest.raises(UsageError, match="a bitmap model needs the bars"):
        provider.structured(TradingSignal, "system", "Analyse this chart.", images=[_generic_chart()])


def test_ctrl_c_keeps_the_best_epoch_so_far(tiny, tmp_path, monkeypatch):
    """Ctrl-C during epoch 2 (a KeyboardInterrupt raised where the val loss is computed: the one injected fault):
    the model folder holds epoch 1's weights, complete, and the run ends with Interrupted (exit 130)."""
    from alphasignal.errors import Interrupted
    from alphasignal.finetune import cnn

    frame, _ = tiny
    jsonl = handmade_dataset(frame, tmp_path / "training_data.jsonl")
    real, calls = cnn.logits_of, []

    def ctrl_c_in_epoch_2(model, x, batch=1024):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, x, batch)

    monkeypatch.setattr(cnn, "logits_of", ctrl_c_in_epoch_2)
    cfg = training(tmp_path / "model", cnn_width=4, cnn_epochs=5)
    with pytest.raises(Interrupted, match=r"best so far \(epoch 1\)") as err:
        cnn.train_cnn(cfg, DatasetConfig(tickers=("SYN",)), dataset=str(jsonl), quiet=True, frames={"SYN": frame})
    assert err.value.exit_code == 130
    report = json.loads((tmp_path / "model" / "training_report.json").read_text())
    assert report["interrupted"] and report["best_epoch"] == 1 and report["epochs_run"] == 1
    assert "interrupted with Ctrl-C" in (tmp_path / "model" / "model_card.md").read_text()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "meta.json", "model.onnx", "model.pt", "model_card.md", "training_report.json"]


def test_concurrent_requests_share_one_onnx_call(tiny, monkeypatch):
    """Six charts asked at once (as --eval and --replay ask them): one batched prediction, the same answers as one
    chart at a time."""
    import asyncio

    from alphasignal.charts.render import render_chart
    from alphasignal.providers import get_provider
    from alphasignal.providers.cnn import ChartCNN
    from alphasignal.signals.schemas import TradingSignal

    frame, folder = tiny
    provider = get_provider("cnn", model=str(folder))
    pngs = [render_chart(frame.iloc[k:k + 60], size=448) for k in range(100, 400, 50)]
    one_by_one = [provider.structured(TradingSignal, "s", "The last close is 50.0000.", images=[p]).value
                  for p in pngs]
    sizes, real = [], ChartCNN.predict_bars

    def counted(self, bars):
        sizes.append(len(bars))
        return real(self, bars)

    monkeypatch.setattr(ChartCNN, "predict_bars", counted)

    async def all_at_once():
        return await asyncio.gather(*(provider.astructured(TradingSignal, "s", "The last close is 50.0000.",
                                                           images=[p]) for p in pngs))

    together = [r.value for r in asyncio.run(all_at_once())]
    assert together == one_by_one
    assert sizes == [6]


def test_inference_never_imports_torch(tiny):
    """The provider and a batch prediction in a fresh process: onnxruntime only."""
    _, folder = tiny
    code = ("import sys, numpy as np\n"
            "from alphasignal.providers import get_provider\n"
            f"p = get_provider('cnn', model={str(folder)!r})\n"
            "bars = np.abs(np.random.default_rng(0).normal(100, 1, (4, 60, 5)))\n"
            "bars[:, :, 1] = bars.max(2); bars[:, :, 2] = bars.min(2)\n"
            "print(p.cnn().predict_bars(bars).shape, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(4,", "3)", "False"], out.stdout


def test_config_accepts_cnn_and_checks_its_settings():
    from alphasignal.config import ConfigError, PipelineConfig

    assert TrainingConfig(backend="cnn").cnn_window == 5
    assert PipelineConfig(vlm_provider="cnn").vlm_provider == "cnn"
    for bad in ({"cnn_window": 7}, {"cnn_labels": "ternary"}, {"cnn_batch": 1}):
        with pytest.raises(ConfigError):
            TrainingConfig(**bad)
    with pytest.raises(ConfigError):
        PipelineConfig(provider="cnn")  # the news call cannot run on a chart model


def test_the_replay_cnn_rung_decides_on_each_bars_window_without_look_ahead(tiny):
    """--replay --compare ...,cnn without news: the model on the ``dataset.window`` bars up to each decision, in
    batched calls; its score orders by p(BUY) - p(SELL); changing every bar after t leaves the decision at t."""
    from alphasignal.config import DatasetConfig, PipelineConfig
    from alphasignal.providers.cnn import load_model
    from alphasignal.replay.news import NewsIndex
    from alphasignal.replay.outcome import Job, ReplayData
    from alphasignal.replay.rungs import cnn_decisions

    frame, folder = tiny
    ds, pc = DatasetConfig(tickers=("SYN",), window=10), PipelineConfig()
    bars = list(range(5, len(frame) - 1, 7))  # the first ones have fewer than 10 bars: no decision
    jobs = [Job("SYN", b, str(frame.index[b].date()), f"k{b}") for b in bars]

    def decide(f):
        return cnn_decisions(ReplayData({"SYN": f}, NewsIndex(), {}), jobs, ds, pc, str(folder))

    signals, scores = decide(frame)
    model = load_model(folder)
    from alphasignal.charts.bitmap import frame_bars

    full = frame_bars(frame)
    for b in bars:
        if b < 9:
            assert signals["SYN"][b].action == "" and scores[("SYN", b)] == 0.5
            continue
        p = model.predict_bars(full[None, b - 9:b + 1])[0]
        assert scores[("SYN", b)] == pytest.approx(0.5 + 0.5 * (p[0] - p[1]), abs=1e-12)
        assert signals["SYN"][b].action in ("BUY", "SELL", "HOLD")
    cut = bars[len(bars) // 2]
    moved = frame.copy()
    moved.iloc[cut + 1:, :4] *= 1.7  # every later bar changed
    later_signals, later_scores = decide(moved)
    for b in (b for b in bars if b <= cut):
        assert later_scores[("SYN", b)] == scores[("SYN", b)] and later_signals["SYN"][b] == signals["SYN"][b]
    assert any(later_scores[("SYN", b)] != scores[("SYN", b)] for b in bars if b > cut)
