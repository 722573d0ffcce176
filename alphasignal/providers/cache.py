"""The model-call cache and the usage meter, as a provider wrapper: callers never change.

``get_provider`` wraps every model provider (not the builtin engines) in a ``CachedProvider``. Each request the
retry loop sends is keyed by a sha256 of the provider, the model (with its digest or file identity), the
settings that shape a reply (``Provider.request_settings``: temperature, max tokens, seed, context size...),
every message (role, text, and the sha256 of each image's bytes) and the JSON schema. The rendered prompt text
is in the key, so a prompt edit misses whether or not its version was bumped.

Modes (``pipeline.cache_mode``, ``--cache``): ``use`` answers a hit from the cache without a request and
stores a miss; ``refresh`` always sends the request and overwrites; ``off`` opens no cache. The store is SQLite
(``pipeline.call_cache``, default ``~/.cache/alphasignal/calls.sqlite``: the key covers everything that shapes a
reply, so one cache serves every run and working folder) in WAL mode, one transaction per insert, so parallel
runs can share it. A corrupt or foreign file at that path is a one-line ``CacheError`` (exit 2) and is never
modified.

A cached reply reports the tokens and the latency recorded when the request was made, so a re-run writes the
same bytes. ``usage_scope()`` counts what happens inside it (requests sent, cache hits, tokens, model time) and
can stop the work: with ``max_calls`` / ``max_tokens_total`` set, the request that would exceed them raises
``CallBudgetExceeded`` instead of being sent (requests already in flight finish).

The builtin offline engines make no model calls: they are never metered, and most are not cached (they answer
in microseconds). An engine registered with a code identity (the chart reader: ~20 ms a chart) has its readings
stored in the same file (table ``readings``) under ``engine_key``: that identity (a hash of the engine's source
and libraries), the schema, the prompts, the images' sha256 and the structured context. The replay also keeps
its rendered charts there (table ``charts``, keyed by ``charts.render.render_key``), so a fully cached decision
neither draws nor reads a chart.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AlphaSignalError, UsageError
from ..storage.sqlite import check_sqlite_file
from .base import Completion, Message, Provider

FORMAT = 1  # bump when the key or the stored record changes meaning
APPLICATION_ID = 0x41534743  # "ASGC": PRAGMA application_id marks the call caches this project created
MODES = ("use", "refresh", "off")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, provider TEXT NOT NULL, model TEXT NOT NULL, reply TEXT NOT NULL,
    tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, latency_s REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS timings (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS readings (key TEXT PRIMARY KEY, schema TEXT NOT NULL, reply TEXT NOT NULL,
    latency_s REAL NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS charts (key TEXT PRIMARY KEY, png BLOB NOT NULL, created REAL NOT NULL);
"""


class CacheError(UsageError):
    """The call cache file cannot be used (corrupt, foreign, unreadable): exit 2."""


class CallBudgetExceeded(AlphaSignalError):
    """A usage scope's ``max_calls`` or ``max_tokens_total`` is reached: the next model request is not sent.
    Callers that run many decisions catch it, keep what is done and stop cleanly."""

    exit_code = 3


# -- usage ------------------------------------------------------------------------------------------------------
@dataclass
class CallUsage:
    """Model requests seen by one scope: ``calls`` sent (a retry is a call), ``cache_hits`` answered from the cache,
    and the tokens and model time of the requests sent (a hit costs none). Limits of 0 mean none."""

    max_calls: int = 0
    max_tokens_total: int = 0
    calls: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    keys: list[str] = field(default_factory=list)  # cache keys of every request, in order (hits and calls)
    cache: CallCache | None = None  # the cache the requests went through (None when off)
    mode: str = "off"

    @property
    def tokens_total(self) -> int:
        return self.tokens_in + self.tokens_out

    def summary(self) -> str:
        """One line for stderr: what the model calls cost."""
        where = f" (cache {self.cache.path})" if self.cache is not None else ""
        return (f"model calls: {self.calls} sent, {self.cache_hits} from the cache{where}; tokens {self.tokens_in} "
                f"in / {self.tokens_out} out; {self.latency_s:.2f} s in model requests")

    def over_limit(self) -> str:
        """Which limit the counters have reached (``max_calls=N reached``), or "" when none."""
        if self.max_calls and self.calls >= self.max_calls:
            return f"max_calls={self.max_calls} reached"
        if self.max_tokens_total and self.tokens_total >= self.max_tokens_total:
            return f"max_tokens_total={self.max_tokens_total} reached ({self.tokens_total} tokens)"
        return ""


