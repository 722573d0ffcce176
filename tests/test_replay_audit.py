"""``--replay --audit`` (issue 27): the perturbations themselves, the arithmetic of the change and flip rates on a
scripted provider's known answers, the builtin engine's expected behaviour under each perturbation on offline data,
and bad input as one error line with nothing written."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphasignal.config import Config, PipelineConfig, ReplayConfig
from alphasignal.errors import UsageError
from alphasignal.replay.audit import mask_names, mirror, rebase, run_audit, sample_jobs, summarise
from alphasignal.replay.outcome import Job

ROOT = Path(__file__).resolve().parents[1]


def test_mirror_turns_an_uptrend_down_and_is_its_own_inverse() -> None:
    close = np.linspace(100, 120, 10)
    win = pd.DataFrame({"Open": close - 0.5, "High": close + 1, "Low": close - 1, "Close": close, "Volume": 1.0})
    m = mirror(win)
    assert m["Close"].iloc[-1] == pytest.approx(120) and m["Close"].iloc[0] == pytest.approx(144)  # 120^2 / 100
    assert (np.diff(m["Close"]) < 0).all() and (m["High"] >= m[["Open", "Close"]].max(axis=1)).all()
    assert (m["Low"] <= m[["Open", "Close"]].min(axis=1)).all()
    pd.testing.assert_frame_equal(mirror(m), win)
    assert rebase(win, 2.0)["Low"].tolist() == (2 * win["Low"]).tolist() and rebase(win)["Volume"].eq(1.0).all()


def test_mask_names_hides_symbols_and_company_names() -> None:
    text = "Apple's $AAPL beats; aapl and Google (GOOG) rise, Alphabet too. Applesauce sales flat."
    got = mask_names(text, ["AAPL", "GOOG"])
    assert got == ("the company $the company beats; the company and the company (the company) rise, the company too. "
                   "Applesauce sales flat.").replace("$the company", "the company")


def _row(key: str, variant: str, final: str, chart: str, news: bool = True, conf: float = 0.5, ok: bool = True):
    return {"key": key, "variant": variant, "final": final, "chart": chart, "news": news, "confidence": conf, "ok": ok}


def test_change_and_flip_rates_on_a_scripted_providers_answers() -> None:
    # a scripted fake provider's answers: four dates (d1, d2 with headlines), every variant decided
    script = {
        "d1": {"original": ("BUY", "BUY", 0.6), "no_news": ("HOLD", "BUY", 0.3), "mirrored": ("SELL", "SELL", 0.6),
               "rebased": ("BUY", "BUY", 0.6), "swapped_news": ("BUY", "BUY", 0.5),
               "masked_names": ("BUY", "BUY", 0.6)},
        "d2": {"original": ("SELL", "SELL", 0.7), "no_news": ("SELL", "SELL", 0.7), "mirrored": ("SELL", "SELL", 0.7),
               "rebased": ("HOLD", "SELL", 0.3), "swapped_news": ("HOLD", "SELL", 0.2),
               "masked_names": ("SELL", "SELL", 0.7)},
        "d3": {"original": ("HOLD", "HOLD", 0.2), "no_news": ("HOLD", "HOLD", 0.2), "mirrored": ("HOLD", "HOLD", 0.2),
               "rebased": ("HOLD", "HOLD", 0.2), "swapped_news": ("HOLD", "HOLD", 0.2),
               "masked_names": ("HOLD", "HOLD", 0.2)},
        "d4": {"original": ("BUY", "BUY", 0.8), "no_news": ("BUY", "BUY", 0.8), "mirrored": ("SELL", "SELL", 0.8),
               "rebased": ("BUY", "BUY", 0.8), "swapped_news": ("BUY", "BUY", 0.8),
               "masked_names": ("BUY", "BUY", 0.8)},
    }
    rows = [_row(k, v, f, c, news=k in ("d1", "d2"), conf=x) for k, answers in script.items()
            for v, (f, c, x) in answers.items()]
    rows.append(_row("d5", "original", "BUY", "BUY"))  # its perturbed decision failed: left out
    rows.append(_row("d5", "mirrored", "", "", ok=False))
    s = summarise(rows)
    assert s["no_news"]["n"] == 2 and s["no_news"]["changed"] == 0.5 and s["no_news"]["chart_changed"] == 0.0
    assert s["no_news"]["confidence_shift"] == pytest.approx((0.3 + 0.0) / 2)
    assert s["swapped_news"]["changed"] == 0.5 and s["masked_names"]["changed"] == 0.0
    assert s["mirrored"]["n"] == 4 and s["mirrored"]["changed"] == 0.5  # d1, d4 changed; d2 and d3 did not
    assert s["mirrored"]["directional"] == 3 and s["mirrored"]["flips"] == pytest.approx(2 / 3)
    assert s["rebased"]["n"] == 4 and s["rebased"]["changed"] == 0.25 and s["rebased"]["chart_changed"] == 0.0


def test_sample_is_seeded_and_in_time_order() -> None:
    jobs = [Job("X", i, f"2020-01-{i + 1:02d}", str(i)) for i in range(30)]
    a, b = sample_jobs(jobs, 7, 3), sample_jobs(jobs, 7, 3)
    assert a == b and len(a) == 7 and [j.bar for j in a] == sorted(j.bar for j in a)
    assert sample_jobs(jobs, 7, 4) != a and sample_jobs(jobs[:5], 7, 3) == jobs[:5]


def _news(path: Path) -> Path:
    lines = ["timestamp,ticker,headline"]
    for d in pd.bdate_range("2012-05-20", "2012-08-31"):
        lines.append(f"{d.date()}T13:00:00Z,AAPL,Apple beats estimates and raises guidance as iPhone sales surge")
        lines.append(f"{d.date()}T13:00:00Z,GOOG,Google misses estimates and cuts guidance; shares plunge on weak ads")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_builtin_engine_behaves_as_expected_under_each_perturbation(tmp_path: Path) -> None:
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    rc = ReplayConfig(tickers=("AAPL", "GOOG"), start="2012-06-01", end="2012-08-31", audit_n=12, workers=1,
                      fsync=False, news_file=str(_news(tmp_path / "news.csv")), output_dir=str(tmp_path / "out"))
    s, text, path = run_audit(cfg, PipelineConfig(provider="builtin"), rc)
    assert path.read_text(encoding="utf-8") == text and all(s[v]["n"] == 12 for v in s)
    # the chart is drawn rebased to 100: rebasing the prices cannot change anything
    assert s["rebased"]["changed"] == 0.0 and s["rebased"]["confidence_shift"] == 0.0
    # the news scorer reads tone words, not names
    assert s["masked_names"]["changed"] == 0.0 and s["masked_names"]["confidence_shift"] == 0.0
    # the chart reader is symmetric: every BUY/SELL flips when the window is mirrored
    assert s["mirrored"]["chart_directional"] > 0 and s["mirrored"]["chart_flips"] == 1.0
    # the news moves the confidence (bullish AAPL vs bearish GOOG headlines) ...
    assert s["no_news"]["confidence_shift"] > 0.05 and s["swapped_news"]["confidence_shift"] > 0.05
    # ... but never the action of these dates: the fusion lets news only push a decision to HOLD (measured, docs)
    assert s["no_news"]["changed"] == 0.0


def test_a_budget_too_small_is_refused_before_any_work(tmp_path: Path) -> None:
    cfg = Config()
    cfg = replace(cfg, dataset=replace(cfg.dataset, source="offline"))
    rc = ReplayConfig(tickers=("AAPL",), start="2012-06-01", end="2012-08-31", audit_n=5, max_calls=10,
                      output_dir=str(tmp_path / "out"))
    with pytest.raises(UsageError, match=r"up to 60 calls, over replay.max_calls=10"):
        run_audit(cfg, PipelineConfig(provider="builtin"), rc)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "needle"), [
    (["--replay", "--audit", "--tickers", "AAPL", "--start", "1980-12-15", "--end", "1981-01-10"],
     "--audit: no decision dates"),  # the data's first weeks: no chart window has its history yet
    (["--audit"], "--audit goes with --replay"),
])
def test_bad_audit_is_one_error_line_and_nothing_written(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(ROOT / "04_signal_pipeline.py"), *args, "--provider", "builtin",
                        "--set", "dataset.source=offline", "--set", f"replay.output_dir={out}"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = [x for x in p.stderr.strip().splitlines() if not x.startswith("WARNING")]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr
    assert not out.exists()
