"""The offline provider: deterministic engines (chart rules, lexicon sentiment, agent rules) answer their schema.

This module knows no engine itself; the packages that own them register one per schema::

    from alphasignal.providers import EngineRequest, register_engine
    register_engine(NewsSentiment, lambda req: lexicon_sentiment(req.context["news"]))

An engine receives an ``EngineRequest`` (the prompts, the images, and the caller's structured ``context``)
and returns the schema instance or a dict that validates into it.

An engine registered with ``code_id`` (a callable returning the identity of its code, e.g. a ``source_digest``)
is slow enough to cache: with ``cache_mode`` use or refresh, its replies are kept in the call cache under
``cache.engine_key`` (``use`` answers a stored reply, with its recorded latency, without running the engine).
"""

from __future__ import annotations

import asyncio
import json
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
_CODE_IDS: dict[EngineFn, Callable[[], str]] = {}  # engines whose replies are cached, with their code identity


def register_engine(schema_type: type[BaseModel], fn: EngineFn, code_id: Callable[[], str] | None = None
                    ) -> EngineFn:
    """Make ``fn`` the offline answer for ``schema_type`` (a later registration replaces an earlier one); with
    ``code_id``, its replies are cached when the call cache is on (see the module docstring)."""
    if not (isinstance(schema_type, type) and issubclass(schema_type, BaseModel)):
        raise TypeError(f"register_engine needs a Pydantic model class, got {schema_type!r}")
    _ENGINES[schema_type] = fn
    if code_id is not None:
        _CODE_IDS[fn] = code_id
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
        """Run the engine for ``schema`` and validate its answer (``timeout`` does not apply offline); a cached
        engine's stored reply when there is one (see the module docstring)."""
        req = EngineRequest(schema, system, user, tuple(images), dict(context or {}), self.role)
        slot = self._slot(req)
        stored = self._stored(req, slot)
        return stored if stored is not None else self._run(req, slot)

    async def astructured(self, schema: type[M], system: str, user: str, *, images: Sequence[bytes] = (),
                          context: dict[str, Any] | None = None, timeout: float | None = None) -> Reply[M]:
        """A stored reply at once; otherwise the engine runs in a worker thread so a concurrent model call keeps
        going."""
        req = EngineRequest(schema, system, user, tuple(images), dict(context or {}), self.role)
        slot = self._slot(req)
        stored = self._stored(req, slot)
        return stored if stored is not None else await asyncio.to_thread(self._run, req, slot)

    def _slot(self, req: EngineRequest) -> tuple[Any, str] | None:
        """(the call cache, this request's key) when the engine's replies are cached, else None."""
        engine = self.engine_for(req.schema)
        code_id = _CODE_IDS.get(engine)
        if code_id is None or self.settings.cache_mode == "off":
            return None
        from .cache import engine_key, open_cache

        key = engine_key(code_id(), req.schema, req.system, req.user, req.images, dict(req.context), req.role)
        return open_cache(self.settings.call_cache), key

    def _stored(self, req: EngineRequest, slot: tuple[Any, str] | None) -> Reply | None:
        """The stored reply for ``req`` in mode ``use``, else None."""
        hit = slot[0].reading(slot[1]) if slot is not None and self.settings.cache_mode == "use" else None
        if hit is None:
            return None
        try:
            value = req.schema.model_validate(json.loads(hit[0]))
        except (ValueError, ValidationError):  # a ValidationError is a ValueError; named for the reader
            from .cache import CacheError

            raise CacheError(f"call cache {str(slot[0].path)!r} holds an invalid {req.schema.__name__} reading: "
                             "run with --cache refresh, or move the file away") from None
        return Reply(value=value, raw=hit[0], latency_s=hit[1], attempts=1, provider=self.name, model=self.model)

    def _run(self, req: EngineRequest, slot: tuple[Any, str] | None) -> Reply:
        start = time.perf_counter()
        out = self.engine_for(req.schema)(req)
        value = out if isinstance(out, req.schema) else self._validate(
            req.schema, out.model_dump() if isinstance(out, BaseModel) else out)
        reply = Reply(value=value, raw=value.model_dump_json(), latency_s=time.perf_counter() - start, attempts=1,
                      provider=self.name, model=self.model)
        if slot is not None:
            slot[0].put_reading(slot[1], req.schema.__name__, reply.raw, reply.latency_s)
        return reply

    @staticmethod
    def _validate(schema: type[M], data: Any) -> M:
        try:
            return schema.model_validate(data)
        except ValidationError as exc:
            raise ModelError(f"builtin engine for {schema.__name__} returned an invalid value "
                             f"({describe_errors(exc)}): this is a bug, please report it") from None
