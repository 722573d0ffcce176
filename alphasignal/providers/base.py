"""The provider interface: one structured-output call, with the retry loop written once.

A provider declares its capabilities as class attributes (simonw/llm style) and implements one method,
``_complete(messages, json_schema, timeout) -> str`` (plus ``_acomplete`` when it has a native async client).
``Provider.structured`` does the rest: strip ``<think>`` blocks, parse the first JSON object loosely,
apply the documented repairs (see ``repair``), validate with the Pydantic schema, and on failure retry with
the validation error appended to the conversation, at most ``max_retries`` times. The last failure raises
``ModelError`` (exit 3) naming a file with every raw reply.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import functools
import hashlib
import json
import re
import socket
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from ..errors import ModelError, UsageError
from ..fileio import write_atomic
from ..provider_settings import ProviderSettings

M = TypeVar("M", bound=BaseModel)

# Keys the local grammar converters mishandle (llama.cpp ignores min/max and crashed on a `\.` pattern):
# ranges are enforced by Pydantic after parsing, with a retry.
# String lengths too: llama.cpp expands maxLength=N into N nested rules, which made sampling ~10x slower.
_GRAMMAR_DROP = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "pattern", "minLength",
                 "maxLength", "format", "title", "default", "examples"}
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Message:
    """One chat message; ``images`` (PNG/JPEG bytes) only ever ride on the first user message."""

    role: str  # system | user | assistant
    content: str
    images: tuple[bytes, ...] = ()


class Completion(str):
    """A raw reply text that also carries what the request cost (a ``str``, so callers that treat a reply as text
    keep working). ``latency_s`` None means "measured by the caller"; ``cached`` marks a reply from the call cache."""

    tokens_in: int
    tokens_out: int
    latency_s: float | None
    cached: bool

    def __new__(cls, text: str, tokens_in: int = 0, tokens_out: int = 0, latency_s: float | None = None,
                cached: bool = False) -> Completion:
        out = super().__new__(cls, text)
        out.tokens_in, out.tokens_out, out.latency_s, out.cached = tokens_in, tokens_out, latency_s, cached
        return out

    @classmethod
    def timed(cls, text: str, elapsed: float) -> Completion:
        """``text`` as a Completion, with ``elapsed`` as its latency unless it already carries one."""
        c = text if isinstance(text, Completion) else cls(text)
        return c if c.latency_s is not None else cls(c, c.tokens_in, c.tokens_out, elapsed, c.cached)


@dataclass(frozen=True)
class Reply(Generic[M]):
    """A validated model reply and how it was obtained."""

    value: M
    raw: str  # raw text of the last reply
    latency_s: float  # model time over all attempts (a cached reply reports the time recorded with it)
    attempts: int
    provider: str
    model: str
    repairs: tuple[str, ...] = ()  # documented repairs applied to the last reply (see ``repair``)
    tokens_in: int = 0  # over all attempts, as the backend reported them (0 where it reports none)
    tokens_out: int = 0

    @property
    def is_builtin(self) -> bool:
        return self.provider == "builtin"

    def meta(self) -> dict[str, Any]:
        """JSON-ready facts about the call, for a decision's ``meta``."""
        return {"provider": self.provider, "model": self.model, "latency_s": round(self.latency_s, 4),
                "attempts": self.attempts, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "repairs": list(self.repairs), "engine": "builtin" if self.is_builtin else "model"}


