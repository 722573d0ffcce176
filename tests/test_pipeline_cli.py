"""04_signal_pipeline.py as a user runs it (subprocess): demo, batch, and bad input -> exit code, no output file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_llm import start_ollama_compat

from alphasignal.signals.schemas import FinalDecision

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "04_signal_pipeline.py"
# Unreachable servers, so `auto` can never find a model on the test machine.
NO_SERVERS = ["--set", "pipeline.ollama_host=http://127.0.0.1:9", "--set", "pipeline.openai_base_url=http://127.0.0.1:9/v1"]


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_demo_default_provider_falls_back_offline(tmp_path) -> None:
    proc = _run(["--demo", *NO_SERVERS], tmp_path)
    assert proc.returncode == 0, proc.stderr
    decision = FinalDecision.model_validate_json((tmp_path / "decision.json").read_text())
    assert decision.meta["engine"] == "builtin"
    assert decision.meta["calls"]["vlm"]["engine"] == decision.meta["calls"]["sentiment"]["engine"] == "builtin"
    assert "builtin" in proc.stderr  # the fallback is said on stderr
    printed = FinalDecision.model_validate_json(proc.stdout[: proc.stdout.rindex("}") + 1])
    assert printed == decision
    assert [p.name for p in tmp_path.iterdir()] == ["decision.json"]  # no temp files left


def test_batch_writes_jsonl(tmp_path, aapl) -> None:
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


def test_image_with_news_file_writes_the_named_output(tmp_path, aapl) -> None:
    from alphasignal.charts import render_chart

    window = aapl.iloc[-80:]
    (tmp_path / "chart.png").write_bytes(render_chart(window, warmup=20))
    (tmp_path / "news.txt").write_text("Apple beats estimates and raises guidance.", encoding="utf-8")
    close = float(window["Close"].iloc[-1])
    proc = _run(["--image", "chart.png", "--news-file", "news.txt", "--last-close", str(close), "--output",
                 "my_decision.json", *NO_SERVERS], tmp_path)
    assert proc.returncode == 0, proc.stderr
    d = FinalDecision.model_validate_json((tmp_path / "my_decision.json").read_text())
    assert d.sentiment.sentiment == "BULLISH" and d.meta["last_close"] == close and d.vlm_signal.entry_price == close
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "my_decision.json", "news.txt"]


def test_batch_failures_keep_their_line_and_the_worst_exit_code(tmp_path) -> None:
    """A bad image (exit 2) and a chart model that answers garbage (exit 3): every line is written, the failing
    ones with ``"ok": false`` and their error, and the exit code is the worst failure's."""
    from PIL import Image

    Image.new("RGB", (96, 96), "white").save(tmp_path / "a.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [{"id": "model-fails", "image": "a.png", "news": "x", "last_close": 100.0},
            {"id": "bad-image", "image": "bad.png", "news": "x"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with start_ollama_compat({}, canned={"garbage:canned": "I think you should BUY!!!"}) as srv:
        proc = _run(["--batch", "m.jsonl", "--output", "out.jsonl", "--provider", "builtin", "--set",
                     "pipeline.vlm_provider=ollama", "--vlm-model", "garbage:canned", "--set",
                     f"pipeline.ollama_host={srv.url}", "--set", "pipeline.max_retries=0", "--quiet"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(x["id"], x["ok"], x["exit_code"]) for x in lines] == [("model-fails", False, 3), ("bad-image", False, 2)]
    assert "raw replies saved to" in lines[0]["error"] and "not a readable image" in lines[1]["error"]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: 2 of 2 item(s) failed")


def test_gemma_replies_from_issue_18_are_retried_then_exit_3_not_decisions(tmp_path, aapl) -> None:
    """Gemma 3 270M answered all three headlines "BULLISH, intensity 0.0" with the schema's field descriptions as key
    factors, and each became a decision. Replayed here by the loopback server's canned model (that exact reply over
    real HTTP, no inference): every headline is asked 3 times (2 retries with the feedback), then fails with exit 3
    naming the model; no decision is written."""
    import urllib.request

    from alphasignal.charts import render_chart

    gemma = json.dumps({"sentiment": "BULLISH", "intensity": 0.0, "key_factors": [
        "up to 5 short phrases from the news that drove the sentiment", "0 (none) to 1 (extreme)"]})
    headlines = ["Apple beats estimates and raises guidance; shares jump 8%",
                 "Apple misses on revenue, cuts outlook; stock falls 9% after hours",
                 "Apple to hold annual shareholder meeting on March 1"]
    (tmp_path / "c.png").write_bytes(render_chart(aapl.iloc[-80:], warmup=20))
    rows = [{"id": f"h{i}", "image": "c.png", "news": h} for i, h in enumerate(headlines)]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with start_ollama_compat({}, canned={"gemma3:270m": gemma}) as srv:
        proc = _run(["--batch", "m.jsonl", "--output", "out.jsonl", "--provider", "ollama", "--llm-model",
                     "gemma3:270m", "--set", "pipeline.vlm_provider=builtin", "--set",
                     f"pipeline.ollama_host={srv.url}", "--set", "pipeline.max_retries=2", "--quiet"], tmp_path)
        served = json.load(urllib.request.urlopen(f"{srv.url}/_test/requests"))["requests"]
    assert proc.returncode == 3, proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(x["id"], x["ok"], x["exit_code"]) for x in lines] == [("h0", False, 3), ("h1", False, 3), ("h2", False, 3)]
    assert all("decision" not in x or not x["decision"] for x in lines)
    for x in lines:
        assert "'gemma3:270m' gave no valid NewsSentiment in 3 attempt(s)" in x["error"]
        assert "own field description" in x["error"] or "intensity of at least" in x["error"]
    assert served["POST /api/chat"] == 9  # 3 headlines x (1 + 2 retries)


def test_model_not_on_the_server_is_exit_3_naming_ollama_pull(tmp_path) -> None:
    chart = json.dumps({"action": "HOLD", "confidence": 0.5, "entry_price": 100.0})
    with start_ollama_compat({}, canned={"chart:canned": chart}) as srv:
        proc = _run(["--demo", "--provider", "ollama", "--set", f"pipeline.ollama_host={srv.url}", "--vlm-model",
                     "chart:canned", "--llm-model", "no-such-model:1b", "--output", "out.json"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "`ollama pull no-such-model:1b`" in last
    assert not (tmp_path / "out.json").exists()


def test_demo_through_ollama_models_named_as_in_the_readme(tmp_path) -> None:
    chart = json.dumps({"action": "HOLD", "confidence": 0.55, "entry_price": 100.0,
                        "rationale": "flat candles, no trend"})
    news = json.dumps({"sentiment": "BULLISH", "intensity": 0.6, "key_factors": ["beats estimates"]})
    with start_ollama_compat({}, canned={"qwen2.5vl:3b": chart, "qwen2.5:3b": news}) as srv:
        proc = _run(["--demo", "--provider", "ollama", "--vlm-model", "qwen2.5vl:3b", "--llm-model", "qwen2.5:3b",
                     "--set", f"pipeline.ollama_host={srv.url}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    d = FinalDecision.model_validate_json((tmp_path / "decision.json").read_text())
    assert d.meta["providers"] == {"vlm": "ollama", "sentiment": "ollama"} and d.meta["engine"] == "model"
    assert (d.meta["vlm_model"], d.meta["sentiment_model"]) == ("qwen2.5vl:3b", "qwen2.5:3b")
    assert d.vlm_signal.action == d.final_action == "HOLD" and d.sentiment.key_factors == ["beats estimates"]


def test_builtin_batches_run_in_one_process_per_core(tmp_path, aapl, monkeypatch) -> None:
    """In-process CLI run with the real ``decide_offline_batch`` wrapped by a recorder: it gets
    min(pipeline.concurrency, cores, items // 8) worker processes, and the lines match one-by-one decisions."""
    from alphasignal.charts import render_chart
    from alphasignal.cli import build_parser, run
    from alphasignal.cli import signals as app

    rows = []
    for i in range(16):
        w = aapl.iloc[-80 - 5 * i:len(aapl) - 5 * i]
        (tmp_path / f"c{i}.png").write_bytes(render_chart(w, warmup=20))
        rows.append({"id": str(i), "image": f"c{i}.png", "news": "Apple beats estimates"})
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    used: list[int] = []
    real = app.decide_offline_batch
    monkeypatch.setattr(app, "decide_offline_batch", lambda cfg, jobs, workers, on_done=None: used.append(
        workers) or real(cfg, jobs, workers, on_done))
    parser = build_parser("t")
    app.add_arguments(parser)
    out = tmp_path / "out.jsonl"
    assert run(app.main, parser, ["--batch", str(tmp_path / "m.jsonl"), "--output", str(out), "--provider",
                                  "builtin", "--quiet"]) == 0
    workers = min(4, os.cpu_count() or 1, len(rows) // 8)
    assert used == ([workers] if workers > 1 else [])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    one = subprocess.run([sys.executable, str(SCRIPT), "--image", "c7.png", "--news", "Apple beats estimates",
                          "--provider", "builtin", "--output", "one.json", "--quiet"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    ref = FinalDecision.model_validate_json((tmp_path / "one.json").read_text())
    assert FinalDecision.model_validate(lines[7]["decision"]).model_dump(exclude={"meta"}) == ref.model_dump(
        exclude={"meta"})


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
