"""Stage 03: set up and health-check local model serving (Ollama, llama.cpp server, OpenAI-compatible / vLLM).

    python 03_serve_ollama.py                        # Ollama: check, pull missing models, register the fine-tuned
                                                     # GGUF from models/gguf/Modelfile, warm up, health table
    python 03_serve_ollama.py --check                # report only, change nothing
    python 03_serve_ollama.py --provider llamacpp    # start a llama.cpp server for models/gguf/*.gguf (+ mmproj)
    python 03_serve_ollama.py --provider llamacpp --stop
    python 03_serve_ollama.py --provider vllm        # print the `vllm serve` command, check the endpoint

Each run ends with the stage 04 flags that use what it set up. Exit 3 with a one-line fix when a server is not
running, a port is taken, a GGUF is missing or a server lacks the model.
"""

import sys

from alphasignal.cli import run_stage
from alphasignal.cli import serve as stage

if __name__ == "__main__":
    sys.exit(run_stage(stage, __doc__))
