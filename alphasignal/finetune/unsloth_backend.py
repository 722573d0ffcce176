"""The ``unsloth`` backend: FastVisionModel QLoRA on a CUDA GPU (Colab T4 and up).

Follows Unsloth's vision fine-tuning recipe: ``FastVisionModel`` 4-bit base, LoRA on language and vision blocks,
TRL ``SFTTrainer`` with ``UnslothVisionDataCollator(train_on_responses_only=True)`` so only the assistant answer is
in the loss. Exports with Unsloth's own merged/GGUF savers; the vision projector comes from llama.cpp's converter
when Unsloth does not write one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..errors import UsageError
from ..fileio import move_atomic
from .backend import RunContext, evaluate
from .data import Sample
from .export import ExportPlan
from .gguf import GgufFiles

log = logging.getLogger(__name__)

INSTRUCTION_PART = "<|im_start|>user\n"
RESPONSE_PART = "<|im_start|>assistant\n"


def check_available() -> None:
    """Raise a one-line UsageError unless Unsloth can run here (CUDA GPU + unsloth installed)."""
    try:
        import torch
    except ImportError:
        raise UsageError("the unsloth backend needs torch with CUDA: on Colab run pip install unsloth; "
                         "on a CPU machine use --backend hf") from None
    if not torch.cuda.is_available():
        raise UsageError("the unsloth backend needs a CUDA GPU (none found): run on a Colab T4 runtime, "
                         "or use --backend hf (CPU, slow but exact)")
    try:
        import unsloth  # noqa: F401
    except ImportError:
        raise UsageError("unsloth is not installed: pip install unsloth (or use --backend hf)") from None


def model_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """``FastVisionModel.from_pretrained`` arguments after the model name (02_finetune_colab.py's standalone copy
    is tested against these, so the two cannot drift)."""
    return {"load_in_4bit": cfg.load_in_4bit, "use_gradient_checkpointing": "unsloth",
            "max_seq_length": cfg.max_seq_length}


def peft_kwargs(cfg: TrainingConfig) -> dict[str, Any]:
    """``FastVisionModel.get_peft_model`` arguments after the model: LoRA on language and vision blocks."""
    return {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
            "finetune_mlp_modules": True, "r": cfg.lora_r, "lora_alpha": cfg.lora_alpha,
            "lora_dropout": cfg.lora_dropout, "bias": "none", "random_state": cfg.seed,
            "target_modules": list(cfg.target_modules)}


def trainer_kwargs(cfg: TrainingConfig, output_dir: str) -> dict[str, Any]:
    """``SFTConfig`` arguments, less the precision flags and tqdm, which depend on the machine and ``--quiet``."""
    return {"per_device_train_batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.grad_accumulation,
            "num_train_epochs": cfg.epochs, "max_steps": cfg.max_steps if cfg.max_steps > 0 else -1,
            "learning_rate": cfg.learning_rate, "warmup_ratio": 0.05, "lr_scheduler_type": "linear",
            "optim": "adamw_8bit", "weight_decay": 0.01, "seed": cfg.seed, "logging_steps": 1, "report_to": "none",
            "output_dir": output_dir, "remove_unused_columns": False, "dataset_text_field": "",
            "dataset_kwargs": {"skip_prepare_dataset": True}, "max_length": cfg.max_seq_length}


COLLATOR_KWARGS = {"train_on_responses_only": True, "instruction_part": INSTRUCTION_PART,
                   "response_part": RESPONSE_PART}


def to_unsloth_messages(sample: Sample) -> dict[str, Any]:
    """A sample's chat with the image path replaced by the PIL image (what the Unsloth collator expects)."""
    from PIL import Image

    with Image.open(sample.image) as im:
        image = im.convert("RGB")
    messages = []
    for m in sample.messages:
        parts = [{"type": "image", "image": image} if c.get("type") == "image" else c for c in m["content"]]
        messages.append({"role": m["role"], "content": parts})
    return {"messages": messages}


