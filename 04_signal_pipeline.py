"""Stage 04.

Not implemented yet: tracked in issue  chart image + news -> validated JSON trading decision:4.
"""

import sys

from alphasignal.cli import build_parser, run


def _main(args, cfg) -> int:
    print("error: this stage is not implemented yet (issue  chart image + news -> validated JSON trading decision:4)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(run(_main, build_parser(__doc__)))
