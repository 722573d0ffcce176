"""Chart CNN benchmark (issue 26's Speed section): training images/s, batch inference charts/s, the builtin reader.

On seeded random-walk windows of 60 daily bars:

1. ``bitmaps``: NumPy bitmaps rendered per second (``charts/bitmap.py``, batches of 1,024);
2. ``train``: torch training images/s of the CNN (the anchor's blocks at ``--widths``, the window's bitmap), as
   stage 02 trains it: deterministic kernels, ``--threads`` threads, batch ``--batch`` (Adam step included);
3. ``infer``: onnxruntime batch inference charts/s from bars (bitmaps rendered + one ``session.run`` per 1,024
   windows), and the ONNX call alone;
4. anchors from the same run: the builtin chart reader (``analyze_chart``: PNG -> candles -> rules) and the cnn
   provider's image path (the same reader + bitmap + ONNX, one chart a call), charts/s on 448-px stage-01 PNGs.

Goals: train >= 500 images/s, inference >= 1,500 charts/s on 2 cores. The machine's 1-minute load average is
printed with the figures (others' work on the cores lowers them).

    python -m benchmarks.bench_cnn [--widths 64,32] [--window 5] [--threads 2] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from alphasignal.charts.bitmap import render_bitmaps
from alphasignal.finetune.cnn import architecture, build_network, deterministic_torch, to_input

TRAIN_GOAL, INFER_GOAL = 500.0, 1500.0


def random_bars(n: int, length: int = 60, seed: int = 0) -> np.ndarray:
    """(n, length, 5) OHLCV windows of a seeded random walk."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, (n, length)), 1))
    opens = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(opens, close) * (1 + rng.uniform(0, 0.01, close.shape))
    low = np.minimum(opens, close) * (1 - rng.uniform(0, 0.01, close.shape))
    return np.stack([opens, high, low, close, rng.uniform(1e6, 3e6, close.shape)], 2)


def rate(fn, items: int, repeat: int = 3) -> float:
    """Items per second of ``fn()`` (best of ``repeat`` after one warm-up call)."""
    fn()
    best = min(_timed(fn) for _ in range(repeat))
    return items / best


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def train_rate(window: int, width: int, threads: int, batch: int, steps: int = 8) -> float:
    """Training images/s: ``steps`` Adam steps of ``batch`` bitmaps after two warm-up steps."""
    import torch

    x = torch.from_numpy(to_input(render_bitmaps(random_bars(batch), window)))
    y = torch.from_numpy(np.random.default_rng(1).integers(0, 3, batch))
    with deterministic_torch(0, threads):
        net = build_network(architecture(window, 3, width))
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> None:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()

        for _ in range(2):
            step()
        t = time.perf_counter()
        for _ in range(steps):
            step()
        return steps * batch / (time.perf_counter() - t)


def onnx_model(window: int, width: int, folder: Path):
    """A model folder written by stage 02's exporter for an untrained network of this size, loaded."""
    from alphasignal.finetune.cnn_export import onnx_bytes
    from alphasignal.providers.cnn import load_model

    arch = architecture(window, 3, width)
    with deterministic_torch(0, 2):
        net = build_network(arch).eval()
        blob = onnx_bytes(net.state_dict(), arch, 1.0)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(blob)
    meta = {"format": "alphasignal-chart-cnn/1", "window": window, "image_size": [arch["height"], arch["width"]],
            "classes": ["BUY", "SELL", "HOLD"], "labels": "action", "temperature": 1.0, "horizon": 5,
            "knowledge_cutoff": "bench", "onnx": "model.onnx"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return load_model(folder)


def png_charts(n: int) -> list[bytes]:
    """Stage-01-style 448-px charts (hidden context, MAs 10/20, volume) of ``n`` windows."""
    from alphasignal.charts.render import render_chart

    bars = random_bars(n, length=79, seed=2)
    out = []
    for b in bars:
        frame = pd.DataFrame(b, columns=["Open", "High", "Low", "Close", "Volume"],
                             index=pd.bdate_range("2020-01-01", periods=len(b)))
        out.append(render_chart(frame, size=448, warmup=19))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="64,32", help="first-block channels of the networks to time")
    ap.add_argument("--window", type=int, default=5, choices=(5, 20, 60))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--charts", type=int, default=40, help="PNG charts for the builtin reader and image path")
    args = ap.parse_args()
    from alphasignal.providers.base import Message
    from alphasignal.providers.cnn import CNNProvider
    from alphasignal.signals.rules import analyze_chart

    print(f"load average (1 min) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    bars = random_bars(1024)
    print(f"bitmaps {args.window}-day: {rate(lambda: render_bitmaps(bars, args.window), len(bars)):,.0f} charts/s")
    pngs = png_charts(args.charts)
    builtin = rate(lambda: [analyze_chart(p, last_close=100.0) for p in pngs], len(pngs), repeat=1)
    print(f"builtin reader (analyze_chart on 448-px PNGs): {builtin:,.1f} charts/s")
    with tempfile.TemporaryDirectory() as tmp:
        for width in (int(w) for w in args.widths.split(",")):
            arch = architecture(args.window, 3, width)
            train = train_rate(args.window, width, args.threads, args.batch)
            model = onnx_model(args.window, width, Path(tmp) / f"w{width}")
            infer = rate(lambda m=model: m.predict_bars(bars), len(bars))
            x = render_bitmaps(bars, args.window)
            onnx_only = rate(lambda m=model, x=x: m.predict_bitmaps(x), len(bars))
            provider = CNNProvider(str(Path(tmp) / f"w{width}"))
            msgs = [[Message("system", "s"), Message("user", "The last close is 100.0000.", (p,))] for p in pngs]
            image_path = rate(lambda p=provider, ms=msgs: [p._complete(m, {}, 60) for m in ms], len(pngs), repeat=1)
            print(f"\nnetwork {args.window}-day, channels {arch['channels']}, input {arch['height']}x{arch['width']}:")
            print(f"  train (torch, {args.threads} threads, batch {args.batch}): {train:,.0f} images/s "
                  f"(goal {TRAIN_GOAL:,.0f}: {'met' if train >= TRAIN_GOAL else 'NOT met'})")
            print(f"  infer (onnxruntime, bars -> bitmaps -> probs, 1,024 a call): {infer:,.0f} charts/s "
                  f"(goal {INFER_GOAL:,.0f}: {'met' if infer >= INFER_GOAL else 'NOT met'}); the ONNX call alone "
                  f"{onnx_only:,.0f}/s")
            print(f"  ratio to the builtin reader: inference {infer / builtin:,.0f}x; the image path (PNG -> reader "
                  f"-> bitmap -> ONNX, one a call) {image_path:,.1f} charts/s = {image_path / builtin:.2f}x")
    print(f"\nload average (1 min) at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
