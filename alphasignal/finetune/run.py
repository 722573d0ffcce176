"""Stage 02 driver: data -> train (unsloth | hf) -> evaluate on val -> export adapter, merged, GGUF, Modelfile."""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from config import TrainingConfig

from ..errors import ModelError, UsageError
from ..fileio import write_atomic
from .data import Sample, load_samples, score_generations
from .export import ExportPlan, build_modelfile
from .tiny import TINY_MODEL_NAME, build_tiny_qwen_vl

log = logging.getLogger(__name__)

STEPS = ("load the dataset (train + val splits)", "load the base model and add LoRA adapters",
         "train on the train split (loss on the answer only)", "evaluate on the val split (loss, JSON, action)",
         "save the LoRA adapter and the merged 16-bit model", "export GGUF + vision projector + Ollama Modelfile")


@dataclass
class Figures:
    """Time and memory per phase, printed as we go and stored in the report."""

    quiet: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def mark(self, phase: str) -> None:
        """Record the time since the previous mark under ``phase`` and print it with the memory peak."""
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.start, 2)
        self.start = now
        _say(f"    done in {self.seconds[phase]:.1f} s, {memory_summary()}", self.quiet)


def memory_summary() -> str:
    """Peak process RSS, and peak CUDA memory when a GPU is in use."""
    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", peak GPU {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB of " \
                f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB"
    return text


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def _step(i: int, quiet: bool) -> None:
    _say(f"[{i}/{len(STEPS)}] {STEPS[i - 1]}", quiet)


def resolve_base_model(cfg: TrainingConfig, plan: ExportPlan) -> str:
    """A local folder, the built-in tiny test model, or a hub id (downloaded by transformers/Unsloth)."""
    if cfg.base_model == TINY_MODEL_NAME:
        folder = plan.root / "tiny-random-base"
        return str(folder if (folder / "config.json").is_file() else build_tiny_qwen_vl(folder))
    return cfg.base_model


def _local_or_download(name: str) -> str:
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name)
    except Exception as exc:  # network, auth or missing repo: all mean "no local copy"
        raise ModelError(f"could not download {name} ({type(exc).__name__}): check network access, or set "
                         "training.base_model to a local folder") from None


def finetune(cfg: TrainingConfig, *, dataset: str | None = None, limit: int = 0, export_gguf: bool = True,
             quiet: bool = False) -> dict[str, Any]:
    """Run stage 02 end to end and return the report (also written to ``output_dir/finetune_report.json``)."""
    plan = ExportPlan.from_config(cfg)
    figures = Figures(quiet=quiet)
    _step(1, quiet)
    path = dataset or cfg.dataset_path
    train = load_samples(path, "train", limit or None)
    val = load_samples(path, "val")
    if not train:
        raise UsageError(f"{path} has no train-split samples: regenerate it with python 01_generate_dataset.py")
    prompts = {s.system_prompt for s in train}
    if len(prompts) != 1:
        raise UsageError(f"{path} mixes {len(prompts)} system prompts: regenerate it with one prompt version")
    _say(f"    {len(train)} train / {len(val)} val samples, prompt version {train[0].prompt_version or '?'}", quiet)
    figures.mark("data")
    if cfg.backend == "unsloth":
        from . import unsloth_backend

        result = unsloth_backend.run(cfg, plan, train, val, figures, step=lambda i: _step(i, quiet), quiet=quiet)
    else:
        result = _run_hf(cfg, plan, train, val, figures, quiet)
    if export_gguf:
        _step(6, quiet)
        files = result.pop("gguf_files", None) or _convert(plan)
        modelfile = build_modelfile(plan, train[0].system_prompt, prompt_id(train[0].prompt_version),
                                    include_mmproj=files.mmproj is not None)
        write_atomic(plan.modelfile, modelfile.render())
        figures.mark("export_gguf")
    report = {"backend": cfg.backend, "base_model": cfg.base_model, "dataset": str(path),
              "prompt_version": train[0].prompt_version, "n_train": len(train), "n_val": len(val),
              "config": asdict(cfg), **result, "seconds": figures.seconds, "memory": memory_summary(),
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
    _step(6, quiet)
    files = _convert(plan)
    write_atomic(plan.modelfile, build_modelfile(plan, prompt.system, prompt.id, files.mmproj is not None).render())
    return {"files": {k: str(v) for k, v in plan.files().items() if v.exists()}}


def _convert(plan: ExportPlan):
    from .gguf import convert_to_gguf

    return convert_to_gguf(plan.merged, plan.gguf_dir, plan.name, plan.quantization)


def _run_hf(cfg: TrainingConfig, plan: ExportPlan, train: list[Sample], val: list[Sample], figures: Figures,
            quiet: bool) -> dict[str, Any]:
    from . import hf

    _step(2, quiet)
    base = _local_or_download(resolve_base_model(cfg, plan))
    model, encoder, four_bit = hf.load_base(base, cfg)
    model = hf.add_lora(model, cfg, four_bit)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kind = "QLoRA (nf4)" if four_bit else "LoRA"
    _say(f"    {kind} on {hf.device()}: {trainable / 1e6:.2f}M trainable params", quiet)
    figures.mark("load")
    _step(3, quiet)
    losses = _train_with_progress(hf, model, encoder, train, cfg, quiet)
    figures.mark("train")
    _step(4, quiet)
    metrics = evaluate(lambda s: hf.generate(model, encoder, s, cfg.eval_max_new_tokens), val[:cfg.eval_samples])
    metrics["val_loss"] = hf.eval_loss(model, encoder, val)
    _say(f"    val loss {metrics['val_loss']:.4f}, JSON valid {metrics['json_valid']:.0%}, "
         f"action accuracy {metrics['action_accuracy']:.0%} on {metrics['n']} generations", quiet)
    figures.mark("eval")
    _step(5, quiet)
    hf.save_adapter(model, base, plan.adapter)
    model = None  # free it before merging loads a full-precision copy
    hf.merge_to_16bit(base, plan.adapter, plan.merged, cfg)
    figures.mark("save")
    return {"train_losses": losses, "eval": metrics, "quantized_training": four_bit}


def _train_with_progress(hf, model, encoder, train, cfg, quiet) -> list[float]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("    training"), BarColumn(),
               TextColumn("{task.completed}/{task.total} loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet, transient=True) as bar:
        task = bar.add_task("train", total=hf.total_steps(len(train), cfg), loss="-")

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(task, completed=step, loss=f"{loss:.4f}")
            log.info("step %d/%d loss %.4f", step, total, loss)

        losses = hf.train(model, encoder, train, cfg, on_step)
    _say(f"    loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps", quiet)
    return losses


def evaluate(generate, samples: list[Sample]) -> dict[str, Any]:
    """Generate an answer per sample and score JSON validity, schema validity and action accuracy."""
    generations = [generate(s) for s in samples]
    return {**score_generations(samples, generations), "examples": generations[:3]}
