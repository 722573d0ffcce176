"""The user-strategy look-ahead check: every textbook look-ahead is refused, each causal twin is accepted, and
stage 05 refuses a look-ahead strategy end to end (one ``error:`` line, exit 2, nothing written)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alphasignal.backtest.user_strategy import SELF_CHECK_BARS, load_strategy, self_check_cuts
from alphasignal.errors import UsageError

_TEMPLATE = textwrap.dedent("""
    import numpy as np
    import pandas as pd
    from alphasignal.backtest import ParamSpec

    class Peek:
        PARAM_SPECS = {{"period": ParamSpec(2, 30, 1, int, 10)}}

        def positions(self, indicators, p):
            close = indicators.close
            k = len(p["period"])
            one = {body}
            return np.repeat(np.asarray(one, dtype=float)[:, None], k, axis=1)
""")

# name -> (the position series of one configuration, written as a user would, does it look ahead?)
CASES = {
    "textbook shift(-1)": ("np.where(pd.Series(close).shift(-1) > close, 1, -1)", True),
    "shift(-3)": ("np.where(pd.Series(close).shift(-3) > close, 1, -1)", True),
    "np.roll(x, -1)": ("np.where(np.roll(close, -1) > close, 1, -1)", True),
    "centred rolling window": ("np.where(close > pd.Series(close).rolling(21, center=True).mean(), 1, -1)", True),
    "full-series normalisation": ("np.where((close - close.mean()) / close.std() > 0, 1, -1)", True),
    "look-ahead only on long series": (
        "np.where(pd.Series(close).shift(-1 if len(close) > 4000 else 1) > close, 1, -1)", True),
    "causal shift(1)": ("np.where(pd.Series(close).shift(1) < close, 1, -1)", False),
    "causal trailing window": ("np.where(close > pd.Series(close).rolling(21).mean(), 1, 0)", False),
    "causal expanding normalisation": (
        "np.where((close - pd.Series(close).expanding().mean()) > 0, 1, -1)", False),
}


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "peek.py"
    path.write_text(_TEMPLATE.format(body=body))
    return path


def test_the_cuts_include_random_places_and_every_one_of_the_last_bars():
    cuts = self_check_cuts()
    n = SELF_CHECK_BARS
    assert cuts == sorted(set(cuts)) and all(0 < c < n for c in cuts)
    assert {n - 1, n - 2, n - 3, n - 4, n - 5} <= set(cuts)
    assert len(cuts) >= 25 and cuts == self_check_cuts()  # seeded: the same cuts each time
    assert len({c for c in cuts if c % 10 != 0 and c < n - 5}) >= 10  # random ones, not only round numbers


@pytest.mark.parametrize("case", sorted(CASES))
def test_look_ahead_is_refused_and_causal_rules_are_accepted(case, tmp_path):
    body, looks_ahead = CASES[case]
    path = _write(tmp_path, body)
    if looks_ahead:
        with pytest.raises(UsageError, match="looks ahead") as info:
            load_strategy("Peek", str(path))
        assert "\n" not in str(info.value)
    else:
        assert load_strategy("Peek", str(path)).name == "Peek"


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(c for c, (_, bad) in CASES.items() if bad))
def test_stage_05_refuses_a_look_ahead_strategy_end_to_end(case, tmp_path, sweep_refuses):
    sweep_refuses(_write(tmp_path, CASES[case][0]), "Peek", "looks ahead")
