"""Stage 02, ``training.backend = "cnn"``: a compact chart CNN on OHLC bitmaps, trained on the CPU in minutes.

The network is the anchor's (Jiang, Kelly & Xiu 2023): blocks of a 5x3 convolution, batch norm, LeakyReLU and
2x1 max-pooling (2 blocks for a 5-day image, 3 for 20 days, 4 for 60; ``cnn_width`` channels doubling per
block), then dropout and one dense layer. Inputs are :mod:`alphasignal.charts.bitmap` images of the last
``cnn_window`` days of each stage 01 window; labels are stage 01's (BUY/SELL/HOLD) or up/down.

Training reads the train and val splits only: Adam, early stopping on the val loss (the best epoch's weights are
kept), a fixed seed with deterministic kernels on ``cnn_threads`` threads (the same seed gives byte-identical
weights), then a temperature fitted on val. The test split is read once, at the end, for the model card. Ctrl-C
stops after the epoch in progress and writes the best weights so far. Outputs (``cnn_output_dir``): see
:mod:`.cnn_export`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..charts.bitmap import bitmap_size, render_bitmaps
from ..errors import Interrupted, UsageError
from ..progress import progress_bar
from .cnn_data import LABEL_MODES, BarSource, Split, file_digest, load_split, read_records

BLOCKS = {5: 2, 20: 3, 60: 4}  # conv blocks per window (each halves the height)
LEAK = 0.01
BN_EPS = 1e-5


def architecture(window: int, classes: int, width: int) -> dict[str, Any]:
    """The network's shape, stored with the weights: input size, channels per block, dense inputs."""
    height, w = bitmap_size(window)
    channels = [width * 2 ** i for i in range(BLOCKS[window])]
    return {"window": window, "height": height, "width": w, "channels": channels, "classes": classes,
            "dense_in": channels[-1] * (height >> len(channels)) * w, "leak": LEAK, "bn_eps": BN_EPS}


def build_network(arch: dict[str, Any], dropout: float = 0.5):
    """The torch module for ``arch`` (Conv-BN-LeakyReLU-MaxPool blocks, Flatten, Dropout, Linear)."""
    from torch import nn

    layers: list[Any] = []
    cin = 1
    for cout in arch["channels"]:
        layers += [nn.Conv2d(cin, cout, (5, 3), padding=(2, 1)), nn.BatchNorm2d(cout, eps=arch["bn_eps"]),
                   nn.LeakyReLU(arch["leak"]), nn.MaxPool2d((2, 1))]
        cin = cout
    return nn.Sequential(*layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(arch["dense_in"], arch["classes"]))


def to_input(bitmaps: np.ndarray) -> np.ndarray:
    """Bitmaps (N, H, W) uint8 -> network input (N, 1, H, W) float32 in [0, 1]."""
    return (bitmaps.astype(np.float32) / 255.0)[:, None]


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[Any]:
    """Seeded torch with deterministic kernels on ``threads`` threads; the process's settings come back after."""
    import torch

    old = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield torch
    finally:
        torch.set_num_threads(old[0])
        torch.use_deterministic_algorithms(old[1])


