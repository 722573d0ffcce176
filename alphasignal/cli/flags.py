"""The one flag -> config table: every stage's config shortcuts, each named once with its ``section.key``.

A flag in :data:`FLAGS` is a shortcut for ``--set section.key=VALUE``: :func:`flag_overrides` turns the given ones
into ``--set`` overrides that go after the user's own ``--set`` (a flag wins over a ``--set`` of the same key), and
the stage's config is loaded and validated once with them (so ``--show-config`` shows them too). Flags that are not
config values (``--overwrite``, ``--demo``, ``--resume`` ...) stay plain argparse options in the stage's module.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0 (a price, a size)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value < 1e12):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0 and < 1e12")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


@dataclass(frozen=True)
class Flag:
    """One command-line shortcut for a config value.

    ``type`` checks the text as argparse parses it (the config converts and validates it again); ``const`` makes a
    switch that sets ``key`` to that text; ``when`` names another option (its dest) that must be set for the flag to
    apply; ``value`` turns the given text into the config value (e.g. reads a file); ``implies`` gives further
    ``section.key`` values that apply unless another given flag sets the same key."""

    flag: str
    key: str
    help: str
    type: Callable[[str], object] | None = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    const: str | None = None
    when: str | None = None
    value: Callable[[str], str] | None = None
    implies: Callable[[str], dict[str, str]] | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _file_dataset(path: str) -> dict[str, str]:
    """Stage 01's --csv/--parquet: the source is the file, the ticker its name."""
    return {"dataset.source": "csv", "dataset.tickers": Path(path).stem.upper()}


def _file_universe(path: str) -> dict[str, str]:
    """Stage 05's --csv: the source is the file; its tickers: every one of a long table, else the file's name."""
    from ..market.universe import ALL, is_long_table

    return {"dataset.source": "csv", "dataset.tickers": ALL if is_long_table(path) else Path(path).stem}


def _tickers_file(path: str) -> str:
    from ..market.universe import read_tickers_file

    return ",".join(read_tickers_file(path))


def _upper_tickers(text: str) -> str:
    return ",".join(dict.fromkeys(t.strip().upper() for t in text.split(",") if t.strip()))


def _strategy(section: str, names: str) -> tuple[Flag, Flag]:
    return (Flag("--strategy", f"{section}.strategy", f"{names}, or the class name of a strategy in --strategy-file"),
            Flag("--strategy-file", f"{section}.strategy_file", "a Python file with your own strategy class (see the "
                 "README's \"Write your own strategy\")", metavar="FILE.py"))


_CACHE = Flag("--cache", "pipeline.cache_mode", "model-call cache in pipeline.call_cache: use (answer repeated calls "
              "from it, store new ones), refresh (always call, overwrite), off (default off); it also keeps the "
              "builtin chart reader's readings and the replay's rendered charts", choices=("use", "refresh", "off"))
_CLUSTER = Flag("--cluster", "sweep.cluster", "Dask: local[:N] (N worker processes here) or tcp://HOST:8786 (a "
                "running scheduler); default in-process")
_FILE_HELP = ("OHLCV file (Date, Open, High, Low, Close[, Volume]); the ticker is the file name unless --tickers is "
              "given")

