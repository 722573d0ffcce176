"""``ProviderSettings``: what every model provider needs from the config, with the defaults written once.

A light module (dataclasses only, no model library): config.py takes its [pipeline] and [serve] server defaults
from here without importing the providers. The providers import it as ``alphasignal.providers.ProviderSettings``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import UsageError


@dataclass(frozen=True)
class ProviderSettings:
    """What every provider needs from the config; build it with ``from_config`` from any config section."""

    ollama_host: str = "http://127.0.0.1:11434"
    openai_base_url: str = "http://127.0.0.1:8080/v1"
    api_key: str = "not-needed"
    gguf_path: str = ""
    mmproj_path: str = ""
    timeout: float = 60.0
    max_retries: int = 2
    temperature: float = 0.0
    require_server: bool = False
    max_tokens: int = 512
    n_ctx: int = 4096
    openai_method: str = "auto"  # auto | json_schema | function_calling | json_object
    connect_timeout: float = 0.75  # reachability checks; short so offline runs are not slowed
    raw_dir: str = "~/.cache/alphasignal/replies"  # where failed raw replies are saved
    call_cache: str = "~/.cache/alphasignal/calls.sqlite"  # the model-call cache (see providers/cache.py)
    cache_mode: str = "off"  # use | refresh | off

    def __post_init__(self) -> None:
        if self.openai_method not in {"auto", "json_schema", "function_calling", "json_object"}:
            raise UsageError(f"openai_method={self.openai_method!r} is invalid: use auto, json_schema, "
                             "function_calling or json_object")
        if self.timeout <= 0 or self.max_retries < 0:
            raise UsageError("provider timeout must be > 0 and max_retries >= 0")
        if self.cache_mode not in {"use", "refresh", "off"}:
            raise UsageError(f"cache_mode={self.cache_mode!r} is invalid: use use, refresh or off")

    @classmethod
    def from_config(cls, cfg: Any = None, **overrides: Any) -> ProviderSettings:
        """Copy the matching fields from a settings object, a config section (e.g. PipelineConfig) or a full
        Config (its ``pipeline`` section is used); ``overrides`` win."""
        if isinstance(cfg, ProviderSettings):
            return dataclasses.replace(cfg, **overrides)
        if cfg is not None and hasattr(cfg, "pipeline"):
            cfg = cfg.pipeline
        values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls) if hasattr(cfg, f.name)}
        return cls(**{**values, **overrides})
