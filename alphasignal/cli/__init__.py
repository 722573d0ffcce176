"""The command-line layer: every stage's flags, the one flag -> config table, and all printing.

One module per stage (``dataset``, ``finetune``, ``serve``, ``signals``, ``sweep``, ``optimize``, ``dashboard``),
each with ``add_arguments(parser)`` and ``main(args, cfg)``; :mod:`.common` holds the shared options, ``run`` and
the exit codes; :mod:`.flags` the flag table. The root ``0N_*.py`` scripts, ``python -m alphasignal <stage>`` and
the ``alphasignal <stage>`` console script all build the same parser (:func:`stage_parser`). Nothing below this
package imports it.
"""

from __future__ import annotations

from .common import (
    Stage,
    add_cache_option,
    add_strategy_options,
    build_parser,
    count,
    positive_number,
    run,
    run_stage,
    setup_logging,
    with_cache_mode,
)

__all__ = ["Stage", "add_cache_option", "add_strategy_options", "build_parser", "count", "positive_number", "run",
           "run_stage", "setup_logging", "with_cache_mode"]
