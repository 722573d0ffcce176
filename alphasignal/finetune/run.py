"""Stage 02 driver: data -> train (unsloth | hf) -> evaluate on val -> export adapter, merged, GGUF, Modelfile."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..errors import UsageError
from ..fileio import write_atomic
from .backend import RunContext, get_backend, memory_summary
from .data import load_samples
from .export import ExportPlan, build_modelfile

log = logging.getLogger(__name__)


def finetune(cfg: TrainingConfig, *, dataset: str | None = None, limit: int = 0, export_gguf: bool = True,
             quiet: bool = False, market: Any = None, ladder: Any = None) -> dict[str, Any]:
    """Run stage 02 end to end and return the report (also written to ``output_dir/finetune_report.json``).

    ``ladder`` (the full ``Config``) scores the fine-tuned model on the test split after training, as the ``vlm``
    rung beside ``training.ladder``'s rungs (``ladder_table`` in the report, files ``test_eval*``).

    ``training.backend = "cnn"`` trains the chart CNN instead (``finetune.cnn``; ``market`` is the DatasetConfig
    whose market data stage 01 used, default ``ladder``'s [dataset] or the defaults) and writes
    ``training.cnn_output_dir``."""
    if cfg.backend == "cnn":
        from ..config import DatasetConfig
        from .cnn import command_line, train_cnn

        market = market or getattr(ladder, "dataset", None) or DatasetConfig()
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
    ladder, windows = _ladder_windows(cfg, ladder, path, ctx) if ladder is not None and cfg.ladder else (None, [])
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
    if windows:
        report.update(_ladder(cfg, ladder, windows, ctx.test_generations, plan, quiet))
    write_atomic(plan.report, json.dumps(report, indent=2, default=str))
    return report


def _ladder_windows(cfg: TrainingConfig, full: Any, path: str, ctx: RunContext) -> tuple[Any, list]:
    """The config pointing at this dataset and the ladder's test windows (stage 04's, in its order); the backend
    answers the same windows (``ctx.test``)."""
    from dataclasses import replace

    from ..signals.evaluate import DATASET_FILE, load_test_samples

    if Path(path).name != DATASET_FILE:
        ctx.say(f"    no ladder: it reads the dataset folder's {DATASET_FILE}, not {Path(path).name}")
        return None, []
    full = replace(full, dataset=replace(full.dataset, output_dir=str(Path(path).parent)))
    windows = load_test_samples(full, cfg.ladder_samples)
    by_id = {s.id: s for s in load_samples(path, "test")}
    ctx.test = [by_id[w.id] for w in windows]
    return full, windows


def _ladder(cfg: TrainingConfig, full: Any, windows: list, generations: list[str], plan: ExportPlan,
            quiet: bool) -> dict[str, Any]:
    """Score the fine-tuned model's test answers (the ``vlm`` rung; an invalid answer counts as HOLD with
    probability 1/3 for each class) beside ``cfg.ladder``'s rungs on the same windows; writes the files."""
    from ..evaluation.classification import encode, from_confidence
    from ..evaluation.ladder import Rung, to_text
    from ..signals.ladder import evaluate_ladder, write_ladder
    from .data import parse_answer

    parsed = [parse_answer(g)[1] for g in generations]
    actions = tuple(v.action if v is not None else "HOLD" for v in parsed)
    prob = from_confidence(encode(actions), [v.confidence if v is not None else 1 / 3 for v in parsed])
    valid = sum(v is not None for v in parsed)
    rung = Rung("vlm", actions, prob, "confidence", f"fine-tuned {cfg.base_model}: {valid}/{len(parsed)} valid "
                "answers, an invalid one counts as HOLD at 1/3")
    table, _ = evaluate_ladder(full, full.pipeline, [r for r in cfg.ladder if r != "vlm"], samples=windows,
                               extra=[rung], quiet=quiet)
    files = write_ladder(table, plan.root / "test_eval.json", {"dataset": str(full.dataset.output_dir)})
    return {"ladder": table.as_dict(), "ladder_table": to_text(table), "ladder_files": [str(f) for f in files],
            "ladder_answers": {w.id: g for w, g in zip(windows, generations, strict=True)}}


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
