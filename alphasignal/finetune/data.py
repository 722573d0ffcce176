"""Stage 01 samples -> model inputs: chat rendering, image tokens, answer-only labels, padding, answer scoring.

Used by the ``hf`` backend for training and by both backends for evaluation. Only the assistant answer and its
closing ``<|im_end|>`` carry labels; the system prompt, the user turn and every image token are masked (-100).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import UsageError
from ..signals.schemas import TradingSignal

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
IMAGE_PAD = "<|image_pad|>"
END_OF_TURN = "<|im_end|>"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One stage 01 line: chat messages (image path resolved), the reference answer and its split."""

    id: str
    messages: list[dict[str, Any]]
    split: str
    image: Path
    answer: str
    prompt_version: str

    @property
    def prompt_messages(self) -> list[dict[str, Any]]:
        """System + user turns (what the model sees at inference)."""
        return [m for m in self.messages if m["role"] != "assistant"]

    @property
    def system_prompt(self) -> str:
        """Text of the system turn ('' when there is none)."""
        return next((c["text"] for m in self.messages if m["role"] == "system" for c in _parts(m)
                     if c.get("type") == "text"), "")

    @property
    def reference_action(self) -> str | None:
        """The action in the reference answer."""
        try:
            return json.loads(self.answer).get("action")
        except (json.JSONDecodeError, AttributeError):
            return None


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])


def _parse_line(raw: str, where: str, root: Path) -> Sample:
    try:
        rec = json.loads(raw)
        messages = rec["messages"]
        roles = [m["role"] for m in messages]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{where}: not a stage 01 sample ({exc}): "
                         "regenerate with python 01_generate_dataset.py") from None
    if roles[-1:] != ["assistant"] or "user" not in roles:
        raise UsageError(f"{where}: messages must be [system,] user, assistant (got {roles})")
    images = [c["image"] for m in messages for c in _parts(m) if c.get("type") == "image"]
    if len(images) != 1:
        raise UsageError(f"{where}: expected exactly one image in the user turn, found {len(images)}")
    image = (root / images[0]).resolve()
    if not image.is_file():
        raise UsageError(f"{where}: image {images[0]} not found next to the JSONL: copy the dataset's images/ "
                         "folder along with training_data.jsonl")
    answer = "".join(c.get("text", "") for c in _parts(messages[-1]) if c.get("type") == "text")
    split = rec.get("split", "train")
    if split not in SPLITS:
        raise UsageError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    return Sample(str(rec.get("id", where)), messages, split, image, answer, str(rec.get("prompt_version", "")))


