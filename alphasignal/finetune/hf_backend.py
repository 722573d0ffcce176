"""The ``hf`` fine-tune backend (a :class:`backend.FinetuneBackend`): the steps of ``hf.py`` in order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..errors import ModelError
from ..progress import progress_bar
from . import hf
from .backend import RunContext, evaluate
from .data import Sample
from .export import ExportPlan
from .tiny import TINY_MODEL_NAME, build_tiny_qwen_vl

log = logging.getLogger(__name__)


def resolve_base_model(cfg: TrainingConfig, plan: ExportPlan) -> str:
    """A local folder, the built-in tiny test model, or a hub id (downloaded by transformers/Unsloth)."""
    if cfg.base_model == TINY_MODEL_NAME:
        folder = plan.root / "tiny-random-base"
        return str(folder if (folder / "config.json").is_file() else build_tiny_qwen_vl(folder))
    return cfg.base_model


def local_or_download(name: str) -> str:
    """A local model folder, or the hub snapshot of ``name``."""
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name)
    except Exception as exc:  # network, auth or missing repo: all mean "no local copy"
        raise ModelError(f"could not download {name} ({type(exc).__name__}): check network access, or set "
                         "training.base_model to a local folder") from None


def run(cfg: TrainingConfig, plan: ExportPlan, train: list[Sample], val: list[Sample],
        ctx: RunContext) -> dict[str, Any]:
    """Load, add LoRA, train, evaluate on ``val``, save the adapter and the merged 16-bit model."""
    ctx.step(2)
    base = local_or_download(resolve_base_model(cfg, plan))
    model, encoder, four_bit = hf.load_base(base, cfg)
    model = hf.add_lora(model, cfg, four_bit)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    kind = "QLoRA (nf4)" if four_bit else "LoRA"
    ctx.say(f"    {kind} on {hf.device()}: {trainable / 1e6:.2f}M trainable params")
    ctx.mark("load")
    ctx.step(3)
    losses = _train_with_progress(model, encoder, train, cfg, ctx)
    ctx.mark("train")
    ctx.step(4)
    metrics = evaluate(lambda s: hf.generate(model, encoder, s, cfg.eval_max_new_tokens), val[:cfg.eval_samples])
    metrics["val_loss"] = hf.eval_loss(model, encoder, val)
    ctx.generate_test(lambda s: hf.generate(model, encoder, s, cfg.eval_max_new_tokens))
    ctx.say(f"    val loss {metrics['val_loss']:.4f}, JSON valid {metrics['json_valid']:.0%}, "
            f"action accuracy {metrics['action_accuracy']:.0%} on {metrics['n']} generations")
    ctx.mark("eval")
    ctx.step(5)
    hf.save_adapter(model, base, plan.adapter)
    model = None  # free it before merging loads a full-precision copy
    hf.merge_to_16bit(base, plan.adapter, plan.merged, cfg)
    ctx.mark("save")
    return {"train_losses": losses, "eval": metrics, "quantized_training": four_bit}


def _train_with_progress(model: Any, encoder: Any, train: list[Sample], cfg: TrainingConfig,
                         ctx: RunContext) -> list[float]:
    with progress_bar(not ctx.quiet, hf.total_steps(len(train), cfg), "    training",
                      detail="loss {task.fields[loss]}", fields={"loss": "-"}) as bar:

        def on_step(step: int, total: int, loss: float) -> None:
            bar.update(completed=step, loss=f"{loss:.4f}")
            log.info("step %d/%d loss %.4f", step, total, loss)

        losses = hf.train(model, encoder, train, cfg, on_step)
    ctx.say(f"    loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps")
    return losses
