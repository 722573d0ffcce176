"""An Ollama-API-compatible HTTP server for tests, backed by REAL llama.cpp inference (llama-cpp-python).

This is NOT Ollama (no Ollama binary can be installed on the test machines): it speaks enough of Ollama's
REST API for clients (the ``ollama`` package, langchain-ollama, our providers and stage-03 serving code) to be
tested against real model output on 127.0.0.1.

Endpoints
  GET  /api/version                 {"version": "0.0.0-compat"}
  GET  /api/tags, GET /api/ps       served / loaded models
  POST /api/show                    details, model_info (GGUF metadata), capabilities (completion, vision)
  POST /api/chat                    messages (+ base64 ``images`` for models with an mmproj), ``format`` = "json"
                                    or a JSON schema (llama.cpp grammar), ``options`` (temperature, num_predict,
                                    seed, top_p, top_k, stop), ``stream`` (NDJSON, default true)
  POST /api/generate                prompt (+ system, images, format), same options
  POST /api/pull                    success if the model is served, else an error line: no internet here
  HEAD/POST /api/blobs/sha256:<hex> upload a file (digest checked)
  POST /api/create                  ``from`` an existing model (new name, system, parameters) or ``files`` =
                                    {"name.gguf": digest, "mmproj-name.gguf": digest} of uploaded blobs
  POST /api/copy, DELETE /api/delete
  GET  /v1/models, POST /v1/chat/completions   Ollama's OpenAI-compatible endpoints (no streaming; a
                                    ``json_schema`` or ``json_object`` ``response_format`` becomes the grammar)
  GET  /_test/requests              (not Ollama) requests served so far per "METHOD /path", e.g. "POST /api/chat"
Unknown models answer 404 ``model "x" not found, try pulling it first`` like Ollama.

Serving models: ``--model NAME=PATH.gguf`` or ``--model NAME=PATH.gguf,mmproj=PATH.gguf`` (repeatable; a name
without a tag gets ``:latest``), or ``/api/create`` at run time (``ollama.Client(url).create(model=..., files=...)``
after ``create_blob``). For tests that need one exact reply no model gives reliably (a stop-loss 20 ATR away, say),
``--canned NAME=REPLY.txt`` serves a model that answers every request with that file's text, without inference
(it accepts images). ``--delay SECONDS`` waits that long before each answer, outside the model lock, so a client's
concurrency can be measured. Run::

    python tests/ollama_compat_server.py --model smollm2:135m=SmolLM2.gguf --port 0

It prints ``listening on http://HOST:PORT`` on stdout once it accepts connections (``--port 0`` picks a free one).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

VERSION = "0.0.0-compat"


@dataclass
class ServedModel:
    """One model the server answers for."""

    name: str
    gguf: Path
    mmproj: Path | None = None
    system: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    modified_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    reply: str | None = None  # a canned model: this text answers every request (``gguf`` is the reply file)

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.gguf.resolve()}|{self.mmproj}".encode()).hexdigest()


def full_name(name: str) -> str:
    """Ollama's rule: a name without a tag means ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ModelStore:
    """Served models and their loaded ``Llama`` objects (loaded on first use, one lock each)."""

    def __init__(self, blob_dir: Path) -> None:
        self.models: dict[str, ServedModel] = {}
        self.blob_dir = blob_dir
        self._loaded: dict[tuple[str, str], tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()

    def add(self, model: ServedModel) -> None:
        model.name = full_name(model.name)
        self.models[model.name] = model

    def get(self, name: str) -> ServedModel | None:
        return self.models.get(full_name(name or ""))

    def llama(self, model: ServedModel) -> tuple[Any, threading.Lock]:
        key = (str(model.gguf), str(model.mmproj or ""))
        with self._lock:
            if key not in self._loaded:
                from llama_cpp import Llama

                handler = None
                if model.mmproj:
                    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

                    handler = Qwen25VLChatHandler(clip_model_path=str(model.mmproj), verbose=False)
                llm = Llama(model_path=str(model.gguf), chat_handler=handler, n_ctx=4096, n_batch=512, seed=0,
                            verbose=False)
                self._loaded[key] = (llm, threading.Lock())
            return self._loaded[key]

    def loaded(self) -> list[ServedModel]:
        keys = set(self._loaded)
        return [m for m in self.models.values() if (str(m.gguf), str(m.mmproj or "")) in keys]


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _mime(data: bytes) -> str:
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def _details(model: ServedModel) -> dict[str, Any]:
    return {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"] + (
        ["clip"] if model.mmproj else []), "parameter_size": "", "quantization_level": ""}


