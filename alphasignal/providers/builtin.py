"""The offline provider: deterministic engines (chart rules, lexicon sentiment, agent rules) answer their schema.

This module knows no engine itself; the packages that own them register one per schema::

    from alphasignal.providers import EngineRequest, register_engine
    register_engine(NewsSentiment, lambda req: lexicon_sentiment(req.context["news"]))

An engine receives an ``EngineRequest`` (the prompts, the images, and the caller's structured ``context``)
and returns the schema instance or a dict that validates into it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from ..errors import ModelError
from .base import Provider, ProviderSettings, Reply, describe_errors

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class EngineRequest:
    """Everything a builtin engine may use; ``context`` carries structured inputs (news text, OHLCV, ...)."""

    schema: type[BaseModel]
    system: str
    user: str
    images: tuple[bytes, ...] = ()
    context: Mapping[str, Any] = field(default_factory=dict)
    role: str = ""


EngineFn = Callable[[EngineRequest], BaseModel | dict[str, Any]]

_ENGINES: dict[type[BaseModel], EngineFn] = {}


def register_engine(schema_type: type[BaseModel], fn: EngineFn) -> EngineFn:
    """Make ``fn`` the offline answer for ``schema_type`` (a later registration replaces an earlier one)."""
    if not (isinstance(schema_type, type) and issubclass(schema_type, BaseModel)):
        raise TypeError(f"register_engine needs a Pydantic model class, got {schema_type!r}")
    _ENGINES[schema_type] = fn
    return fn


def registered_engines() -> dict[type[BaseModel], EngineFn]:
    """A copy of the schema -> engine table."""
    return dict(_ENGINES)


class BuiltinProvider(Provider):
    """Answers with the registered offline engine for the schema; never calls a model."""

    name = "builtin"
    supports_vision = True  # engines get the raw image bytes
    supports_json_schema = True
    is_builtin = True

    def __init__(self, model: str = "builtin", settings: ProviderSettings | None = None, role: str = "",
                 engines: Mapping[type[BaseModel], EngineFn] | None = None) -> None:
        super().__init__("builtin", settings, role)  # ``model`` is ignored: the registered engine is the model
        self._engines = dict(engines or {})

    def engine_for(self, schema: type[BaseModel]) -> EngineFn:
        """The engine answering ``schema`` (this instance's own first, then the global table)."""
        for table in (self._engines, _ENGINES):
            for cls in schema.__mro__:
                if cls in table:
                    return table[cls]
        known = ", ".join(sorted(c.__name__ for c in {**_ENGINES, **self._engines})) or "none"
        raise ModelError(f"the builtin offline engine cannot answer {schema.__name__} (engines registered for: "
                         f"{known}): import the module that registers one, or configure a model provider")

    def structured(self, schema: type[M], system: str, user: str, *, images: Sequence[bytes] = (),
                   context: dict[str, Any] | None = None, timeout: float | None = None) -> Reply[M]:
        """Run the engine for ``schema`` and validate its answer (``timeout`` does not apply offline)."""
        engine = self.engine_for(schema)
        start = time.perf_counter()
        out = engine(EngineRequest(schema, system, user, tuple(images), dict(context or {}), self.role))
        try:
            value = out if isinstance(out, schema) else schema.model_validate(
                out.model_dump() if isinstance(out, BaseModel) else out)
        except ValidationError as exc:
            raise ModelError(f"builtin engine for {schema.__name__} returned an invalid value "
                             f"({describe_errors(exc)}): this is a bug, please report it") from None
        return Reply(value=value, raw=value.model_dump_json(), latency_s=time.perf_counter() - start, attempts=1,
                     provider=self.name, model=self.model)

    async def astructured(self, schema: type[M], system: str, user: str, *, images: Sequence[bytes] = (),
                          context: dict[str, Any] | None = None, timeout: float | None = None) -> Reply[M]:
        """Runs the engine in a worker thread so a concurrent model call keeps going."""
        return await asyncio.to_thread(self.structured, schema, system, user, images=images, context=context)
