"""04_signal_pipeline.py as a user runs it (subprocess): demo, batch, and bad input -> exit code, no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alphasignal.signals.schemas import FinalDecision

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "04_signal_pipeline.py"
# Unreachable servers, so `auto` can never find a model on the test machine.
NO_SERVERS = ["--set", "pipeline.ollama_host=http://127.0.0.1:9", "--set", "pipeline.openai_base_url=http://127.0.0.1:9/v1"]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def reader_ready() -> None:
    pytest.importorskip("alphasignal.signals.rules", reason="the chart reader has not landed yet")


def test_demo_default_provider_falls_back_offline(tmp_path, reader_ready) -> None:
    proc = _run(["--demo", *NO_SERVERS], tmp_path)
    assert proc.returncode == 0, proc.stderr
    decision = FinalDecision.model_validate_json((tmp_path / "decision.json").read_text())
    assert decision.meta["engine"] == "builtin"
    assert decision.meta["calls"]["vlm"]["engine"] == decision.meta["calls"]["sentiment"]["engine"] == "builtin"
    assert "builtin" in proc.stderr  # the fallback is said on stderr
    printed = FinalDecision.model_validate_json(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert printed == decision
    assert [p.name for p in tmp_path.iterdir()] == ["decision.json"]  # no temp files left


def test_batch_writes_jsonl(tmp_path, reader_ready, aapl) -> None:
    from alphasignal.charts import render_chart

    for i, end in enumerate((-200, -100)):
        (tmp_path / f"c{i}.png").write_bytes(render_chart(aapl.iloc[end - 80:end], warmup=20))
    (tmp_path / "news.txt").write_text("Profit warning: the company cuts guidance.", encoding="utf-8")
    rows = [{"id": "a", "image": "c0.png", "news": "Apple beats estimates"},
            {"id": "b", "image": "c1.png", "news_file": "news.txt", "last_close": float(aapl["Close"].iloc[-101])}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _run(["--batch", "m.jsonl", "--output", "out.jsonl", "--provider", "builtin", "--quiet"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["a", "b"] and all(x["ok"] for x in lines)
    decisions = [FinalDecision.model_validate(x["decision"]) for x in lines]
    assert decisions[1].sentiment.sentiment == "BEARISH"


def _corrupt_png(tmp: Path) -> list[str]:
    (tmp / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return ["--image", "c.png", "--news", "x"]


def _latin1_news(tmp: Path) -> list[str]:
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp / "c.png")
    (tmp / "n.txt").write_bytes("Soci\u00e9t\u00e9 G\u00e9n\u00e9rale".encode("latin-1"))
    return ["--image", "c.png", "--news-file", "n.txt"]


def _blank_chart(tmp: Path) -> list[str]:
    from PIL import Image

    pytest.importorskip("alphasignal.signals.rules", reason="the chart reader has not landed yet")
    Image.new("RGB", (448, 448), "white").save(tmp / "blank.png")
    return ["--image", "blank.png", "--news", "x", "--provider", "builtin"]


@pytest.mark.parametrize(("make_args", "code", "needle"), [
    (lambda t: ["--image", "missing.png", "--news", "x"], 2, "not found"),
    (lambda t: (t / "e.png").write_bytes(b"") and [] or ["--image", "e.png", "--news", "x"], 2, "empty"),
    (_corrupt_png, 2, "not a readable image"),
    (_latin1_news, 2, "not UTF-8"),
    (_blank_chart, 2, "does not look like a candlestick chart"),
    (lambda t: ["--news", "x"], 2, "--news/--news-file go with --image"),
    (lambda t: [], 2, "nothing to do"),
    (lambda t: ["--demo", "--provider", "ollama", "--set", "pipeline.ollama_host=http://127.0.0.1:9"], 3,
     "ollama serve"),
    (lambda t: ["--demo", "--provider", "openai", "--set", "pipeline.openai_base_url=http://127.0.0.1:9/v1"], 3,
     "127.0.0.1:9"),
    (lambda t: ["--demo", *NO_SERVERS, "--set", "pipeline.require_server=true"], 3, "require_server"),
    (lambda t: ["--demo", "--set", "pipeline.max_news_chars=0"], 2, "max_news_chars"),
], ids=["missing", "empty", "corrupt", "latin1-news", "not-a-chart", "news-alone", "no-mode", "ollama-down",
        "openai-down", "require-server", "bad-config"])
def test_bad_input_exit_codes(tmp_path, make_args, code, needle) -> None:
    proc = _run([*make_args(tmp_path), "--output", "out.json"], tmp_path)
    assert proc.returncode == code, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert err and err[-1].startswith("error: ") and needle in err[-1]
    assert not (tmp_path / "out.json").exists() and not list(tmp_path.glob(".out.json*"))