FLAGS: dict[str, tuple[Flag, ...]] = {
    "dataset": (
        Flag("--csv", "dataset.csv_path", _FILE_HELP, metavar="PATH", implies=_file_dataset),
        Flag("--parquet", "dataset.csv_path", _FILE_HELP, metavar="PATH", implies=_file_dataset),
        Flag("--tickers", "dataset.tickers", "comma-separated tickers (offline: AAPL, GOOG)", metavar="A,B"),
        Flag("--tickers-file", "dataset.tickers", "universe: one ticker a line (# comments allowed); one dataset "
             "over all of them, split by date across all at once", metavar="FILE", value=_tickers_file),
        Flag("--limit", "dataset.limit", "keep only the most recent N windows (quick runs; 0 = all). Windows whose "
             "labels reach into the next split are then dropped, so a few fewer than N can remain", metavar="N"),
        Flag("--output-dir", "dataset.output_dir", "where to write training_data.jsonl, images/, dataset_card.md "
             "(default: dataset)", metavar="DIR"),
        Flag("--workers", "dataset.workers", "rendering processes (0 = all cores)", metavar="N"),
    ),
    "finetune": (
        Flag("--backend", "training.backend", "training backend (cnn: the chart CNN, CPU)",
             choices=("unsloth", "hf", "cnn")),
        Flag("--dataset", "training.dataset_path", "training_data.jsonl"),
        Flag("--max-steps", "training.max_steps", "optimizer steps (overrides epochs)", type=int),
    ),
    "serve": (
        Flag("--provider", "serve.provider", "serving backend", choices=("ollama", "llamacpp", "openai", "vllm")),
    ),
    "signals": (
        Flag("--provider", "pipeline.provider", "provider for both calls",
             choices=("auto", "builtin", "ollama", "openai", "llamacpp")),
        Flag("--vlm-model", "pipeline.vlm_model", "chart (vision) model", metavar="NAME"),
        Flag("--llm-model", "pipeline.llm_model", "news model", metavar="NAME"),
        _CACHE,
        Flag("--compare", "pipeline.compare", "--eval: score these rungs on the same test windows and print the "
             "ladder table (of majority, momentum, builtin, cnn, vlm; majority is always scored); --replay: trade "
             "these rungs (momentum, builtin, cnn, vlm) through the same portfolio rules in one run", metavar="A,B"),
        Flag("--tickers", "replay.tickers", "tickers to replay", metavar="A,B", value=_upper_tickers),
        Flag("--tickers-file", "replay.tickers", "universe to replay: one ticker a line (# comments allowed)",
             metavar="FILE", value=_tickers_file),
        Flag("--portfolio", "replay.portfolio", "signals: trade each decision with its levels; rank: at each "
             "rebalance (--every) rank the tickers by the rung's P(up), long the top replay.rank_fraction, short the "
             "bottom", choices=("signals", "rank")),
        Flag("--start", "replay.start", "first decision date", metavar="DATE"),
        Flag("--end", "replay.end", "last bar", metavar="DATE"),
        Flag("--every", "replay.every", "a decision every N bars", type=count, metavar="N"),
        Flag("--news-file", "replay.news_file", "UTF-8 text file with the news for --image; with --replay a "
             "CSV/JSONL of timestamp, ticker, headline", metavar="PATH", when="replay"),
    ),
    "sweep": (
        *_strategy("sweep", "MA_Crossover | Bollinger_Breakout | RSI_Reversion | MACD | Donchian_Breakout"),
        Flag("--grid", "sweep.grid", "TOML table of value lists or {min, max, step} ranges"),
        Flag("--tickers", "dataset.tickers", "comma-separated tickers"),
        Flag("--tickers-file", "dataset.tickers", "universe: one ticker a line (# comments allowed)", metavar="FILE",
             value=_tickers_file),
        Flag("--mode", "sweep.mode", "long_only | long_short"),
        Flag("--fill", "sweep.fill", "close (signal at close t, held from t+1) | next_open"),
        Flag("--entry", "sweep.entry", "MA_Crossover/MACD: state (hold the side of the cross, default) | cross "
             "(enter only on a crossover event, as backtesting.py)"),
        Flag("--fees-bps", "sweep.fees_bps", "fees in basis points of traded value"),
        Flag("--slippage-bps", "sweep.slippage_bps", "slippage in basis points of the fill price"),
        Flag("--device", "sweep.device", "auto | cpu | gpu"),
        Flag("--engine", "sweep.engine", "numba | numpy | cupy"),
        Flag("--max-memory", "sweep.max_memory_mb", "memory bound in MB for one chunk of configurations"),
        Flag("--output", "sweep.output", "results file (.csv or .parquet); metadata JSON is written beside it"),
        Flag("--top", "sweep.top_n", "rows in the printed top-N table"),
        Flag("--source", "dataset.source", "data source: auto | yfinance | offline | csv"),
        Flag("--csv", "dataset.csv_path", "CSV/Parquet OHLCV file (implies --source csv)", implies=_file_universe),
        Flag("--walk-forward", "sweep.walk_forward", "also run walk-forward optimisation over K folds (>= 2): "
             "choose by sweep.sort_by on each training window, trade it on the next; stitched OOS metrics",
             metavar="K"),
        Flag("--anchored", "sweep.anchored", "walk-forward training windows start at the first bar (default: they "
             "roll)", const="true"),
        _CLUSTER,
    ),
    "optimize": (
        *_strategy("optimizer", "strategy to optimise, e.g. MA_Crossover or Bollinger_Breakout"),
        Flag("--provider", "optimizer.provider", "model provider for every agent: auto, builtin, ollama, openai, "
             "llamacpp"),
        Flag("--rounds", "optimizer.rounds", "maximum number of agent rounds", type=int),
        Flag("--budget", "optimizer.budget", "maximum number of agent backtests in total", type=int),
        Flag("--debate", "optimizer.debate_rounds", "debate N rounds and vote before backtesting proposals",
             type=int, metavar="N"),
        Flag("--compare", "optimizer.compare", "also run these optimizers (random search, Optuna TPE, walk-forward "
             "optimisation) with the same backtest budget", metavar="random,tpe,wfo"),
        Flag("--output-dir", "optimizer.output_dir", "where the report and PNGs go"),
        _CLUSTER,
        _CACHE,
    ),
    "dashboard": (
        Flag("--host", "dashboard.host", "interface to listen on (default 127.0.0.1: this machine only); 0.0.0.0 "
             "exposes the dashboard to the network"),
        Flag("--port", "dashboard.port", "port", type=int),
    ),
}


def add_flags(parser: argparse.ArgumentParser, stage: str, names: Sequence[str] | None = None,
              container: argparse._ActionsContainer | None = None) -> None:
    """Add ``stage``'s table flags (or only ``names``) to ``container`` (default ``parser``) and record them on
    ``parser`` for :func:`flag_overrides`."""
    table = FLAGS[stage]
    chosen = [f for f in table if names is None or f.flag in names]
    if names is not None and len(chosen) != len(names):
        raise KeyError(f"{stage} has no table flag among {sorted(set(names) - {f.flag for f in chosen})}")
    where = parser if container is None else container
    for f in chosen:
        text = f.help if f.key in f.help else f"{f.help} ({f.key})"
        if f.const is not None:
            where.add_argument(f.flag, action="store_const", const=f.const, help=text)
        else:
            where.add_argument(f.flag, type=f.type, metavar=f.metavar, choices=f.choices, help=text)
    parser.set_defaults(config_flags=[*(parser.get_default("config_flags") or ()), *chosen])


def flag_overrides(flags: Sequence[Flag], args: argparse.Namespace) -> list[str]:
    """The ``section.key=value`` overrides the given flags stand for: implied values first, then the flags' own
    (a flag the user gave wins over a value another flag implies)."""
    given, implied = {}, {}
    for f in flags:
        raw = getattr(args, f.dest, None)
        if raw is None or (f.when and not getattr(args, f.when, None)):
            continue
        text = str(raw)
        given[f.key] = f.value(text) if f.value else text
        for key, value in (f.implies(text) if f.implies else {}).items():
            implied.setdefault(key, value)
    return [f"{k}={v}" for k, v in {**{k: v for k, v in implied.items() if k not in given}, **given}.items()]
