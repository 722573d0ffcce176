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
from dataclasses import replace

from alphasignal.cli import build_parser, run


def _main(args, cfg) -> int:
    from alphasignal.serving import ServeOptions, serve

    if args.provider:
        cfg = replace(cfg, serve=replace(cfg.serve, provider=args.provider))
    serve(cfg, ServeOptions(check_only=args.check, stop=args.stop, recreate=args.recreate, quiet=args.quiet))
    return 0


def _parser():
    parser = build_parser(__doc__)
    parser.add_argument("--provider", choices=["ollama", "llamacpp", "openai", "vllm"],
                        help="serving backend (default: serve.provider)")
    parser.add_argument("--check", action="store_true", help="only report: pull, create and start nothing")
    parser.add_argument("--stop", action="store_true", help="llamacpp: stop the server this stage started")
    parser.add_argument("--recreate", action="store_true", help="ollama: re-register the fine-tuned model")
    return parser


if __name__ == "__main__":
    sys.exit(run(_main, _parser()))
