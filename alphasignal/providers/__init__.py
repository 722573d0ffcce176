"""Model providers behind one interface: ``get_provider(name, model=..., cfg=..., role=...).structured(...)``.

Names: ``ollama``, ``openai`` (any OpenAI-compatible server), ``llamacpp`` (in-process GGUF), ``builtin``
(offline engines registered per schema with ``register_engine``) and ``auto``. Model libraries are imported
only when their provider is built. Model providers come wrapped by the call cache and usage meter (``cache``).
"""

from .base import Completion, Message, Provider, ProviderSettings, Reply, ReplyError, grammar_schema, parse_reply
from .builtin import BuiltinProvider, EngineRequest, register_engine, registered_engines
from .cache import (
    CachedProvider,
    CacheError,
    CallBudgetExceeded,
    CallUsage,
    replay_timings,
    run_usage,
    usage_scope,
)
from .registry import PROVIDER_NAMES, get_provider, provider_class

__all__ = ["PROVIDER_NAMES", "BuiltinProvider", "CacheError", "CachedProvider", "CallBudgetExceeded", "CallUsage",
           "Completion", "EngineRequest", "Message", "Provider", "ProviderSettings", "Reply", "ReplyError",
           "get_provider", "grammar_schema", "parse_reply", "provider_class", "register_engine",
           "registered_engines", "replay_timings", "run_usage", "usage_scope"]
