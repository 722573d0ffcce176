"""Stage 04: chart image + news -> validated JSON trading decision (decision.json).

Examples:
  python 04_signal_pipeline.py --demo                                   # offline chart + sample news
  python 04_signal_pipeline.py --image chart.png --news "Apple beats estimates" --output decision.json
  python 04_signal_pipeline.py --image chart.png --news-file news.txt --last-close 187.3
  python 04_signal_pipeline.py --batch manifest.jsonl --output decisions.jsonl
  python 04_signal_pipeline.py --eval --limit 200                       # dataset test split metrics
  python 04_signal_pipeline.py --replay --tickers AAPL,GOOG --start 2022-01-01 --end 2026-06-30 [--every N]
                               [--news-file news.csv]       # day-by-day decisions traded -> results/replay/
  python 04_signal_pipeline.py --demo --provider ollama --vlm-model qwen2.5vl:3b --llm-model qwen2.5:3b

Providers: auto (default: a reachable Ollama / OpenAI-compatible server with the models, else the builtin
offline engine, said on stderr), builtin, ollama, openai, llamacpp (pipeline.gguf_path). Exit codes: 0 ok,
2 bad input, 3 model/server failure, 4 market-data failure.
"""

# Stage 04 entry (``04_signal_pipeline.py``, ``alphasignal signals``): --demo, one chart + news, --batch manifest,
# --eval, or --replay.

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Config
from ..errors import AlphaSignalError, UsageError
from ..fileio import check_output_file, write_atomic
from ..progress import progress_bar
from ..signals.pipeline import (
    SignalPipeline,
    decide_offline_batch,
    decision_json,
    make_item,
    read_manifest,
    row_item,
)
from .flags import add_flags, count, positive_number

if TYPE_CHECKING:
    from ..replay.outcome import Outcome

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The stage-04 options (shared-script options come from ``alphasignal.cli.build_parser``; config shortcuts
    from the flag table)."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--demo", action="store_true", help="a dataset chart (or one rendered from offline AAPL data) "
                      "with sample news")
    mode.add_argument("--image", metavar="PATH", help="chart image (PNG/JPEG)")
    mode.add_argument("--batch", metavar="MANIFEST.jsonl",
                      help='one JSON object per line: {"image": PATH, "news": TEXT | "news_file": PATH}')
    mode.add_argument("--eval", action="store_true", help="score the configured providers on the dataset's test split")
    mode.add_argument("--replay", action="store_true", help="decide day by day over --start..--end and trade the "
                      "decisions as one portfolio (results in replay.output_dir)")
    news = parser.add_mutually_exclusive_group()
    news.add_argument("--news", metavar="TEXT", help="news text for --image")
    add_flags(parser, "signals", ["--news-file"], container=news)
    parser.add_argument("--last-close", type=positive_number, metavar="PRICE",
                        help="last close of the chart (charts without a price axis need it for levels)")
    parser.add_argument("--output", metavar="PATH", help="output file (default: pipeline.output, or "
                        "results/decisions.jsonl for --batch, pipeline.eval_output for --eval)")
    add_flags(parser, "signals", ["--provider", "--vlm-model", "--llm-model"])
    parser.add_argument("--limit", type=count, default=0, metavar="N", help="--eval: at most N test samples")
    add_flags(parser, "signals", ["--compare"])
    add_flags(parser, "signals", ["--cache"])
    rp = parser.add_argument_group(
        "--replay (defaults in [replay])",
        "replay.max_calls / replay.max_tokens_total stop the deciding cleanly. With a model provider they count the "
        "model requests actually sent (retries count; call-cache hits and builtin-engine answers are free); with "
        "the builtin engine alone, max_calls counts its answers: a chart reading per decision, plus a news score "
        "when there are headlines.")
    add_flags(parser, "signals", ["--tickers", "--start", "--end", "--every"], container=rp)
    add_flags(parser, "signals", ["--tickers-file", "--portfolio"], container=rp)
    rp.add_argument("--audit", action="store_true", help="re-decide a seeded sample of replay.audit_n dates with the "
                    "news removed, swapped or name-masked, the chart mirrored and the prices rebased; report how "
                    "often each changes the decision (audit.md in replay.output_dir)")


