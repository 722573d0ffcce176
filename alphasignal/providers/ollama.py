"""Ollama provider: langchain-ollama ``ChatOllama`` with the JSON schema as Ollama's ``format``.

Images travel as base64 (``images`` of the user message). Reasoning models' ``<think>`` blocks are stripped
by the base class. Importing this module is cheap: LangChain is imported on the first call.
"""

from __future__ import annotations

from typing import Any

from ..errors import ModelError
from .base import ProviderSettings, one_line, port_open, probe_timeout
from .langchain_chat import LangChainChatProvider


class OllamaProvider(LangChainChatProvider):
    """A model served by Ollama (``ollama serve``) at ``settings.ollama_host``."""

    name = "ollama"
    supports_vision = True  # narrowed by check() from the model's /api/show capabilities
    supports_json_schema = True
    supports_tool_calling = True
    supports_streaming = True

    def __init__(self, model: str, settings: ProviderSettings | None = None, role: str = "") -> None:
        super().__init__(model, settings, role)
        self.host = self.settings.ollama_host.rstrip("/")
        self.digest = ""  # the model's digest on the server, set by check()

    def check(self) -> None:
        """Server reachable (``/api/version``), model pulled (``/api/tags``), vision known (``/api/show``)."""
        if not port_open(self.host, self.settings.connect_timeout):
            raise ModelError(f"no Ollama server at {self.host} (nothing listening): start it with `ollama serve` "
                             "or set pipeline.ollama_host, or use --provider builtin")
        import httpx  # here, not at import: an offline run never pays for it

        t = probe_timeout(self.settings)
        try:
            httpx.get(f"{self.host}/api/version", timeout=t).raise_for_status()
            tags = httpx.get(f"{self.host}/api/tags", timeout=t).json().get("models", [])
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ModelError(f"no Ollama server at {self.host} ({type(exc).__name__}): start it with `ollama serve` "
                             "or set pipeline.ollama_host, or use --provider builtin") from None
        except httpx.TimeoutException:  # listening but slow (busy loading a model): not "not Ollama"
            raise ModelError(f"the Ollama server at {self.host} did not answer within {self.settings.timeout:g} s: "
                             "it may be busy; try again, or raise pipeline.timeout") from None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise ModelError(f"the server at {self.host} does not answer like Ollama ({type(exc).__name__}: "
                             f"{one_line(str(exc), 100)}): check pipeline.ollama_host") from None
        names = {n for m in tags for n in (m.get("name"), m.get("model")) if n}
        if not ({self.model, f"{self.model}:latest"} & names):
            raise ModelError(f"model {self.model!r} is not on the Ollama server at {self.host}: run "
                             f"`ollama pull {self.model}` (available: {', '.join(sorted(names)) or 'none'})")
        try:
            caps = httpx.post(f"{self.host}/api/show", json={"model": self.model}, timeout=t).json().get("capabilities")
        except (httpx.HTTPError, ValueError):
            caps = None
        if isinstance(caps, list) and caps:
            self.supports_vision = "vision" in caps
        self.digest = next((m.get("digest", "") for m in tags if {m.get("name"), m.get("model")} & {
            self.model, f"{self.model}:latest"}), "")

    def request_settings(self) -> dict[str, Any]:
        """The base settings plus the served model's digest (known after ``check``): a re-pulled model misses."""
        return {**super().request_settings(), "digest": self.digest}

    def _new_chat(self, timeout: float) -> Any:
        from langchain_ollama import ChatOllama

        return ChatOllama(model=self.model, base_url=self.host, temperature=self.settings.temperature,
                          num_predict=self.settings.max_tokens, client_kwargs={"timeout": timeout})

    def _request(self, json_schema: dict[str, Any], timeout: float, method: str) -> tuple[Any, dict[str, Any]]:
        """The chat object, with the JSON schema as Ollama's ``format`` (Ollama's one way to ask)."""
        return self._chat(timeout), {"format": json_schema}

    def _error(self, exc: Exception, timeout: float) -> ModelError | None:
        """The one-line ModelError for a transport or server failure; None for anything else (a bug)."""
        import httpx
        import ollama

        if isinstance(exc, (ConnectionError, httpx.ConnectError)):
            return ModelError(f"cannot reach Ollama at {self.host}: start it with `ollama serve` or set "
                              "pipeline.ollama_host, or use --provider builtin")
        if isinstance(exc, httpx.TimeoutException):
            return ModelError(f"ollama model {self.model!r} timed out after {timeout:g}s: raise pipeline.timeout "
                              "(e.g. --set pipeline.timeout=120) or use a smaller model")
        if isinstance(exc, ollama.ResponseError):
            if exc.status_code == 404 or "not found" in str(exc.error).lower():
                return ModelError(f"model {self.model!r} is not on the Ollama server at {self.host}: run "
                                  f"`ollama pull {self.model}`")
            return ModelError(f"Ollama at {self.host} failed for model {self.model!r}: {one_line(exc.error)}")
        if isinstance(exc, httpx.HTTPError):
            return ModelError(f"Ollama at {self.host} failed for model {self.model!r}: {type(exc).__name__}: "
                              f"{one_line(str(exc))}")
        return None
