"""Stage 02 driver: data -> train (unsloth | hf) -> evaluate on val -> export adapter, merged, GGUF, Modelfile."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from ..config import TrainingConfig

from ..errors import UsageError
from ..fileio import write_atomic
from .backend import RunContext, get_backend, memory_summary
from .data import load_samples
from .export import ExportPlan, build_modelfile

log = logging.getLogger(__name__)


def finetune(cfg: TrainingConfig, *, dataset: str | None = None, limit: int = 0, export_gguf: bool = True,
             quiet: bool = False, market: Any = None) -> dict[str, Any]:
    """Run stage 02 end to end and return the report (also written to ``output_dir/finetune_report.json``).

    ``training.backend = "cnn"`` trains the chart CNN instead (``finetune.cnn``; ``market`` is the DatasetConfig
    whose market data stage 01 used, default its defaults) and writes ``training.cnn_output_dir``."""
    if cfg.backend == "cnn":
        from ..config import DatasetConfig
        from .cnn import command_line, train_cnn

        market = market or DatasetConfig()
        return train_cnn(cfg, market, dataset=dataset, quiet=quiet, command=command_line(cfg, market, dataset))
    plan = ExportPlan.from_config(cfg)
    ctx = RunContext(quiet=quiet)
    ctx.step(1)
    path = dataset or cfg.dataset_path
    train = load_samples(path, "train", limit or None)
    val = load_samples(path, "val")
    if not train:
        raise UsageError(f"{path} has no train-split samples: regenerate it with python 01_generate_dataset.py")
    prompts = {s.system_prompt for s in train}
    if len(prompts) != 1:
        raise UsageError(f"{path} mixes {len(prompts)} system prompts: regenerate it with one prompt version")
    ctx.say(f"    {len(train)} train / {len(val)} val samples, prompt version {train[0].prompt_version or '?'}")
    ctx.mark("data")
    result = get_backend(cfg.backend).run(cfg, plan, train, val, ctx)
    if export_gguf:
        ctx.step(6)
        files = result.pop("gguf_files", None) or _convert(plan)
        modelfile = build_modelfile(plan, train[0].system_prompt, prompt_id(train[0].prompt_version),
                                    include_mmproj=files.mmproj is not None)
        write_atomic(plan.modelfile, modelfile.render())
        ctx.mark("export_gguf")
    report = {"backend": cfg.backend, "base_model": cfg.base_model, "dataset": str(path),
              "prompt_version": train[0].prompt_version, "n_train": len(train), "n_val": len(val),
              "config": asdict(cfg), **result, "seconds": ctx.seconds, "memory": memory_summary(),
              "files": {k: str(v) for k, v in plan.files().items() if v.exists() or k == "report"}}
    write_atomic(plan.report, json.dumps(report, indent=2, default=str))
    return report


def prompt_id(version: str) -> str:
    """``chart_signal@V`` from a dataset's prompt_version (stage 01 writes the full id; a bare version is accepted)."""
    return version if "@" in version else f"chart_signal@{version or '?'}"


def export_only(cfg: TrainingConfig, quiet: bool = False) -> dict[str, Any]:
    """Convert an existing ``merged_16bit/`` (e.g. downloaded from Colab) to GGUF + projector + Modelfile."""
    from ..prompts import load_prompt

    plan = ExportPlan.from_config(cfg)
    if not (plan.merged / "config.json").is_file():
        raise UsageError(f"{plan.merged} has no merged model: train first, or copy merged_16bit/ from Colab there")
    prompt = load_prompt("chart_signal")
    trained = json.loads(plan.report.read_text()).get("prompt_version") if plan.report.is_file() else None
    if trained and prompt_id(trained) != prompt.id:
        raise UsageError(f"the model was trained with prompt {prompt_id(trained)} but the repo has {prompt.id}: "
                         "check out the matching prompt before exporting")
    RunContext(quiet=quiet).step(6)
    files = _convert(plan)
    write_atomic(plan.modelfile, build_modelfile(plan, prompt.system, prompt.id, files.mmproj is not None).render())
    return {"files": {k: str(v) for k, v in plan.files().items() if v.exists()}}


def _convert(plan: ExportPlan):
    from .gguf import convert_to_gguf

    return convert_to_gguf(plan.merged, plan.gguf_dir, plan.name, plan.quantization)
