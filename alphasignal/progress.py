"""The one progress bar of the long stages: rich on stderr, transient, a no-op when disabled (``--quiet``)."""

from __future__ import annotations

from collections.abc import Callable


class progress_bar:  # noqa: N801 - used like a function: with progress_bar(...) as advance
    """``with progress_bar(enabled, total, label) as advance: advance(n)``."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, total, label

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()