def main(args: argparse.Namespace, cfg: Config) -> int:
    """Dispatch on the mode; returns the exit code."""
    pc = cfg.pipeline
    if args.audit and not args.replay:
        raise UsageError("--audit goes with --replay: e.g. --replay --audit --tickers AAPL --start 2016-01-01")
    if args.replay and args.output:
        raise UsageError("--output names one file; the replay writes a folder of files: use --set "
                         "replay.output_dir=DIR (default results/replay)")
    if args.replay:  # --news-file here is the CSV/JSONL of timestamped headlines (replay.news_file)
        from ..market.universe import check_tickers
        from ..replay.run import replay_config, replay_to_files

        check_tickers(cfg.replay.tickers, cfg.dataset, "the replay's tickers (--tickers / --tickers-file)")
        if args.audit:
            from ..replay.audit import run_audit

            _, text, path = run_audit(cfg, pc, replay_config(cfg), quiet=args.quiet)
            print(f"{text}\nwrote {path}")
            return 0
        if pc.compare or cfg.replay.portfolio == "rank":  # rungs side by side, or a rank portfolio
            from ..replay.compare_report import compare_command

            print(compare_command(cfg, pc, replay_config(cfg), quiet=args.quiet))
            return 0
        outcome, paths = replay_to_files(cfg, pc, replay_config(cfg), quiet=args.quiet)
        print_replay(outcome, paths["report"].parent, args.quiet)
        return 0
    check_output_file(args.output or (pc.eval_output if args.eval else "results/decisions.jsonl" if args.batch
                                      else pc.output), what="--output")  # before any work
    if args.eval and pc.compare:
        from ..signals.ladder import ladder_command

        print(ladder_command(cfg, pc, args.output or pc.eval_output, limit=args.limit, quiet=args.quiet))
        return 0
    if args.eval:
        from ..signals.evaluate import eval_table, run_eval

        result, path = run_eval(cfg, pc, output=args.output or pc.eval_output, limit=args.limit, quiet=args.quiet)
        print(f"{eval_table(result)}\nsaved {path}")
        return 0
    if (args.news is not None or args.news_file) and not args.image:
        raise UsageError("--news/--news-file go with --image PATH (or use --demo or --batch)")
    if args.batch:
        return _batch(args, pc)
    if not (args.demo or args.image):
        raise UsageError("nothing to do: pass --demo, --image PATH --news TEXT, --batch MANIFEST.jsonl or --eval")
    if args.demo:
        from ..signals.demo import demo_inputs

        image, news, last_close, notes = demo_inputs(cfg)
        item = make_item(pc, image, news, last_close, notes)
    else:
        from ..signals.inputs import read_news_file

        news = read_news_file(args.news_file) if args.news_file else args.news
        item = make_item(pc, args.image, news, args.last_close)
    pipe = SignalPipeline.from_config(pc)  # after the inputs are valid: bad input never waits on a server check
    decision = pipe.decide(item)
    text = decision_json(decision)
    path = write_atomic(args.output or pc.output, text + "\n")
    print(text)
    log.info("decision written to %s", path)
    if not args.quiet:
        print(f"wrote {path} ({decision.final_action} {decision.final_confidence:.2f}, engine "
              f"{decision.meta['engine']})", file=sys.stderr)
    return 0


def _batch(args: argparse.Namespace, pc) -> int:
    rows = read_manifest(args.batch)
    pipe = SignalPipeline.from_config(pc)
    out = Path(args.output or "results/decisions.jsonl")
    workers = min(pc.concurrency, os.cpu_count() or 1, max(1, len(rows) // 8))
    with progress_bar(not args.quiet, len(rows), "decisions") as advance:
        if pipe.offline and workers > 1:  # CPU-bound offline engines: one process per core
            offline_cfg = replace(pc, provider="builtin", vlm_provider="", llm_provider="")
            results = decide_offline_batch(offline_cfg, rows, workers, on_done=advance)
        else:  # model calls: bounded concurrency on one event loop
            results = pipe.run(pipe.adecide_many([lambda r=r: row_item(pipe, r) for r in rows], on_done=advance))
    lines, failed = [], []
    for row, res in zip(rows, results, strict=True):
        if isinstance(res, AlphaSignalError):
            failed.append((row, res))
            lines.append(json.dumps({"id": row.id, "image": str(row.image), "ok": False, "error": str(res),
                                     "exit_code": res.exit_code}))
        else:
            lines.append(json.dumps({"id": row.id, "image": str(row.image), "ok": True,
                                     "decision": res.model_dump(mode="json")}))
    write_atomic(out, "\n".join(lines) + "\n")
    print(f"wrote {len(rows) - len(failed)} decision(s) to {out}" + (f"; {len(failed)} failed" if failed else ""))
    if failed:
        row, exc = failed[0]
        print(f"error: {len(failed)} of {len(rows)} item(s) failed (first: {row.id}: {exc}); their lines in {out} "
              'have "ok": false', file=sys.stderr)
        return max(e.exit_code for _, e in failed)
    return 0


def print_replay(o: Outcome, out: Path, quiet: bool) -> None:
    """The replay's comparison table and its headline on stdout; its notes and timings on stderr."""
    from rich.console import Console
    from rich.table import Table

    from ..replay.report import COLUMNS, headline, metric_rows, timing_line

    table = Table(title=f"replay {', '.join(o.data.frames)} {o.sim.dates[0].date()}..{o.sim.dates[-1].date()} "
                        "(95 % bootstrap intervals)")
    table.add_column("metric", no_wrap=True)
    for c in COLUMNS:
        table.add_column(c, justify="right")
    for row in metric_rows(o):
        table.add_row(*row)
    Console().print(table)
    print(headline(o, out))
    for n in o.notes:
        print(f"note: {n}", file=sys.stderr)
    if not quiet:
        print(timing_line(o), file=sys.stderr)
