"""Stage 03: set up and health-check local model serving (Ollama, llama.cpp server, OpenAI-compatible / vLLM).

``serve`` is the one entry point; each provider module does the work, and it returns a :class:`ServeReport`
(the health rows and the lines to show; ``alphasignal.cli.serve`` prints it). Every failure a user can fix (nothing
listening, port taken, missing GGUF, model absent) is a one-line ``ModelError`` (exit 3) that names the fix.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ..config import Config
from ..errors import ModelError, UsageError
from ..fileio import input_file
from ..finetune.export import ExportPlan
from .health import HealthRow, is_json_reply, note, openai_probe, openai_vision_probe


@dataclass(frozen=True)
class ServeOptions:
    """Command-line choices on top of the config."""

    check_only: bool = False
    stop: bool = False
    recreate: bool = False
    quiet: bool = False


@dataclass
class ServeReport:
    """What stage 03 did: ``before`` lines, then the health table of ``rows`` titled ``title`` (none when the
    title is empty), then the ``after`` lines (the stage 04 flags that use the server among them)."""

    rows: list[HealthRow] = field(default_factory=list)
    title: str = ""
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


def serve(cfg: Config, opts: ServeOptions) -> ServeReport:
    """Run stage 03 for ``cfg.serve.provider``; returns what to show."""
    provider = cfg.serve.provider
    if opts.stop and provider != "llamacpp":  # --stop must never fall through to a setup that pulls models
        raise UsageError(f"--stop stops the llama.cpp server this stage started; serve.provider is {provider!r}: "
                         "add --provider llamacpp")
    if provider == "ollama":
        from .ollama_setup import setup_ollama

        s = cfg.serve
        rows = setup_ollama(s.ollama_host, list(s.models_to_pull), finetuned_name(cfg), modelfile_path(cfg),
                            check_only=opts.check_only, recreate=opts.recreate, quiet=opts.quiet)
        return ServeReport(rows, f"Ollama at {s.ollama_host}", after=[stage04_hint(
            f"--set pipeline.provider=ollama --set pipeline.ollama_host={s.ollama_host} "
            f"--set pipeline.vlm_model={finetuned_name(cfg) or s.models_to_pull[0]}")])
    if provider == "llamacpp":
        return _llamacpp(cfg, opts)
    return _openai(cfg, opts)


def finetuned_name(cfg: Config) -> str:
    """The model name stage 03 serves the fine-tuned model under (``serve.model`` or stage 02's Ollama name)."""
    return cfg.serve.model or cfg.training.ollama_model_name


def modelfile_path(cfg: Config) -> Path:
    """``serve.modelfile`` or the one stage 02 wrote."""
    return Path(cfg.serve.modelfile or ExportPlan.from_config(cfg.training).modelfile).expanduser()


def pid_file(cfg: Config) -> Path:
    """Where the llama.cpp server started by this stage is recorded (one per port)."""
    return Path(cfg.serve.pid_dir).expanduser() / f"llamacpp-{cfg.serve.port}.json"


def gguf_files(cfg: Config) -> tuple[Path, Path | None]:
    plan = ExportPlan.from_config(cfg.training)
    gguf = input_file(cfg.serve.gguf_path or plan.gguf, "GGUF model file", "run python 02_finetune_colab.py (or "
                      "copy its models/gguf/), or set serve.gguf_path=FILE.gguf", error=ModelError)
    if cfg.serve.mmproj_path:
        mmproj = input_file(cfg.serve.mmproj_path, "vision projector", "set serve.mmproj_path to the mmproj-*.gguf "
                            "written next to the model, or to \"\" for text only", error=ModelError)
        return gguf, mmproj
    default = plan.mmproj if not cfg.serve.gguf_path else None
    return gguf, default if default is not None and default.is_file() else None


def _llamacpp(cfg: Config, opts: ServeOptions) -> ServeReport:
    from .llamacpp_server import read_record, start_server, stop_server

    s, pid = cfg.serve, pid_file(cfg)
    if opts.stop:
        record = stop_server(pid)
        return ServeReport(before=[f"stopped llama.cpp server pid {record.pid} at {record.url}" if record else
                                   f"no llama.cpp server recorded in {pid}: nothing to stop"])
    record = read_record(pid)
    if record is None and opts.check_only:
        raise ModelError(f"no llama.cpp server started by this stage on port {s.port}: run python 03_serve_ollama.py "
                         "--provider llamacpp (without --check)")
    if record is None:
        gguf, mmproj = gguf_files(cfg)
        alias = s.model or (cfg.training.ollama_model_name if not s.gguf_path else gguf.stem)
        record, waited = start_server(gguf, mmproj, alias, s.host, s.port, s.max_model_len, pid, s.startup_timeout)
        before = f"started pid {record.pid} in {waited:.1f} s: {shlex.join(record.command)}"
        load_s, vision = waited, mmproj is not None
        size = gguf.stat().st_size + (mmproj.stat().st_size if mmproj else 0)
    else:
        before = f"already running: pid {record.pid} at {record.url}"
        load_s, vision, size = None, None, None
    row = _probe(record.url, record.model, s.api_key, "json_object", vision)
    row.load_s, row.size_bytes = load_s, size
    return ServeReport([row], f"llama.cpp server at {record.url}", [before], [
        f"URL: {record.url}",
        stage04_hint(f"--set pipeline.vlm_provider=openai --set pipeline.openai_base_url={record.url} "
                     f"--set pipeline.vlm_model={record.model}"),
        f"stop it with: python 03_serve_ollama.py --provider llamacpp --set serve.port={s.port} --stop"])


def _probe(url: str, model: str, api_key: str, style: str, vision: bool | None) -> HealthRow:
    row = HealthRow(model, vision=vision)
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {api_key}"}) as client:
        try:
            openai_probe(client, model, style)  # warm-up: first-request costs (grammar, cache) are not throughput
        except httpx.HTTPStatusError:
            if style == "json_object":
                raise
            style = "json_object"  # e.g. llama-cpp-python's server rejects json_schema
        try:
            elapsed, tokens, text = openai_probe(client, model, style)
        except httpx.HTTPError as exc:
            raise ModelError(f"{url} failed the JSON-schema probe for {model} ({exc}): see the server's log") from None
        row.tokens_per_s = tokens / elapsed if tokens and elapsed else None
        row.json_ok = is_json_reply(text)
        if row.vision is None:
            row.vision = openai_vision_probe(client, model)
    return row


def vllm_command(cfg: Config) -> str:
    """The ``vllm serve`` line for stage 02's merged model with this config's GPU settings."""
    s = cfg.serve
    merged = ExportPlan.from_config(cfg.training).merged
    port = str(urlsplit(s.openai_base_url).port or 8000)
    return shlex.join(["vllm", "serve", str(merged), "--served-model-name", finetuned_name(cfg),
                       "--gpu-memory-utilization", str(s.gpu_memory_utilization), "--max-model-len",
                       str(s.max_model_len), "--limit-mm-per-prompt", '{"image": 1}', "--port", port])


def _openai(cfg: Config, opts: ServeOptions) -> ServeReport:
    s = cfg.serve
    hint = f"start one, e.g.: {vllm_command(cfg)}"
    url = s.openai_base_url.rstrip("/")
    try:
        start = time.perf_counter()
        resp = httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {s.api_key}"}, timeout=10)
        resp.raise_for_status()
        listed = {m["id"] for m in resp.json().get("data", [])}
        list_s = time.perf_counter() - start
    except httpx.ConnectError:
        raise ModelError(f"no OpenAI-compatible server at {url}: {hint}") from None
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{url}/models did not answer like an OpenAI-compatible server ({exc}): check "
                         "serve.openai_base_url and serve.api_key") from None
    model = finetuned_name(cfg)
    if model not in listed:
        raise ModelError(f"the server at {url} lacks model {model!r} (it has {', '.join(sorted(listed)) or 'none'}): "
                         f"set serve.model to one of them, or {hint}")
    note(f"{url} lists {len(listed)} model(s) in {list_s:.2f} s", opts.quiet)
    row = _probe(url, model, s.api_key, "json_schema", None)
    return ServeReport([row], f"OpenAI-compatible server at {url}", after=[stage04_hint(
        f"--set pipeline.provider=openai --set pipeline.openai_base_url={url} --set pipeline.vlm_model={model}")])


def stage04_hint(flags: str) -> str:
    """The line naming the stage 04 command that uses what this stage set up."""
    return f"stage 04: python 04_signal_pipeline.py {flags}"


__all__ = ["ServeOptions", "ServeReport", "serve", "vllm_command"]
