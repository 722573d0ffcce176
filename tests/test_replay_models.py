"""The replay with a model behind a real server: the news is judged over HTTP by the loopback Ollama-compatible
server, the chart stays with the builtin reader. The model calls go through the normal pipeline, concurrently,
and each decision's calls are counted.

Two models: the server's canned model (one fixed, grounded reply: every decision must trade on it), and SmolLM2-135M
through llama.cpp, which seldom gives a reply that passes stage 04's grounding checks (README's model table): its
replay either completes or stops with one clean model error, and which one happened is recorded."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from fixtures_llm import SMOLLM2_OLLAMA_NAME, start_ollama_compat

from alphasignal.config import Config, PipelineConfig, ReplayConfig
from alphasignal.errors import ModelError
from alphasignal.replay.report import write_outputs
from alphasignal.replay.run import run_replay

DAYS = pd.bdate_range("2012-06-01", "2012-06-15")


def _replay(url: str, model: str, tmp_path: Path):
    lines = ["timestamp,ticker,headline"] + [
        f"{d.date()}T13:00:00Z,GOOG,Google {'beats estimates' if i % 2 else 'misses estimates and cuts guidance'}"
        for i, d in enumerate(DAYS)]
    news = tmp_path / "news.csv"
    news.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    pc = PipelineConfig(provider="builtin", llm_provider="ollama", llm_model=model, ollama_host=url, concurrency=2)
    rc = ReplayConfig(tickers=("GOOG",), start="2012-06-01", end="2012-06-15", news_file=str(news),
                      output_dir=str(tmp_path / "out"), random_runs=2, bootstrap=100, fsync=False)
    return run_replay(cfg, pc, rc, quiet=True)


@pytest.mark.slow
def test_replay_news_through_a_model_server(tmp_path: Path) -> None:
    reply = json.dumps({"sentiment": "BEARISH", "intensity": 0.4, "key_factors": ["estimates"]})
    with start_ollama_compat({}, canned={"news:canned": reply}) as server:
        o = _replay(server.url, "news:canned", tmp_path)
    write_outputs(o, tmp_path / "out")
    recs = [o.records[j.key] for j in o.jobs]
    assert len(recs) == len(DAYS) and all(r["ok"] for r in recs)
    for r in recs:
        calls = r["decision"]["meta"]["calls"]
        assert calls["vlm"]["provider"] == "builtin" and r["decision"]["sentiment"]["sentiment"] == "BEARISH"
        assert calls["sentiment"]["provider"] == "ollama" and r["headlines"] >= 1 and r["usage"]["calls"] == 2
    # the budget counts requests sent to the server: one news request a decision (the chart reader is local)
    assert o.meter.calls == len(DAYS) and o.meter.decisions == len(DAYS)
    assert (tmp_path / "out" / "replay_report.md").read_text().count("2.00 provider calls") == 1


@pytest.mark.slow
def test_replay_with_smollm2_completes_or_stops_with_one_model_error(ollama_server, tmp_path: Path,
                                                                     valid_rate) -> None:  # noqa: ANN001
    try:
        o = _replay(ollama_server.url, SMOLLM2_OLLAMA_NAME, tmp_path)
    except ModelError as exc:  # no grounded reply within the retries: a clear error naming the model, no outputs
        assert SMOLLM2_OLLAMA_NAME in str(exc) and "\n" not in str(exc)
        assert not (tmp_path / "out" / "trades.csv").exists()
        valid_rate(False)
        return
    valid_rate(True)
    assert all(o.records[j.key]["ok"] for j in o.jobs) and o.meter.decisions == len(DAYS)
