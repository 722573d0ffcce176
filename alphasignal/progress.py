"""The one progress bar of the long stages: rich on stderr, transient, a no-op when disabled (``--quiet``); and
``say``, the one status line on stderr beside it."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


class Bar:
    """What ``progress_bar`` yields: ``bar(n)`` advances by ``n``; ``bar.update(...)`` sets ``completed``,
    ``total``, ``description`` or the extra fields named in ``detail``. Both do nothing when disabled."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress, self._task = progress, task

    def __call__(self, n: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def update(self, **changes: Any) -> None:
        """Set task values (``completed=``, ``total=``, ``description=``, fields of ``detail``)."""
        if self._progress is not None:
            self._progress.update(self._task, **changes)


class progress_bar:  # noqa: N801 - used like a function: with progress_bar(...) as advance
    """``with progress_bar(enabled, total, label) as advance: advance(n)``.

    ``completed`` starts a resumed bar part-way; ``unit="bytes"`` shows sizes and speed instead of a count;
    ``detail`` is an extra rich text column over ``fields`` (e.g. ``"loss {task.fields[loss]}"``, with
    ``fields={"loss": "-"}``), changed with ``bar.update(loss=...)``. ``total=None`` is an open-ended bar."""

    def __init__(self, enabled: bool, total: float | None, label: str, *, completed: float = 0,
                 unit: str = "items", detail: str = "", fields: Mapping[str, Any] | None = None) -> None:
        if unit not in ("items", "bytes"):
            raise ValueError(f"unit={unit!r}: use items or bytes")
        self.enabled, self.total, self.label = enabled, total, label
        self.completed, self.unit, self.detail, self.fields = completed, unit, detail, dict(fields or {})

    def __enter__(self) -> Bar:
        if not self.enabled:
            return Bar()
        from rich import progress as rp
        from rich.console import Console

        counted = (rp.DownloadColumn(), rp.TransferSpeedColumn()) if self.unit == "bytes" else (
            rp.MofNCompleteColumn(),)
        extra = (rp.TextColumn(self.detail),) if self.detail else ()
        self._bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), *counted, *extra,
                                rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), console=Console(stderr=True),
                                transient=True)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total, completed=self.completed, **self.fields)
        return Bar(self._bar, task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()


def say(text: str, quiet: bool = False) -> None:
    """One status line on stderr (nothing with ``--quiet``): what a long step is doing, never a stage's result."""
    if not quiet:
        print(text, file=sys.stderr, flush=True)
