"""The replay with a real model behind a real server: SmolLM2-135M judges the news through the loopback
Ollama-compatible server (llama.cpp inference), the chart stays with the builtin reader. The model calls go
through the normal pipeline, concurrently, and each decision's calls are counted."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from fixtures_llm import SMOLLM2_OLLAMA_NAME

from alphasignal.replay.report import write_outputs
from alphasignal.replay.run import run_replay
from config import Config, PipelineConfig, ReplayConfig


@pytest.mark.slow
def test_replay_news_through_a_model_server(ollama_server, tmp_path) -> None:
    days = pd.bdate_range("2012-06-01", "2012-06-15")
    lines = ["timestamp,ticker,headline"] + [
        f"{d.date()}T13:00:00Z,GOOG,Google {'beats estimates' if i % 2 else 'misses estimates and cuts guidance'}"
        for i, d in enumerate(days)]
    news = tmp_path / "news.csv"
    news.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    pc = PipelineConfig(provider="builtin", llm_provider="ollama", llm_model=SMOLLM2_OLLAMA_NAME,
                        ollama_host=ollama_server.url, concurrency=2)
    rc = ReplayConfig(tickers=("GOOG",), start="2012-06-01", end="2012-06-15", news_file=str(news),
                      output_dir=str(tmp_path / "out"), random_runs=2, bootstrap=100, fsync=False)
    o = run_replay(cfg, pc, rc, quiet=True)
    write_outputs(o, tmp_path / "out")
    recs = [o.records[j.key] for j in o.jobs]
    assert len(recs) == len(days) and all(r["ok"] for r in recs)
    for r in recs:
        calls = r["decision"]["meta"]["calls"]
        assert calls["vlm"]["provider"] == "builtin"
        assert calls["sentiment"]["provider"] == "ollama" and r["headlines"] >= 1 and r["usage"]["calls"] == 2
    assert o.meter.calls == 2 * len(days) and o.meter.decisions == len(days)
    assert (tmp_path / "out" / "replay_report.md").read_text().count("2.00 provider calls") == 1
