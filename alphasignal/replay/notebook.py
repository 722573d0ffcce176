"""The replay of the notebook API (``from alphasignal import replay``): a thin wrapper over
:func:`~alphasignal.replay.run.run_replay` that takes its settings as stage 04's ``--replay`` command does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import Config, load_config
from ..configio import load
from .run import Outcome, replay_config, run_replay


def replay(tickers: str | Sequence[str] | None = None, start: str | None = None, end: str | None = None, *,
           every: int | None = None, news_file: str | None = None, config: Config | str | Path | None = None,
           overrides: Sequence[str] = (), quiet: bool = True) -> Outcome:
    """Replay the signal pipeline's decisions day by day and trade them as one portfolio (``--replay``).

    ``config`` is a ``Config`` or a TOML file (default: the defaults); ``overrides`` are ``--set`` strings such as
    ``"pipeline.provider=builtin"`` or ``"replay.output_dir=/tmp/r"`` (where the journal goes: a rerun continues
    from it). Returns the ``Outcome``: ``comparison`` (metrics of the replay, buy & hold and random, with
    intervals), ``sim`` (equity, trades), ``records`` (each decision) and ``notes``. Writes only the journal;
    ``alphasignal.replay.report.write_outputs`` writes the CSVs, report and figure as the command does."""
    cfg = load(config, None, overrides) if isinstance(config, Config) else load_config(config, overrides)
    names = tickers if tickers is None or isinstance(tickers, str) else ",".join(tickers)
    rc = replay_config(cfg, names, start, end, every, news_file)
    return run_replay(cfg, cfg.pipeline, rc, quiet=quiet)


__all__ = ["replay"]
