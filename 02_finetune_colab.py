"""Stage 02.

Not implemented yet: tracked in issue  QLoRA fine-tune of the chart VLM (Unsloth on Colab, or --backend hf on CPU):6.
"""

import sys

from alphasignal.cli import build_parser, run


def _main(args, cfg) -> int:
    print("error: this stage is not implemented yet (issue  QLoRA fine-tune of the chart VLM (Unsloth on Colab, or --backend hf on CPU):6)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(run(_main, build_parser(__doc__)))