class Provider:
    """Base class: subclasses set the capability attributes and implement ``_complete``."""

    name: ClassVar[str] = "base"
    supports_vision: ClassVar[bool] = False
    supports_json_schema: ClassVar[bool] = False
    supports_tool_calling: ClassVar[bool] = False
    supports_streaming: ClassVar[bool] = False
    is_builtin: ClassVar[bool] = False

    def __init__(self, model: str, settings: ProviderSettings | None = None, role: str = "") -> None:
        self.model = model
        self.settings = settings or ProviderSettings()
        self.role = role

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, role={self.role!r})"

    # -- what subclasses implement -------------------------------------------------------------------
    def _complete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        """Send the conversation, constrained by ``json_schema`` where the backend can; return the raw text
        (a ``Completion`` when the backend reports token counts)."""
        raise NotImplementedError

    def request_settings(self) -> dict[str, Any]:
        """Everything besides the messages and the schema that shapes a reply (part of the call-cache key)."""
        return {"temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens}

    async def _acomplete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        return await asyncio.to_thread(self._complete, messages, json_schema, timeout)

    def check(self) -> None:
        """Raise ``ModelError`` with the fix when the backend or model is unavailable (no-op by default)."""

    # -- the public calls ----------------------------------------------------------------------------
    def structured(self, schema: type[M], system: str, user: str, *, images: Sequence[bytes] = (),
                   context: dict[str, Any] | None = None, timeout: float | None = None) -> Reply[M]:
        """Ask for one ``schema`` instance; ``context`` feeds builtin engines and the schema's validators
        (``model_validate(..., context=context)``: the news a reply must be grounded in, the rows it must not copy)."""
        loop = self._loop(schema, system, user, images, context)
        t, grammar = timeout or self.settings.timeout, grammar_schema(schema)
        messages = next(loop)
        while True:
            start = time.perf_counter()
            raw = self._complete(messages, grammar, t)
            try:
                messages = loop.send(Completion.timed(raw, time.perf_counter() - start))
            except StopIteration as done:
                return done.value

    async def astructured(self, schema: type[M], system: str, user: str, *, images: Sequence[bytes] = (),
                          context: dict[str, Any] | None = None, timeout: float | None = None) -> Reply[M]:
        """Async twin of ``structured``."""
        loop = self._loop(schema, system, user, images, context)
        t, grammar = timeout or self.settings.timeout, grammar_schema(schema)
        messages = next(loop)
        while True:
            start = time.perf_counter()
            raw = await self._acomplete(messages, grammar, t)
            try:
                messages = loop.send(Completion.timed(raw, time.perf_counter() - start))
            except StopIteration as done:
                return done.value

    def as_runnable(self, schema: type[M]) -> Any:
        """A LangChain Runnable: ``{"system", "user", "images"?, "context"?} -> Reply`` (sync and async)."""
        from langchain_core.runnables import RunnableLambda

        def _kw(d: dict[str, Any]) -> dict[str, Any]:
            return {"images": d.get("images", ()), "context": d.get("context"), "timeout": d.get("timeout")}

        async def _arun(d: dict[str, Any]) -> Reply[M]:
            return await self.astructured(schema, d["system"], d["user"], **_kw(d))

        return RunnableLambda(lambda d: self.structured(schema, d["system"], d["user"], **_kw(d)), afunc=_arun,
                              name=f"{self.name}:{schema.__name__}")

    # -- the retry loop, once, shared by the sync and async drivers ----------------------------------
    def _loop(self, schema: type[M], system: str, user: str, images: Sequence[bytes],
              context: dict[str, Any] | None = None) -> Generator[list[Message], Completion, Reply[M]]:
        if images and not self.supports_vision:
            raise UsageError(f"{self.name} model {self.model!r} cannot read images: configure a vision model "
                             "(e.g. --vlm-model qwen2.5vl:3b, or an mmproj file for llamacpp)")
        messages = [Message("system", system + "\n\n" + schema_instructions(schema)),
                    Message("user", user, tuple(images))]
        failures: list[tuple[str, str]] = []
        latency, tokens_in, tokens_out = 0.0, 0, 0
        for attempt in range(1, self.settings.max_retries + 2):
            done = yield list(messages)
            latency, tokens_in, tokens_out = (latency + (done.latency_s or 0.0), tokens_in + done.tokens_in,
                                              tokens_out + done.tokens_out)
            raw = str(done)
            try:
                value, repairs = parse_reply(raw, schema, context)
            except ReplyError as exc:
                failures.append((raw, str(exc)))
                messages += [Message("assistant", raw), Message("user", feedback(str(exc)))]
                continue
            return Reply(value=value, raw=raw, latency_s=latency, attempts=attempt, provider=self.name,
                         model=self.model, repairs=tuple(repairs), tokens_in=tokens_in, tokens_out=tokens_out)
        path = save_failures(self.settings.raw_dir, self.name, self.model, schema.__name__, failures)
        raise ModelError(f"{self.name} model {self.model!r} gave no valid {schema.__name__} in {len(failures)} "
                         f"attempt(s) (last: {one_line(failures[-1][1], 200)}); raw replies saved to {path}")


class ReplyError(ValueError):
    """A reply that could not be turned into the schema; the message is fed back to the model."""


def full_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """``schema.model_json_schema()``, a fresh copy each call; built once per class (it takes ~1 ms, and every model
    call needs it three times)."""
    return json.loads(_schema_text(schema, "full"))


def grammar_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent to servers: refs inlined, every field required; ranges, patterns and string lengths
    dropped (local grammar converters mishandle them; Pydantic checks them afterwards). A fresh copy each call."""
    return json.loads(_schema_text(schema, "grammar"))


@functools.cache
def _schema_text(schema: type[BaseModel], kind: str) -> str:
    return json.dumps(schema.model_json_schema() if kind == "full" else _grammar(schema))


def _grammar(schema: type[BaseModel]) -> dict[str, Any]:
    full = full_schema(schema)
    defs = full.pop("$defs", {})

    def _walk(node: Any, names: bool = False) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return _walk(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
            if names:  # a "properties" table: its keys are field names, never schema keywords
                return {k: _walk(v) for k, v in node.items()}
            out = {k: _walk(v, k == "properties") for k, v in node.items() if k not in _GRAMMAR_DROP}
            if "properties" in out:  # ask for every field (null where optional): small models skip optional ones
                out["required"] = list(out["properties"])
            return out
        if isinstance(node, list):
            return [_walk(v) for v in node]
        return node

    return _walk(full)


@functools.cache
def schema_instructions(schema: type[BaseModel]) -> str:
    """The reply contract appended to every system prompt: one line per field with its type, range and meaning.

    A compact list rather than the raw JSON schema: small models copy a pasted schema into their answer.
    """
    full = full_schema(schema)
    lines = ["Reply with ONE JSON object and nothing else, with these fields:"]
    for name, prop in full.get("properties", {}).items():
        lines.append(f'- "{name}": {_describe(prop, full.get("$defs", {}))}'
                     + (f" — {prop['description']}" if prop.get("description") else ""))
    return "\n".join(lines)


def _describe(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in prop:
        ref = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
        return "object with " + ", ".join(f'"{k}"' for k in ref.get("properties", {}))
    if "anyOf" in prop:
        kinds = [_describe(a, defs) for a in prop["anyOf"] if a.get("type") != "null"]
        return " or ".join(kinds) + (" or null" if len(kinds) < len(prop["anyOf"]) else "")
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(e) for e in prop["enum"])
    kind = prop.get("type", "value")
    if kind in ("number", "integer"):
        lo = prop.get("minimum", prop.get("exclusiveMinimum"))
        hi = prop.get("maximum", prop.get("exclusiveMaximum"))
        return kind + (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None
                       else f" > {lo:g}" if lo is not None else f" < {hi:g}" if hi is not None else "")
    if kind == "array":
        most = f" at most {prop['maxItems']}" if "maxItems" in prop else ""
        return f"list of{most} {_describe(prop.get('items', {}), defs)}" + ("s" if "items" in prop else "")
    return str(kind)


def feedback(error: str) -> str:
    """The user message that asks the model to fix its previous reply."""
    return (f"Your previous reply was invalid: {error}. Reply again with ONE corrected JSON object that "
            "satisfies every constraint of the schema, and nothing else.")


def strip_reasoning(text: str) -> str:
    """Drop ``<think>...</think>`` blocks, and a leading unterminated one closed by ``</think>`` only."""
    text = _THINK.sub("", text)
    head, sep, tail = text.partition("</think>")
    return tail if sep else text


def extract_json(text: str) -> Any:
    """The first JSON object in ``text`` (after reasoning blocks; inside a code fence if there is one)."""
    text = strip_reasoning(text).strip()
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder(strict=False)  # raw newlines inside strings: llama.cpp's grammar allows them
    for chunk in candidates:
        for i, ch in enumerate(chunk):
            if ch == "{":
                try:
                    return decoder.raw_decode(chunk, i)[0]
                except json.JSONDecodeError:
                    continue
    if not text:
        raise ReplyError("the reply was empty")
    if text.startswith("{"):
        raise ReplyError(f"the JSON object is malformed or cut off ({one_line(text, 60)!r}): keep strings short")
    raise ReplyError(f"no JSON object found in the reply ({one_line(text, 80)!r})")


def repair(data: Any, schema: dict[str, Any], defs: dict[str, Any] | None = None, path: str = ""
           ) -> tuple[Any, list[str]]:
    """Apply the two documented repairs, walking ``data`` beside the full JSON schema.

    1. A number whose schema range is exactly [0, 1] but whose value lies in (1, 100] is read as a
       percentage and divided by 100 (confidence 20 -> 0.20). Anything else out of range is NOT clamped:
       validation fails and the model is asked again.
    2. A string that matches an enum member only up to case is replaced by that member ("buy" -> "BUY").
    """
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        schema = defs.get(schema["$ref"].rsplit("/", 1)[-1], {})
    notes: list[str] = []
    if isinstance(data, dict) and "properties" in schema:
        out = dict(data)
        for key, sub in schema["properties"].items():
            if key in out:
                out[key], n = repair(out[key], sub, defs, f"{path}{key}")
                notes += n
        return out, notes
    if isinstance(data, list) and isinstance(schema.get("items"), dict):
        fixed = [repair(v, schema["items"], defs, f"{path}[{i}]") for i, v in enumerate(data)]
        return [v for v, _ in fixed], [n for _, ns in fixed for n in ns]
    for alt in schema.get("anyOf", ()):
        if alt.get("type") != "null" and data is not None:
            return repair(data, alt, defs, path)
    if (isinstance(data, (int, float)) and not isinstance(data, bool) and schema.get("minimum") == 0
            and schema.get("maximum") == 1 and 1 < data <= 100):
        return data / 100, [f"{path}={data} read as a percentage -> {data / 100:g}"]
    if isinstance(data, str) and "enum" in schema and data not in schema["enum"]:
        match = [e for e in schema["enum"] if isinstance(e, str) and e.lower() == data.strip().lower()]
        if match:
            return match[0], [f"{path}={data!r} -> {match[0]!r}"]
    return data, notes


def parse_reply(raw: str, schema: type[M], context: dict[str, Any] | None = None) -> tuple[M, list[str]]:
    """Raw text -> validated instance and the repairs applied; ``ReplyError`` with a feedback-ready message.
    ``context`` reaches the schema's validators (grounding checks)."""
    data = extract_json(raw)
    data, repairs = repair(data, full_schema(schema))
    try:
        return schema.model_validate(data, context=context), repairs
    except ValidationError as exc:
        raise ReplyError(describe_errors(exc)) from None


def describe_errors(exc: ValidationError) -> str:
    """A compact, model-readable summary of a Pydantic validation error."""
    parts = []
    for err in exc.errors()[:6]:
        loc = ".".join(str(p) for p in err["loc"]) or "reply"
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {one_line(repr(got), 60)})"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}{got_s}")
    return "; ".join(parts)