def run(cfg: TrainingConfig, plan: ExportPlan, train: list[Sample], val: list[Sample],
        ctx: RunContext) -> dict[str, Any]:
    """Train, evaluate and save with Unsloth; returns losses, eval metrics and the GGUF files."""
    check_available()
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastVisionModel, is_bf16_supported
    from unsloth.trainer import UnslothVisionDataCollator

    ctx.step(2)
    model, processor = FastVisionModel.from_pretrained(cfg.base_model, **model_kwargs(cfg))
    model = FastVisionModel.get_peft_model(model, **peft_kwargs(cfg))
    ctx.mark("load")
    ctx.step(3)
    FastVisionModel.for_training(model)
    collator = UnslothVisionDataCollator(model, processor, **COLLATOR_KWARGS)
    args = SFTConfig(**trainer_kwargs(cfg, str(plan.root / "checkpoints")), fp16=not is_bf16_supported(),
                     bf16=is_bf16_supported(), disable_tqdm=ctx.quiet)
    train_ds = [to_unsloth_messages(s) for s in train]
    val_ds = [to_unsloth_messages(s) for s in val]
    trainer = SFTTrainer(model=model, tokenizer=processor, data_collator=collator, train_dataset=train_ds, args=args)
    stats = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    ctx.say(f"    train loss {stats.training_loss:.4f} over {trainer.state.global_step} steps")
    ctx.mark("train")
    ctx.step(4)
    val_loss = trainer.evaluate(eval_dataset=val_ds)["eval_loss"] if val_ds else float("nan")
    FastVisionModel.for_inference(model)
    metrics = evaluate(lambda s: _generate(model, processor, s, cfg.eval_max_new_tokens), val[:cfg.eval_samples])
    metrics["val_loss"] = val_loss
    ctx.generate_test(lambda s: _generate(model, processor, s, cfg.eval_max_new_tokens))
    ctx.say(f"    val loss {val_loss:.4f}, JSON valid {metrics['json_valid']:.0%}, action accuracy "
            f"{metrics['action_accuracy']:.0%} on {metrics['n']} generations")
    ctx.mark("eval")
    ctx.step(5)
    model.save_pretrained(plan.adapter)
    processor.save_pretrained(plan.adapter)
    model.save_pretrained_merged(str(plan.merged), processor, save_method="merged_16bit")
    ctx.mark("save")
    ctx.step(6)
    files = _export_gguf(model, processor, plan)
    return {"train_losses": losses, "eval": metrics, "quantized_training": cfg.load_in_4bit, "gguf_files": files}


def _generate(model: Any, processor: Any, sample: Sample, max_new_tokens: int = 160) -> str:
    msgs = to_unsloth_messages(sample)["messages"]
    prompt = [m for m in msgs if m["role"] != "assistant"]
    image = next(c["image"] for m in prompt for c in m["content"] if c.get("type") == "image")
    text = processor.apply_chat_template(prompt, add_generation_prompt=True)
    inputs = processor(image, text, add_special_tokens=False, return_tensors="pt").to("cuda")
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, use_cache=True, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _export_gguf(model: Any, processor: Any, plan: ExportPlan) -> GgufFiles:
    """Unsloth's GGUF export (it builds llama.cpp itself); rename to the plan's names; add a projector if missing."""
    from .gguf import convert_projector, convert_to_gguf

    plan.gguf_dir.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained_gguf(str(plan.gguf_dir), processor, quantization_method=plan.quantization)
    except Exception as exc:  # Unsloth's exporter shells out to a llama.cpp build; fall back to ours
        log.warning("Unsloth GGUF export failed (%s): converting with llama.cpp's converter instead", exc)
        return convert_to_gguf(plan.merged, plan.gguf_dir, plan.name, plan.quantization)
    found = sorted(Path(plan.gguf_dir).rglob("*.gguf"))
    projector = next((p for p in found if "mmproj" in p.name.lower()), None)
    text = next((p for p in found if plan.quantization in p.name.lower() and p != projector), None)
    if text is None:
        names = [p.name for p in found]
        raise UsageError(f"Unsloth wrote no {plan.quantization} GGUF in {plan.gguf_dir} (found {names})")
    move_atomic(text, plan.gguf)
    if projector is not None:
        move_atomic(projector, plan.mmproj)
    else:
        convert_projector(plan.merged, plan.mmproj)
    return GgufFiles(plan.gguf, plan.mmproj)
