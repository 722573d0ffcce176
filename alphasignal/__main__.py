"""``python -m alphasignal <stage> ...``: the same as the ``alphasignal`` console script."""

import sys

from alphasignal.cli import main

if __name__ == "__main__":
    sys.exit(main())
