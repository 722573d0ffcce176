"""Stage 06.

Not implemented yet: tracked in issue  Analyst -> Strategist -> Risk Manager rounds over re-backtested proposals:5.
"""

import sys

from alphasignal.cli import build_parser, run


def _main(args, cfg) -> int:
    print("error: this stage is not implemented yet (issue  Analyst -> Strategist -> Risk Manager rounds over re-backtested proposals:5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(run(_main, build_parser(__doc__)))