def save_failures(raw_dir: str, provider: str, model: str, schema: str, failures: list[tuple[str, str]]) -> Path:
    """Write every failed raw reply with its error to one text file (atomically); return its path."""
    directory = Path(raw_dir).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    body = "".join(f"=== attempt {i} — {err}\n{clip_reply(raw)}\n\n" for i, (raw, err) in enumerate(failures, 1))
    digest = hashlib.sha256(body.encode()).hexdigest()[:10]
    safe_model = re.sub(r"[^A-Za-z0-9_.-]+", "_", model)[-60:]
    path = directory / f"{time.strftime('%Y%m%d-%H%M%S')}-{provider}-{safe_model}-{schema}-{digest}.txt"
    return write_atomic(path, f"provider={provider} model={model} schema={schema}\n\n{body}")


MAX_SAVED_REPLY = 64 * 1024  # characters of a raw reply kept on disk or in the history: a runaway reply stays small


def clip_reply(raw: str) -> str:
    """``raw`` cut to :data:`MAX_SAVED_REPLY` characters, saying how much was left out."""
    if len(raw) <= MAX_SAVED_REPLY:
        return raw
    return raw[:MAX_SAVED_REPLY] + f"\n[... {len(raw) - MAX_SAVED_REPLY:,} more characters not saved]"


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace and cut to ``limit`` characters (for error messages)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def port_open(url: str, timeout: float) -> bool:
    """True when something accepts TCP connections at ``url``'s host and port (a cheap first reachability test:
    building an HTTP client costs ~0.2 s, a refused connect well under 1 ms)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def probe_timeout(settings: ProviderSettings) -> Any:
    """Timeout for reachability checks: a short connect (offline runs stay fast), then as long as a call may take
    (a busy local server answers its model list only after the running generation)."""
    import httpx

    return httpx.Timeout(settings.timeout, connect=settings.connect_timeout)


def image_mime(data: bytes) -> str:
    """MIME type from the magic bytes (PNG, JPEG, GIF, WebP); PNG when unknown."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/png"


def data_url(data: bytes) -> str:
    """``data:<mime>;base64,...`` for an image."""
    return f"data:{image_mime(data)};base64,{base64.b64encode(data).decode()}"


def openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI chat-completions message dicts, images as data-URL ``image_url`` parts."""
    out = []
    for m in messages:
        if m.images:
            parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in m.images]
            out.append({"role": m.role, "content": [*parts, {"type": "text", "text": m.content}]})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def langchain_messages(messages: Sequence[Message]) -> list[Any]:
    """LangChain message objects (images as data-URL parts, which langchain-ollama turns into base64)."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[d["role"]](content=d["content"]) for d in openai_messages(messages)]


def message_text(reply: Any) -> str:
    """The text of a LangChain AI message (string content, or the text parts of a content list)."""
    content = reply.content
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def with_usage(text: str, reply: Any) -> Completion:
    """``text`` with the token counts of a LangChain AI message (``usage_metadata``; 0 when absent)."""
    usage = getattr(reply, "usage_metadata", None) or {}
    return Completion(text, int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0))