_RUN = CallUsage()  # everything this process did
_SCOPES: contextvars.ContextVar[tuple[CallUsage, ...]] = contextvars.ContextVar("alphasignal_usage", default=())
_LOCK = threading.Lock()


def run_usage() -> CallUsage:
    """This process's totals (never limited)."""
    return _RUN


@contextmanager
def usage_scope(max_calls: int = 0, max_tokens_total: int = 0) -> Iterator[CallUsage]:
    """Count the model requests made inside the block (including tasks and threads it starts with a copied
    context, as asyncio does); with limits, the request that would exceed them raises ``CallBudgetExceeded``."""
    usage = CallUsage(max_calls=max_calls, max_tokens_total=max_tokens_total)
    token = _SCOPES.set((*_SCOPES.get(), usage))
    try:
        yield usage
    finally:
        _SCOPES.reset(token)


def _active() -> tuple[CallUsage, ...]:
    return (_RUN, *_SCOPES.get())


def _reserve(key: str, cache: CallCache | None, mode: str) -> None:
    """Check every scope's limits and count the request as sent (before it is, so concurrent requests cannot
    overshoot ``max_calls``)."""
    with _LOCK:
        for u in _active():
            if reason := u.over_limit():
                raise CallBudgetExceeded(f"model-call budget spent: {reason} after {u.calls} call(s) and "
                                         f"{u.tokens_total} token(s); this request was not sent (raise the limit "
                                         "to continue)")
        for u in _active():
            u.calls += 1
            if u is not _RUN:  # the process total needs no keys (a long run would only pile them up)
                u.keys.append(key)
            u.cache, u.mode = (cache, mode) if u.cache is None else (u.cache, u.mode)


def _record(reply: Completion | None, key: str = "", cache: CallCache | None = None, mode: str = "off") -> None:
    """Count a sent request's tokens and time (``reply``), or a cache hit (``reply`` None)."""
    with _LOCK:
        for u in _active():
            if reply is None:
                u.cache_hits += 1
                if u is not _RUN:
                    u.keys.append(key)
                u.cache, u.mode = (cache, mode) if u.cache is None else (u.cache, u.mode)
            else:
                u.tokens_in += reply.tokens_in
                u.tokens_out += reply.tokens_out
                u.latency_s += reply.latency_s or 0.0


