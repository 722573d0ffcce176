"""OpenAI-compatible provider (vLLM, llama.cpp's servers, LM Studio, ...) through langchain-openai ``ChatOpenAI``.

Servers differ in structured output: vLLM and LM Studio take OpenAI's ``json_schema`` response format;
``llama_cpp.server`` rejects it (HTTP 500) but honours forced function calling and its own
``{"type": "json_object", "schema": ...}``. With ``openai_method="auto"`` the provider tries ``json_schema``
once and, when the server refuses it, switches to ``function_calling`` for the rest of its life.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ModelError
from .base import Completion, ProviderSettings, message_text, one_line, port_open, probe_timeout
from .langchain_chat import LangChainChatProvider


class OpenAICompatProvider(LangChainChatProvider):
    """A model behind an OpenAI-compatible ``/v1`` endpoint at ``settings.openai_base_url``."""

    name = "openai"
    supports_vision = True  # the server decides; a text-only model answers with an error
    supports_json_schema = True
    supports_tool_calling = True
    supports_streaming = True

    def __init__(self, model: str, settings: ProviderSettings | None = None, role: str = "") -> None:
        super().__init__(model, settings, role)
        self.base_url = self.settings.openai_base_url.rstrip("/")
        self.method = self.settings.openai_method  # resolved from "auto" on the first call

    def check(self) -> None:
        """Server reachable and serving the model (``GET /models``)."""
        if not port_open(self.base_url, self.settings.connect_timeout):
            raise ModelError(f"no OpenAI-compatible server at {self.base_url} (nothing listening): start one (e.g. "
                             "`python -m llama_cpp.server --model M.gguf` or `vllm serve MODEL`) or set "
                             "pipeline.openai_base_url, or use --provider builtin")
        import httpx  # here, not at import: an offline run never pays for it

        try:
            r = httpx.get(f"{self.base_url}/models", timeout=probe_timeout(self.settings),
                          headers={"Authorization": f"Bearer {self.settings.api_key}"})
            r.raise_for_status()
            ids = {m.get("id") for m in r.json().get("data", []) if isinstance(m, dict)}
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ModelError(f"no OpenAI-compatible server at {self.base_url} ({type(exc).__name__}): start one "
                             "(e.g. `python -m llama_cpp.server --model M.gguf` or `vllm serve MODEL`) or set "
                             "pipeline.openai_base_url, or use --provider builtin") from None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise ModelError(f"the server at {self.base_url} did not list its models ({type(exc).__name__}: "
                             f"{one_line(str(exc), 100)}): check it is OpenAI-compatible and the URL ends in /v1"
                             ) from None
        if ids and self.model not in ids:
            raise ModelError(f"model {self.model!r} is not served at {self.base_url} (serves: "
                             f"{', '.join(sorted(map(str, ids)))}): pass one of those or restart the server with it")

    def request_settings(self) -> dict[str, Any]:
        """The base settings plus the configured structured-output method."""
        return {**super().request_settings(), "openai_method": self.settings.openai_method}

    def _new_chat(self, timeout: float) -> Any:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model=self.model, base_url=self.base_url, api_key=self.settings.api_key,
                          temperature=self.settings.temperature, max_tokens=self.settings.max_tokens,
                          timeout=timeout, max_retries=0)

    def _request(self, json_schema: dict[str, Any], timeout: float, method: str) -> tuple[Any, dict[str, Any]]:
        """The runnable and invoke kwargs for one structured-output ``method``."""
        chat, name = self._chat(timeout), "reply"
        if method == "function_calling":
            tool = {"type": "function", "function": {"name": name, "description": "Return the answer.",
                                                     "parameters": json_schema}}
            return chat.bind_tools([tool], tool_choice=name), {}
        if method == "json_object":  # llama.cpp's grammar-constrained extension
            return chat, {"response_format": {"type": "json_object", "schema": json_schema}}
        return chat, {"response_format": {"type": "json_schema",
                                          "json_schema": {"name": name, "schema": json_schema, "strict": False}}}

    def _methods(self) -> list[str]:
        return ["json_schema", "function_calling"] if self.method == "auto" else [self.method]

    def _accept(self, method: str, reply: Any) -> Completion:
        """Remember the method that worked (``auto`` resolves on the first answer)."""
        self.method = method
        return super()._accept(method, reply)

    def _reply_text(self, reply: Any) -> str:
        """The forced tool call's arguments, else the message text."""
        for call in getattr(reply, "tool_calls", None) or ():
            return json.dumps(call.get("args", {}))
        for call in getattr(reply, "invalid_tool_calls", None) or ():
            return str(call.get("args") or "")
        return message_text(reply)

    def _fall_back(self, exc: Exception, method: str) -> bool:
        """True when ``auto`` should retry with function calling: the server refused the json_schema format."""
        import openai

        refused = isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 422, 500, 501)
        return self.method == "auto" and method == "json_schema" and refused

    def _error(self, exc: Exception, timeout: float) -> ModelError | None:
        """The one-line ModelError for a transport or server failure; None for anything else (a bug)."""
        import httpx
        import openai  # ~1 s to import: only a failing call needs it

        if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)):
            return ModelError(f"model {self.model!r} at {self.base_url} timed out after {timeout:g}s: raise "
                              "pipeline.timeout (e.g. --set pipeline.timeout=120) or use a smaller model")
        if isinstance(exc, (openai.APIConnectionError, httpx.ConnectError)):
            return ModelError(f"cannot reach the OpenAI-compatible server at {self.base_url}: start it or set "
                              "pipeline.openai_base_url, or use --provider builtin")
        if isinstance(exc, openai.NotFoundError):
            return ModelError(f"model {self.model!r} is not served at {self.base_url}: check the model name")
        if isinstance(exc, (httpx.HTTPError, openai.APIError)):
            return ModelError(f"server {self.base_url} failed for model {self.model!r}: {type(exc).__name__}: "
                              f"{one_line(str(exc))}")
        return None

