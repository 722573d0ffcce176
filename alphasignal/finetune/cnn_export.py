"""The chart CNN's model folder: weights, ONNX graph, meta, model card, report, written all at once.

Files in ``training.cnn_output_dir`` (default ``models/chart_cnn``):

- ``model.pt``: ``{"state_dict", "architecture"}`` for torch (training and the torch-vs-ONNX check);
- ``model.onnx``: the same network for onnxruntime, batch norm folded into the convolutions, with two outputs:
  ``logits`` and ``probs`` (softmax of logits / temperature: calibrated). Written node by node with ``onnx``'s
  helpers (no tracing exporter), so the same weights give the same bytes;
- ``meta.json``: what inference checks and needs (window, image size, classes, temperature, labels mode, horizon,
  ``knowledge_cutoff`` = the last bar any train/val label used, the ONNX file's sha256);
- ``model_card.md`` and ``training_report.json``.

The folder is built beside the target and swapped in with two renames: a reader sees the old model or the new one,
never a mix (for an instant between the renames, no folder).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..fileio import check_output_dir

META_FORMAT = "alphasignal-chart-cnn/1"
OPSET = 17


def onnx_bytes(state: dict[str, Any], arch: dict[str, Any], temperature: float) -> bytes:
    """The ONNX model of ``arch`` with ``state`` (torch tensors), batch norm folded, probs = softmax(logits / T)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = {k: v.detach().cpu().numpy().astype(np.float64) for k, v in state.items()}
    inits, nodes = [], []
    x = "image"
    for i, _ in enumerate(arch["channels"]):
        conv, bn = f"{4 * i}", f"{4 * i + 1}"
        scale = w[f"{bn}.weight"] / np.sqrt(w[f"{bn}.running_var"] + arch["bn_eps"])
        kernel = w[f"{conv}.weight"] * scale[:, None, None, None]
        bias = w[f"{bn}.bias"] + (w[f"{conv}.bias"] - w[f"{bn}.running_mean"]) * scale
        inits += [numpy_helper.from_array(kernel.astype(np.float32), f"conv{i}.weight"),
                  numpy_helper.from_array(bias.astype(np.float32), f"conv{i}.bias")]
        nodes += [helper.make_node("Conv", [x, f"conv{i}.weight", f"conv{i}.bias"], [f"conv{i}"],
                                   kernel_shape=[5, 3], pads=[2, 1, 2, 1]),
                  helper.make_node("LeakyRelu", [f"conv{i}"], [f"act{i}"], alpha=arch["leak"]),
                  helper.make_node("MaxPool", [f"act{i}"], [f"pool{i}"], kernel_shape=[2, 1], strides=[2, 1])]
        x = f"pool{i}"
    dense = str(4 * len(arch["channels"]) + 2)
    inits += [numpy_helper.from_array(w[f"{dense}.weight"].astype(np.float32), "dense.weight"),
              numpy_helper.from_array(w[f"{dense}.bias"].astype(np.float32), "dense.bias"),
              numpy_helper.from_array(np.array(temperature, np.float32), "temperature")]
    nodes += [helper.make_node("Flatten", [x], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "dense.weight", "dense.bias"], ["logits"], transB=1),
              helper.make_node("Div", ["logits", "temperature"], ["scaled"]),
              helper.make_node("Softmax", ["scaled"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "chart_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, arch["height"], arch["width"]])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", arch["classes"]]) for n in ("logits", "probs")],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="alphasignal")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def torch_bytes(state: dict[str, Any], arch: dict[str, Any]) -> bytes:
    """``model.pt``: the state dict and the architecture (torch.save; the same tensors give the same bytes)."""
    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": state, "architecture": arch}, buf)
    return buf.getvalue()


def meta_of(report: dict[str, Any], onnx_sha: str) -> dict[str, Any]:
    """``meta.json``: everything inference needs and checks."""
    arch = report["architecture"]
    return {"format": META_FORMAT, "input": "bitmap", "window": arch["window"],
            "image_size": [arch["height"], arch["width"]], "classes": report["classes"], "labels": report["labels"],
            "temperature": report["temperature"], "horizon": report["horizon"],
            "bars_per_window": report["bars_per_window"], "knowledge_cutoff": report["knowledge_cutoff"],
            "stop_atr": report["levels"]["stop_atr"], "take_profit_atr": report["levels"]["take_profit_atr"],
            "onnx": "model.onnx", "onnx_sha256": onnx_sha, "data_sha256": report["data"]["train_val_sha256"]}