def logits_of(model: Any, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Eval-mode logits (N, C) float64 of inputs (N, 1, H, W)."""
    import torch

    model.eval()
    with torch.no_grad():
        parts = [model(torch.from_numpy(x[k:k + batch])).double().numpy() for k in range(0, len(x), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, model[-1].out_features))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood (log loss) of the true classes."""
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)))) if len(labels) else 0.0


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the val log loss of softmax(logits / T): a grid over log T, then refined."""
    if len(labels) == 0:
        return 1.0
    grid = np.exp(np.linspace(math.log(0.05), math.log(20.0), 121))
    best = min(grid, key=lambda t: nll(softmax(logits, t), labels))
    fine = best * np.exp(np.linspace(-0.03, 0.03, 61))
    return float(round(min(fine, key=lambda t: nll(softmax(logits, t), labels)), 6))


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """Top-label expected calibration error over ``bins`` equal-width confidence bins."""
    if len(labels) == 0:
        return 0.0
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(correct[idx == b].mean() - conf[idx == b].mean()) * np.mean(idx == b)
                     for b in range(bins) if np.any(idx == b)))


def scores(probs: np.ndarray, labels: np.ndarray, majority: int) -> dict[str, float]:
    """Accuracy (with a 95 % Wilson interval), balanced accuracy, log loss, Brier, ECE, and the majority class's
    accuracy on the same windows."""
    n = len(labels)
    if n == 0:
        return {"n": 0}
    pred = probs.argmax(1)
    acc = float(np.mean(pred == labels))
    recalls = [float(np.mean(pred[labels == k] == k)) for k in np.unique(labels)]
    onehot = np.eye(probs.shape[1])[labels]
    z = 1.96
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return {"n": n, "accuracy": round(acc, 6), "accuracy_ci95": [round(centre - half, 6), round(centre + half, 6)],
            "balanced_accuracy": round(float(np.mean(recalls)), 6), "log_loss": round(nll(probs, labels), 6),
            "brier": round(float(np.mean(np.sum((probs - onehot) ** 2, 1))), 6), "ece": round(ece(probs, labels), 6),
            "majority_accuracy": round(float(np.mean(labels == majority)), 6)}


def _epochs(model: Any, data: tuple[np.ndarray, ...], cfg: Any, bar: Any) -> dict[str, Any]:
    """The training loop: returns the best state (by val loss), its epoch, the history and whether Ctrl-C stopped
    it."""
    import torch

    xtr, ytr, xva, yva = data
    opt = torch.optim.Adam(model.parameters(), lr=cfg.cnn_learning_rate)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(cfg.seed)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    best = {"val_loss": math.inf, "epoch": 0, "state": None, "history": [], "interrupted": False}
    stale = 0
    try:
        for epoch in range(1, cfg.cnn_epochs + 1):
            model.train()
            order = torch.from_numpy(rng.permutation(len(ytr)))
            total = 0.0
            for k in range(0, len(order), cfg.cnn_batch):
                idx = order[k:k + cfg.cnn_batch]
                if len(idx) < 2:  # batch norm needs two samples in training mode
                    continue
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            val_probs = softmax(logits_of(model, xva))
            row = {"epoch": epoch, "train_loss": round(total / len(ytr), 6), "val_loss": round(nll(val_probs, yva), 6),
                   "val_accuracy": round(float(np.mean(val_probs.argmax(1) == yva)), 6)}
            best["history"].append(row)
            if row["val_loss"] < best["val_loss"] - 1e-6:
                best.update(val_loss=row["val_loss"], epoch=epoch, state={
                    k: v.detach().clone() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
            bar.update(completed=epoch, loss=f"{row['train_loss']:.4f}", val=f"{row['val_loss']:.4f}",
                       acc=f"{row['val_accuracy']:.3f}")
            if stale >= cfg.cnn_patience:
                break
    except KeyboardInterrupt:
        best["interrupted"] = True
    return best


def bitmaps_of(split: Split, window: int) -> np.ndarray:
    """Network inputs of a split's windows (all bars of the stage 01 window warm the moving average up)."""
    if len(split) and split.bars.shape[1] < window:
        raise UsageError(f"the dataset's windows have {split.bars.shape[1]} bars, fewer than training.cnn_window="
                         f"{window}: lower cnn_window or rebuild the dataset with a longer dataset.window")
    return to_input(render_bitmaps(split.bars, window)) if len(split) else np.zeros((0, 1, *bitmap_size(window)),
                                                                                      np.float32)


def command_line(cfg: Any, market: Any, dataset: str | None = None) -> str:
    """The stage 02 command that reproduces this training: every setting that differs from its default."""
    from dataclasses import fields

    parts = ["python 02_finetune_colab.py --backend cnn"]
    if dataset:
        parts.append(f"--dataset {dataset}")
    for section, obj, names in (("training", cfg, [f.name for f in fields(cfg) if f.name.startswith("cnn_")]
                                 + ["seed", "dataset_path"]),
                                ("dataset", market, [f.name for f in fields(market)])):
        default = type(obj)()
        for name in names:
            value = getattr(obj, name)
            if value != getattr(default, name):
                text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
                parts.append(f"--set {section}.{name}={text}")
    return " ".join(parts)


