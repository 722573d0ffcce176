"""Health rows (model, size, load time, tokens/s on a short JSON-schema request, vision) and the probes."""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..progress import say

# A short, fixed structured request: what stage 04 asks of every model, in miniature.
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"action": {"type": "string", "enum": ["BUY", "SELL", "HOLD"]},
                   "confidence": {"type": "number"}},
    "required": ["action", "confidence"],
}
PROBE_MESSAGES = [
    {"role": "system", "content": "Answer with JSON only."},
    {"role": "user", "content": "The price closed above its 20-day average on rising volume. Give a trading "
                                "signal as JSON with action and confidence."},
]
PROBE_MAX_TOKENS = 48


@dataclass
class HealthRow:
    """One model's health figures; None means not measurable on this server."""

    model: str
    size_bytes: int | None = None
    load_s: float | None = None
    tokens_per_s: float | None = None
    vision: bool | None = None
    json_ok: bool | None = None
    status: str = "ok"


def note(message: str, quiet: bool) -> None:
    """A progress/diagnostic line on stderr (silenced by --quiet)."""
    say(message, quiet)


def probe_png() -> bytes:
    """A tiny chart-like PNG (56x56) for vision capability probes."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (56, 56), "white")
    draw = ImageDraw.Draw(img)
    for i, h in enumerate((20, 28, 24, 36, 30)):
        draw.rectangle([4 + i * 10, 50 - h, 10 + i * 10, 50], fill="green" if i % 2 else "red")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def is_json_reply(text: str) -> bool:
    """True when the reply parses as a JSON object with the probe's required keys."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return False
    return isinstance(obj, dict) and all(k in obj for k in PROBE_SCHEMA["required"])


def openai_probe(client: httpx.Client, model: str, schema_style: str) -> tuple[float, int, str]:
    """(seconds, completion tokens, text) of the probe on an OpenAI-compatible server.

    ``schema_style``: "json_object" (llama-cpp-python's server: json_object + schema) or "json_schema" (vLLM, OpenAI).
    """
    fmt = ({"type": "json_object", "schema": PROBE_SCHEMA} if schema_style == "json_object" else
           {"type": "json_schema", "json_schema": {"name": "signal", "schema": PROBE_SCHEMA, "strict": True}})
    body = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": PROBE_MAX_TOKENS, "temperature": 0,
            "response_format": fmt}
    start = time.perf_counter()
    resp = client.post("/chat/completions", json=body)
    elapsed = time.perf_counter() - start
    resp.raise_for_status()
    data = resp.json()
    text = data["choices"][0]["message"].get("content") or ""
    tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
    return elapsed, tokens, text


def openai_vision_probe(client: httpx.Client, model: str) -> bool:
    """Send one tiny image; True when the server answers it (a text-only server rejects image parts)."""
    url = "data:image/png;base64," + base64.b64encode(probe_png()).decode()
    body = {"model": model, "max_tokens": 4, "temperature": 0, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                     {"type": "text", "text": "One word: what is this?"}]}]}
    try:
        return client.post("/chat/completions", json=body).status_code == 200
    except httpx.HTTPError:
        return False
