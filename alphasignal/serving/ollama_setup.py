"""``--provider ollama``: check the server, pull missing models, register the fine-tuned GGUF, warm up, health."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import httpx

from ..errors import ModelError, UsageError
from ..finetune.export import Modelfile
from ..progress import progress_bar
from .health import PROBE_MAX_TOKENS, PROBE_MESSAGES, PROBE_SCHEMA, HealthRow, is_json_reply, note

log = logging.getLogger(__name__)

START_HINT = "start it with `ollama serve` (install from https://ollama.com/download), or set serve.ollama_host"


def server_version(host: str, timeout: float = 5.0) -> str:
    """The server's version from ``/api/version``; a one-line ModelError when nothing answers there."""
    try:
        resp = httpx.get(f"{host.rstrip('/')}/api/version", timeout=timeout)
        resp.raise_for_status()
        return str(resp.json().get("version", "?"))
    except httpx.ConnectError:
        raise ModelError(f"no Ollama server at {host}: {START_HINT}") from None
    except (httpx.HTTPError, ValueError) as exc:
        raise ModelError(f"{host} answered /api/version with an error ({exc}): is it an Ollama server? "
                         f"{START_HINT}") from None


def _name(model: Any) -> str:
    return str(getattr(model, "model", None) or model["model"])


def local_models(client: Any) -> dict[str, int | None]:
    """Model name -> size in bytes, as the server lists them (``:latest`` also listed without the tag)."""
    out: dict[str, int | None] = {}
    for m in client.list().models:
        name = _name(m)
        out[name] = getattr(m, "size", None)
        if name.endswith(":latest"):
            out[name.removesuffix(":latest")] = out[name]
    return out


def pull(client: Any, model: str, quiet: bool) -> None:
    """Pull one model with a progress bar of downloaded bytes."""
    with progress_bar(not quiet, None, f"pulling {model}: starting", unit="bytes") as bar:
        try:
            for event in client.pull(model, stream=True):
                bar.update(description=f"pulling {model}: {event.status or ''}", total=event.total or None,
                           completed=event.completed or 0)
        except Exception as exc:  # ollama.ResponseError, httpx errors: all mean the pull failed
            raise ModelError(f"pulling {model} failed ({exc}): check the name on https://ollama.com/library "
                             "and the server's internet access") from None
    note(f"pulled {model}", quiet)


def create_from_modelfile(client: Any, name: str, modelfile_path: Path, quiet: bool = False) -> None:
    """Upload the Modelfile's GGUF files as blobs and create the model (``ollama create NAME -f Modelfile``)."""
    modelfile = Modelfile.parse(modelfile_path.read_text(encoding="utf-8"))
    digests = {}
    for ref in modelfile.froms:
        path = (modelfile_path.parent / ref).resolve()
        if not path.is_file():
            raise UsageError(f"{modelfile_path} refers to {ref}, which does not exist: copy the whole gguf/ folder "
                             "from stage 02 (GGUF + mmproj + Modelfile)")
        note(f"uploading {path.name} ({path.stat().st_size / 2**20:.0f} MiB)", quiet)
        digests[path.name] = client.create_blob(path)
    try:
        client.create(**modelfile.create_request(name, digests))
    except Exception as exc:  # ollama.ResponseError carries the server's reason
        raise ModelError(f"ollama create {name} failed ({exc}): check the GGUF files, or run "
                         f"`ollama create {name} -f {modelfile_path}` to see the server's log") from None
    note(f"created {name} from {modelfile_path}", quiet)


def _vision(client: Any, model: str) -> bool | None:
    try:
        info = client.show(model)
    except Exception:  # an older server or a failed show: capability unknown
        return None
    caps = getattr(info, "capabilities", None)
    if caps is not None:
        return "vision" in caps
    families = getattr(getattr(info, "details", None), "families", None) or []
    return "clip" in families or bool(getattr(info, "projector_info", None))


def health(client: Any, model: str, size: int | None) -> HealthRow:
    """Warm the model up (its load time), then time the schema-constrained probe (tokens/s)."""
    row = HealthRow(model, size_bytes=size, vision=_vision(client, model))
    try:
        warm = client.chat(model=model, messages=[{"role": "user", "content": "hi"}],
                           options={"num_predict": 1, "temperature": 0})
        row.load_s = (warm.load_duration or 0) / 1e9
        start = time.perf_counter()
        reply = client.chat(model=model, messages=PROBE_MESSAGES, format=PROBE_SCHEMA,
                            options={"num_predict": PROBE_MAX_TOKENS, "temperature": 0})
        wall = time.perf_counter() - start
    except Exception as exc:  # the model failed to load or answer
        row.status = f"error: {str(exc)[:60]}"
        return row
    tokens = reply.eval_count or 0
    seconds = (reply.eval_duration or 0) / 1e9 or wall
    row.tokens_per_s = tokens / seconds if tokens and seconds else None
    row.json_ok = is_json_reply(reply.message.content or "")
    return row


def setup_ollama(host: str, wanted: list[str], finetuned: str, modelfile: Path, *, check_only: bool,
                 recreate: bool, quiet: bool) -> list[HealthRow]:
    """Everything ``--provider ollama`` does; returns one health row per wanted model (+ the fine-tuned one)."""
    import ollama

    version = server_version(host)
    note(f"Ollama {version} at {host}", quiet)
    client = ollama.Client(host=host, timeout=600)
    have = local_models(client)
    missing = [m for m in wanted if m not in have]
    if check_only:
        if missing:
            raise ModelError(f"the Ollama server at {host} lacks {', '.join(missing)}: run python 03_serve_ollama.py "
                             f"(without --check) to pull, or `ollama pull {missing[0]}`")
    else:
        for model in missing:
            pull(client, model, quiet)
    targets = list(wanted)
    if finetuned:
        if finetuned in have and not recreate:
            targets.append(finetuned)
        elif check_only:
            note(f"note: fine-tuned model {finetuned} is not registered (run without --check)", quiet)
        elif modelfile.is_file():
            create_from_modelfile(client, finetuned, modelfile, quiet)
            targets.append(finetuned)
        else:
            note(f"note: no Modelfile at {modelfile}: skipping {finetuned} (run 02_finetune_colab.py first, "
                 "or copy its models/gguf/ folder here)", quiet)
    have = local_models(client)
    return [health(client, m, have.get(m)) for m in targets]
