"""The chart CNN as a chart provider (``pipeline.vlm_provider = "cnn"``): onnxruntime only, never torch.

The model folder (``pipeline.vlm_model``; a model *name* such as the default ``qwen2.5vl:3b`` means
``models/chart_cnn``) is what ``python 02_finetune_colab.py --backend cnn`` writes: ``meta.json`` +
``model.onnx`` (see ``alphasignal/finetune/cnn_export.py``). It is checked once, when the provider is made: a
missing or corrupt folder, or a model for another window or image size, is one ``UsageError`` line (exit 2).

A chart provider receives the chart image, as every provider does. The bitmap model needs the bars: they are read
back from the image with the chart reader the builtin engine uses (``charts/read.py``), which recovers each
candle's open/high/low/close and volume from a chart this project rendered (stage 01, ``--replay``, ``--eval``).
Bitmaps scale prices and volume per image, so the reader's chart units are all it needs. A chart in no style this
project draws is refused in one line: a bitmap model needs the bars.

The answer is a ``TradingSignal``: the most probable class (BUY/SELL/HOLD, or up -> BUY / down -> SELL) with its
temperature-calibrated probability as the confidence, the last close from the prompt as entry, stop and target
``stop_atr`` / ``take_profit_atr`` x ATR of the candles (the builtin reader's price-scale assumption: the drawn
range is 20 % of the close), and a rationale that says what the model is and its probabilities.

``ChartCNN.predict_bars`` / ``predict_bitmaps`` score many windows in one onnxruntime call; concurrent requests
of the async path (``--eval``, ``--replay``: ``pipeline.concurrency`` at once) share one call once they have all
read their charts.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from .base import Message, Provider, ProviderSettings

DEFAULT_FOLDER = "models/chart_cnn"
META_FORMAT = "alphasignal-chart-cnn/1"
SIZES = {5: (32, 15), 20: (64, 60), 60: (96, 180)}  # as charts/bitmap.py (not imported here: it loads matplotlib)
_LAST_CLOSE = re.compile(r"last close is\s+([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
_RELATIVE_CLOSE = 100.0
_FIX = "train one with python 02_finetune_colab.py --backend cnn, or point pipeline.vlm_model at its folder"


def model_folder(model: str) -> Path:
    """The folder named by ``pipeline.vlm_model``: a path, or ``models/chart_cnn`` for a model name."""
    name = (model or "").strip()
    looks_like_path = "/" in name or "\\" in name or name.startswith(".") or Path(name).expanduser().is_dir()
    return Path(name).expanduser() if name and looks_like_path else Path(DEFAULT_FOLDER)


def _bad(folder: Path, why: str) -> UsageError:
    return UsageError(f"chart CNN model folder {str(folder)!r} {why}: {_FIX}")


def read_meta(folder: Path) -> dict[str, Any]:
    """``meta.json`` checked: format, window with its image size, classes, temperature."""
    if not folder.is_dir():
        raise _bad(folder, "not found" if not folder.exists() else "is not a folder")
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(folder, "has no meta.json") from None
    except (OSError, ValueError) as exc:
        raise _bad(folder, f"has a corrupt meta.json ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise _bad(folder, f"holds no {META_FORMAT} meta.json")
    try:
        window, size = int(meta["window"]), [int(v) for v in meta["image_size"]]
        classes, temperature = [str(c) for c in meta["classes"]], float(meta["temperature"])
        int(meta["horizon"])
    except (KeyError, TypeError, ValueError):
        raise _bad(folder, "has a corrupt meta.json (window, image_size, classes, temperature, horizon)") from None
    if window not in SIZES or tuple(size) != SIZES[window]:
        drawn = f"a {window}-day bitmap is {SIZES[window][0]}x{SIZES[window][1]}" if window in SIZES else \
            f"this version draws {', '.join(f'{w}-day' for w in SIZES)} bitmaps"
        raise UsageError(f"the chart CNN in {str(folder)!r} was trained for a {window}-day {size[0]}x{size[1]} "
                         f"image, but {drawn}: retrain it with python 02_finetune_colab.py --backend cnn")
    if classes not in (["BUY", "SELL", "HOLD"], ["up", "down"]) or not temperature > 0:
        raise _bad(folder, "has a corrupt meta.json (classes or temperature)")
    return meta


@dataclass
class ChartCNN:
    """A loaded model folder: ``predict_bitmaps`` / ``predict_bars`` give calibrated class probabilities."""

    folder: Path
    meta: dict[str, Any]
    session: Any
    lock: threading.Lock

    @property
    def window(self) -> int:
        return int(self.meta["window"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    def predict_bitmaps(self, bitmaps: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, classes) of bitmaps (N, H, W) uint8, in one onnxruntime call."""
        if len(bitmaps) == 0:
            return np.zeros((0, len(self.classes)))
        x = (np.asarray(bitmaps, dtype=np.float32) / 255.0)[:, None]
        with self.lock:
            probs = self.session.run(["probs"], {"image": x})[0]
        return probs.astype(np.float64)

    def predict_bars(self, bars: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of windows of bars (N, T, 5: open, high, low, close, volume; T >= window)."""
        from ..charts.bitmap import render_bitmaps

        return self.predict_bitmaps(render_bitmaps(bars, self.window))


def load_model(folder: str | Path) -> ChartCNN:
    """Load and check a model folder (cached per folder and ONNX file state)."""
    p = Path(folder).expanduser()
    meta = read_meta(p)
    onnx_path = p / str(meta.get("onnx", "model.onnx"))
    try:
        stat = onnx_path.stat()
    except OSError:
        raise _bad(p, f"has no {onnx_path.name}") from None
    return _load(str(p.resolve()), json.dumps(meta, sort_keys=True), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _load(folder: str, meta_text: str, _mtime: int, _size: int) -> ChartCNN:
    meta = json.loads(meta_text)
    p = Path(folder)
    blob = (p / str(meta.get("onnx", "model.onnx"))).read_bytes()
    if meta.get("onnx_sha256") and hashlib.sha256(blob).hexdigest() != meta["onnx_sha256"]:
        raise _bad(p, "has a model.onnx that does not match its meta.json (corrupt or replaced)")
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("the cnn provider needs onnxruntime: pip install -r requirements.txt") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own error types for a corrupt graph
        raise _bad(p, f"has a corrupt model.onnx ({type(exc).__name__})") from None
    shape = session.get_inputs()[0].shape
    h, w = meta["image_size"]
    if list(shape[1:]) != [1, h, w]:
        raise UsageError(f"the chart CNN in {str(p)!r} takes {shape[2]}x{shape[3]} images but its meta.json says "
                         f"{h}x{w} for a {meta['window']}-day window: retrain it with python 02_finetune_colab.py "
                         "--backend cnn")
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if "probs" not in outputs or outputs["probs"][-1] != len(meta["classes"]):
        raise _bad(p, "has a model.onnx whose outputs do not match its classes")
    return ChartCNN(p, meta, session, threading.Lock())


def _atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14) -> float:
    """Mean true range over the last ``period`` bars (fewer on a short series)."""
    prev = np.concatenate([close[:1], close[:-1]])
    tr = np.maximum(high - low, np.maximum(abs(high - prev), abs(low - prev)))
    return float(tr[-period:].mean()) if len(tr) else float("nan")


def signal_json(model: ChartCNN, probs: np.ndarray, last_close: float, atr: float, relative: bool) -> str:
    """The TradingSignal JSON for one window's probabilities."""
    classes, meta = model.classes, model.meta
    k = int(np.argmax(probs))
    action = {"up": "BUY", "down": "SELL"}.get(classes[k], classes[k])
    atr = min(atr if np.isfinite(atr) and atr > 0 else 0.01 * last_close, 0.1 * last_close)
    stop = take = None
    if action != "HOLD":
        side = 1 if action == "BUY" else -1
        stop = round(last_close - side * float(meta.get("stop_atr", 1.5)) * atr, 6)
        take = round(last_close + side * float(meta.get("take_profit_atr", 3.0)) * atr, 6)
    shown = ", ".join(f"p({c})={p:.2f}" for c, p in zip(classes, probs, strict=True))
    if classes == ["up", "down"]:
        shown = f"p(up)={probs[0]:.2f}"
    rationale = (f"CNN {shown} over {meta['horizon']} bars, from a {model.window}-day bitmap of the chart's candles "
                 f"(calibrated, temperature {meta['temperature']:.2f}; trained on data to "
                 f"{meta.get('knowledge_cutoff')})"
                 f"; levels {meta.get('stop_atr', 1.5):g}/{meta.get('take_profit_atr', 3.0):g} ATR"
                 + (", prices relative (last close not given)." if relative else "."))
    return json.dumps({"action": action, "confidence": round(float(probs[k]), 4), "entry_price": last_close,
                       "stop_loss": stop, "take_profit": take, "rationale": rationale[:600]})


@dataclass(frozen=True)
class Prepared:
    """One request read: the bars recovered from the chart, the last close and the levels' ATR."""

    bars: np.ndarray
    last_close: float
    atr: float
    relative: bool


class CNNProvider(Provider):
    """The trained chart CNN as a chart (``vlm``) provider."""

    name = "cnn"
    supports_vision = True
    supports_json_schema = True

    def __init__(self, model: str = "", settings: ProviderSettings | None = None, role: str = "") -> None:
        folder = model_folder(model)
        super().__init__(str(folder), settings, role)
        self.folder = folder
        self._pending: list[tuple[Prepared, asyncio.Future]] = []
        self._reading = 0  # async requests still reading their chart
        self._scheduled = False

    def check(self) -> None:
        """Load and check the model folder now (one line, exit 2, when it is missing or wrong)."""
        self.cnn()

    def cnn(self) -> ChartCNN:
        return load_model(self.folder)

    @property
    def knowledge_cutoff(self) -> str:
        """The last bar any train/val label used: decisions dated on or before it are in-sample for this model
        (a replay or universe run over earlier dates is look-ahead; the caller that knows the dates checks)."""
        return str(self.cnn().meta.get("knowledge_cutoff", ""))

    def request_settings(self) -> dict[str, Any]:
        """The model's identity (its ONNX file's sha256 and the meta) shapes every reply: part of the cache key."""
        return {"meta": self.cnn().meta}

    def prepare(self, messages: Sequence[Message]) -> Prepared:
        """Read the chart in the request back into bars (UsageError when it is no chart this project drew)."""
        from ..charts.read import read_chart

        user = next((m for m in messages if m.role == "user"), None)
        if user is None or not user.images:
            raise UsageError("the cnn provider needs a chart image: a bitmap model reads the chart's bars")
        candles = read_chart(user.images[0])
        if candles.style == "generic":
            raise UsageError("this chart was not rendered by this project, and a bitmap model needs the bars: give "
                             "a chart drawn by 01_generate_dataset.py (or use --eval / --replay), or another "
                             "pipeline.vlm_provider for other images")
        model = self.cnn()
        if len(candles) < model.window:
            raise UsageError(f"the chart shows {len(candles)} candles, fewer than the {model.window} days the CNN in "
                             f"{str(self.folder)!r} was trained on: draw charts of at least {model.window} bars")
        found = _LAST_CLOSE.search(user.content)
        last_close = float(found.group(1)) if found else _RELATIVE_CLOSE
        volume = candles.volume if candles.volume is not None else np.zeros(len(candles))
        bars = np.stack([candles.open, candles.high, candles.low, candles.close, volume], axis=1)
        prices = candles.to_prices(last_close)
        return Prepared(bars, last_close, _atr(prices.high, prices.low, prices.close), found is None)

    def _complete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        prep = self.prepare(messages)
        model = self.cnn()
        return signal_json(model, model.predict_bars(prep.bars[None])[0], prep.last_close, prep.atr, prep.relative)

    async def _acomplete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        """Read the chart in a worker thread, then score it in one onnxruntime call with every request that has
        read its chart by the time no request is still reading (stage 04 runs ``pipeline.concurrency`` at once)."""
        loop = asyncio.get_running_loop()
        self._reading += 1
        try:
            prep = await asyncio.to_thread(self.prepare, messages)
            future: asyncio.Future = loop.create_future()
            self._pending.append((prep, future))
        finally:
            self._reading -= 1
            if self._pending and not self._scheduled and (self._reading == 0 or len(self._pending) >= 1024):
                self._scheduled = True
                loop.call_soon(self._flush)
        probs = await future
        return signal_json(self.cnn(), probs, prep.last_close, prep.atr, prep.relative)

    def _flush(self) -> None:
        batch, self._pending, self._scheduled = self._pending, [], False
        model = self.cnn()
        groups: dict[int, list[int]] = {}
        for i, (prep, _) in enumerate(batch):  # one call per bar count (charts of one run share it)
            groups.setdefault(len(prep.bars), []).append(i)
        for idx in groups.values():
            try:
                probs = model.predict_bars(np.stack([batch[i][0].bars for i in idx]))
            except Exception as exc:  # handed to every waiting request
                for i in idx:
                    if not batch[i][1].done():
                        batch[i][1].set_exception(exc)
                continue
            for row, i in zip(probs, idx, strict=True):
                if not batch[i][1].done():  # a cancelled request has no one waiting
                    batch[i][1].set_result(row)
