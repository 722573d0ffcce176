"""Stage 05.

Not implemented yet: tracked in issue  vectorised strategy parameter sweep (CPU Numba/NumPy or GPU CuPy):3.
"""

import sys

from alphasignal.cli import build_parser, run


def _main(args, cfg) -> int:
    print("error: this stage is not implemented yet (issue  vectorised strategy parameter sweep (CPU Numba/NumPy or GPU CuPy):3)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(run(_main, build_parser(__doc__)))
