"""The ``hf`` backend: transformers + peft LoRA (QLoRA with bitsandbytes nf4 when asked and installed), CPU or CUDA.

A plain PyTorch loop keeps every step visible: shuffled micro-batches, gradient accumulation, AdamW with linear
decay, loss on the answer tokens only (labels from ``data.ChatEncoder``).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..errors import UsageError
from .data import ChatEncoder, Sample, answer_loss, image_processor_class

log = logging.getLogger(__name__)

_PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
                    "special_tokens_map.json", "generation_config.json")


def device() -> str:
    """'cuda' when a usable GPU is present, else 'cpu'."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(model_path: str | Path, cfg: TrainingConfig) -> tuple[Any, ChatEncoder, bool]:
    """Base model, its encoder, and whether it was loaded in 4-bit (bitsandbytes nf4)."""
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    path = Path(model_path)
    if not (path / "config.json").is_file():
        raise UsageError(f"{path} has no config.json: the hf backend loads a local Hugging Face folder; download "
                         "it first (huggingface-cli download Qwen/Qwen2.5-VL-3B-Instruct --local-dir DIR)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    image_processor = image_processor_class().from_pretrained(path)
    four_bit = cfg.load_in_4bit and importlib.util.find_spec("bitsandbytes") is not None
    if cfg.load_in_4bit and not four_bit:
        log.warning("bitsandbytes is not installed: training plain LoRA in full precision instead of QLoRA")
    kwargs: dict[str, Any] = {"dtype": torch.float32 if device() == "cpu" else torch.bfloat16}
    if four_bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=kwargs["dtype"], llm_int8_skip_modules=["model.visual", "visual", "lm_head"])
        kwargs["device_map"] = {"": device()}
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, **kwargs)
    if not four_bit:
        model.to(device())
    return model, ChatEncoder(tokenizer, image_processor, cfg.max_seq_length), four_bit


def add_lora(model: Any, cfg: TrainingConfig, four_bit: bool) -> Any:
    """Wrap the model with LoRA adapters on ``cfg.target_modules`` (text and vision blocks that have them)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if four_bit:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, bias="none",
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def _to(batch: dict[str, Any], dev: str) -> dict[str, Any]:
    return {k: v.to(dev) for k, v in batch.items()}


def total_steps(n_train: int, cfg: TrainingConfig) -> int:
    """Optimizer steps: ``max_steps`` when set, else epochs over the train split."""
    if cfg.max_steps > 0:
        return cfg.max_steps
    per_epoch = math.ceil(n_train / (cfg.batch_size * cfg.grad_accumulation))
    return max(1, math.ceil(per_epoch * cfg.epochs))


def train(model: Any, encoder: ChatEncoder, samples: Sequence[Sample], cfg: TrainingConfig,
          on_step: Callable[[int, int, float], None] | None = None) -> list[float]:
    """Run the training loop; returns the loss of every optimizer step (mean over its micro-batches)."""
    import torch

    features = [f for f in (encoder.encode(s) for s in samples) if f is not None]
    if not features:
        raise UsageError("no training sample fits in training.max_seq_length: raise it or use smaller charts")
    steps = total_steps(len(features), cfg)
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / max(steps, 1)) if steps > 1 else 1.0)
    order: list[int] = []
    dev = next(model.parameters()).device
    model.train()
    losses = []
    for step in range(1, steps + 1):
        total = 0.0
        for _ in range(cfg.grad_accumulation):
            if len(order) < cfg.batch_size:
                fresh = list(range(len(features)))
                rng.shuffle(fresh)
                order.extend(fresh)
            idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
            loss = answer_loss(model, _to(encoder.collate([features[i] for i in idx]), dev))
            (loss / cfg.grad_accumulation).backward()
            total += loss.item() / cfg.grad_accumulation
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(total)
        if on_step:
            on_step(step, steps, total)
    return losses


def eval_loss(model: Any, encoder: ChatEncoder, samples: Sequence[Sample], batch_size: int = 2) -> float:
    """Mean answer-token loss over the samples (nan when there are none)."""
    import torch

    features = [f for f in (encoder.encode(s) for s in samples) if f is not None]
    if not features:
        return float("nan")
    dev = next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(features), batch_size):
            chunk = features[i:i + batch_size]
            n = sum(int((f["labels"] != -100).sum()) for f in chunk)
            total += answer_loss(model, _to(encoder.collate(chunk), dev)).item() * n
            count += n
    return total / count


def generate(model: Any, encoder: ChatEncoder, sample: Sample, max_new_tokens: int = 160) -> str:
    """Greedy answer for one sample's prompt (system + user + image)."""
    import torch

    feat = encoder.encode(sample, with_answer=False)
    if feat is None:
        return ""
    dev = next(model.parameters()).device
    model.eval()
    inputs = {k: (v.unsqueeze(0) if k in ("input_ids", "attention_mask") else v).to(dev)
              for k, v in feat.items() if k != "labels"}
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=encoder.end_id, pad_token_id=encoder.pad_id)
    return encoder.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def _copy_processor(src: Path, dst: Path) -> None:
    for name in _PROCESSOR_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def save_adapter(model: Any, base_path: str | Path, out_dir: Path) -> None:
    """LoRA adapter weights + config, with the tokenizer/processor files so the folder is self-describing."""
    model.save_pretrained(out_dir)
    _copy_processor(Path(base_path), out_dir)


def load_with_adapter(base_path: str | Path, adapter_dir: Path, cfg: TrainingConfig) -> tuple[Any, ChatEncoder]:
    """Full-precision base + saved adapter (what merging and a reload check use)."""
    from peft import PeftModel

    model, encoder, _ = load_base(base_path, _full_precision(cfg))
    return PeftModel.from_pretrained(model, adapter_dir), encoder


def _full_precision(cfg: TrainingConfig) -> TrainingConfig:
    return replace(cfg, load_in_4bit=False)


def merge_to_16bit(base_path: str | Path, adapter_dir: Path, out_dir: Path, cfg: TrainingConfig) -> None:
    """Merge the adapter into a full-precision copy of the base and save it as float16 safetensors."""
    import torch

    model, _ = load_with_adapter(base_path, adapter_dir, cfg)
    merged = model.merge_and_unload().to(torch.float16)
    merged.save_pretrained(out_dir)
    _copy_processor(Path(base_path), out_dir)
