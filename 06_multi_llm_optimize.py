"""Stage 06: multi-LLM strategy optimizer (Analyst -> Strategist -> Risk Manager rounds over validated backtests).

Runs offline by default (builtin engines, real offline market data), writes a Markdown report, two PNGs and an
SQLite history. Examples:
  python 06_multi_llm_optimize.py
  python 06_multi_llm_optimize.py --strategy Bollinger_Breakout --rounds 8 --compare random,tpe
  python 06_multi_llm_optimize.py --strategy-file examples/sma_trend.py --strategy SmaTrend   # your own strategy
  python 06_multi_llm_optimize.py --provider ollama --set optimizer.strategist_model=deepseek-r1:7b
  python 06_multi_llm_optimize.py --cluster local:2 --compare random,tpe   # backtests on a Dask cluster
  python 06_multi_llm_optimize.py --history | --show RUN_ID | --resume RUN_ID
"""

import sys

from alphasignal.cli import optimize as stage
from alphasignal.cli import run_stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
