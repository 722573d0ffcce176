"""Where stage 02 writes its outputs, and the Ollama Modelfile that stage 03 registers.

The Modelfile's SYSTEM is the system part of the prompt the model was trained on (the dataset's system turn,
which stage 01 takes from ``alphasignal/prompts/chart_signal.md``), so Ollama serves the fine-tuned model with
exactly the prompt stage 04 sends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import TrainingConfig
from ..errors import UsageError

# Ollama Go template for Qwen2.5-VL chat turns (images are placed by Ollama ahead of the user's text).
OLLAMA_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""

DEFAULT_PARAMETERS: dict[str, list[str]] = {
    "temperature": ["0"], "num_ctx": ["4096"], "stop": ["<|im_end|>", "<|endoftext|>"]}


@dataclass(frozen=True)
class ExportPlan:
    """Every path stage 02 writes under ``training.output_dir``."""

    root: Path
    name: str
    quantization: str

    @classmethod
    def from_config(cls, cfg: TrainingConfig) -> ExportPlan:
        """The plan for a training config."""
        return cls(Path(cfg.output_dir), cfg.ollama_model_name, cfg.gguf_quantization.lower())

    @property
    def adapter(self) -> Path:
        """LoRA adapter (peft format) + tokenizer/processor files."""
        return self.root / "lora_adapter"

    @property
    def merged(self) -> Path:
        """Base + adapter merged, float16 safetensors (vLLM, transformers, GGUF conversion input)."""
        return self.root / "merged_16bit"

    @property
    def gguf_dir(self) -> Path:
        """Folder with the quantized GGUF, the vision projector and the Modelfile (what Ollama imports)."""
        return self.root / "gguf"

    @property
    def gguf(self) -> Path:
        """Quantized text model."""
        return self.gguf_dir / f"{self.name}-{self.quantization}.gguf"

    @property
    def mmproj(self) -> Path:
        """Vision projector (f16)."""
        return self.gguf_dir / f"mmproj-{self.name}-f16.gguf"

    @property
    def modelfile(self) -> Path:
        """Ollama Modelfile referencing the two GGUFs by relative path."""
        return self.gguf_dir / "Modelfile"

    @property
    def report(self) -> Path:
        """JSON summary: config, data sizes, losses, eval metrics, timings, files."""
        return self.root / "finetune_report.json"

    def files(self) -> dict[str, Path]:
        """Name -> path of every artifact."""
        return {n: getattr(self, n) for n in ("adapter", "merged", "gguf", "mmproj", "modelfile", "report")}


@dataclass(frozen=True)
class Modelfile:
    """The subset of the Ollama Modelfile format we write and read back (FROM, TEMPLATE, SYSTEM, PARAMETER)."""

    froms: tuple[str, ...]
    system: str
    template: str = OLLAMA_TEMPLATE
    parameters: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_PARAMETERS))
    comment: str = ""

    def render(self) -> str:
        """Modelfile text."""
        for text, what in ((self.system, "SYSTEM"), (self.template, "TEMPLATE")):
            if '"""' in text:
                raise UsageError(f'the {what} text contains """, which a Modelfile cannot quote')
        lines = [f"# {line}" for line in self.comment.splitlines()]
        lines += [f"FROM {f}" for f in self.froms]
        lines.append(f'TEMPLATE """{self.template}"""')
        lines.append(f'SYSTEM """{self.system}"""')
        lines += [f"PARAMETER {k} {json.dumps(v) if k == 'stop' else v}" for k, vs in self.parameters.items()
                  for v in vs]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Modelfile:
        """Read a Modelfile written by ``render`` (triple-quoted values may span lines)."""
        froms, params, quoted = [], {}, {}
        for m in re.finditer(r'^(TEMPLATE|SYSTEM)\s+"""(.*?)"""', text, flags=re.S | re.M):
            quoted[m.group(1)] = m.group(2)
        body = re.sub(r'^(TEMPLATE|SYSTEM)\s+""".*?"""', "", text, flags=re.S | re.M)
        for line in body.splitlines():
            head, _, rest = line.strip().partition(" ")
            if head.upper() == "FROM":
                froms.append(rest.strip())
            elif head.upper() == "PARAMETER":
                key, _, value = rest.strip().partition(" ")
                value = value.strip()
                params.setdefault(key, []).append(json.loads(value) if value.startswith('"') else value)
        if not froms:
            raise UsageError("Modelfile has no FROM line: re-run python 02_finetune_colab.py to export it")
        return cls(tuple(froms), quoted.get("SYSTEM", ""), quoted.get("TEMPLATE", OLLAMA_TEMPLATE), params)

    def create_request(self, model: str, digests: dict[str, str]) -> dict[str, Any]:
        """Arguments for ``ollama.Client.create``: ``digests`` maps each FROM file name to its uploaded blob."""
        params: dict[str, Any] = {}
        for key, values in self.parameters.items():
            conv = [float(v) if re.fullmatch(r"-?\d+\.\d*", v) else int(v) if re.fullmatch(r"-?\d+", v) else v
                    for v in values]
            params[key] = conv if key == "stop" else conv[0]
        return {"model": model, "files": {Path(f).name: digests[Path(f).name] for f in self.froms},
                "template": self.template, "system": self.system, "parameters": params}


def build_modelfile(plan: ExportPlan, system_prompt: str, prompt_id: str, include_mmproj: bool = True) -> Modelfile:
    """The Modelfile for a plan, with paths relative to the Modelfile's folder."""
    froms = [f"./{plan.gguf.name}"] + ([f"./{plan.mmproj.name}"] if include_mmproj else [])
    comment = (f"alphasignal fine-tuned chart VLM, prompt {prompt_id}\n"
               f"register: ollama create {plan.name} -f Modelfile   (or: python 03_serve_ollama.py)")
    return Modelfile(tuple(froms), system_prompt.strip(), comment=comment)
