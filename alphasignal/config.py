"""alphasignal configuration: frozen dataclasses, one section per stage.

Loading order: defaults -> optional TOML file (``--config file.toml``) ->
``--set section.key=value`` overrides. Values are type-checked against the
field annotations; unknown sections or keys fail with a suggestion (the generic
machinery is alphasignal/configio.py). Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import configio
from .configio import ConfigError
from .provider_settings import ProviderSettings

_P = ProviderSettings()  # the model-server defaults, written once (alphasignal/provider_settings.py)


# Size knobs with a bound (refused before any work, like the grid's max_configs): beyond these the memory or the
# time grows past what any machine this runs on can give, and the OS would end the process with no message.
MAX_BOOTSTRAP = 100_000
MAX_RANDOM_RUNS = 10_000
MAX_PBO_SPLITS = 20
MAX_DEBATE_ROUNDS = 20
MAX_COST_BPS = 1000  # fees + slippage of one trade, in basis points: over 10 % is a unit mistake (the replay and
# stage 05 share it; slippage beyond it would even give negative fill prices)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _check_date(value: str, key: str, *, optional: bool = False, empty: str = "no bound") -> None:
    """``value`` is a calendar date written YYYY-MM-DD (ASCII digits; no time, no time zone), or "" if
    ``optional`` (meaning ``empty``): bars are daily, and a time zone would silently move the day."""
    if optional and value == "":
        return
    ok = len(value) == 10 and value.isascii() and value[4] == value[7] == "-"
    try:
        ok = ok and bool(datetime.date.fromisoformat(value))
    except ValueError:
        ok = False
    blank = f' ("" = {empty})' if optional else ""
    _check(ok, f"{key}={value!r} is not a date: use YYYY-MM-DD, e.g. 2024-01-31{blank}; no time or time zone")


@dataclass(frozen=True)
class DatasetConfig:
    """Market data and stage 01 (chart dataset) settings."""

    tickers: tuple[str, ...] = ("AAPL",)
    start: str = "2010-01-01"
    end: str = "2026-08-01"
    interval: str = "1d"
    source: str = "auto"  # auto | yfinance | offline | csv
    csv_path: str = ""  # CSV or Parquet file used when source == "csv"
    cache_dir: str = "~/.cache/alphasignal"
    nan_policy: str = "drop"  # drop | ffill | error
    min_length: int = 100
    download_retries: int = 3
    window: int = 60
    stride: int = 5
    horizon: int = 5
    label_mode: str = "volatility"  # absolute | volatility
    buy_threshold: float = 0.5  # return (absolute) or multiples of sigma*sqrt(h) (volatility)
    sell_threshold: float = -0.5
    atr_period: int = 14
    stop_atr: float = 1.5
    take_profit_atr: float = 3.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    embargo: int = 0  # bars between splits; 0 means "equal to horizon"
    image_size: int = 448
    volume_panel: bool = True
    moving_averages: tuple[int, ...] = (10, 20)
    bollinger: bool = False
    hide_context: bool = True  # hide dates, ticker and absolute price scale
    style: str = "classic"  # classic | charles | yahoo | hollow
    renderer: str = "fast"  # fast (one reused figure) | mplfinance (mpf.plot per chart, same layout and candles)
    workers: int = 0  # 0 = number of CPU cores
    output_dir: str = "dataset"
    seed: int = 42
    limit: int = 0  # > 0: keep only the most recent N windows (quick runs)

    def __post_init__(self) -> None:
        _check(len(self.tickers) > 0,
               "dataset.tickers is empty: name at least one ticker, e.g. --set dataset.tickers=AAPL")
        _check_date(self.start, "dataset.start", optional=True)
        _check_date(self.end, "dataset.end", optional=True)
        _check(self.source in {"auto", "yfinance", "offline", "csv"},
               f"dataset.source={self.source!r} is invalid: use auto, yfinance, offline or csv")
        _check(self.nan_policy in {"drop", "ffill", "error"},
               f"dataset.nan_policy={self.nan_policy!r} is invalid: use drop, ffill or error")
        _check(self.label_mode in {"absolute", "volatility"},
               f"dataset.label_mode={self.label_mode!r} is invalid: use absolute or volatility")
        for name in ("window", "stride", "horizon", "atr_period", "min_length", "image_size"):
            _check(getattr(self, name) > 0, f"dataset.{name} must be > 0 (got {getattr(self, name)})")
        _check(self.sell_threshold < 0 < self.buy_threshold,
               f"dataset thresholds invalid: need sell_threshold < 0 < buy_threshold "
               f"(got {self.sell_threshold}, {self.buy_threshold})")
        _check(self.label_mode == "volatility" or self.sell_threshold > -1,
               f"dataset.sell_threshold={self.sell_threshold} is impossible for label_mode=absolute "
               "(a return is > -1): use e.g. -0.02")
        _check(self.limit >= 0, f"dataset.limit must be >= 0 (got {self.limit}); 0 means no limit")
        _check(self.stop_atr > 0 and self.take_profit_atr > 0, "dataset.stop_atr and take_profit_atr must be > 0")
        _check(0 <= self.val_fraction < 1 and 0 <= self.test_fraction < 1
               and self.val_fraction + self.test_fraction < 1,
               "dataset.val_fraction + test_fraction must be in [0, 1)")
        _check(self.embargo >= 0, "dataset.embargo must be >= 0")
        _check(self.style in {"classic", "charles", "yahoo", "hollow"},
               f"dataset.style={self.style!r} is invalid: use classic, charles, yahoo or hollow")
        _check(self.renderer in {"fast", "mplfinance"},
               f"dataset.renderer={self.renderer!r} is invalid: use fast or mplfinance")
        _check(all(p > 1 for p in self.moving_averages), "dataset.moving_averages periods must be > 1")
        _check(112 <= self.image_size <= 4096, f"dataset.image_size={self.image_size} is invalid: use 112..4096 "
               "pixels (448 is what the chart model is trained on)")
        _check(0 <= self.workers <= 64, f"dataset.workers={self.workers} is invalid: use 0 (all cores) .. 64")

    @property
    def effective_embargo(self) -> int:
        """Gap in bars between splits; never shorter than the label horizon."""
        return max(self.embargo, self.horizon)


@dataclass(frozen=True)
class TrainingConfig:
    """Stage 02 (QLoRA fine-tuning) settings."""

    # GGUF types llama.cpp writes (converter: f32/f16/bf16/q8_0; the rest via llama_model_quantize).
    GGUF_TYPES: typing.ClassVar[frozenset[str]] = frozenset({
        "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_k_s",
        "q4_k_m", "q5_k_s", "q5_k_m", "q6_k", "iq4_nl", "iq4_xs"})

    base_model: str = "unsloth/Qwen2.5-VL-3B-Instruct"
    backend: str = "unsloth"  # unsloth | hf | cnn (the compact chart CNN on OHLC bitmaps, CPU, minutes)
    load_in_4bit: bool = True
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 2
    grad_accumulation: int = 4
    max_seq_length: int = 2048
    eval_samples: int = 20
    eval_max_new_tokens: int = 160  # a TradingSignal answer is ~60-100 tokens
    # after training, the ladder: these rungs beside the fine-tuned model on the test split (empty: no ladder)
    ladder: tuple[str, ...] = ("majority", "momentum", "builtin")
    ladder_samples: int = 0  # at most this many test windows in the ladder (0 = all; the model answers each)
    seed: int = 3407
    dataset_path: str = "dataset/training_data.jsonl"
    output_dir: str = "models"
    gguf_quantization: str = "q4_k_m"
    ollama_model_name: str = "alphasignal-vlm"
    # backend "cnn" (alphasignal/finetune/cnn.py): bitmap window in days (5 -> 32x15, 20 -> 64x60, 60 -> 96x180)
    cnn_window: int = 5
    cnn_width: int = 32  # channels of the first conv block, doubling per block (the anchor's 64: 2-3x slower here)
    cnn_epochs: int = 30  # at most; early stopping on the val loss
    cnn_patience: int = 5  # epochs without a better val loss before stopping
    cnn_batch: int = 128
    cnn_learning_rate: float = 1e-4  # Adam; on the default dataset 1e-3 gave a higher best val loss (1.097 vs 1.094)
    cnn_dropout: float = 0.5
    cnn_labels: str = "action"  # action (BUY/SELL/HOLD, stage 01's labels) | updown (forward return > 0)
    cnn_threads: int = 2  # torch threads (deterministic kernels: the same seed gives the same weights)
    cnn_output_dir: str = "models/chart_cnn"

    def __post_init__(self) -> None:
        _check(self.backend in {"unsloth", "hf", "cnn"},
               f"training.backend={self.backend!r} is invalid: use unsloth, hf or cnn")
        _check(self.cnn_window in {5, 20, 60}, f"training.cnn_window={self.cnn_window} is invalid: use 5, 20 or 60 "
               "(days per bitmap)")
        _check(self.cnn_width > 0 and self.cnn_epochs > 0 and self.cnn_patience > 0 and self.cnn_batch >= 2
               and self.cnn_threads > 0, "training.cnn_width, cnn_epochs, cnn_patience and cnn_threads must be > 0, "
               "cnn_batch >= 2")
        _check(self.cnn_learning_rate > 0 and 0 <= self.cnn_dropout < 1,
               "training.cnn_learning_rate must be > 0 and training.cnn_dropout in [0, 1)")
        _check(self.cnn_labels in {"action", "updown"},
               f"training.cnn_labels={self.cnn_labels!r} is invalid: use action or updown")
        _check(bool(self.cnn_output_dir.strip()), "training.cnn_output_dir is empty: name a folder, e.g. "
               "models/chart_cnn")
        _check(self.lora_r > 0 and self.lora_alpha > 0, "training.lora_r and lora_alpha must be > 0")
        _check(0 <= self.lora_dropout < 1, "training.lora_dropout must be in [0, 1)")
        _check(self.learning_rate > 0, "training.learning_rate must be > 0")
        _check(self.batch_size > 0 and self.grad_accumulation > 0,
               "training.batch_size and grad_accumulation must be > 0")
        _check(self.epochs > 0 and self.max_steps >= 0, "training.epochs must be > 0 and training.max_steps >= 0")
        _check(self.max_seq_length >= 256, "training.max_seq_length must be >= 256 (a chart alone takes ~100+ tokens)")
        _check(self.eval_samples >= 0 and self.eval_max_new_tokens > 0,
               "training.eval_samples must be >= 0 and training.eval_max_new_tokens > 0")
        rungs = ("majority", "momentum", "builtin", "cnn", "vlm")  # alphasignal.evaluation.ladder.RUNGS
        unknown = [r for r in self.ladder if r not in rungs]
        _check(not unknown, f"training.ladder: unknown rung {', '.join(map(repr, unknown))}: use a comma-separated "
               f"list of {', '.join(rungs)} (the fine-tuned model is the vlm rung)")
        _check(self.ladder_samples >= 0, "training.ladder_samples must be >= 0 (0 = every test window)")
        _check(bool(self.target_modules), "training.target_modules is empty: name the layers LoRA adapts, e.g. q_proj")
        _check(self.gguf_quantization.lower() in self.GGUF_TYPES,
               f"training.gguf_quantization={self.gguf_quantization!r} is invalid: use one of "
               f"{', '.join(sorted(self.GGUF_TYPES))}")
        _check(bool(self.ollama_model_name) and " " not in self.ollama_model_name,
               f"training.ollama_model_name={self.ollama_model_name!r} must be a non-empty name without spaces")


@dataclass(frozen=True)
class ServeConfig:
    """Stage 03 (local serving) settings."""

    provider: str = "ollama"  # ollama | llamacpp | openai | vllm
    ollama_host: str = _P.ollama_host
    openai_base_url: str = "http://127.0.0.1:8000/v1"  # vllm serve's default port (not pipeline's llama.cpp 8080)
    api_key: str = _P.api_key
    host: str = "127.0.0.1"
    port: int = 8080
    gguf_path: str = _P.gguf_path
    mmproj_path: str = _P.mmproj_path
    models_to_pull: tuple[str, ...] = ("qwen2.5vl:3b", "qwen2.5:3b")
    model: str = ""  # name to serve/check the fine-tuned model under ("" = training.ollama_model_name)
    modelfile: str = ""  # Ollama Modelfile to register ("" = the one stage 02 wrote under training.output_dir)
    pid_dir: str = "~/.cache/alphasignal"  # where the llama.cpp server started by stage 03 is recorded
    gpu_memory_utilization: float = 0.9
    max_model_len: int = 4096
    startup_timeout: float = 60.0

    def __post_init__(self) -> None:
        _check(self.provider in {"ollama", "llamacpp", "openai", "vllm"},
               f"serve.provider={self.provider!r} is invalid: use ollama, llamacpp, openai or vllm")
        _check(0 < self.port < 65536, f"serve.port={self.port} is invalid: use 1..65535")
        _check(0 < self.gpu_memory_utilization <= 1, "serve.gpu_memory_utilization must be in (0, 1]")
        _check(self.max_model_len > 0, "serve.max_model_len must be > 0")
        _check(self.startup_timeout > 0, "serve.startup_timeout must be > 0 seconds")
        for name in ("ollama_host", "openai_base_url"):
            _check(getattr(self, name).startswith(("http://", "https://")),
                   f"serve.{name}={getattr(self, name)!r} must start with http:// or https://")


@dataclass(frozen=True)
class PipelineConfig:
    """Stage 04 (signal pipeline) settings."""

    provider: str = "auto"  # auto | builtin | ollama | openai | llamacpp
    vlm_provider: str = ""  # chart call's provider when it differs from `provider` ("" = same)
    llm_provider: str = ""  # news call's provider when it differs from `provider` ("" = same)
    require_server: bool = _P.require_server  # True: a missing server is an error instead of a builtin fallback
    vlm_model: str = "qwen2.5vl:3b"  # vlm_provider=cnn: the model folder (a model name like this = models/chart_cnn)
    llm_model: str = "qwen2.5:3b"
    ollama_host: str = _P.ollama_host
    openai_base_url: str = _P.openai_base_url
    api_key: str = _P.api_key
    gguf_path: str = _P.gguf_path
    mmproj_path: str = _P.mmproj_path
    timeout: float = _P.timeout
    max_retries: int = _P.max_retries
    temperature: float = _P.temperature
    max_image_side: int = 1024
    max_news_chars: int = 4000
    max_level_atr: float = 10.0  # stop/take-profit at most this many ATR from entry
    max_level_pct: float = 0.5  # ... and at most this fraction of entry
    sentiment_weight: float = 0.4  # the news' vote: confidence moves by sentiment_weight * agreement * intensity
    align_bonus: float = 0.15
    conflict_penalty: float = 0.25
    hold_threshold: float = 0.35
    max_sentiment_shift: float = 0.3
    min_intensity: float = 0.2  # a model's BULLISH/BEARISH needs at least this intensity (else retried)
    min_overlap: float = 0.6  # a key factor not quoted from the news needs this share of its words in the news
    concurrency: int = 4
    output: str = "decision.json"
    eval_news: str = "trailing"  # --eval news per sample: none | trailing (a headline from past bars only)
    eval_output: str = "results/signal_eval.json"
    compare: tuple[str, ...] = ()  # --eval --compare: ladder rungs, of majority, momentum, builtin, cnn, vlm
    momentum_hold: float = 0.0  # ladder's momentum rung: HOLD when |window return| < this (0 = never HOLD)
    eval_bootstrap: int = 1000  # ladder: bootstrap resamples for the intervals and the paired tests
    eval_block: int = 10  # ladder: consecutive window-end dates per bootstrap block
    eval_seed: int = 7  # ladder: bootstrap seed
    call_cache: str = _P.call_cache  # model-call cache (SQLite), shared by stages 04 and 06
    cache_mode: str = _P.cache_mode  # use (replay hits, store misses) | refresh (always call, overwrite) | off
    # last date of the chart / news model's training data, YYYY-MM-DD ("" = unknown; the CNN's is read from its
    # model folder): the replay and the ladder split their metrics before/after it (docs/sceptic.md)
    chart_knowledge_cutoff: str = ""
    news_knowledge_cutoff: str = ""

    def __post_init__(self) -> None:
        _check(self.cache_mode in {"use", "refresh", "off"},
               f"pipeline.cache_mode={self.cache_mode!r} is invalid: use use, refresh or off (--cache)")
        for name in ("chart_knowledge_cutoff", "news_knowledge_cutoff"):
            value = getattr(self, name)
            _check_date(value, f"pipeline.{name}", optional=True, empty="unknown")
            _check(value <= datetime.date.today().isoformat(), f"pipeline.{name}={value!r} is in the future: give "
                   "the last date of the model's training data (YYYY-MM-DD), or \"\" when unknown")
        for name in ("provider", "vlm_provider", "llm_provider"):
            value = getattr(self, name)
            _check(value in {"auto", "builtin", "ollama", "openai", "llamacpp"} or (name != "provider" and not value)
                   or (name == "vlm_provider" and value == "cnn"),
                   f"pipeline.{name}={value!r} is invalid: use auto, builtin, ollama, openai or llamacpp"
                   + (" (or cnn: the trained chart CNN)" if name == "vlm_provider" else ""))
        _check(self.timeout > 0, "pipeline.timeout must be > 0")
        _check(self.max_retries >= 0, "pipeline.max_retries must be >= 0")
        for name in ("sentiment_weight", "align_bonus", "conflict_penalty", "hold_threshold", "max_sentiment_shift",
                     "min_intensity", "min_overlap"):
            _check(0 <= getattr(self, name) <= 1, f"pipeline.{name} must be in [0, 1]")
        _check(self.concurrency > 0, "pipeline.concurrency must be > 0")
        _check(self.max_image_side >= 64, "pipeline.max_image_side must be >= 64 pixels")
        _check(self.max_news_chars > 0, "pipeline.max_news_chars must be > 0")
        _check(self.eval_news in {"none", "trailing"}, f"pipeline.eval_news={self.eval_news!r} is invalid: "
               "use none or trailing")
        rungs = ("majority", "momentum", "builtin", "cnn", "vlm")  # alphasignal.evaluation.ladder.RUNGS
        unknown = [r for r in self.compare if r not in rungs]
        _check(not unknown, f"--compare (pipeline.compare): unknown rung {', '.join(map(repr, unknown))}: use a "
               f"comma-separated list of {', '.join(rungs)}")
        _check(self.momentum_hold >= 0, "pipeline.momentum_hold must be >= 0 (0 = the momentum rung never holds)")
        _check(100 <= self.eval_bootstrap <= MAX_BOOTSTRAP,
               f"pipeline.eval_bootstrap must be 100..{MAX_BOOTSTRAP:,} resamples")
        _check(self.eval_block >= 1, "pipeline.eval_block must be >= 1 window-end date")


@dataclass(frozen=True)
class ReplayConfig:
    """Stage 04 ``--replay``: decisions day by day, traded as one portfolio (see alphasignal/replay)."""

    tickers: tuple[str, ...] = ("AAPL",)
    start: str = "2015-01-01"  # first decision date
    end: str = ""  # last bar ("" = the data's last bar)
    every: int = 1  # a decision every N bars per ticker
    news_file: str = ""  # CSV or JSONL with timestamp, ticker, headline ("" = no news)
    news_days: float = 3.0  # a decision sees the headlines of the last N days before its decision time
    decision_time: str = "20:00"  # UTC time of a daily bar's decision (the close; news must be earlier)
    mode: str = "long_short"  # long_short | long_only (SELL only closes longs)
    sizing: str = "fixed"  # fixed | confidence | volatility
    fraction: float = 0.25  # fixed: share of equity per entry; confidence: times the decision's confidence
    vol_target: float = 0.15  # volatility sizing: annualised volatility of each position
    vol_lookback: int = 20  # bars of past returns for the volatility estimate
    max_position: float = 0.5  # cap per ticker at entry, share of equity
    hold_policy: str = "keep"  # HOLD decision with a position open: keep | close
    max_hold: int = 20  # bars before a time exit (0 = none)
    fees_bps: float = 1.0  # as sweep.fees_bps: per side, on the traded notional
    slippage_bps: float = 0.0  # as sweep.slippage_bps: fills move against the order
    initial_cash: float = 100_000.0
    max_calls: int = 0  # stop cleanly after this many model requests sent (cache hits free), or, builtin engine
    # alone, this many engine answers (chart + news, when there is news, per decision) (0 = no limit)
    max_tokens_total: int = 0  # ... or this many tokens in + out (0 = no limit)
    random_runs: int = 20  # seeded random-decision runs for the model's rank among them
    bootstrap: int = 1000  # block-bootstrap resamples for the intervals
    block: int = 20  # bars per bootstrap block
    trials: int = 1  # configurations you tried before this one (DSR deflation; 1 = PSR)
    seed: int = 7
    workers: int = 0  # builtin engine: processes (0 = CPU cores; 1 = in this process)
    fsync: bool = True  # fsync every journal line (kill -9 loses at most one decision)
    output_dir: str = "results/replay"
    portfolio: str = "signals"  # signals (trade each decision with its levels) | rank (rank the universe by P(up))
    rank_fraction: float = 0.1  # rank portfolio: share of the ranked tickers in each leg (at least one)
    regime_window: int = 63  # regimes: bars of trailing equal-weight buy & hold return that class each date
    regime_up: float = 0.05  # ... bull above this trailing return
    regime_down: float = -0.05  # ... bear below this one; sideways between
    audit_n: int = 20  # --audit: decision dates sampled (seeded) and re-decided under each perturbation

    def __post_init__(self) -> None:
        _check(len(self.tickers) > 0, "replay.tickers is empty: name at least one, e.g. --tickers AAPL,GOOG")
        _check(self.every > 0, f"replay.every={self.every} must be > 0")
        _check_date(self.start, "replay.start")
        _check_date(self.end, "replay.end", optional=True)
        _check(0 < self.news_days <= 3650, f"replay.news_days={self.news_days:g} is invalid: use a number of days in "
               "(0, 3650], e.g. 3")
        hh, _, mm = self.decision_time.partition(":")
        _check(len(hh) in (1, 2) and len(mm) == 2 and (hh + mm).isascii() and (hh + mm).isdigit() and int(hh) < 24
               and int(mm) < 60, f"replay.decision_time={self.decision_time!r} is invalid: use HH:MM (UTC), e.g. 20:00")
        _check(self.mode in {"long_short", "long_only"},
               f"replay.mode={self.mode!r} is invalid: use long_short or long_only")
        _check(self.sizing in {"fixed", "confidence", "volatility"},
               f"replay.sizing={self.sizing!r} is invalid: use fixed, confidence or volatility")
        _check(self.hold_policy in {"keep", "close"},
               f"replay.hold_policy={self.hold_policy!r} is invalid: use keep or close")
        _check(0 < self.fraction <= 1 and 0 < self.max_position <= 1,
               "replay.fraction and replay.max_position must be in (0, 1]")
        _check(self.vol_target > 0 and self.vol_lookback >= 2, "replay.vol_target must be > 0, vol_lookback >= 2")
        _check(self.max_hold >= 0 and self.max_calls >= 0 and self.max_tokens_total >= 0,
               "replay.max_hold, max_calls and max_tokens_total must be >= 0 (0 = no limit)")
        _check(self.fees_bps >= 0 and self.slippage_bps >= 0, "replay.fees_bps and slippage_bps must be >= 0")
        _check(self.fees_bps + self.slippage_bps <= MAX_COST_BPS, f"replay.fees_bps + slippage_bps = "
               f"{self.fees_bps + self.slippage_bps:g} bps is over 10 % a trade: give costs in basis points, e.g. 5")
        _check(self.initial_cash > 0, "replay.initial_cash must be > 0")
        _check(self.random_runs >= 1 and self.bootstrap >= 100 and self.block >= 1 and self.trials >= 1,
               "replay.random_runs >= 1, bootstrap >= 100, block >= 1 and trials >= 1 are required")
        _check(self.random_runs <= MAX_RANDOM_RUNS, f"replay.random_runs={self.random_runs} is too many: at most "
               f"{MAX_RANDOM_RUNS:,} seeded random portfolios (each one a full replay of the decisions)")
        _check(self.bootstrap <= MAX_BOOTSTRAP, f"replay.bootstrap={self.bootstrap} is too many: at most "
               f"{MAX_BOOTSTRAP:,} resamples (each holds one return series in memory; 10,000 give stable intervals)")
        _check(self.workers >= 0, "replay.workers must be >= 0 (0 = CPU cores)")
        _check(self.portfolio in {"signals", "rank"},
               f"replay.portfolio={self.portfolio!r} is invalid: use signals or rank (--portfolio)")
        _check(self.regime_window >= 2 and self.regime_down < self.regime_up,
               f"replay.regime_window={self.regime_window} must be >= 2 and replay.regime_down="
               f"{self.regime_down:g} < replay.regime_up={self.regime_up:g}")
        _check(1 <= self.audit_n <= 10_000, f"replay.audit_n={self.audit_n} must be 1..10,000 decision dates")
        _check(0 < self.rank_fraction <= 0.5, f"replay.rank_fraction={self.rank_fraction:g} must be in (0, 0.5]: "
               "the share of ranked tickers in each leg, e.g. 0.1 for deciles")


@dataclass(frozen=True)
class SweepConfig:
    """Stage 05 (vectorised backtest sweep) settings."""

    strategy: str = "MA_Crossover"
    strategy_file: str = ""  # a .py file defining the class named by ``strategy`` ("" = a built-in strategy)
    grid: dict[str, Any] = field(default_factory=lambda: {
        "short_period": [5, 10, 15, 20, 30, 40, 50],
        "long_period": [50, 100, 150, 200],
        "use_ema": [False, True],
    })
    mode: str = "long_only"  # long_only | long_short
    fill: str = "close"  # close (signal at close t, held from t+1) | next_open
    entry: str = "state"  # MA_Crossover/MACD: state (hold the side of the cross) | cross (enter on a crossover event)
    fees_bps: float = 1.0
    slippage_bps: float = 0.0
    risk_free: float = 0.0
    device: str = "auto"  # auto | cpu | gpu
    engine: str = ""  # numba | numpy | cupy ("" = resolved from device)
    kernel: str = "blocks"  # numba engine: blocks (a configuration at a time, runs scanned in SIMD blocks of bars) |
    # lanes (groups of configurations in SIMD lanes: measured slower)
    max_memory_mb: int = 512
    max_configs: int = 20_000_000  # larger grids are refused before anything is allocated
    periods_per_year: float = 0.0  # bars per year for annualising; 0 = inferred from the bar spacing
    test_fraction: float = 0.3  # time-ordered out-of-sample tail reported beside in-sample metrics
    pbo_splits: int = 16  # CSCV partitions for the probability of backtest overfitting (even, >= 4; 0 = off)
    top_n: int = 10
    sort_by: str = "sharpe"
    output: str = "results/sweep_results.csv"  # .csv or .parquet; metadata JSON is written beside it
    walk_forward: int = 0  # walk-forward optimisation folds (0 = off, else >= 2): re-choose by sort_by per fold
    anchored: bool = False  # walk-forward training windows start at the first bar (False: they roll)
    cluster: str = ""  # "" in-process | local[:N] (a LocalCluster of N worker processes) | tcp://HOST:8786 (Dask)
    connect_timeout: float = 10.0  # seconds to reach the Dask scheduler before failing (exit 3)
    user_code_timeout_s: float = 120.0  # a --strategy-file's check (positions on 5,000 synthetic bars) ends by then
    start_fast: bool = True  # engine not set and Numba's kernel not compiled yet: small sweeps run on NumPy meanwhile

    def __post_init__(self) -> None:
        _check(self.mode in {"long_only", "long_short"},
               f"sweep.mode={self.mode!r} is invalid: use long_only or long_short")
        _check(not self.strategy_file or self.strategy_file.endswith(".py"),
               f"sweep.strategy_file={self.strategy_file!r} must be a .py file")
        _check(self.fill in {"close", "next_open"}, f"sweep.fill={self.fill!r} is invalid: use close or next_open")
        _check(self.entry in {"state", "cross"}, f"sweep.entry={self.entry!r} is invalid: use state or cross")
        _check(self.device in {"auto", "cpu", "gpu"}, f"sweep.device={self.device!r} is invalid: use auto, cpu or gpu")
        _check(self.engine in {"", "numba", "numpy", "cupy"},
               f"sweep.engine={self.engine!r} is invalid: use numba, numpy or cupy")
        _check(self.kernel in {"blocks", "lanes"}, f"sweep.kernel={self.kernel!r} is invalid: use blocks or lanes")
        _check(self.fees_bps >= 0 and self.slippage_bps >= 0, "sweep.fees_bps and slippage_bps must be >= 0")
        _check(self.fees_bps + self.slippage_bps <= MAX_COST_BPS, f"sweep.fees_bps + slippage_bps = "
               f"{self.fees_bps + self.slippage_bps:g} bps is over 10 % a trade: give costs in basis points, e.g. 5")
        _check(0 < self.test_fraction < 1, "sweep.test_fraction must be in (0, 1)")
        _check(self.max_memory_mb > 0, "sweep.max_memory_mb must be > 0")
        _check(self.max_configs > 0, "sweep.max_configs must be > 0")
        _check(self.periods_per_year >= 0, "sweep.periods_per_year must be >= 0 (0 = infer from the data)")
        _check(self.pbo_splits == 0 or (self.pbo_splits >= 4 and self.pbo_splits % 2 == 0),
               f"sweep.pbo_splits={self.pbo_splits} is invalid: use an even number >= 4, or 0 to skip PBO")
        _check(self.pbo_splits <= MAX_PBO_SPLITS, f"sweep.pbo_splits={self.pbo_splits} is too many: CSCV evaluates "
               f"C({self.pbo_splits}, {self.pbo_splits // 2}) = {math.comb(self.pbo_splits, self.pbo_splits // 2):,} "
               f"splits; use at most {MAX_PBO_SPLITS} ({math.comb(MAX_PBO_SPLITS, MAX_PBO_SPLITS // 2):,} splits, "
               "about 14x the default 16's 12,870)")
        _check(self.top_n > 0, "sweep.top_n must be > 0")
        _check(0 < self.user_code_timeout_s <= 86_400, "sweep.user_code_timeout_s must be in (0, 86400] seconds")
        _check(self.walk_forward == 0 or self.walk_forward >= 2,
               f"sweep.walk_forward={self.walk_forward} is invalid: use 0 (off) or >= 2 folds, e.g. --walk-forward 5")
        _check(not self.anchored or self.walk_forward, "sweep.anchored (--anchored) shapes the walk-forward windows "
               "and does nothing without them: add --walk-forward K (K >= 2) or drop --anchored")
        _check(self.output.lower().endswith((".csv", ".parquet")),
               f"sweep.output={self.output!r} must end in .csv or .parquet")
        _check(self.cluster == "" or self.cluster == "local" or self.cluster.startswith(("local:", "tcp://", "tls://")),
               f"sweep.cluster={self.cluster!r} is invalid: use local, local:N or tcp://HOST:8786 (empty = in-process)")
        _check(self.connect_timeout > 0, "sweep.connect_timeout must be > 0 seconds")


@dataclass(frozen=True)
class OptimizerConfig:
    """Stage 06 (multi-LLM optimizer) settings."""

    strategy: str = "MA_Crossover"
    strategy_file: str = ""  # a .py file defining the class named by ``strategy`` ("" = a built-in strategy)
    grid: dict[str, Any] = field(default_factory=dict)  # {} = sweep.grid (same strategy) or a coarse spec grid
    baseline: dict[str, Any] = field(default_factory=dict)  # {} = the best in-sample configuration of the sweep
    provider: str = "auto"  # auto | builtin | ollama | openai | llamacpp (server settings from [pipeline])
    analyst_provider: str = ""  # "" = provider; one line per agent picks another backend ...
    strategist_provider: str = ""
    risk_provider: str = ""
    analyst_model: str = "qwen2.5:3b"  # ... and another model
    strategist_model: str = "qwen2.5:3b"
    risk_model: str = "qwen2.5:3b"
    gguf_path: str = ""  # GGUF file for provider llamacpp ("" = pipeline.gguf_path)
    require_server: bool = False  # True: no reachable model server is an error (exit 3), not a builtin fallback
    max_tokens: int = 1024  # reply length cap for the agents' model calls (timeouts/retries from [pipeline])
    summary_chars: int = 2500  # size cap of the sweep summary in the Analyst's prompt (smaller for tiny models)
    use_risk_manager: bool = True
    rounds: int = 5
    proposals_per_round: int = 3
    patience: int = 3
    tolerance: float = 0.01
    budget: int = 200  # max backtests proposed by agents in total
    objective: str = "sharpe"
    oos_method: str = "holdout"  # holdout | walk_forward
    folds: int = 4  # walk-forward folds inside the selection segment (oos_method=walk_forward)
    holdout_fraction: float = 0.2  # final bars no optimizer sees; each winner is scored on them once, at the end
    holdout_embargo: int = 5  # bars dropped between the selection segment and the hold-out (serial correlation)
    max_drawdown: float = 0.5
    min_trades: int = 5
    max_turnover: float = 200.0
    debate_rounds: int = 0
    compare: tuple[str, ...] = ()  # random, tpe, wfo: baselines with the same backtest budget
    seed: int = 7
    history_db: str = "results/history.sqlite"
    output_dir: str = "results"

    def __post_init__(self) -> None:
        _check(self.rounds > 0, "optimizer.rounds must be > 0")
        _check(not self.strategy_file or self.strategy_file.endswith(".py"),
               f"optimizer.strategy_file={self.strategy_file!r} must be a .py file")
        _check(self.budget > 0, f"optimizer.budget={self.budget} must be > 0: give the agents at least one backtest")
        _check(self.proposals_per_round >= 3, "optimizer.proposals_per_round must be >= 3")
        _check(self.patience > 0, "optimizer.patience must be > 0")
        _check(self.tolerance >= 0, "optimizer.tolerance must be >= 0")
        _check(self.oos_method in {"holdout", "walk_forward"},
               f"optimizer.oos_method={self.oos_method!r} is invalid: use holdout or walk_forward")
        _check(self.folds >= 2, "optimizer.folds must be >= 2")
        _check(0 < self.holdout_fraction <= 0.5,
               f"optimizer.holdout_fraction={self.holdout_fraction} must be in (0, 0.5]: e.g. 0.2")
        _check(self.holdout_embargo >= 0, f"optimizer.holdout_embargo={self.holdout_embargo} must be >= 0 bars")
        _check(0 < self.max_drawdown <= 1, "optimizer.max_drawdown must be in (0, 1]")
        _check(self.min_trades >= 0 and self.max_turnover > 0,
               "optimizer.min_trades must be >= 0 and optimizer.max_turnover > 0")
        _check(0 <= self.debate_rounds <= MAX_DEBATE_ROUNDS, f"optimizer.debate_rounds={self.debate_rounds} is "
               f"invalid: use 0..{MAX_DEBATE_ROUNDS} (every round adds model calls)")
        _check(self.max_tokens >= 64, "optimizer.max_tokens must be >= 64")
        _check(self.summary_chars >= 200, "optimizer.summary_chars must be >= 200")
        _check(self.objective in {"sharpe", "sortino", "calmar", "total_return", "cagr", "profit_factor"},
               f"optimizer.objective={self.objective!r} is invalid: use sharpe, sortino, calmar, total_return, "
               "cagr or profit_factor")
        for name in (self.provider, self.analyst_provider, self.strategist_provider, self.risk_provider):
            _check(name in {"", "auto", "builtin", "ollama", "openai", "llamacpp"},
                   f"optimizer provider {name!r} is invalid: use auto, builtin, ollama, openai or llamacpp")
        _check(all(c in {"random", "tpe", "wfo"} for c in self.compare),
               f"optimizer.compare={','.join(self.compare)!r} is invalid: use random, tpe and/or wfo")


@dataclass(frozen=True)
class DashboardConfig:
    """Stage 07 (local Streamlit dashboard) settings. File pickers only reach files under the three roots."""

    host: str = "127.0.0.1"  # another interface only on purpose: python 07_dashboard.py --host 0.0.0.0
    port: int = 8501
    results_dir: str = "results"
    dataset_dir: str = "dataset"
    models_dir: str = "models"
    history_db: str = ""  # "" = optimizer.history_db
    sweep: str = ""  # "" = sweep.output
    replay_dir: str = ""  # "" = replay.output_dir (what python 04_signal_pipeline.py --replay writes)
    top_n: int = 20
    max_points: int = 5000  # most points a chart sends to the browser (the rest is aggregated or sampled)
    cache_dir: str = "~/.cache/alphasignal/dashboard"  # the app's own files (CSV sweeps as Parquet); "" = none

    def __post_init__(self) -> None:
        _check(0 < self.port < 65536, f"dashboard.port={self.port} is invalid: use 1..65535")
        _check(bool(self.host.strip()), "dashboard.host is empty: use 127.0.0.1 (or --host 0.0.0.0 on purpose)")
        _check(all(getattr(self, n).strip() for n in ("results_dir", "dataset_dir", "models_dir")),
               "dashboard.results_dir, dataset_dir and models_dir must not be empty")
        _check(self.top_n > 0, "dashboard.top_n must be > 0")
        _check(self.max_points >= 100, "dashboard.max_points must be >= 100")


@dataclass(frozen=True)
class Config:
    """All stages' settings."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (tuples as lists), suitable for TOML/JSON."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def hash(self, *sections: str) -> str:
        """Short sha256 of the given sections (all when none), stable across runs."""
        d = self.to_dict()
        chosen = {k: d[k] for k in (sections or d)}
        return hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


# Keys that were removed, with what to use instead (shown in place of the closest-name suggestion).
_REMOVED = {
    "pipeline.vlm_weight": ": it was removed because it had no effect (the chart's weight cancelled out of the "
                           "fusion formula); tune pipeline.sentiment_weight (the news' vote) and "
                           "pipeline.max_sentiment_shift (its cap) instead",
}


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """The effective config: defaults, then a TOML file, then ``section.key=value`` overrides (``configio.load``)."""
    return configio.load(Config(), path, overrides, removed=_REMOVED)


def to_toml(cfg: Config) -> str:
    """Render the config as TOML (what ``--show-config`` prints)."""
    return configio.toml_text(cfg.to_dict())
