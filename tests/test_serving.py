"""Stage 03 on 127.0.0.1: a real llama.cpp server with SmolLM2, the Ollama-API-compatible test server (real
llama.cpp inference behind Ollama's REST API), llama_cpp.server as an OpenAI-compatible endpoint, and error paths."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from conftest import ROOT
from fixtures_llm import SMOLLM2_OLLAMA_NAME, find_port

from alphasignal.cli import run_stage
from alphasignal.config import load_config
from alphasignal.finetune.export import ExportPlan, build_modelfile
from alphasignal.prompts import load_prompt
from alphasignal.serving import vllm_command


def _script():
    spec = importlib.util.spec_from_file_location("serve_script", ROOT / "03_serve_ollama.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run 03_serve_ollama.py in-process; (exit code, stdout, stderr)."""
    mod = _script()
    code = run_stage(mod.stage, mod.__doc__, ["-q", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# ---- llama.cpp server -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_llamacpp_start_health_check_stop(capsys, smollm2_gguf, tmp_path):
    port = find_port()
    common = ["--provider", "llamacpp", "--set", f"serve.port={port}", "--set", f"serve.pid_dir={tmp_path}"]
    code, out, err = cli(capsys, *common, "--set", f"serve.gguf_path={smollm2_gguf}", "--set", "serve.model=smol")
    assert code == 0, err
    pid_file = tmp_path / f"llamacpp-{port}.json"
    record = json.loads(pid_file.read_text())
    url = f"http://127.0.0.1:{port}/v1"
    assert record["url"] == url and record["model"] == "smol"
    os.kill(record["pid"], 0)  # running
    assert "smol" in out and "94 MiB" in out and f"URL: {url}" in out
    row = next(ln for ln in out.splitlines() if "smol" in ln and "MiB" in ln)
    assert "yes" in row  # the schema-constrained probe came back as JSON with the required keys
    assert f"pipeline.openai_base_url={url}" in out and "pipeline.vlm_model=smol" in out
    assert httpx.get(f"{url}/models", timeout=5).json()["data"][0]["id"] == "smol"

    code, out, _ = cli(capsys, *common, "--check")  # reports on the running server, starts nothing
    assert code == 0 and json.loads(pid_file.read_text())["pid"] == record["pid"] and "smol" in out

    code, out, _ = cli(capsys, *common, "--stop")
    assert code == 0 and f"pid {record['pid']}" in out
    assert not pid_file.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/models", timeout=2)
    code, out, _ = cli(capsys, *common, "--stop")
    assert code == 0 and "nothing to stop" in out


def test_llamacpp_port_in_use_is_exit_3(capsys, smollm2_gguf, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = cli(capsys, "--provider", "llamacpp", "--set", f"serve.port={port}",
                           "--set", f"serve.pid_dir={tmp_path}", "--set", f"serve.gguf_path={smollm2_gguf}")
    assert code == 3
    _one_line_error(err, f"port {port} on 127.0.0.1 is in use", "serve.port")
    assert not list(tmp_path.glob("*.json"))


def test_llamacpp_missing_gguf_or_mmproj_is_exit_3(capsys, smollm2_gguf, tmp_path):
    base = ["--provider", "llamacpp", "--set", f"serve.pid_dir={tmp_path}", "--set", f"serve.port={find_port()}"]
    code, _, err = cli(capsys, *base, "--set", f"serve.gguf_path={tmp_path / 'none.gguf'}")
    assert code == 3
    _one_line_error(err, "none.gguf' not found", "02_finetune_colab.py")
    code, _, err = cli(capsys, *base, "--set", f"serve.gguf_path={smollm2_gguf}",
                       "--set", f"serve.mmproj_path={tmp_path / 'mmproj.gguf'}")
    assert code == 3
    _one_line_error(err, "vision projector", "mmproj.gguf' not found")
    code, _, err = cli(capsys, *base, "--check")
    assert code == 3
    _one_line_error(err, "no llama.cpp server started by this stage")


def test_llamacpp_defaults_to_the_stage02_exports(tmp_path):
    from alphasignal.serving import gguf_files

    cfg = load_config(overrides=[f"training.output_dir={tmp_path}"])
    plan = ExportPlan.from_config(cfg.training)
    plan.gguf_dir.mkdir(parents=True)
    plan.gguf.write_bytes(b"GGUF")
    assert gguf_files(cfg) == (plan.gguf, None)
    plan.mmproj.write_bytes(b"GGUF")
    assert gguf_files(cfg) == (plan.gguf, plan.mmproj)


# ---- Ollama (API-compatible test server over real llama.cpp) ----------------------------------------------
def test_ollama_not_running_says_how_to_start_it(capsys):
    code, _, err = cli(capsys, "--set", f"serve.ollama_host=http://127.0.0.1:{find_port()}")
    assert code == 3
    _one_line_error(err, "no Ollama server at", "ollama serve")


@pytest.mark.slow
def test_ollama_check_reports_and_flags_missing_models(capsys, ollama_server, tmp_path):
    host = ["--set", f"serve.ollama_host={ollama_server.url}", "--set", f"training.output_dir={tmp_path}"]
    code, out, err = cli(capsys, "--check", *host, "--set", f"serve.models_to_pull={SMOLLM2_OLLAMA_NAME}")
    assert code == 0, err
    row = next(ln for ln in out.splitlines() if SMOLLM2_OLLAMA_NAME in ln)
    assert "MiB" in row and "yes" in row and " no " in row  # size, JSON ok, no vision
    assert "pipeline.provider=ollama" in out
    code, _, err = cli(capsys, "--check", *host, "--set", "serve.models_to_pull=nope:1b")
    assert code == 3
    _one_line_error(err, "lacks nope:1b", "ollama pull nope:1b")
    code, _, err = cli(capsys, *host, "--set", "serve.models_to_pull=nope:1b")  # tries to pull; the server can't
    assert code == 3
    _one_line_error(err, "pulling nope:1b failed")


@pytest.mark.slow
def test_ollama_registers_the_finetuned_vlm_from_the_stage02_modelfile(capsys, ollama_server, tiny_qwen_vl_gguf,
                                                                      tmp_path):
    import shutil

    import ollama

    cfg = load_config(overrides=[f"training.output_dir={tmp_path}", "training.gguf_quantization=q8_0"])
    plan = ExportPlan.from_config(cfg.training)
    plan.gguf_dir.mkdir(parents=True)
    shutil.copy(tiny_qwen_vl_gguf[0], plan.gguf)
    shutil.copy(tiny_qwen_vl_gguf[1], plan.mmproj)
    prompt = load_prompt("chart_signal")
    plan.modelfile.write_text(build_modelfile(plan, prompt.system, prompt.id).render())
    code, out, err = cli(capsys, "--set", f"serve.ollama_host={ollama_server.url}", "--set",
                         f"training.output_dir={tmp_path}", "--set", "training.gguf_quantization=q8_0",
                         "--set", f"serve.models_to_pull={SMOLLM2_OLLAMA_NAME}", "--set", "serve.model=chart-vlm")
    assert code == 0, err
    shown = ollama.Client(host=ollama_server.url).show("chart-vlm")
    assert "vision" in shown.capabilities and prompt.system in shown.modelfile
    row = next(ln for ln in out.splitlines() if "chart-vlm" in ln)
    assert row.count("yes") >= 1 and "pipeline.vlm_model=chart-vlm" in out


# ---- OpenAI-compatible / vLLM -----------------------------------------------------------------------------
@pytest.mark.slow
def test_openai_endpoint_check_and_missing_model(capsys, llama_server):
    code, out, err = cli(capsys, "--provider", "openai", "--set", f"serve.openai_base_url={llama_server}",
                         "--set", "serve.model=smollm2")
    assert code == 0, err
    assert "smollm2" in out and "pipeline.provider=openai" in out
    code, out, err = cli(capsys, "--provider", "vllm", "--set", f"serve.openai_base_url={llama_server}")
    assert code == 3 and "vllm serve" in out  # the command comes first, then the check
    _one_line_error(err, "lacks model 'alphasignal-vlm'", "smollm2")


def test_openai_unreachable_prints_the_vllm_command(capsys):
    code, _, err = cli(capsys, "--provider", "openai", "--set", f"serve.openai_base_url=http://127.0.0.1:{find_port()}/v1")
    assert code == 3
    _one_line_error(err, "no OpenAI-compatible server", "vllm serve")


def test_vllm_command_uses_the_config_gpu_settings():
    cfg = load_config(overrides=["serve.gpu_memory_utilization=0.75", "serve.max_model_len=8192",
                                 "serve.openai_base_url=http://127.0.0.1:9001/v1", "training.output_dir=out"])
    cmd = vllm_command(cfg)
    assert cmd.startswith(f"vllm serve {Path('out/merged_16bit')} --served-model-name alphasignal-vlm")
    assert "--gpu-memory-utilization 0.75" in cmd and "--max-model-len 8192" in cmd and "--port 9001" in cmd
