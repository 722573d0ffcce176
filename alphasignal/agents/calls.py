"""One agent call: versioned prompt + provider + schema, recorded as a history message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..errors import ModelError
from ..prompts import load_prompt
from ..providers import Provider
from ..providers.base import clip_reply
from ..storage.records import Message

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class AgentCall(Generic[M]):
    """A validated agent answer and the message stored in the history."""

    value: M
    message: Message


def ask(provider: Provider, schema: type[M], agent: str, prompt: str, values: Mapping[str, Any],
        context: Mapping[str, Any]) -> AgentCall[M]:
    """Ask ``provider`` for ``schema`` with prompt file ``prompt``; ``context`` feeds the builtin engines."""
    p = load_prompt(prompt)
    try:
        reply = provider.structured(schema, p.system.format(**values), p.format(**values), context=dict(context))
    except ModelError as exc:
        raise ModelError(f"{agent}: {exc}") from None
    message = Message(agent, reply.provider, reply.model, p.id, clip_reply(reply.raw), reply.value.model_dump(),
                      "; ".join(reply.repairs) or None, reply.latency_s)
    return AgentCall(reply.value, message)
