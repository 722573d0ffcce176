"""The shared base of providers backed by a LangChain chat model over HTTP (Ollama, OpenAI-compatible servers).

It owns what they have in common: one chat object per timeout (built on first use), the call itself, sync with
``invoke`` and async with the native ``ainvoke``, tried once per structured-output method in turn, the token counts
of the reply (``with_usage``) and the mapping of a failed call to a one-line ``ModelError``. A subclass supplies only
what differs: ``_new_chat`` (the LangChain object), ``_request`` (the runnable and invoke kwargs for one method),
``_error`` (the ModelError for a transport or server failure), optionally ``_methods``/``_fall_back`` (several ways
to ask), ``_reply_text`` and ``_accept``, and ``check``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import ModelError
from .base import Completion, Message, Provider, ProviderSettings, langchain_messages, message_text, with_usage


class LangChainChatProvider(Provider):
    """Base class: a LangChain chat model per timeout, called once per structured-output method until one works."""

    def __init__(self, model: str, settings: ProviderSettings | None = None, role: str = "") -> None:
        super().__init__(model, settings, role)
        self._chats: dict[float, Any] = {}

    # -- what subclasses implement -------------------------------------------------------------------
    def _new_chat(self, timeout: float) -> Any:
        """A new LangChain chat object whose requests give up after ``timeout`` seconds."""
        raise NotImplementedError

    def _request(self, json_schema: dict[str, Any], timeout: float, method: str) -> tuple[Any, dict[str, Any]]:
        """The runnable and invoke kwargs for one structured-output ``method`` (one of ``_methods()``)."""
        raise NotImplementedError

    def _error(self, exc: Exception, timeout: float) -> ModelError | None:
        """The one-line ModelError for a transport or server failure; None for anything else (a bug)."""
        raise NotImplementedError

    def _methods(self) -> list[str]:
        """The structured-output methods to try, in order (one by default: the provider's only way to ask)."""
        return [""]

    def _fall_back(self, exc: Exception, method: str) -> bool:
        """True when the failure of ``method`` means the next method should be tried (never by default)."""
        return False

    def _reply_text(self, reply: Any) -> str:
        """The raw answer in a LangChain AI message."""
        return message_text(reply)

    def _accept(self, method: str, reply: Any) -> Completion:
        """The reply to ``method`` that worked, as text with its token counts."""
        return with_usage(self._reply_text(reply), reply)

    # -- the call, written once for sync and async ---------------------------------------------------
    def _chat(self, timeout: float) -> Any:
        if timeout not in self._chats:
            self._chats[timeout] = self._new_chat(timeout)
        return self._chats[timeout]

    def _attempts(self, json_schema: dict[str, Any], timeout: float) -> Iterator[tuple[str, Any, dict[str, Any]]]:
        """(method, runnable, invoke kwargs) for each method to try; a runnable is built only when reached."""
        for method in self._methods():
            yield (method, *self._request(json_schema, timeout, method))

    @contextlib.contextmanager
    def _failures(self, method: str, timeout: float) -> Iterator[None]:
        """Around one call: swallow a failure after which the next method should be tried; raise the ModelError
        users should see for any other transport or server failure; let anything else (a bug) through."""
        try:
            yield
        except Exception as exc:
            if (error := self._error(exc, timeout)) is None:
                raise
            if not self._fall_back(exc, method):
                raise error from None

    def _complete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        for method, runnable, kwargs in self._attempts(json_schema, timeout):
            with self._failures(method, timeout):
                return self._accept(method, runnable.invoke(langchain_messages(messages), **kwargs))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _acomplete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        for method, runnable, kwargs in self._attempts(json_schema, timeout):
            with self._failures(method, timeout):
                return self._accept(method, await runnable.ainvoke(langchain_messages(messages), **kwargs))
        raise AssertionError("unreachable")  # pragma: no cover
