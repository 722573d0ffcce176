"""A user's strategy file is code the command runs: whatever it does -- exit, loop for ever, raise in its
constraints or warm-up, return complex numbers or an absurd warm-up -- the command ends with one UsageError (exit
2), and none of it runs after the command (no background compile of a user's file)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from alphasignal.backtest import startfast
from alphasignal.backtest.user_strategy import load_strategy
from alphasignal.backtest.xp import Backend
from alphasignal.config import SweepConfig
from alphasignal.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]

_FILE = textwrap.dedent("""
    import os, sys
    import numpy as np
    from alphasignal.backtest import ParamSpec
    @TOP@

    class Mine:
        PARAM_SPECS = {{"fast": ParamSpec(2, 20, 1, int, 5), "slow": ParamSpec(21, 60, 1, int, 30)}}
        CONSTRAINTS = {{"fast below slow": lambda p: @CONSTRAINT@}}

        def warmup(self, p):
            return @WARMUP@

        def positions(self, indicators, p):
            @BODY@
            return np.sign(indicators.close[:, None] - indicators.sma(p["slow"]))
""").replace("{{", "{").replace("}}", "}")
DEFAULTS = {"TOP": "", "CONSTRAINT": "p['fast'] < p['slow']", "WARMUP": "p['slow']", "BODY": "pass"}

CASES = {
    "sys.exit at import": ({"TOP": "sys.exit(0)"}, r"loading it called sys.exit\(0\)"),
    "os._exit at import": ({"TOP": "os._exit(0)"}, r"ended the process \(exit code 0\) while it was checked"),
    "os._exit in positions": ({"BODY": "os._exit(3)"}, r"ended the process \(exit code 3\)"),
    "sys.exit('text') in positions": ({"BODY": "sys.exit('bye')"}, r"called sys.exit\('bye'\)"),
    "positions never returns": ({"BODY": "while True: pass"}, "did not finish its check within 3 s"),
    "complex positions": ({"BODY": "return np.ones((len(indicators.close), len(p['fast'])), dtype=complex)"},
                          "returned values of type complex128: positions must be real numbers"),
    "constraint raises": ({"CONSTRAINT": "1 / 0"}, r"CONSTRAINTS\['fast below slow'\] raised ZeroDivisionError"),
    "warmup raises": ({"WARMUP": "p['nope']"}, "Mine.warmup raised KeyError"),
    "warmup -1e30": ({"WARMUP": "-1e30 + 0 * p['slow']"}, r"Mine.warmup returned -1e\+30: return the bars"),
}


def _write(tmp_path: Path, **parts: str) -> Path:
    text = _FILE
    for key, value in {**DEFAULTS, **parts}.items():
        text = text.replace(f"@{key}@", value)
    path = tmp_path / "mine.py"
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_code_that_misbehaves_is_one_usage_error(case, tmp_path):
    parts, needle = CASES[case]
    with pytest.raises(UsageError, match=needle) as info:
        load_strategy("Mine", str(_write(tmp_path, **parts)), timeout=3.0)
    assert "\n" not in str(info.value)


def test_a_well_behaved_file_still_loads_and_its_warmup_is_whole_bars(tmp_path):
    strat = load_strategy("Mine", str(_write(tmp_path)), timeout=60.0)
    import numpy as np

    assert list(strat.warmup({"fast": np.array([5, 6]), "slow": np.array([30, 40])})) == [30, 40]


def test_a_user_strategy_file_never_starts_the_background_compile(tmp_path):
    def probe_must_not_run() -> None:
        raise AssertionError("start fast probed the kernel cache for a user's strategy file")

    backend = Backend("numba", "cpu", "")
    opts = SweepConfig(strategy="Mine", strategy_file=str(_write(tmp_path)))
    assert startfast.choose(backend, opts, {}, probe_must_not_run) == (backend, False)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "needle"), [("os._exit at import", "ended the process (exit code 0)"),
                                              ("sys.exit('text') in positions", "called sys.exit('bye')")])
def test_stage_05_ends_with_one_error_line_when_the_strategy_exits(case, needle, tmp_path, sweep_refuses):
    sweep_refuses(_write(tmp_path, **CASES[case][0]), "Mine", needle)

def test_a_strategy_file_without_strategy_names_the_classes_not_a_built_in(tmp_path):
    path = _write(tmp_path)
    with pytest.raises(UsageError, match=r"has no class 'MA_Crossover': name its strategy class with --strategy "
                                         r"\(classes in it: Mine\)"):
        load_strategy("MA_Crossover", str(path))
