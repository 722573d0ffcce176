"""Pieces every dashboard page shares: the effective config, the roots, cached loaders keyed by file mtime, a
guarded file picker and one way to show a problem (a message on the page, never a traceback)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from ..config import Config, ConfigError, load_config
from ..errors import AlphaSignalError
from . import data
from .paths import PathRefused, Roots, find_files, guard

log = logging.getLogger(__name__)
CFG_KEY = "alphasignal_config"  # session_state key: tests put a Config here before the first run


def settings() -> Config:
    """The effective config: from session_state when set, else from the app's arguments (``-- --config F --set
    k=v``), read once per session."""
    if CFG_KEY not in st.session_state:
        st.session_state[CFG_KEY] = load_config(*app_arguments(sys.argv[1:]))
    return st.session_state[CFG_KEY]


def app_arguments(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """(``--config`` file, ``--set`` overrides) among the app's arguments, as ``--opt=value`` or ``--opt value``
    (the launcher in ``alphasignal.cli.dashboard`` passes them; anything else is ignored)."""
    config, overrides, items = None, [], list(argv)
    for i, item in enumerate(items):
        name, eq, value = item.partition("=")
        if name in ("--config", "--set") and not eq:
            value = items[i + 1] if i + 1 < len(items) else ""
        if name == "--config":
            config = value or None
        elif name == "--set" and value:
            overrides.append(value)
    return config, overrides


def roots() -> Roots:
    """The folders pickers may read."""
    return Roots.from_config(settings().dashboard)


def mtime(path: Path) -> int:
    """Cache key part: the file's mtime in ns plus that of its SQLite WAL (0 when absent)."""
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(OSError):
            total += p.stat().st_mtime_ns
    return total


def guarded(run: Callable[[], None]) -> None:
    """Run a page body; a known problem becomes one ``st.error`` line, an unexpected one a short message (the
    details go to the debug log only)."""
    try:
        run()
    except (AlphaSignalError, ConfigError) as exc:
        st.error(str(exc))
    except OSError as exc:
        st.error(f"cannot read {exc.filename or ''} ({exc.strerror or exc}): check the path and its permissions")
    except Exception as exc:  # noqa: BLE001 - the page must show a message, never a traceback
        log.debug("dashboard page failed", exc_info=True)
        st.error(f"this page could not be drawn ({type(exc).__name__}: {exc})")


def pick_file(label: str, root_names: Sequence[str], suffixes: Sequence[str], default: str = "",
              key: str = "") -> Path | None:
    """A selectbox of matching files under the roots plus a typed path; both go through the path guard. Returns
    None (after saying why on the page) when nothing usable is chosen."""
    r = roots()
    files = find_files(r, root_names, suffixes)
    options = [str(f) for f in files]
    default_path = ""
    if default:
        try:
            default_path = str(guard(default, r))
        except PathRefused:
            default_path = ""
    if default_path and default_path not in options:
        options.insert(0, default_path)
    index = options.index(default_path) if default_path else 0
    choice = st.selectbox(label, options, index=index if options else None, key=f"{key}_pick",
                          placeholder=f"no {'/'.join(suffixes)} file under {', '.join(root_names)}")
    typed = st.text_input(f"or type a path ({label.lower()})", key=f"{key}_typed",
                          help="relative to the project folder; only the results, dataset and models folders")
    chosen = typed.strip() or choice
    if not chosen:
        st.info(f"no file found: {label.lower()} are looked for under {r.text()}")
        return None
    try:
        return guard(chosen, r)
    except PathRefused as exc:
        st.error(str(exc))
        return None


@st.cache_data(show_spinner=False, max_entries=8)
def sweep_header(path: str, stamp: int) -> list[str]:
    """A sweep results file's column names, cached until it changes."""
    return data.sweep_header(path)


@st.cache_resource(show_spinner="reading the sweep ...", max_entries=4)
def sweep_frame(path: str, stamp: int, columns: tuple[str, ...]) -> pd.DataFrame:
    """Those columns of a sweep results file, cached until it changes. One shared frame, never modified by the
    pages: a resource cache hands it out without the copy ``cache_data`` makes on every hit."""
    return data.read_sweep_cached(path, columns, settings().dashboard.cache_dir)


@st.cache_data(show_spinner=False, max_entries=8)
def sweep_meta(path: str, stamp: int) -> dict[str, Any] | None:
    """A sweep's metadata, cached until it changes."""
    return data.read_meta(path)


@st.cache_data(show_spinner=False, max_entries=8)
def dataset_frame(path: str, stamp: int) -> pd.DataFrame:
    """A stage 01 JSONL, cached until it changes."""
    return data.read_dataset(path)


@st.cache_data(show_spinner=False, max_entries=8)
def replay_frames(folder: str, stamp: int) -> dict[str, pd.DataFrame]:
    """Replay outputs, cached until equity.csv changes."""
    return data.read_replay(folder)
