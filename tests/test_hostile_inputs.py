"""A careless or hostile user, as subprocesses: every bad input across the six stages ends with exactly one
``error:`` line, exit code 2 (input), 3 (model/server) or 4 (data source), no traceback, and no file created or
changed in the working folder or in the user's files.

Each script runs with the working folder set to an empty temp folder (so default outputs such as decision.json
or results/ would land there and be seen) and every input file in a separate folder whose bytes are compared.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOBODY = "http://127.0.0.1:9"  # the discard port: nothing answers there

S01, S02, S03, S04, S05, S06 = (f"0{i}_{n}.py" for i, n in enumerate(
    ("generate_dataset", "finetune_colab", "serve_ollama", "signal_pipeline", "sweep_backtest",
     "multi_llm_optimize"), start=1))
OFFLINE = ("--set", "dataset.source=offline")

# (id, script, args, allowed exit codes). {f} is the folder of prepared bad files (see _bad_files).
CASES: list[tuple[str, str, tuple[str, ...], set[int]]] = [
    # --- configuration, shared by every stage ---------------------------------------------------------------
    *[(f"{s[:2]}-unknown-key", s, ("--set", "dataset.windw=3"), {2}) for s in (S01, S04, S05, S06)],
    *[(f"{s[:2]}-unknown-section", s, ("--set", "datset.window=3"), {2}) for s in (S01, S03, S05, S06)],
    *[(f"{s[:2]}-malformed-set", s, ("--set", "dataset.window"), {2}) for s in (S01, S04, S05)],
    *[(f"{s[:2]}-missing-config", s, ("--config", "{f}/nope.toml"), {2}) for s in (S01, S02, S03, S04, S05, S06)],
    *[(f"{s[:2]}-bad-toml", s, ("--config", "{f}/bad.toml"), {2}) for s in (S01, S04, S05, S06)],
    *[(f"{s[:2]}-unknown-flag", s, ("--frobnicate",), {2}) for s in (S01, S02, S03, S04, S05, S06)],
    ("01-window-0", S01, ("--set", "dataset.window=0"), {2}),
    ("01-window-text", S01, ("--set", "dataset.window=abc"), {2}),
    ("01-window-float", S01, ("--set", "dataset.window=2.5"), {2}),
    ("01-bool", S01, ("--set", "dataset.hide_context=maybe"), {2}),
    ("01-thresholds", S01, ("--set", "dataset.buy_threshold=-0.1"), {2}),
    ("01-fractions", S01, ("--set", "dataset.val_fraction=0.6", "--set", "dataset.test_fraction=0.5"), {2}),
    ("01-style", S01, ("--set", "dataset.style=neon"), {2}),
    ("01-nan-number", S01, ("--set", "dataset.buy_threshold=nan"), {2}),
    ("01-inf-number", S01, ("--set", "dataset.stop_atr=inf"), {2}),
    # --- stage 01 ---------------------------------------------------------------------------------------------
    ("01-workers-999", S01, ("--workers", "999"), {2}),
    ("01-workers-neg", S01, ("--workers", "-3"), {2}),
    ("01-image-size-huge", S01, ("--set", "dataset.image_size=60000"), {2}),
    ("01-image-size-tiny", S01, ("--set", "dataset.image_size=8"), {2}),
    ("01-limit-neg", S01, ("--limit", "-1"), {2}),
    ("01-no-tickers", S01, ("--tickers", ""), {2}),
    ("01-csv-missing", S01, ("--csv", "{f}/missing.csv"), {2}),
    ("01-csv-header-only", S01, ("--csv", "{f}/header_only.csv"), {2}),
    ("01-csv-huge-price", S01, ("--csv", "{f}/huge_price.csv"), {2}),
    ("01-csv-negative-price", S01, ("--csv", "{f}/negative.csv"), {2}),
    ("01-csv-not-csv", S01, ("--csv", "{f}/binary.csv"), {2}),
    ("01-csv-no-close", S01, ("--csv", "{f}/no_close.csv"), {2}),
    ("01-csv-is-dir", S01, ("--csv", "{f}/a_dir"), {2}),
    ("01-parquet-is-text", S01, ("--parquet", "{f}/text.parquet"), {2}),
    ("01-too-short", S01, ("--csv", "{f}/short.csv"), {2}),
    ("01-output-is-file", S01, (*OFFLINE, "--limit", "5", "--output-dir", "{f}/a_file"), {2}),
    ("01-offline-unknown-ticker", S01, (*OFFLINE, "--tickers", "ZZZZQ"), {2, 4}),
    ("01-start-after-end", S01, (*OFFLINE, "--set", "dataset.start=2030-01-01"), {2, 4}),
    # --- stage 02 ---------------------------------------------------------------------------------------------
    ("02-backend", S02, ("--set", "training.backend=tpu"), {2}),
    ("02-lora-r-0", S02, ("--set", "training.lora_r=0"), {2}),
    ("02-lr-neg", S02, ("--set", "training.learning_rate=-1"), {2}),
    ("02-quant", S02, ("--set", "training.gguf_quantization=q1_x"), {2}),
    ("02-seq-len", S02, ("--set", "training.max_seq_length=16"), {2}),
    ("02-dataset-missing", S02, ("--backend", "hf", "--dataset", "{f}/missing.jsonl"), {2}),
    # --- stage 03 ---------------------------------------------------------------------------------------------
    ("03-stop-without-llamacpp", S03, ("--stop",), {2}),
    ("03-port", S03, ("--set", "serve.port=70000"), {2}),
    ("03-host-scheme", S03, ("--set", "serve.ollama_host=ftp://x"), {2}),
    ("03-provider", S03, ("--set", "serve.provider=tgi"), {2}),
    ("03-ollama-down", S03, ("--check", "--set", f"serve.ollama_host={NOBODY}"), {3}),
    ("03-gguf-missing", S03, ("--provider", "llamacpp", "--set", "serve.gguf_path={f}/missing.gguf",
                              "--set", "serve.pid_dir={f}/pids"), {3}),
    ("03-gguf-dot", S03, ("--provider", "llamacpp", "--set", "serve.gguf_path=.", "--set", "serve.pid_dir={f}/pids"),
     {2, 3}),
    ("03-openai-down", S03, ("--provider", "openai", "--set", f"serve.openai_base_url={NOBODY}/v1"), {3}),
    # --- stage 04 ---------------------------------------------------------------------------------------------
    ("04-nothing-to-do", S04, (), {2}),
    ("04-news-without-image", S04, ("--news", "x"), {2}),
    ("04-output-is-dir", S04, ("--demo", "--output", "{f}/a_dir"), {2}),
    ("04-output-under-file", S04, ("--demo", "--output", "{f}/a_file/decision.json"), {2}),
    ("04-last-close-inf", S04, ("--image", "{f}/chart.png", "--news", "x", "--last-close", "inf"), {2}),
    ("04-last-close-huge", S04, ("--image", "{f}/chart.png", "--news", "x", "--last-close", "1e308"), {2}),
    ("04-last-close-neg", S04, ("--image", "{f}/chart.png", "--news", "x", "--last-close", "-5"), {2}),
    ("04-last-close-nan", S04, ("--image", "{f}/chart.png", "--news", "x", "--last-close", "nan"), {2}),
    ("04-last-close-text", S04, ("--image", "{f}/chart.png", "--news", "x", "--last-close", "abc"), {2}),
    ("04-eval-limit-neg", S04, ("--eval", "--limit", "-1"), {2}),
    ("04-image-missing", S04, ("--image", "{f}/missing.png", "--news", "x"), {2}),
    ("04-image-is-text", S04, ("--image", "{f}/a_file", "--news", "x"), {2}),
    ("04-image-is-dir", S04, ("--image", "{f}/a_dir", "--news", "x"), {2}),
    ("04-image-truncated", S04, ("--image", "{f}/truncated.png", "--news", "x"), {2}),
    ("04-image-empty", S04, ("--image", "{f}/empty.png", "--news", "x"), {2}),
    ("04-news-file-missing", S04, ("--image", "{f}/chart.png", "--news-file", "{f}/missing.txt"), {2}),
    ("04-news-file-binary", S04, ("--image", "{f}/chart.png", "--news-file", "{f}/binary.csv"), {2}),
    ("04-news-file-dir", S04, ("--image", "{f}/chart.png", "--news-file", "{f}/a_dir"), {2}),
    ("04-batch-missing", S04, ("--batch", "{f}/missing.jsonl"), {2}),
    ("04-batch-not-json", S04, ("--batch", "{f}/a_file"), {2}),
    ("04-batch-empty", S04, ("--batch", "{f}/empty.jsonl"), {2}),
    ("04-batch-no-image-key", S04, ("--batch", "{f}/no_image.jsonl"), {2}),
    ("04-provider", S04, ("--demo", "--set", "pipeline.provider=gpt5"), {2}),
    ("04-timeout-0", S04, ("--demo", "--set", "pipeline.timeout=0"), {2}),
    ("04-timeout-inf", S04, ("--demo", "--set", "pipeline.timeout=inf"), {2}),
    ("04-server-required-down", S04, ("--demo", "--provider", "ollama", "--set", "pipeline.require_server=true",
                                      "--set", f"pipeline.ollama_host={NOBODY}"), {3}),
    ("04-gguf-missing", S04, ("--demo", "--provider", "llamacpp", "--set", "pipeline.gguf_path={f}/missing.gguf",
                              "--set", "pipeline.require_server=true"), {2, 3}),
    ("04-max-image-side", S04, ("--demo", "--set", "pipeline.max_image_side=3"), {2}),
    # --- stage 05 ---------------------------------------------------------------------------------------------
    ("05-output-is-dir", S05, ("--output", "{f}/a_dir.csv"), {2}),
    ("05-output-suffix", S05, ("--output", "{f}/out.txt"), {2}),
    ("05-output-under-file", S05, ("--output", "{f}/a_file/out.csv"), {2}),
    ("05-fees-huge", S05, ("--fees-bps", "1e9"), {2}),
    ("05-fees-neg", S05, ("--fees-bps", "-1"), {2}),
    ("05-fees-text", S05, ("--fees-bps", "lots"), {2}),
    ("05-fees-nan", S05, ("--fees-bps", "nan"), {2}),
    ("05-strategy", S05, ("--strategy", "MA_Crosover"), {2}),
    ("05-mode", S05, ("--mode", "sideways"), {2}),
    ("05-fill", S05, ("--fill", "vwap"), {2}),
    ("05-device", S05, ("--device", "tpu"), {2}),
    ("05-engine", S05, ("--engine", "jax"), {2}),
    ("05-max-memory-0", S05, ("--max-memory", "0"), {2}),
    ("05-top-0", S05, ("--top", "0"), {2}),
    ("05-grid-bad-toml", S05, ("--grid", "{short_period = [1,"), {2}),
    ("05-grid-unknown-param", S05, ("--grid", "{short_perod = [5, 10]}"), {2}),
    ("05-grid-empty", S05, ("--grid", "{short_period = []}"), {2}),
    ("05-grid-tiny-step", S05, ("--grid", "{short_period = {min = 1, max = 100, step = 1e-12}}"), {2}),
    ("05-grid-over-max-configs", S05, ("--grid", "{short_period = {min = 2, max = 200, step = 1}, long_period = "
                                                 "{min = 5, max = 400, step = 1}}", "--set", "sweep.max_configs=1000"),
     {2}),
    ("05-grid-range-inf", S05, ("--grid", "{short_period = {min = 2, max = inf, step = 1}}"), {2}),
    ("05-csv-missing", S05, ("--csv", "{f}/missing.csv"), {2}),
    ("05-csv-header-only", S05, ("--csv", "{f}/header_only.csv"), {2}),
    ("05-csv-huge-price", S05, ("--csv", "{f}/huge_price.csv"), {2}),
    ("05-csv-binary", S05, ("--csv", "{f}/binary.csv"), {2}),
    ("05-sort-by", S05, ("--set", "sweep.sort_by=vibes"), {2}),
    ("05-pbo-splits", S05, ("--set", "sweep.pbo_splits=5"), {2}),
    ("05-test-fraction", S05, ("--set", "sweep.test_fraction=1.5"), {2}),
    # --- stage 06 ---------------------------------------------------------------------------------------------
    ("06-rounds-0", S06, ("--rounds", "0"), {2}),
    ("06-budget-0", S06, ("--budget", "0"), {2}),
    ("06-rounds-text", S06, ("--rounds", "many"), {2}),
    ("06-strategy", S06, ("--strategy", "MA_Crosover"), {2}),
    ("06-compare", S06, ("--compare", "grid"), {2}),
    ("06-provider", S06, ("--provider", "gpt5"), {2}),
    ("06-objective", S06, ("--set", "optimizer.objective=vibes"), {2}),
    ("06-show-empty", S06, ("--show", "", "--set", "optimizer.history_db={f}/ours.sqlite"), {2}),
    ("06-show-unknown", S06, ("--show", "nope", "--set", "optimizer.history_db={f}/ours.sqlite"), {2}),
    ("06-resume-unknown", S06, ("--resume", "nope", "--set", "optimizer.history_db={f}/ours.sqlite"), {2}),
    ("06-history-missing-db", S06, ("--history", "--set", "optimizer.history_db={f}/none.sqlite"), {2}),
    ("06-history-text-db", S06, ("--history", "--set", "optimizer.history_db={f}/a_file"), {2}),
    ("06-history-foreign-db", S06, ("--history", "--set", "optimizer.history_db={f}/foreign.sqlite"), {2}),
    ("06-run-foreign-db", S06, ("--rounds", "1", "--set", "optimizer.history_db={f}/foreign.sqlite"), {2}),
    ("06-output-dir-is-file", S06, ("--output-dir", "{f}/a_file", "--set", "optimizer.history_db={f}/h2.sqlite"),
     {2}),
    ("06-grid-outside", S06, ("--set", "optimizer.grid={short_period=[300], long_period=[100], use_ema=[false]}"),
     {2}),
    ("06-server-required-down", S06, ("--provider", "ollama", "--set", "optimizer.require_server=true",
                                      "--set", f"pipeline.ollama_host={NOBODY}"), {3}),
    ("06-csv-missing", S06, ("--set", "dataset.source=csv", "--set", "dataset.csv_path={f}/missing.csv"), {2}),
    # --- size knobs: refused with their limit before any work ----------------------------------------------
    ("05-pbo-splits-64", S05, ("--set", "sweep.pbo_splits=64"), {2}),
    ("05-cluster-999", S05, ("--cluster", "local:999"), {2}),
    ("05-cluster-colons", S05, ("--cluster", "tcp://:::::"), {2}),
    ("05-anchored-alone", S05, ("--anchored",), {2}),
    # --- more of every stage's settings, files and flags (issue 24's second pass) ---------------------------
    # configuration shared by every stage, where the table lacked a stage
    *[(f"{s[:2]}-unknown-key", s, ("--set", "dataset.windw=3"), {2}) for s in (S02, S03)],
    *[(f"{s[:2]}-unknown-section", s, ("--set", "datset.window=3"), {2}) for s in (S02, S04)],
    *[(f"{s[:2]}-malformed-set", s, ("--set", "dataset.window"), {2}) for s in (S02, S03, S06)],
    *[(f"{s[:2]}-bad-toml", s, ("--config", "{f}/bad.toml"), {2}) for s in (S02, S03)],
    *[(f"{s[:2]}-config-is-dir", s, ("--config", "{f}/a_dir"), {2}) for s in (S01, S04, S05, S06)],
    *[(f"{s[:2]}-start-yesterday", s, ("--set", "dataset.start=yesterday"), {2})
      for s in (S04, S05, S06)],
    *[(f"{s[:2]}-end-tz", s, ("--set", "dataset.end=2024-01-31T00:00Z"), {2})
      for s in (S01, S05, S06)],
    # stage 01
    ("01-tickers-file-missing", S01, ("--tickers-file", "{f}/missing.txt"), {2}),
    ("01-tickers-file-empty", S01, ("--tickers-file", "{f}/empty.jsonl"), {2}),
    ("01-tickers-file-binary", S01, ("--tickers-file", "{f}/binary.csv"), {2}),
    ("01-offline-unknown-ticker-file", S01, (*OFFLINE, "--tickers-file", "{f}/tickers_unknown.txt"), {2}),
    ("01-embargo-neg", S01, ("--set", "dataset.embargo=-1"), {2}),
    ("01-renderer", S01, ("--set", "dataset.renderer=opengl"), {2}),
    ("01-label-mode", S01, ("--set", "dataset.label_mode=vibes"), {2}),
    ("01-nan-policy", S01, ("--set", "dataset.nan_policy=guess"), {2}),
    ("01-stride-0", S01, ("--set", "dataset.stride=0"), {2}),
    ("01-horizon-0", S01, ("--set", "dataset.horizon=0"), {2}),
    ("01-output-dir-symlink-file", S01, (*OFFLINE, "--limit", "5", "--output-dir", "{f}/link.json"), {2}),
    # stage 02 (the chart CNN)
    ("02-cnn-window", S02, ("--backend", "cnn", "--set", "training.cnn_window=7"), {2}),
    ("02-cnn-epochs-0", S02, ("--backend", "cnn", "--set", "training.cnn_epochs=0"), {2}),
    ("02-cnn-labels", S02, ("--backend", "cnn", "--set", "training.cnn_labels=sideways"), {2}),
    ("02-cnn-batch-0", S02, ("--backend", "cnn", "--set", "training.cnn_batch=0"), {2}),
    ("02-cnn-dataset-missing", S02, ("--backend", "cnn", "--dataset", "{f}/missing.jsonl"), {2}),
    ("02-cnn-dataset-not-jsonl", S02, ("--backend", "cnn", "--dataset", "{f}/a_file"), {2}),
    ("02-ladder-rung", S02, ("--set", "training.ladder=majority,oracle"), {2}),
    ("02-epochs-0", S02, ("--set", "training.epochs=0"), {2}),
    # stage 03
    ("03-startup-timeout-0", S03, ("--set", "serve.startup_timeout=0"), {2}),
    ("03-port-text", S03, ("--set", "serve.port=http"), {2}),
    ("03-unknown-flag-value", S03, ("--provider", "tgi"), {2}),
    # stage 04
    ("04-compare-unknown-rung", S04, ("--eval", "--compare", "majority,oracle"), {2}),
    ("04-compare-empty", S04, ("--eval", "--compare", ","), {2}),
    ("04-cnn-model-missing", S04, ("--demo", "--set", "pipeline.vlm_provider=cnn", "--set",
                                   "pipeline.vlm_model={f}/no_model"), {2, 3}),
    ("04-cnn-model-is-file", S04, ("--demo", "--set", "pipeline.vlm_provider=cnn", "--set",
                                   "pipeline.vlm_model={f}/a_file"), {2, 3}),
    ("04-cutoff-not-date", S04, ("--demo", "--set", "pipeline.chart_knowledge_cutoff=last spring"), {2}),
    ("04-cutoff-future", S04, ("--demo", "--set", "pipeline.news_knowledge_cutoff=2999-01-01"), {2}),
    ("04-replay-rank-fraction-0", S04, ("--replay", "--set", "replay.rank_fraction=0"), {2}),
    ("04-replay-rank-fraction-big", S04, ("--replay", "--set", "replay.rank_fraction=0.9"), {2}),
    ("04-replay-portfolio", S04, ("--replay", "--portfolio", "yolo"), {2}),
    ("04-replay-tickers-file-missing", S04, ("--replay", "--tickers-file", "{f}/missing.txt"), {2}),
    ("04-replay-every-0", S04, ("--replay", "--every", "0"), {2}),
    ("04-replay-every-text", S04, ("--replay", "--every", "often"), {2}),
    ("04-replay-mode", S04, ("--replay", "--set", "replay.mode=sideways"), {2}),
    ("04-replay-sizing", S04, ("--replay", "--set", "replay.sizing=yolo"), {2}),
    ("04-replay-fraction-0", S04, ("--replay", "--set", "replay.fraction=0"), {2}),
    ("04-replay-cash-0", S04, ("--replay", "--set", "replay.initial_cash=0"), {2}),
    ("04-replay-random-runs-0", S04, ("--replay", "--set", "replay.random_runs=0"), {2}),
    ("04-replay-news-days-0", S04, ("--replay", "--set", "replay.news_days=0"), {2}),
    ("04-replay-news-missing", S04, ("--replay", "--news-file", "{f}/missing.csv"), {2}),
    ("04-replay-news-binary", S04, ("--replay", *OFFLINE, "--tickers", "AAPL", "--start", "2022-01-03", "--end",
                                    "2022-02-01", "--news-file", "{f}/binary.csv"), {2}),
    ("04-replay-decision-time-25", S04, ("--replay", "--set", "replay.decision_time=25:00"), {2}),
    ("04-replay-end-before-start", S04, ("--replay", "--start", "2024-02-01", "--end", "2024-01-01"), {2}),
    ("04-replay-audit-n-0", S04, ("--replay", "--audit", "--set", "replay.audit_n=0"), {2}),
    ("04-audit-without-replay", S04, ("--demo", "--audit"), {2}),
    ("04-eval-block-0", S04, ("--eval", "--set", "pipeline.eval_block=0"), {2}),
    ("04-eval-output-symlink", S04, ("--eval", "--output", "{f}/link.json"), {2}),
    ("04-batch-output-symlink", S04, ("--batch", "{f}/no_image.jsonl", "--output", "{f}/link.json"), {2}),
    ("04-limit-neg", S04, ("--eval", "--limit", "-1"), {2}),
    ("04-cache-mode", S04, ("--demo", "--cache", "sometimes"), {2}),
    ("04-concurrency-0", S04, ("--demo", "--set", "pipeline.concurrency=0"), {2}),
    # stage 05
    ("05-walk-forward-1", S05, ("--walk-forward", "1"), {2}),
    ("05-walk-forward-text", S05, ("--walk-forward", "five"), {2}),
    ("05-user-code-timeout-0", S05, ("--set", "sweep.user_code_timeout_s=0"), {2}),
    ("05-cluster-no-port", S05, ("--cluster", "tcp://127.0.0.1"), {2}),
    ("05-cluster-local-text", S05, ("--cluster", "local:two"), {2}),
    ("05-cluster-scheme", S05, ("--cluster", "http://127.0.0.1:8786"), {2}),
    ("05-slippage-neg", S05, ("--slippage-bps", "-3"), {2}),
    ("05-costs-sum-over", S05, ("--fees-bps", "600", "--slippage-bps", "600"), {2}),
    ("05-entry", S05, ("--entry", "sometimes"), {2}),
    ("05-tickers-file-missing", S05, ("--tickers-file", "{f}/missing.txt"), {2}),
    ("05-csv-one-series-offline-tickers", S05, ("--csv", "{f}/one_series.csv", "--tickers", "AAPL,GOOG"), {2}),
    ("05-output-symlink-meta", S05, ("--output", "{f}/linked_meta.csv"), {2}),
    ("05-strategy-file-missing", S05, ("--strategy-file", "{f}/missing.py", "--strategy", "Mine"), {2}),
    ("05-strategy-file-is-dir", S05, ("--strategy-file", "{f}/a_dir", "--strategy", "Mine"), {2}),
    ("05-strategy-file-binary", S05, ("--strategy-file", "{f}/binary.csv", "--strategy", "Mine"), {2}),
    # stage 06
    ("06-debate-neg", S06, ("--debate", "-1"), {2}),
    ("06-folds-1", S06, ("--set", "optimizer.folds=1"), {2}),
    ("06-holdout-1.5", S06, ("--set", "optimizer.holdout_fraction=1.5"), {2}),
    ("06-oos-method", S06, ("--set", "optimizer.oos_method=vibes"), {2}),
    ("06-patience-neg", S06, ("--set", "optimizer.patience=-1"), {2}),
    ("06-budget-text", S06, ("--budget", "lots"), {2}),
    ("06-user-code-timeout-neg", S06, ("--set", "sweep.user_code_timeout_s=-5"), {2}),
    ("06-strategy-file-missing", S06, ("--strategy-file", "{f}/missing.py", "--strategy", "Mine"), {2}),
    ("06-history-db-is-dir", S06, ("--rounds", "1", "--set", "optimizer.history_db={f}/a_dir"), {2}),
    ("06-history-db-view-only", S06, ("--rounds", "1", "--set", "optimizer.history_db={f}/view_only.sqlite"), {2}),
    ("04-cache-view-only", S04, ("--demo", "--cache", "use", "--set", "pipeline.call_cache={f}/view_only.sqlite"),
     {2, 3}),
    # --- news files for the replay -------------------------------------------------------------------------------
    *[(f"04-replay-news-{n}", S04, ("--replay", *OFFLINE, "--tickers", "AAPL", "--start", "2022-01-03", "--end",
                                    "2022-02-01", "--news-file", f"{{f}}/{file}"), {2})
      for n, file in (("dir", "a_dir"), ("year-1", "news_year_1.csv"), ("open-quote", "news_open_quote.csv"),
                      ("nan-headline", "news_nan.jsonl"))],
    # --- one price series under many names: refused, not given to every ticker -------------------------------
    ("01-csv-one-series-two-tickers", S01, ("--csv", "{f}/one_series.csv", "--tickers", "A,B"), {2}),
    ("05-csv-one-series-two-tickers", S05, ("--csv", "{f}/one_series.csv", "--tickers", "A,B"), {2}),
    ("04-replay-csv-one-series-two-tickers", S04, ("--replay", "--tickers", "A,B", "--start", "2020-03-01", "--set",
                                                   "dataset.source=csv", "--set",
                                                   "dataset.csv_path={f}/one_series.csv"), {2}),
    # --- dates and times: one error naming the form, never a traceback ----------------------------------------
    ("01-start-yesterday", S01, ("--set", "dataset.start=yesterday"), {2}),
    ("01-start-tz", S01, ("--set", "dataset.start=2024-01-01T00:00:00+05:00"), {2}),
    ("04-replay-start-tz", S04, ("--replay", "--start", "2024-01-01T00:00:00+05:00"), {2}),
    ("04-replay-end-z", S04, ("--replay", "--end", "2024-01-31T00:00Z"), {2}),
    ("04-replay-start-empty", S04, ("--replay", "--start", ""), {2}),
    ("04-replay-start-set-z", S04, ("--replay", "--set", "replay.start=2024-01-01T00:00Z"), {2}),
    ("04-replay-news-days-1e300", S04, ("--replay", "--set", "replay.news_days=1e300"), {2}),
    ("04-replay-decision-time-superscript", S04, ("--replay", "--set", "replay.decision_time=\u00b2:00"), {2}),
    ("04-replay-fees-1e9", S04, ("--replay", "--set", "replay.fees_bps=1e9"), {2}),
    ("04-replay-output-file", S04, ("--replay", "--output", "{f}/out.csv"), {2}),
    ("04-replay-weekend", S04, ("--replay", *OFFLINE, "--tickers", "AAPL", "--start", "2024-01-06", "--end",
                                "2024-01-07"), {2}),
    ("05-strategy-file-without-strategy", S05, ("--strategy-file", str(ROOT / "examples" / "ma_crossover_user.py")),
     {2}),
    ("06-strategy-file-without-strategy", S06, ("--strategy-file", str(ROOT / "examples" / "ma_crossover_user.py")),
     {2}),
    ("04-replay-slippage-20000", S04, ("--replay", "--set", "replay.slippage_bps=20000"), {2}),
    ("04-replay-bootstrap-1e8", S04, ("--replay", "--set", "replay.bootstrap=100000000"), {2}),
    ("04-replay-random-runs-1e8", S04, ("--replay", "--set", "replay.random_runs=100000000"), {2}),
    ("04-eval-bootstrap-1e8", S04, ("--eval", "--set", "pipeline.eval_bootstrap=100000000"), {2}),
    ("06-debate-1000000", S06, ("--debate", "1000000"), {2}),
    # --- an existing output that is not a regular file is refused, not replaced -----------------------------
    ("04-output-symlink", S04, ("--demo", "--output", "{f}/link.json"), {2}),
    ("05-output-symlink", S05, ("--output", "{f}/link.csv"), {2}),
]

# What the one error line must say, for the inputs whose message once misled.
NEEDLES = {
    "01-csv-is-dir": "is a folder, not a file", "04-image-is-dir": "is a folder, not a file",
    "04-news-file-dir": "is a folder, not a file", "03-gguf-dot": "no GGUF model file given",
    "01-csv-header-only": "header_only.csv: no data in the requested range: check the file",
    "01-csv-huge-price": "price 1e+300", "05-csv-huge-price": "huge_price.csv: price 1e+300",
    "05-grid-tiny-step": "use a larger step", "05-grid-over-max-configs": "over sweep.max_configs",
    "04-output-is-dir": "is a directory", "05-output-is-dir": "is a directory",
    "06-output-dir-is-file": "is a file, not a folder", "06-history-missing-db": "no history database",
    "06-history-foreign-db": "another program", "06-show-empty": "not found",
    "03-stop-without-llamacpp": "add --provider llamacpp", "01-workers-999": "dataset.workers=999 is invalid",
    "05-pbo-splits-64": "use at most 20", "05-cluster-999": "use at most local:",
    "05-cluster-colons": "use tcp://HOST:PORT", "01-start-yesterday": "is not a date: use YYYY-MM-DD",
    "04-replay-start-tz": "no time or time zone", "04-replay-start-empty": "is not a date",
    "04-replay-decision-time-superscript": "use HH:MM",
    "05-csv-one-series-two-tickers": "holds one price series (no Ticker column) but 2 tickers were named",
    "04-replay-csv-one-series-two-tickers": "holds one price series",
    "04-replay-news-dir": "is a folder, not a file", "04-replay-news-year-1": "before 1900",
    "04-replay-news-open-quote": "runs on over several lines", "04-replay-news-nan-headline": "is not text",
    "05-anchored-alone": "add --walk-forward K", "04-replay-output-file": "use --set replay.output_dir=DIR",
    "05-strategy-file-without-strategy": "name its strategy class with --strategy (classes in it: MyMACrossover)",
    "06-strategy-file-without-strategy": "name its strategy class with --strategy",
    "04-replay-weekend": "no bars in 2024-01-06..2024-01-07 (no trading day in it",
    "02-unknown-key": "did you mean",
    "03-unknown-key": "did you mean",
    "04-start-yesterday": "is not a date",
    "05-start-yesterday": "is not a date",
    "06-start-yesterday": "is not a date",
    "01-end-tz": "no time or time zone",
    "05-end-tz": "no time or time zone",
    "06-end-tz": "no time or time zone",
    "02-ladder-rung": "unknown rung",
    "04-compare-unknown-rung": "oracle",
    "04-replay-end-before-start": "swap",
    "06-history-db-view-only": "another program",
    "04-cache-view-only": "another program",
    "04-replay-fees-1e9": "over 10 % a trade", "04-replay-slippage-20000": "over 10 % a trade",
    "04-replay-bootstrap-1e8": "at most 100,000", "04-replay-random-runs-1e8": "at most 10,000",
    "04-eval-bootstrap-1e8": "100..100,000", "06-debate-1000000": "use 0..20",
    "04-output-symlink": "is a symbolic link, not a regular file", "05-output-symlink": "is a symbolic link",
}


GOOD_CSV_HEAD = "Date,Open,High,Low,Close,Volume\n"


def _rows(n: int, price: str = "100") -> str:
    return "".join(f"2020-01-{1 + i % 28:02d},{price},{price},{price},{price},1000\n" for i in range(n))


def _bad_files(folder: Path) -> None:
    """Every bad input file the table names; also a real history database and a foreign one."""
    folder.mkdir()
    (folder / "a_dir").mkdir()
    (folder / "a_dir.csv").mkdir()
    (folder / "a_file").write_text("just some text\n")
    (folder / "link.json").symlink_to(folder / "a_file")  # outputs that are links to the user's own file
    (folder / "link.csv").symlink_to(folder / "a_file")
    (folder / "bad.toml").write_text("[dataset\nwindow = \n")
    (folder / "header_only.csv").write_text(GOOD_CSV_HEAD)
    days = [f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(300)]
    body = "".join(f"{d},100,101,99,100,1000\n" for d in days)
    (folder / "huge_price.csv").write_text(GOOD_CSV_HEAD + body.replace(f"{days[150]},100,101,99,100",
                                                                        f"{days[150]},1e300,1e300,1e300,1e300"))
    (folder / "negative.csv").write_text(GOOD_CSV_HEAD + body.replace(f"{days[10]},100,101,99,100",
                                                                      f"{days[10]},-5,-4,-6,-5"))
    (folder / "one_series.csv").write_text(GOOD_CSV_HEAD + body)  # a good single-ticker file
    (folder / "tickers_unknown.txt").write_text("AAPL\nZZZZQ\n")
    (folder / "linked_meta.meta.json").symlink_to(folder / "a_file")  # a sweep's metadata path is a link
    view_only = sqlite3.connect(folder / "view_only.sqlite")
    view_only.execute("CREATE VIEW answers AS SELECT 42 AS answer")
    view_only.commit()
    view_only.close()
    news_head = "timestamp,ticker,headline\n"
    (folder / "news_year_1.csv").write_text(news_head + "0001-01-01T00:00:00Z,AAPL,old\n")
    (folder / "news_open_quote.csv").write_text(news_head + '2022-01-03T10:00Z,AAPL,"never closed\n'
                                                "2022-03-01T10:00Z,AAPL,later news\n")
    (folder / "news_nan.jsonl").write_text('{"timestamp": "2022-01-03T10:00Z", "ticker": "AAPL", "headline": NaN}\n')
    (folder / "no_close.csv").write_text("Date,Open,High,Low,Volume\n2020-01-01,1,1,1,1\n")
    (folder / "short.csv").write_text(GOOD_CSV_HEAD + "".join(f"{d},100,101,99,100,1000\n" for d in days[:20]))
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 8)
    (folder / "text.parquet").write_text("not parquet\n")
    (folder / "empty.png").write_bytes(b"")
    (folder / "empty.jsonl").write_text("")
    (folder / "no_image.jsonl").write_text('{"news": "x"}\n')
    png = _png()
    (folder / "chart.png").write_bytes(png)
    (folder / "truncated.png").write_bytes(png[: len(png) // 3])
    foreign = sqlite3.connect(folder / "foreign.sqlite")
    foreign.execute("CREATE TABLE runs (run_id TEXT, note TEXT)")
    foreign.commit()
    foreign.close()
    from alphasignal.storage.history import History

    with History(folder / "ours.sqlite"):
        pass


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (128, 96), "white").save(buf, format="PNG")
    return buf.getvalue()


def _snapshot(*folders: Path) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted(folder.rglob("*")):
            out[str(p)] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, str, dict, dict]]:
    """Run the whole table once, two subprocesses at a time (the machine has two cores)."""
    base = tmp_path_factory.mktemp("hostile")
    bad = base / "bad"
    _bad_files(bad)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1", "COLUMNS": "200"}

    def one(case: tuple[str, str, tuple[str, ...], set[int]]) -> tuple[str, tuple[int, str, dict, dict]]:
        cid, script, args, _ = case
        cwd = base / f"cwd-{cid}"
        cwd.mkdir()
        before = _snapshot(bad)
        argv = [a.replace("{f}", str(bad)) for a in args]
        try:
            res = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=cwd, env=env, capture_output=True,
                                 text=True, timeout=240, stdin=subprocess.DEVNULL)
            code, err = res.returncode, res.stderr
        except subprocess.TimeoutExpired:
            code, err = -1, "timed out after 240 s"
        return cid, (code, err, before, {"cwd": _snapshot(cwd), "bad": _snapshot(bad)})

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(one, CASES))


def test_the_table_is_large_and_covers_every_stage() -> None:
    assert len(CASES) >= 100 and len({c[0] for c in CASES}) == len(CASES) and set(NEEDLES) <= {c[0] for c in CASES}
    assert {c[1] for c in CASES} == {S01, S02, S03, S04, S05, S06}


@pytest.mark.slow
@pytest.mark.parametrize(("cid", "script", "args", "codes"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_with_the_right_exit_code(results, cid, script, args, codes) -> None:
    code, err, before, after = results[cid]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err[-2000:]
    assert code in codes, f"exit {code}, expected {sorted(codes)}; stderr: {err[-800:]}"
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line, got {len(errors)}: {lines[-10:]}"
    assert NEEDLES.get(cid, "") in errors[0], f"{errors[0]!r} should say {NEEDLES[cid]!r}"
    assert after["cwd"] == {}, f"files created in the working folder: {sorted(after['cwd'])[:5]}"
    assert after["bad"] == before, "an input file was created, changed or removed"
