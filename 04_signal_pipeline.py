"""Stage 04: chart image + news -> validated JSON trading decision (decision.json).

Examples:
  python 04_signal_pipeline.py --demo                                   # offline chart + sample news
  python 04_signal_pipeline.py --image chart.png --news "Apple beats estimates" --output decision.json
  python 04_signal_pipeline.py --image chart.png --news-file news.txt --last-close 187.3
  python 04_signal_pipeline.py --batch manifest.jsonl --output decisions.jsonl
  python 04_signal_pipeline.py --eval --limit 200                       # dataset test split metrics
  python 04_signal_pipeline.py --replay --tickers AAPL,GOOG --start 2022-01-01 --end 2026-06-30 [--every N]
                               [--news-file news.csv]       # day-by-day decisions traded -> results/replay/
  python 04_signal_pipeline.py --demo --provider ollama --vlm-model qwen2.5vl:3b --llm-model qwen2.5:3b

Providers: auto (default: a reachable Ollama / OpenAI-compatible server with the models, else the builtin
offline engine, said on stderr), builtin, ollama, openai, llamacpp (pipeline.gguf_path). Exit codes: 0 ok,
2 bad input, 3 model/server failure, 4 market-data failure.
"""

import sys

from alphasignal.cli import run_stage
from alphasignal.cli import signals as stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