def _model_entry(model: ServedModel) -> dict[str, Any]:
    size = model.gguf.stat().st_size + (model.mmproj.stat().st_size if model.mmproj else 0)
    return {"name": model.name, "model": model.name, "modified_at": model.modified_at, "size": size,
            "digest": model.digest, "details": _details(model)}


class Handler(BaseHTTPRequestHandler):
    """Routes Ollama API requests; ``self.server.store`` holds the models."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet unless --verbose
        if self.server.verbose:
            super().log_message(fmt, *args)

    # -- plumbing -------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self) -> dict[str, Any]:
        raw = self._body()
        try:
            data = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            raise _HTTPError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(data, dict):
            raise _HTTPError(400, "request body must be a JSON object")
        return data

    def _send(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream_line(self, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _dispatch(self, routes: dict[str, Any]) -> None:
        path = self.path.split("?", 1)[0]
        with self.server.counts_lock:
            route = f"{self.command} {path}"
            self.server.counts[route] = self.server.counts.get(route, 0) + 1
        handler = routes.get(path) or next((h for p, h in routes.items() if p.endswith("*")
                                            and path.startswith(p[:-1])), None)
        try:
            if handler is None:
                raise _HTTPError(404, f"no route {self.command} {path} on this Ollama-API-compatible test server")
            handler()
        except _HTTPError as exc:
            self._send(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout); nothing to answer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch({"/api/version": lambda: self._send(200, {"version": VERSION}), "/api/tags": self._tags,
                        "/api/ps": self._ps, "/v1/models": self._openai_models,
                        "/": lambda: self._send(200, "Ollama is running"), "/_test/requests": self._requests})

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch({"/api/blobs/*": self._blob_head, "/": lambda: self._send(200)})

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch({"/api/chat": self._chat, "/api/generate": self._generate, "/api/show": self._show,
                        "/api/pull": self._pull, "/api/create": self._create, "/api/copy": self._copy,
                        "/api/blobs/*": self._blob_post, "/v1/chat/completions": self._openai_chat})

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch({"/api/delete": self._delete})

    def _requests(self) -> None:
        with self.server.counts_lock:
            self._send(200, {"requests": dict(self.server.counts)})

    # -- model management -----------------------------------------------------------------------------
    def _model(self, name: str) -> ServedModel:
        model = self.server.store.get(name)
        if model is None:
            raise _HTTPError(404, f'model "{name}" not found, try pulling it first')
        return model

    def _tags(self) -> None:
        self._send(200, {"models": [_model_entry(m) for m in self.server.store.models.values()]})

    def _ps(self) -> None:
        self._send(200, {"models": [{**_model_entry(m), "size_vram": 0, "expires_at": m.modified_at}
                                    for m in self.server.store.loaded()]})

    def _show(self) -> None:
        req = self._json_body()
        model = self._model(req.get("model") or req.get("name", ""))
        metadata = {} if model.reply is not None else dict(self.server.store.llama(model)[0].metadata)
        params = "\n".join(f"{k} {v}" for k, v in model.parameters.items())
        self._send(200, {"modelfile": f"FROM {model.gguf}\n" + (f'SYSTEM """{model.system}"""\n' if model.system
                                                                 else ""),
                         "parameters": params, "template": metadata.get("tokenizer.chat_template", ""),
                         "details": _details(model), "model_info": metadata,
                         "capabilities": ["completion"] + (["vision"] if _sees(model) else []),
                         "modified_at": model.modified_at})

    def _pull(self) -> None:
        req = self._json_body()
        name = req.get("model") or req.get("name", "")
        error = None if self.server.store.get(name) else (
            f"pull model manifest: {name!r} is not available offline: this Ollama-API-compatible test server has "
            "no internet; serve a local GGUF with --model NAME=PATH.gguf or /api/create")
        if not req.get("stream", True):
            self._send(500 if error else 200, {"error": error} if error else {"status": "success"})
            return
        self._start_stream()
        self._stream_line({"status": "pulling manifest"})
        self._stream_line({"error": error} if error else {"status": "success"})
        self._end_stream()

    def _blob_path(self) -> Path:
        digest = self.path.split("/api/blobs/", 1)[1]
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise _HTTPError(400, f"invalid digest {digest!r}: use sha256:<64 hex digits>")
        return self.server.store.blob_dir / digest.replace(":", "-")

    def _blob_head(self) -> None:
        self._send(200 if self._blob_path().is_file() else 404)

    def _blob_post(self) -> None:
        path, data = self._blob_path(), self._body()
        if "sha256:" + hashlib.sha256(data).hexdigest() != path.name.replace("-", ":", 1):
            raise _HTTPError(400, "digest mismatch")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self._send(201)

    def _create(self) -> None:
        req = self._json_body()
        name, store = req.get("model") or req.get("name", ""), self.server.store
        if not name:
            raise _HTTPError(400, "missing model name")
        if req.get("adapters"):
            raise _HTTPError(400, "LoRA adapters are not supported by this test server: merge them into the GGUF")
        if req.get("files"):
            files = {k: store.blob_dir / v.replace(":", "-") for k, v in req["files"].items()}
            missing = [k for k, p in files.items() if not p.is_file()]
            if missing:
                raise _HTTPError(400, f"blobs not uploaded for {missing}: POST /api/blobs/<digest> first")
            projectors = [p for k, p in files.items() if "mmproj" in k.lower() or "projector" in k.lower()]
            weights = [p for k, p in files.items() if p not in projectors and k.endswith(".gguf")]
            if len(weights) != 1:
                raise _HTTPError(400, "files must hold exactly one model .gguf (plus an optional mmproj*.gguf)")
            base = ServedModel(name, weights[0], projectors[0] if projectors else None)
        elif req.get("from"):
            src = self._model(req["from"])
            base = ServedModel(name, src.gguf, src.mmproj, src.system, dict(src.parameters), reply=src.reply)
        else:
            raise _HTTPError(400, "give `from` (an existing model) or `files` (uploaded GGUF blobs)")
        base.system = req.get("system", base.system)
        base.parameters.update(req.get("parameters") or {})
        store.add(base)
        if req.get("stream", True):
            self._start_stream()
            for status in ("parsing GGUF", "writing manifest", "success"):
                self._stream_line({"status": status})
            self._end_stream()
        else:
            self._send(200, {"status": "success"})

    def _copy(self) -> None:
        req = self._json_body()
        src = self._model(req.get("source", ""))
        self.server.store.add(ServedModel(req.get("destination", ""), src.gguf, src.mmproj, src.system,
                                          dict(src.parameters), reply=src.reply))
        self._send(200)

    def _delete(self) -> None:
        req = self._json_body()
        model = self._model(req.get("model") or req.get("name", ""))
        del self.server.store.models[model.name]
        self._send(200)

    # -- inference ------------------------------------------------------------------------------------
    def _messages(self, model: ServedModel, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        if model.system and not any(m.get("role") == "system" for m in raw):
            out.append({"role": "system", "content": model.system})
        for m in raw:
            images = m.get("images") or []
            if images and not _sees(model):
                raise _HTTPError(400, f'model "{model.name}" does not support images (no vision projector)')
            if images:
                parts = []
                for img in images:
                    data = base64.b64decode(img)
                    parts.append({"type": "image_url", "image_url": {
                        "url": f"data:{_mime(data)};base64,{img}"}})
                out.append({"role": m["role"], "content": [*parts, {"type": "text", "text": m.get("content", "")}]})
            else:
                out.append({"role": m.get("role", "user"), "content": m.get("content", "")})
        return out

    def _run(self, model: ServedModel, messages: list[dict[str, Any]], req: dict[str, Any], key: str) -> None:
        opts = {**model.parameters, **(req.get("options") or {})}
        fmt = req.get("format")
        response_format = None
        if fmt == "json":
            response_format = {"type": "json_object"}
        elif isinstance(fmt, dict):
            response_format = {"type": "json_object", "schema": fmt}
        stop = opts.get("stop")
        kwargs = {"temperature": float(opts.get("temperature", 0.8)), "max_tokens": int(opts.get("num_predict", 512))
                  if int(opts.get("num_predict", 512)) > 0 else None, "top_p": float(opts.get("top_p", 0.9)),
                  "top_k": int(opts.get("top_k", 40)), "stop": [stop] if isinstance(stop, str) else stop,
                  "seed": opts.get("seed"), "response_format": response_format}
        stream = req.get("stream", True)
        start = time.perf_counter_ns()
        time.sleep(self.server.delay)
        if model.reply is not None:
            llm, lock = None, threading.Lock()
        else:
            llm, lock = self.server.store.llama(model)
        loaded = time.perf_counter_ns()
        with lock:
            try:
                chunks = _canned(model.reply) if llm is None else llm.create_chat_completion(
                    messages=messages, stream=True, **kwargs)
            except ValueError as exc:
                raise _HTTPError(400, str(exc)) from None
            if stream:
                self._start_stream()
            text, count, reason = [], 0, "stop"
            for chunk in chunks:
                choice = chunk["choices"][0]
                delta = choice["delta"].get("content") or ""
                reason = choice.get("finish_reason") or reason
                if delta:
                    count += 1
                    text.append(delta)
                    if stream:
                        self._stream_line(self._piece(model, key, delta, done=False))
            prompt_tokens = max(0, int(getattr(llm, "n_tokens", 0)) - count)  # the context holds prompt + reply
        end = time.perf_counter_ns()
        final = {**self._piece(model, key, "" if stream else "".join(text), done=True),
                 "done_reason": reason, "total_duration": end - start, "load_duration": loaded - start,
                 "prompt_eval_count": prompt_tokens, "prompt_eval_duration": 0, "eval_count": count,
                 "eval_duration": end - loaded}
        if stream:
            self._stream_line(final)
            self._end_stream()
        else:
            self._send(200, final)

    @staticmethod
    def _piece(model: ServedModel, key: str, text: str, done: bool) -> dict[str, Any]:
        body: Any = {"role": "assistant", "content": text} if key == "message" else text
        return {"model": model.name, "created_at": datetime.now(UTC).isoformat(), key: body, "done": done}

    def _openai_models(self) -> None:
        models = self.server.store.models.values()
        self._send(200, {"object": "list", "data": [{"id": m.name, "object": "model", "created": 0,
                                                     "owned_by": "library"} for m in models]})

    def _openai_chat(self) -> None:
        req = self._json_body()
        model = self._model(req.get("model", ""))
        if req.get("stream"):
            raise _HTTPError(400, "streaming is not supported on this test server's /v1 endpoint")
        fmt = req.get("response_format") or {}
        schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else fmt.get(
            "schema")
        time.sleep(self.server.delay)
        if model.reply is not None:
            text = model.reply
        else:
            llm, lock = self.server.store.llama(model)
            with lock:
                out = llm.create_chat_completion(
                    messages=req.get("messages") or [], temperature=float(req.get("temperature", 0.8)),
                    max_tokens=req.get("max_tokens") or req.get("max_completion_tokens"), seed=req.get("seed"),
                    response_format={"type": "json_object", "schema": schema} if fmt else None)
            text = out["choices"][0]["message"]["content"] or ""
        self._send(200, {"id": "chatcmpl-compat", "object": "chat.completion", "created": int(time.time()),
                         "model": model.name, "choices": [{"index": 0, "finish_reason": "stop", "message": {
                             "role": "assistant", "content": text}}],
                         "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})

    def _chat(self) -> None:
        req = self._json_body()
        model = self._model(req.get("model", ""))
        if req.get("tools"):
            raise _HTTPError(400, f'model "{model.name}" does not support tools on this test server')
        self._run(model, self._messages(model, req.get("messages") or []), req, "message")

    def _generate(self) -> None:
        req = self._json_body()
        model = self._model(req.get("model", ""))
        if not req.get("prompt"):  # Ollama's "load the model" request
            if model.reply is None:
                self.server.store.llama(model)
            self._send(200, {**self._piece(model, "response", "", done=True), "done_reason": "load"})
            return
        raw = ([{"role": "system", "content": req["system"]}] if req.get("system") else []) + [
            {"role": "user", "content": req["prompt"], "images": req.get("images")}]
        self._run(model, self._messages(model, raw), req, "response")


def _sees(model: ServedModel) -> bool:
    """Accepts images: a vision projector is loaded, or the model is canned (it ignores its input)."""
    return bool(model.mmproj) or model.reply is not None


def _canned(reply: str) -> list[dict[str, Any]]:
    """A canned reply as llama-cpp-python's streamed chat chunks (one piece, then the stop)."""
    return [{"choices": [{"delta": {"content": reply}, "finish_reason": None}]},
            {"choices": [{"delta": {}, "finish_reason": "stop"}]}]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], store: ModelStore, verbose: bool = False, delay: float = 0.0) -> None:
        super().__init__(addr, Handler)
        self.store, self.verbose, self.delay = store, verbose, delay
        self.counts: dict[str, int] = {}  # "METHOD /path" -> requests served (GET /_test/requests)
        self.counts_lock = threading.Lock()