def train_cnn(cfg: Any, market: Any, *, dataset: str | None = None, quiet: bool = False,
              command: str = "python 02_finetune_colab.py --backend cnn", frames: dict | None = None
              ) -> dict[str, Any]:
    """Train, calibrate, evaluate once on test and write the model folder; returns the report.

    ``cfg`` is the TrainingConfig, ``market`` the DatasetConfig whose market data stage 01 used (``frames``:
    already loaded ``{ticker: OHLCV frame}``, e.g. in tests)."""
    from .cnn_export import write_model

    start = time.perf_counter()
    path = dataset or cfg.dataset_path
    records = read_records(path)
    source = BarSource(market, frames)
    classes = LABEL_MODES[cfg.cnn_labels]
    train, val = (load_split(records, s, source, cfg.cnn_labels) for s in ("train", "val"))
    for split in (train, val):
        if len(split) < 2:
            raise UsageError(f"{path} has {len(split)} {split.name}-split window(s): the CNN needs train and val "
                             "windows; rebuild the dataset with more data or dataset.val_fraction > 0")
    xtr, xva = bitmaps_of(train, cfg.cnn_window), bitmaps_of(val, cfg.cnn_window)
    arch = architecture(cfg.cnn_window, len(classes), cfg.cnn_width)
    seconds: dict[str, float] = {"data": round(time.perf_counter() - start, 2)}
    with deterministic_torch(cfg.seed, cfg.cnn_threads):
        model = build_network(arch, cfg.cnn_dropout)
        t0 = time.perf_counter()
        with progress_bar(not quiet, cfg.cnn_epochs, "    training CNN",
                          detail="loss {task.fields[loss]} val {task.fields[val]} acc {task.fields[acc]}",
                          fields={"loss": "-", "val": "-", "acc": "-"}) as bar:
            best = _epochs(model, (xtr, train.labels, xva, val.labels), cfg, bar)
        seconds["train"] = round(time.perf_counter() - t0, 2)
        if best["state"] is None:
            raise Interrupted("training stopped before the first epoch finished: nothing was written; run the "
                              "command again")
        model.load_state_dict(best["state"])
        val_logits = logits_of(model, xva)
    temperature = fit_temperature(val_logits, val.labels)
    majority = int(np.bincount(train.labels, minlength=len(classes)).argmax())
    test = load_split(records, "test", source, cfg.cnn_labels)  # read once, after training and calibration
    with deterministic_torch(cfg.seed, cfg.cnn_threads):
        test_logits = logits_of(model, bitmaps_of(test, cfg.cnn_window))
    metrics = {}
    for name, logits, split in (("val", val_logits, val), ("test", test_logits, test)):
        raw, cal = softmax(logits), softmax(logits, temperature)
        metrics[name] = {**scores(cal, split.labels, majority), "ece_before_calibration":
                         round(ece(raw, split.labels), 6) if len(split) else None}
    report = {
        "backend": "cnn", "n_train": len(train), "n_val": len(val), "n_test": len(test), "classes": list(classes),
        "labels": cfg.cnn_labels, "architecture": arch, "epochs_run": len(best["history"]),
        "best_epoch": best["epoch"], "interrupted": best["interrupted"], "history": best["history"],
        "temperature": temperature, "majority_class": classes[majority], "eval": metrics,
        "splits": {s.name: {"windows": len(s), "first_window_end": s.first_end, "last_window_end": s.last_end}
                   for s in (train, val, test)},
        "knowledge_cutoff": max(train.label_ends + val.label_ends),
        "horizon": int(records[0]["horizon"]), "bars_per_window": int(train.bars.shape[1]),
        "data": {"dataset": str(path), "jsonl_sha256": file_digest(path),
                 "train_val_sha256": hashlib.sha256((train.digest() + val.digest()).encode()).hexdigest()[:12]},
        "train_images_per_s": round(len(train) * len(best["history"]) / max(seconds["train"], 1e-9), 1),
        "command": command, "seed": cfg.seed, "threads": cfg.cnn_threads,
        "settings": {k: getattr(cfg, k) for k in ("cnn_window", "cnn_width", "cnn_epochs", "cnn_batch",
                                                  "cnn_patience", "cnn_learning_rate", "cnn_dropout")},
        "levels": {"stop_atr": market.stop_atr, "take_profit_atr": market.take_profit_atr},
    }
    files = write_model(cfg.cnn_output_dir, best["state"], arch, report)
    seconds["total"] = round(time.perf_counter() - start, 2)
    report.update(seconds=seconds, files=files)
    if best["interrupted"]:
        raise Interrupted(f"training interrupted after {len(best['history'])} epoch(s): the best so far (epoch "
                          f"{best['epoch']}) is written to {cfg.cnn_output_dir}; run the command again to train "
                          "fully")
    return report