# -- the store --------------------------------------------------------------------------------------------------
class CallCache:
    """One cache file. Thread-safe; every write is its own transaction."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if self.path.exists():
            check_sqlite_file(self.path, "call cache", "pipeline.call_cache", CacheError, self._ours)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            # one transaction: a process checking the file meanwhile sees nothing or a complete, marked cache
            self.conn.executescript(f"BEGIN IMMEDIATE; PRAGMA application_id={APPLICATION_ID}; {_SCHEMA}"
                                    f"INSERT OR IGNORE INTO cache_meta VALUES ('format', '{FORMAT}'); COMMIT;")
        except (sqlite3.Error, OSError) as exc:
            raise CacheError(f"call cache {str(self.path)!r} cannot be opened ({exc}): set pipeline.call_cache to a "
                             "writable path, or use --cache off") from None
        self._lock = threading.Lock()

    def _ours(self, ro: sqlite3.Connection, tables: set[str]) -> bool:
        """True for a call cache of this format (read-only check); another format is an error of its own."""
        if ro.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
            return False
        row = ro.execute("SELECT value FROM cache_meta WHERE key = 'format'").fetchone() if (
            "cache_meta" in tables) else None
        if row is None or row[0] != str(FORMAT):
            raise CacheError(f"call cache {str(self.path)!r} has format {row[0] if row else 'unknown'}, this version "
                             f"reads format {FORMAT}: move it away or set pipeline.call_cache to another path")
        return True

    def _run(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self.conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CacheError(f"call cache {str(self.path)!r} failed ({exc}): move it away or set "
                             "pipeline.call_cache, or use --cache off") from None

    def get(self, key: str) -> Completion | None:
        """The stored reply for ``key`` (with its recorded tokens and latency), or None."""
        rows = self._run("SELECT reply, tokens_in, tokens_out, latency_s FROM calls WHERE key = ?", (key,))
        return Completion(rows[0][0], rows[0][1], rows[0][2], rows[0][3], cached=True) if rows else None

    def put(self, key: str, provider: str, model: str, reply: Completion) -> None:
        """Store (or overwrite) one reply."""
        self._run("INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?)",
                  (key, provider, model, str(reply), reply.tokens_in, reply.tokens_out, reply.latency_s or 0.0,
                   time.time()))

    def timings(self, key: str, measured: dict[str, Any], replay: bool) -> dict[str, Any]:
        """With ``replay``, the timings stored under ``key``; otherwise, or when there are none, store and return
        ``measured``."""
        if replay:
            rows = self._run("SELECT value FROM timings WHERE key = ?", (key,))
            if rows:
                return json.loads(rows[0][0])
        self._run("INSERT OR REPLACE INTO timings VALUES (?,?,?)", (key, json.dumps(measured), time.time()))
        return measured

    def reading(self, key: str) -> tuple[str, float] | None:
        """A builtin engine's stored reply and its recorded latency (see ``engine_key``), or None."""
        rows = self._run("SELECT reply, latency_s FROM readings WHERE key = ?", (key,))
        return (rows[0][0], rows[0][1]) if rows else None

    def put_reading(self, key: str, schema: str, reply: str, latency_s: float) -> None:
        """Store (or overwrite) one builtin engine reply (``schema``: the name of the model it answers)."""
        self._run("INSERT OR REPLACE INTO readings VALUES (?,?,?,?,?)", (key, schema, reply, latency_s, time.time()))

    def chart(self, key: str) -> bytes | None:
        """The PNG stored under ``key`` (a ``render_key``), or None."""
        rows = self._run("SELECT png FROM charts WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def put_chart(self, key: str, png: bytes) -> None:
        """Store (or overwrite) one rendered chart."""
        self._run("INSERT OR REPLACE INTO charts VALUES (?,?,?)", (key, png, time.time()))

    def __len__(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM calls", ())[0][0])

    def close(self) -> None:
        """Close the connection (the last one to close folds the WAL back into the file)."""
        with self._lock:
            self.conn.close()


_OPEN: dict[Path, CallCache] = {}
_INHERITED: list[CallCache] = []  # a forked child's copies of its parent's connections: kept, never used or closed


def _after_fork_in_child() -> None:
    """A worker process forked from one that had a cache open opens its own connection: SQLite connections must
    not cross a fork (using or closing the parent's could corrupt the file or drop the parent's locks)."""
    global _LOCK
    _INHERITED.extend(_OPEN.values())
    _OPEN.clear()
    _LOCK = threading.Lock()  # another thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def open_cache(path: str | Path) -> CallCache:
    """The process's one ``CallCache`` for ``path`` (checked and opened on first use)."""
    p = Path(path).expanduser().resolve()
    with _LOCK:
        if p not in _OPEN:
            _OPEN[p] = CallCache(p)
        return _OPEN[p]


def call_key(provider: Provider, messages: Sequence[Message], json_schema: dict[str, Any]) -> str:
    """sha256 of everything that shapes one request's reply (see the module docstring)."""
    payload = {"format": FORMAT, "provider": provider.name, "model": provider.model,
               "settings": provider.request_settings(), "schema": json_schema,
               "messages": [{"role": m.role, "content": m.content,
                             "images": [hashlib.sha256(i).hexdigest() for i in m.images]} for m in messages]}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def engine_key(engine_id: str, schema: type, system: str, user: str, images: Sequence[bytes],
               context: dict[str, Any], role: str) -> str:
    """sha256 of everything a builtin engine's reply can depend on: its code identity, the schema, the prompts,
    the images' bytes (their sha256) and the structured ``context``."""
    payload = {"format": FORMAT, "engine": engine_id, "schema": f"{schema.__module__}.{schema.__qualname__}",
               "system": system, "user": user, "role": role, "context": context,
               "images": [hashlib.sha256(i).hexdigest() for i in images]}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def replay_timings(usage: CallUsage, ident: str, measured: dict[str, Any]) -> dict[str, Any]:
    """Timings of a unit of work (e.g. one decision's fusion and total time) that went through the cache.

    When every request of ``usage`` was a cache hit (mode ``use``), the timings recorded when those requests were
    made come back, so a cached re-run writes the same bytes; otherwise ``measured`` is stored and returned.
    ``ident`` names the inputs beside the requests (e.g. the chart's hash)."""
    if usage.cache is None or usage.mode == "off" or not usage.keys:
        return measured
    key = hashlib.sha256(json.dumps([ident, sorted(usage.keys)]).encode()).hexdigest()
    return usage.cache.timings(key, measured, replay=usage.calls == 0 and usage.mode == "use")


# -- the wrapper ------------------------------------------------------------------------------------------------
class CachedProvider(Provider):
    """``inner`` with every request metered, limited by the active usage scopes, and cached per ``mode``."""

    def __init__(self, inner: Provider, mode: str = "off", cache: CallCache | None = None) -> None:
        super().__init__(inner.model, inner.settings, inner.role)
        if mode not in MODES:
            raise UsageError(f"cache mode {mode!r} is invalid: use {', '.join(MODES)}")
        self.inner, self.mode = inner, mode
        self.cache = cache if mode != "off" else None

    # the wrapped provider's identity and capabilities (check() may narrow them after wrapping)
    name = property(lambda self: self.inner.name)  # type: ignore[assignment]
    supports_vision = property(lambda self: self.inner.supports_vision)  # type: ignore[assignment]
    supports_json_schema = property(lambda self: self.inner.supports_json_schema)  # type: ignore[assignment]
    supports_tool_calling = property(lambda self: self.inner.supports_tool_calling)  # type: ignore[assignment]
    supports_streaming = property(lambda self: self.inner.supports_streaming)  # type: ignore[assignment]

    def __getattr__(self, attr: str) -> Any:  # host, base_url, path, digest, ... of the wrapped provider
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def __repr__(self) -> str:
        return f"CachedProvider({self.inner!r}, mode={self.mode!r})"

    def check(self) -> None:
        self.inner.check()

    def request_settings(self) -> dict[str, Any]:
        return self.inner.request_settings()

    def _hit(self, messages: Sequence[Message], json_schema: dict[str, Any]) -> tuple[str, Completion | None]:
        key = call_key(self.inner, messages, json_schema) if self.cache is not None else ""
        hit = self.cache.get(key) if self.cache is not None and self.mode == "use" else None
        if hit is not None:
            _record(None, key, self.cache, self.mode)
        else:
            _reserve(key, self.cache, self.mode)
        return key, hit

    def _store(self, key: str, raw: str, elapsed: float) -> Completion:
        reply = Completion.timed(raw, elapsed)
        if self.cache is not None:
            self.cache.put(key, self.inner.name, self.inner.model, reply)
        _record(reply)
        return reply

    def _complete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        key, hit = self._hit(messages, json_schema)
        if hit is not None:
            return hit
        start = time.perf_counter()
        raw = self.inner._complete(messages, json_schema, timeout)
        return self._store(key, raw, time.perf_counter() - start)

    async def _acomplete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        key, hit = self._hit(messages, json_schema)
        if hit is not None:
            return hit
        start = time.perf_counter()
        raw = await self.inner._acomplete(messages, json_schema, timeout)
        return self._store(key, raw, time.perf_counter() - start)


def wrap(provider: Provider) -> Provider:
    """``provider`` metered and cached per its settings (``cache_mode``, ``call_cache``); builtin engines as they
    are."""
    if provider.is_builtin or isinstance(provider, CachedProvider):
        return provider
    mode = provider.settings.cache_mode
    return CachedProvider(provider, mode, open_cache(provider.settings.call_cache) if mode != "off" else None)
