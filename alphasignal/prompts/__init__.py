"""Versioned prompt files. Each ``NAME.md`` starts with ``version: X`` and has ``## system`` and ``## user`` parts.

Stage 01 writes the chart prompt into training samples and stage 04 sends the same one, so a fine-tuned model
always sees the prompt it was trained on; the Ollama Modelfile of stage 02 embeds its system part.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Prompt:
    """A prompt template: ``user`` may contain ``{placeholders}`` filled with ``format``."""

    name: str
    version: str
    system: str
    user: str

    def format(self, **values: object) -> str:
        """The user part with placeholders filled."""
        return self.user.format(**values)

    @property
    def id(self) -> str:
        """``name@version``, recorded in every output's meta."""
        return f"{self.name}@{self.version}"


@cache
def load_prompt(name: str) -> Prompt:
    """Load ``alphasignal/prompts/NAME.md``."""
    try:
        text = resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"unknown prompt {name!r}") from None
    head, _, body = text.partition("\n")
    if not head.startswith("version:"):
        raise ValueError(f"prompt {name!r} must start with 'version: X'")
    parts: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines():
        if line.startswith("## "):
            current = line[3:].strip().lower()
            parts[current] = []
        elif current:
            parts[current].append(line)
    return Prompt(name, head.split(":", 1)[1].strip(), "\n".join(parts.get("system", [])).strip(),
                  "\n".join(parts.get("user", [])).strip())
