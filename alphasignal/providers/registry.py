"""Provider registry: names -> classes, imported lazily so an offline run never loads a model library.

``get_provider("auto", ...)`` uses the first configured backend that is reachable and has the model
(Ollama, then the OpenAI-compatible server, then a configured GGUF file); otherwise it says so in one
warning line on stderr and returns the builtin offline provider, or raises ``ModelError`` (exit 3) when
``require_server`` is set.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
from typing import Any

from ..errors import ModelError, UsageError
from .base import Provider, ProviderSettings
from .cache import open_cache, wrap

log = logging.getLogger("alphasignal.providers")

_PROVIDERS = {
    "ollama": ("alphasignal.providers.ollama", "OllamaProvider"),
    "openai": ("alphasignal.providers.openai_compat", "OpenAICompatProvider"),
    "llamacpp": ("alphasignal.providers.llamacpp", "LlamaCppProvider"),
    "builtin": ("alphasignal.providers.builtin", "BuiltinProvider"),
    "cnn": ("alphasignal.providers.cnn", "CNNProvider"),  # the trained chart CNN (pipeline.vlm_provider only)
}
PROVIDER_NAMES = (*_PROVIDERS, "auto")


def provider_class(name: str) -> type[Provider]:
    """The class registered under ``name`` (imported on first use)."""
    if name not in _PROVIDERS:
        close = difflib.get_close_matches(name, PROVIDER_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; use one of {', '.join(PROVIDER_NAMES)}"
        raise UsageError(f"unknown provider {name!r}{hint}")
    module, cls = _PROVIDERS[name]
    return getattr(importlib.import_module(module), cls)


def get_provider(name: str, *, model: str = "", cfg: Any = None, role: str = "", check: bool = True) -> Provider:
    """Build the provider ``name`` for ``model`` from ``cfg`` (ProviderSettings, a config section such as
    PipelineConfig, or a full Config). Explicit server providers are checked now (``check=False`` defers the
    check to the first call) so a missing server or model fails fast with the fix. Model providers come wrapped
    by the call cache and usage meter (``providers.cache``), which opens and checks the cache file now."""
    settings = ProviderSettings.from_config(cfg)
    if settings.cache_mode != "off":  # (builtin too: its chart reader's replies are cached)
        open_cache(settings.call_cache)  # a corrupt or foreign cache file fails before any server is contacted
    if name == "auto":
        return wrap(_auto(model, settings, role))
    provider = provider_class(name)(model, settings, role)
    if check:
        provider.check()
    return wrap(provider)


def _auto(model: str, settings: ProviderSettings, role: str) -> Provider:
    reasons = []
    candidates = ["ollama", "openai"] + (["llamacpp"] if settings.gguf_path else [])
    for name in candidates:
        provider = provider_class(name)(model, settings, role)
        try:
            provider.check()
        except ModelError as exc:
            reasons.append(str(exc))
            continue
        log.info("auto: using %s model %r for %s", name, model, role or "calls")
        return provider
    summary = " | ".join(reasons)
    if settings.require_server:
        raise ModelError(f"no model server available for {role or 'the call'} (require_server is set): {summary}")
    log.info("auto: no model server for %s model %r: %s", role or "the", model, summary)
    _say_offline_once(tuple(candidates))
    return provider_class("builtin")("builtin", settings, role)


@functools.cache
def _say_offline_once(tried: tuple[str, ...]) -> None:
    """One short warning per process, however many calls fall back (the reasons per model are at -v)."""
    log.warning("no model server reachable (tried %s): using the builtin offline engine; -v says why, "
                "pipeline.require_server=true makes it an error", ", ".join(tried))

