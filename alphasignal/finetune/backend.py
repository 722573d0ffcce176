"""What a fine-tune backend is and what the driver hands it (no backend imports the driver, ``run.py``).

A backend is a module with ``run(cfg, plan, train, val, ctx) -> dict`` (:class:`FinetuneBackend`): it loads the
base model, trains, evaluates on ``val`` and saves the adapter and the merged model, announcing steps 2-5 (and 6
when it exports GGUF itself, returning ``gguf_files``) through ``ctx``. :func:`get_backend` finds one by name.
"""

from __future__ import annotations

import importlib
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import progress
from ..config import TrainingConfig
from .data import Sample, score_generations
from .export import ExportPlan

BACKENDS = {"hf": "hf_backend", "unsloth": "unsloth_backend"}  # training.backend -> module in this package
STEPS = ("load the dataset (train + val splits)", "load the base model and add LoRA adapters",
         "train on the train split (loss on the answer only)", "evaluate on the val split (loss, JSON, action)",
         "save the LoRA adapter and the merged 16-bit model", "export GGUF + vision projector + Ollama Modelfile")


def memory_summary() -> str:
    """Peak process RSS, and peak CUDA memory when a GPU is in use."""
    text = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        text += f", peak GPU {torch.cuda.max_memory_reserved() / 2**30:.2f} GiB of " \
                f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB"
    return text


def say(text: str, quiet: bool) -> None:
    """One progress line on stderr unless ``quiet``."""
    progress.say(text, quiet)


@dataclass
class RunContext:
    """What the driver gives a backend: ``step(i)`` announces step i of :data:`STEPS`, ``say`` prints a line,
    ``mark(phase)`` records the time since the previous mark (printed with the memory peak)."""

    quiet: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)
    test: list[Sample] = field(default_factory=list)  # test windows the driver's ladder scores after training
    test_generations: list[str] = field(default_factory=list)

    def generate_test(self, generate: Callable[[Sample], str]) -> None:
        """Answer every window of ``test`` with the trained model (once, after training and validation; nothing
        is selected on them here: the driver scores them in the ladder)."""
        with progress.progress_bar(not self.quiet and bool(self.test), len(self.test), "    test split") as advance:
            for s in self.test:
                self.test_generations.append(generate(s))
                advance()

    def say(self, text: str) -> None:
        say(text, self.quiet)

    def step(self, i: int) -> None:
        self.say(f"[{i}/{len(STEPS)}] {STEPS[i - 1]}")

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(now - self.start, 2)
        self.start = now
        self.say(f"    done in {self.seconds[phase]:.1f} s, {memory_summary()}")


class FinetuneBackend(Protocol):
    """A training backend module (``hf_backend``, ``unsloth_backend``)."""

    def run(self, cfg: TrainingConfig, plan: ExportPlan, train: list[Sample], val: list[Sample],
            ctx: RunContext) -> dict[str, Any]:
        """Train, evaluate, save; returns ``train_losses``, ``eval``, ``quantized_training`` (and optionally
        ``gguf_files``)."""
        ...


def get_backend(name: str) -> FinetuneBackend:
    """The backend module for ``training.backend`` (imported on first use: each pulls in heavy libraries)."""
    return importlib.import_module(f".{BACKENDS[name]}", __package__)  # type: ignore[return-value]


def evaluate(generate: Callable[[Sample], str], samples: list[Sample]) -> dict[str, Any]:
    """Generate an answer per sample and score JSON validity, schema validity and action accuracy."""
    generations = [generate(s) for s in samples]
    return {**score_generations(samples, generations), "examples": generations[:3]}
