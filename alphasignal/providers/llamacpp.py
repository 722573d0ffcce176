"""In-process GGUF models with llama-cpp-python: grammar-constrained JSON, vision with an mmproj file.

The loaded ``Llama`` is cached per (file, mmproj, n_ctx) for the life of the process and guarded by a lock
(llama.cpp contexts are not thread-safe). Generation is streamed so the per-call timeout can stop it between
tokens. The vision projector (``mmproj_path``) is loaded only for the ``vlm`` role, with llama-cpp-python's
``Qwen25VLChatHandler``.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..fileio import input_file
from .base import Completion, Message, Provider, ProviderSettings, openai_messages

_CACHE: dict[tuple[str, str, int], tuple[Any, threading.Lock]] = {}
_CACHE_LOCK = threading.Lock()
_NATIVE_LOG = logging.getLogger("alphasignal.llamacpp")
_LOG_CALLBACK: list[Any] = []  # the ctypes callback must stay referenced while llama.cpp may call it
# The grammar cannot bound string lengths (llama.cpp's maxLength rules made sampling ~10x slower), and small models
# run one string on until max_tokens (SmolLM2's analyst copied summary rows for 600 tokens, ~25 s). No reply schema
# keeps more of a string than this (TradingSignal.rationale allows 600; the others cut at 120-600), so generation
# stops there: the cut-off JSON fails as "malformed or cut off: keep strings short" and goes back to the retry loop.
MAX_STRING_CHARS = 600


class StringWatch:
    """Follows streamed JSON text and says when the string being written runs past ``limit`` characters."""

    def __init__(self, limit: int = MAX_STRING_CHARS) -> None:
        self.limit, self.inside, self.escaped, self.length = limit, False, False, 0

    def feed(self, text: str) -> bool:
        """Consume the next piece of the reply; True once the open string is longer than the limit."""
        for ch in text:
            if not self.inside:
                self.inside, self.length = ch == '"', 0
            elif self.escaped:
                self.escaped, self.length = False, self.length + 1
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.inside = False
            else:
                self.length += 1
            if self.length > self.limit:
                return True
        return False


def route_native_logs() -> None:
    """Send llama.cpp's own log lines to the ``alphasignal.llamacpp`` logger at INFO (shown with ``-v``).

    llama-cpp-python's ``verbose=False`` still lets some lines through (e.g. ``llama_kv_cache_iswa: ...`` while
    loading Gemma 3), printed straight to stderr even under ``-q``."""
    import llama_cpp

    if _LOG_CALLBACK:
        return

    @llama_cpp.llama_log_callback
    def _forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if _NATIVE_LOG.isEnabledFor(logging.INFO):
            _NATIVE_LOG.info(text.decode("utf-8", "replace").rstrip())

    _LOG_CALLBACK.append(_forward)
    llama_cpp.llama_log_set(_forward, ctypes.c_void_p(0))


def load_llama(path: str | Path, mmproj: str | Path = "", n_ctx: int = 4096) -> tuple[Any, threading.Lock]:
    """The cached ``Llama`` for a GGUF file (and its inference lock); loads it on first use."""
    key = (str(Path(path).resolve()), str(Path(mmproj).resolve()) if mmproj else "", n_ctx)
    with _CACHE_LOCK:
        if key not in _CACHE:
            try:
                from llama_cpp import Llama
            except ImportError:
                raise ModelError("llama-cpp-python is not installed: pip install 'llama-cpp-python>=0.3' "
                                 "(it compiles llama.cpp, ~10 min), or use another provider") from None
            route_native_logs()
            handler = None
            if mmproj:
                from llama_cpp.llama_chat_format import Qwen25VLChatHandler

                handler = Qwen25VLChatHandler(clip_model_path=key[1], verbose=False)
            try:
                # llama.cpp's default thread count (half the cores) on purpose: all cores on a busy machine
                # made generation 20x slower (spinning threads); see benchmarks.
                llm = Llama(model_path=key[0], chat_handler=handler, n_ctx=n_ctx, n_batch=512, seed=0,
                            verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"cannot load GGUF {key[0]}: {exc}: check the file is a complete GGUF model") from None
            if not _CACHE:
                atexit.register(_close_all)
            _CACHE[key] = (llm, threading.Lock())
        return _CACHE[key]


def _close_all() -> None:
    """Free the models while the interpreter is intact (the vision handler's finaliser writes to stderr)."""
    with _CACHE_LOCK:
        for llm, _ in _CACHE.values():
            llm.close()
        _CACHE.clear()


class LlamaCppProvider(Provider):
    """A GGUF model run in this process (``model`` is a .gguf path, or a label with ``gguf_path`` set)."""

    name = "llamacpp"
    supports_json_schema = True
    supports_streaming = True

    def __init__(self, model: str, settings: ProviderSettings | None = None, role: str = "") -> None:
        super().__init__(model, settings, role)
        is_file = model.endswith(".gguf")
        self.path = Path(model if is_file else self.settings.gguf_path).expanduser()
        # Name the file that runs: a label (e.g. the Ollama default llm_model) would mislead errors and meta.
        self.model = self.path.name if self.path.name else model
        self.mmproj = self.settings.mmproj_path if role == "vlm" else ""
        self.supports_vision = bool(self.mmproj)

    def check(self) -> None:
        """The GGUF (and mmproj) files exist and llama-cpp-python imports; does not load the model."""
        input_file(self.path if str(self.path) != "." else "", "GGUF model file",
                   "set pipeline.gguf_path=FILE.gguf (or pass a .gguf path as the model)", error=ModelError)
        if self.mmproj:
            input_file(self.mmproj, "mmproj file", "set pipeline.mmproj_path to the vision projector GGUF written "
                       "with the model", error=ModelError)
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ModelError("llama-cpp-python is not installed: pip install 'llama-cpp-python>=0.3', "
                             "or use another provider") from None

    def request_settings(self) -> dict[str, Any]:
        """The base settings plus the model files (path, size, mtime), the context size and the fixed seed."""
        files = {str(p): [p.stat().st_size, p.stat().st_mtime_ns] if p.is_file() else None
                 for p in (self.path, Path(self.mmproj).expanduser()) if str(p) not in ("", ".")}
        return {**super().request_settings(), "files": files, "n_ctx": self.settings.n_ctx, "seed": 0}

    def _complete(self, messages: Sequence[Message], json_schema: dict[str, Any], timeout: float) -> str:
        self.check()
        llm, lock = load_llama(self.path, Path(self.mmproj).expanduser() if self.mmproj else "", self.settings.n_ctx)
        deadline = time.monotonic() + timeout
        if not lock.acquire(timeout=timeout):
            raise self._timeout(timeout)
        try:
            stream = llm.create_chat_completion(
                messages=openai_messages(messages), temperature=self.settings.temperature,
                max_tokens=self.settings.max_tokens, stream=True,
                response_format={"type": "json_object", "schema": json_schema})
            parts, watch = [], StringWatch()
            for chunk in stream:
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
                if time.monotonic() > deadline:
                    stream.close()
                    raise self._timeout(timeout)
                if watch.feed(parts[-1]):  # a runaway string: the reply cannot be valid, stop paying for it
                    stream.close()
                    break
            # one streamed chunk per sampled token; the context then holds the prompt and the reply
            tokens_out = sum(1 for p in parts if p)
            tokens_in = max(0, int(getattr(llm, "n_tokens", 0)) - tokens_out)
        except ValueError as exc:  # e.g. prompt longer than the context window
            raise ModelError(f"llama.cpp failed on {self.path.name}: {exc}: shorten the input or raise "
                             "n_ctx") from None
        finally:
            lock.release()
        return Completion("".join(parts), tokens_in, tokens_out)

    def _timeout(self, timeout: float) -> ModelError:
        return ModelError(f"llamacpp model {self.model!r} timed out after {timeout:g}s: raise pipeline.timeout "
                          "(e.g. --set pipeline.timeout=120) or use a smaller model")
