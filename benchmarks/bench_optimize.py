"""Stage 06 loop cost with the builtin (offline) engines: per-round breakdown and the loop's own overhead.

Breakdown per round: agents (Analyst + Strategist + Risk Manager builtin engines), validation (repair, dedupe, hard
limits), backtests (stage 05 engine, in- and out-of-sample), history commit, and the loop's own overhead = round
wall time - agents - backtests (validation, state building and the commit included). Goal: overhead <= 10 % of a
round. Anchor, same run: random search over the same number of backtests with the same engine and segments
(exploration / selection; the hold-out is not part of either timing).

    python -m benchmarks.bench_optimize [--rounds 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from alphasignal.agents.compare import random_search
from alphasignal.agents.evaluate import Evaluator
from alphasignal.agents.loop import optimize
from alphasignal.config import load_config
from alphasignal.market import load_ohlcv
from alphasignal.storage.history import History


def _run(rounds: int, data, tmp: Path, tag: str) -> tuple[list[dict], int, float, float, int]:
    cfg = load_config(None, ["optimizer.provider=builtin", f"optimizer.rounds={rounds}", "optimizer.patience=99",
                             "optimizer.budget=1000", f"optimizer.history_db={tmp / f'{tag}.sqlite'}"])
    commits: list[float] = []
    with History(cfg.optimizer.history_db) as h:
        real_save = h.save_round

        def timed_save(*a, **k):  # measures the one-transaction commit of each round
            t = time.perf_counter()
            real_save(*a, **k)
            commits.append(time.perf_counter() - t)

        h.save_round = timed_save
        t0 = time.perf_counter()
        run_id = optimize(data, cfg, h, progress=False)
        wall = time.perf_counter() - t0
        rows = h.rounds(run_id)
        n = sum(1 for p in h.proposals(run_id) if p.backtested)
    timings = [{**r.timings, "commit": c} for r, c in zip(rows, commits, strict=True)]
    return timings, rows[0].state.sweep_configs, wall, sum(commits), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    data = load_ohlcv("AAPL", "2010-01-01", "2026-08-01", source="offline")
    print(f"data: AAPL daily, {len(data)} bars; strategy MA_Crossover; builtin agents; {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        _run(1, data, tmp, "warmup")  # JIT/imports out of the way
        per_round: dict[str, list[float]] = {k: [] for k in ("agents", "validation", "backtests", "commit",
                                                            "overhead", "round")}
        sweep_t, walls, n_total = [], [], 0
        for rep in range(args.repeats):
            rows, sweep_configs, wall, _, n_total = _run(args.rounds, data, tmp, f"r{rep}")
            walls.append(wall)
            sweep_t.append(rows[0]["sweep"])
            for t in rows[1:]:
                rnd = t["total"] + t["commit"]
                per_round["round"].append(rnd)
                per_round["overhead"].append(rnd - t["agents"] - t["backtests"])
                for k in ("agents", "validation", "backtests", "commit"):
                    per_round[k].append(t[k])
        med = {k: statistics.median(v) for k, v in per_round.items()}
        print(f"initial sweep (exploration, {sweep_configs} configs): "
              f"{statistics.median(sweep_t) * 1e3:.1f} ms")
        print("per round (median over rounds and repeats):")
        for k in ("agents", "validation", "backtests", "commit", "overhead", "round"):
            print(f"  {k:<10} {med[k] * 1e3:8.2f} ms  {med[k] / med['round']:6.1%} of a round")
        ratio = med["overhead"] / med["round"]
        print(f"loop overhead / round = {ratio:.1%} (goal <= 10%: {'met' if ratio <= 0.10 else 'NOT met'})")
        print(f"whole run: {statistics.median(walls):.2f} s for {n_total} backtested configurations")
        ev = Evaluator.from_config(data, load_config())
        t0 = time.perf_counter()
        random_search(ev, "MA_Crossover", n_total, 7, "sharpe")
        anchor = time.perf_counter() - t0
        print(f"anchor: random search, same {n_total} backtests, same engine/segments: {anchor:.2f} s "
              f"(agents loop / anchor = {statistics.median(walls) / anchor:.1f}x)")
        seg = ev.segments()
        print("segments: " + ", ".join(f"{k} {b - a} bars" for k in ("exploration", "selection", "holdout")
                                        for a, b in [seg[k]]) + f", embargo {seg['embargo']} bars")
    print("note: measured on a shared 2-core machine; figures are noisy")


if __name__ == "__main__":
    main()
