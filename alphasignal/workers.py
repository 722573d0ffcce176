"""What every worker process of a pool does first: end itself when its parent dies.

``kill -9`` of a command leaves it no time to stop its pool, and a pool worker blocked on its task queue would
otherwise live on. Call :func:`exit_with_parent` from the pool's initializer.
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_SECONDS = 0.5


def exit_with_parent() -> None:
    """Start a daemon thread that ends this process (exit code 1) within :data:`POLL_SECONDS` of its parent's
    death, which shows as a change of the parent process id; SIGTERM ends the worker as by default (a forked
    worker inherits the command's SIGTERM-as-Ctrl-C handler)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked worker ends on SIGTERM; only the command stops orderly
    parent = os.getppid()
    threading.Thread(target=_watch, args=(parent,), daemon=True, name="exit-with-parent").start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    os._exit(1)