def load_samples(path: str | Path, split: str | None = None, limit: int | None = None) -> list[Sample]:
    """Read ``training_data.jsonl`` (images relative to its folder); optionally one split and the first N."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"dataset {p} not found: run python 01_generate_dataset.py first, or pass --dataset PATH")
    out: list[Sample] = []
    with p.open(encoding="utf-8") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            sample = _parse_line(raw, f"{p.name}:{n}", p.parent)
            if split is None or sample.split == split:
                out.append(sample)
            if limit and len(out) >= limit:
                break
    return out


def image_processor_class():
    """Qwen2-VL image processor that needs only PIL (transformers 5 name), else the classic one."""
    try:
        from transformers import Qwen2VLImageProcessorPil
        return Qwen2VLImageProcessorPil
    except ImportError:  # transformers 4.x: the PIL implementation is the default class
        from transformers import Qwen2VLImageProcessor
        return Qwen2VLImageProcessor


class ChatEncoder:
    """Turns a ``Sample`` into tensors for Qwen2.5-VL: chat template, expanded image tokens, masked labels."""

    def __init__(self, tokenizer: Any, image_processor: Any, max_seq_length: int = 2048) -> None:
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_seq_length = max_seq_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)

    def _image(self, sample: Sample) -> dict[str, Any]:
        from PIL import Image

        with Image.open(sample.image) as im:
            return self.image_processor(images=[im.convert("RGB")], return_tensors="pt")

    def prompt_text(self, sample: Sample, n_image_tokens: int) -> str:
        """Rendered system + user turns and the assistant header, with the image placeholder expanded."""
        text = self.tokenizer.apply_chat_template(sample.prompt_messages, tokenize=False, add_generation_prompt=True)
        if text.count(IMAGE_PAD) != 1:
            raise UsageError(f"sample {sample.id}: the chat template produced {text.count(IMAGE_PAD)} image "
                             "placeholders instead of 1: use a Qwen2-VL/2.5-VL tokenizer")
        return text.replace(IMAGE_PAD, IMAGE_PAD * n_image_tokens)

    def encode(self, sample: Sample, with_answer: bool = True) -> dict[str, Any] | None:
        """Tensors for one sample (labels only on the answer), or None when it exceeds ``max_seq_length``."""
        import torch

        vision = self._image(sample)
        merge = getattr(self.image_processor, "merge_size", 2)
        n_image = int(vision["image_grid_thw"][0].prod()) // (merge * merge)
        prompt_ids = self.tokenizer(self.prompt_text(sample, n_image), add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(sample.answer, add_special_tokens=False)["input_ids"] + [self.end_id] \
            if with_answer else []
        if len(prompt_ids) + len(answer_ids) > self.max_seq_length:
            log.warning("sample %s has %d tokens > max_seq_length %d: skipped", sample.id,
                        len(prompt_ids) + len(answer_ids), self.max_seq_length)
            return None
        ids = torch.tensor(prompt_ids + answer_ids)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "labels": torch.tensor([IGNORE_INDEX] * len(prompt_ids) + answer_ids),
                "pixel_values": vision["pixel_values"], "image_grid_thw": vision["image_grid_thw"]}

    def collate(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """Left-pad a batch (pad id, mask 0, label -100) so every answer ends at the last position; stack images.

        With answers right-aligned, the loss needs logits for the last few positions only (see ``answer_loss``):
        the 151k-word output layer over the whole prompt would dominate time and memory.
        """
        import torch

        width = max(len(f["input_ids"]) for f in features)
        batch = {"input_ids": [], "attention_mask": [], "labels": []}
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        for f in features:
            pad = width - len(f["input_ids"])
            for key in batch:
                batch[key].append(torch.cat([torch.full((pad,), fill[key], dtype=f[key].dtype), f[key]]))
        out = {k: torch.stack(v) for k, v in batch.items()}
        out["pixel_values"] = torch.cat([f["pixel_values"] for f in features])
        out["image_grid_thw"] = torch.cat([f["image_grid_thw"] for f in features])
        return out


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over answer tokens, computing logits only for the right-aligned answer span."""
    import torch

    labels = batch["labels"]
    labelled = (labels != IGNORE_INDEX).any(dim=0).nonzero()
    if len(labelled) == 0:
        raise ValueError("batch has no answer tokens to learn")
    keep = labels.shape[1] - int(labelled[0]) + 1  # +1: the position before the first answer token predicts it
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=keep).logits[:, :-1].float()
    target = labels[:, -keep + 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=IGNORE_INDEX)


def parse_answer(text: str) -> tuple[dict[str, Any] | None, TradingSignal | None]:
    """The JSON object in a generation (None if there is none) and the validated signal (None if invalid)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None, None
    try:
        obj = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    try:
        return obj, TradingSignal.model_validate(obj)
    except ValidationError:
        return obj, None


def score_generations(samples: list[Sample], generations: list[str]) -> dict[str, float | int]:
    """JSON-validity, schema-validity and action accuracy of generations against the reference answers."""
    n = len(generations)
    parsed = [parse_answer(g) for g in generations]
    hits = sum(1 for s, (obj, _) in zip(samples, parsed, strict=True)
               if obj is not None and obj.get("action") == s.reference_action)
    return {"n": n, "json_valid": sum(o is not None for o, _ in parsed) / n if n else 0.0,
            "schema_valid": sum(v is not None for _, v in parsed) / n if n else 0.0,
            "action_accuracy": hits / n if n else 0.0}