def _fmt(m: dict[str, Any], key: str) -> str:
    v = m.get(key)
    return "-" if v is None else (f"[{v[0]:.3f}, {v[1]:.3f}]" if isinstance(v, list) else f"{v:.3f}")


def model_card(report: dict[str, Any]) -> str:
    """``model_card.md``: data, splits, training, metrics, calibration and the command."""
    arch, ev = report["architecture"], report["eval"]
    rows = "\n".join(f"| {name} | {m.get('n', 0)} | {_fmt(m, 'accuracy')} {_fmt(m, 'accuracy_ci95')} | "
                     f"{_fmt(m, 'majority_accuracy')} | {_fmt(m, 'balanced_accuracy')} | {_fmt(m, 'log_loss')} | "
                     f"{_fmt(m, 'brier')} | {_fmt(m, 'ece_before_calibration')} | {_fmt(m, 'ece')} |"
                     for name, m in ev.items())
    splits = "\n".join(f"| {k} | {s['windows']} | {s['first_window_end'] or '-'} .. {s['last_window_end'] or '-'} |"
                       for k, s in report["splits"].items())
    stopped = " (interrupted with Ctrl-C: the best epoch so far)" if report["interrupted"] else ""
    return f"""# alphasignal chart CNN

- input: {arch['height']}x{arch['width']} black-and-white OHLC bitmap of the last {arch['window']} days of each
  stage 01 window ({report['bars_per_window']} bars; the earlier ones only warm the moving average up)
- network: {len(arch['channels'])} blocks of 5x3 conv + batch norm + LeakyReLU + 2x1 max-pool, channels
  {arch['channels']}, dropout {report['settings']['cnn_dropout']}, one dense layer -> {report['classes']}
- labels: {report['labels']} over a horizon of {report['horizon']} bars; majority class of train:
  {report['majority_class']}
- data: `{report['data']['dataset']}` (sha256 {report['data']['jsonl_sha256']}); train+val windows as seen
  {report['data']['train_val_sha256']}; knowledge cutoff (last bar of any train/val label)
  {report['knowledge_cutoff']}

## Splits (stage 01's, by window-end date with its embargo)

| split | windows | window ends |
|---|---|---|
{splits}

## Training

{report['epochs_run']} epoch(s) run, best val loss at epoch {report['best_epoch']}{stopped}; seed {report['seed']},
{report['threads']} threads, deterministic kernels; settings {json.dumps(report['settings'])}. Temperature fitted on
val: {report['temperature']:.4f}.

## Metrics (calibrated probabilities; the test split is read once, after training)

| split | n | accuracy [95 % CI] | majority | balanced acc. | log loss | Brier | ECE before | ECE after |
|---|---|---|---|---|---|---|---|---|
{rows}

## Command

```bash
{report['command']}
```
"""


def _swap_in(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.replace(out, old / out.name)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model(output_dir: str, state: dict[str, Any], arch: dict[str, Any], report: dict[str, Any]
                ) -> dict[str, str]:
    """Write the model folder (see the module docstring) in one swap; returns {kind: path}."""
    out = check_output_dir(output_dir, what="training.cnn_output_dir")
    if out.exists() and not out.is_dir():
        raise UsageError(f"training.cnn_output_dir {str(out)!r} is a file: choose a folder")
    onnx_blob = onnx_bytes(state, arch, report["temperature"])
    onnx_sha = hashlib.sha256(onnx_blob).hexdigest()
    blobs = {"model.pt": torch_bytes(state, arch), "model.onnx": onnx_blob,
             "meta.json": (json.dumps(meta_of(report, onnx_sha), indent=2) + "\n").encode(),
             "model_card.md": model_card(report).encode(),
             "training_report.json": (json.dumps(report, indent=2, default=str) + "\n").encode()}
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
        try:
            for name, blob in blobs.items():
                (tmp / name).write_bytes(blob)
                os.chmod(tmp / name, 0o644)
            os.chmod(tmp, 0o755)
            _swap_in(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise UsageError(f"cannot write the model to {str(out)!r} ({exc.strerror or exc}): choose another "
                         "training.cnn_output_dir") from None
    kinds = {"model.pt": "weights", "model.onnx": "onnx", "meta.json": "meta", "model_card.md": "model_card",
             "training_report.json": "report"}
    return {kinds[name]: str(out / name) for name in blobs}