def make_server(models: list[ServedModel], host: str = "127.0.0.1", port: int = 0, blob_dir: Path | None = None,
                verbose: bool = False, delay: float = 0.0) -> _Server:
    """A bound (not yet serving) server; call ``serve_forever()`` (e.g. in a thread) and ``shutdown()``."""
    store = ModelStore(blob_dir or Path(tempfile.mkdtemp(prefix="ollama-compat-blobs-")))
    for m in models:
        store.add(m)
    return _Server((host, port), store, verbose, delay)


def _parse_model(spec: str) -> ServedModel:
    name, sep, rest = spec.partition("=")
    if not sep or not rest:
        raise SystemExit(f"--model {spec!r}: use NAME=PATH.gguf or NAME=PATH.gguf,mmproj=PATH.gguf")
    path, _, extra = rest.partition(",mmproj=")
    gguf, mmproj = Path(path), Path(extra) if extra else None
    for p in (gguf, mmproj):
        if p is not None and not p.is_file():
            raise SystemExit(f"--model {spec!r}: file {p} not found")
    return ServedModel(name, gguf, mmproj)


def _parse_canned(spec: str) -> ServedModel:
    name, sep, path = spec.partition("=")
    if not sep or not path or not Path(path).is_file():
        raise SystemExit(f"--canned {spec!r}: use NAME=REPLY.txt with an existing file")
    return ServedModel(name, Path(path), reply=Path(path).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH.gguf[,mmproj=PATH.gguf] (repeatable)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--blob-dir", type=Path, default=None, help="where /api/blobs uploads go (default: a temp dir)")
    ap.add_argument("--canned", action="append", default=[], metavar="NAME=REPLY.txt",
                    help="a model that answers every request with the file's text, without inference (repeatable)")
    ap.add_argument("--delay", type=float, default=0.0, metavar="SECONDS",
                    help="wait this long before each chat/generate answer (outside the model lock)")
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args(argv)
    models = [_parse_model(s) for s in args.model] + [_parse_canned(s) for s in args.canned]
    server = make_server(models, args.host, args.port, args.blob_dir, args.verbose, args.delay)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
