"""Stage 04 ``--replay``: the decisions of the signal pipeline, day by day, traded as one portfolio.

Modules: ``news`` (validated news file, causal look-ups), ``journal`` (decisions committed as made),
``portfolio`` (the bar loop: fills, stops, sizing, costs), ``stats`` (metrics, intervals, buy & hold and random
baselines, DSR), ``run`` (plan, decide, simulate), ``report`` (outputs); ``rungs`` (the ladder's rungs as
decision-makers), ``compare`` (rungs side by side, and the rank portfolio over a universe: ``rank``) and
``compare_report`` (their outputs). Imports nothing heavy.
"""

import sys
from types import ModuleType
from typing import Any


class _NotebookModule(ModuleType):
    """This package is also the notebook API's ``replay`` (``from alphasignal import replay``): calling it runs
    ``notebook.replay(tickers, start, end, ...)`` and returns the replay's ``Outcome``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .notebook import replay as replay_run

        return replay_run(*args, **kwargs)


sys.modules[__name__].__class__ = _NotebookModule
