"""Config loading: defaults -> TOML -> --set overrides, typing, validation and CLI exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from alphasignal.config import Config, ConfigError, DatasetConfig, load_config, to_toml

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_valid_and_embargo_never_below_horizon():
    cfg = load_config()
    assert cfg == Config()
    assert cfg.dataset.effective_embargo == cfg.dataset.horizon
    assert DatasetConfig(horizon=5, embargo=12).effective_embargo == 12
    assert DatasetConfig(horizon=10, embargo=3).effective_embargo == 10


def test_the_model_server_defaults_are_the_providers_and_their_modules_never_import_config():
    from alphasignal.providers import ProviderSettings

    assert ProviderSettings.from_config(Config()) == ProviderSettings()  # [pipeline] repeats none of them
    assert (Config().serve.ollama_host, Config().serve.api_key) == (ProviderSettings().ollama_host, "not-needed")
    probe = "import sys, alphasignal.configio, alphasignal.provider_settings; print('config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"]  # the low modules load without the root config.py


def test_toml_then_set_overrides_in_order(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[dataset]\nwindow = 40\ntickers = ["AAPL", "GOOG"]\nbollinger = true\n'
                 '[sweep]\ngrid = { short_period = [5, 10] }\n')
    cfg = load_config(f, ["dataset.window=30", "dataset.moving_averages=5,15", "dataset.buy_threshold=0.7"])
    assert cfg.dataset.window == 30  # --set wins over the file
    assert cfg.dataset.tickers == ("AAPL", "GOOG")
    assert cfg.dataset.bollinger is True
    assert cfg.dataset.moving_averages == (5, 15)
    assert cfg.dataset.buy_threshold == pytest.approx(0.7)
    assert cfg.sweep.grid == {"short_period": [5, 10]}


@pytest.mark.parametrize("order", [0, 1])
def test_dependent_settings_are_validated_once_after_all_overrides(tmp_path, order):
    # val 0.9 with the default test 0.15 is invalid on its own (sum > 1); with test 0.05 it is valid in any order.
    sets = ["dataset.val_fraction=0.9", "dataset.test_fraction=0.05"]
    cfg = load_config(None, sets if order == 0 else sets[::-1])
    assert (cfg.dataset.val_fraction, cfg.dataset.test_fraction) == (0.9, 0.05)
    f = tmp_path / "c.toml"
    f.write_text("[dataset]\nval_fraction = 0.9\n")  # the file alone is invalid; the --set completes it
    assert load_config(f, ["dataset.test_fraction=0.05"]).dataset.val_fraction == 0.9
    with pytest.raises(ConfigError, match="val_fraction"):
        load_config(f, [])


def test_cli_values_are_typed():
    cfg = load_config(None, ["dataset.hide_context=false", "dataset.tickers=[\"A\", \"B\"]", "dataset.stride=3"])
    assert cfg.dataset.hide_context is False
    assert cfg.dataset.tickers == ("A", "B")
    assert isinstance(cfg.dataset.stride, int) and cfg.dataset.stride == 3


def test_show_config_output_is_a_valid_config_file(tmp_path):
    cfg = load_config(None, ["dataset.window=33", "dataset.style=yahoo"])
    f = tmp_path / "round.toml"
    f.write_text(to_toml(cfg))
    assert load_config(f) == cfg


def test_hash_is_stable_and_sensitive():
    a, b = load_config(), load_config()
    assert a.hash("dataset") == b.hash("dataset")
    assert a.hash("dataset") != load_config(None, ["dataset.window=61"]).hash("dataset")
    assert a.hash("dataset") == load_config(None, ["sweep.fees_bps=3"]).hash("dataset")


@pytest.mark.parametrize(("overrides", "needle"), [
    (["datset.window=3"], "did you mean 'dataset'"),
    (["dataset.windw=3"], "did you mean 'window'"),
    (["dataset.window"], "malformed"),
    (["dataset.window=abc"], "not a valid int"),
    (["dataset.window=2.5"], "not a valid int"),
    (["dataset.hide_context=maybe"], "not a boolean"),
    (["dataset.window=0"], "dataset.window must be > 0"),
    (["dataset.buy_threshold=-0.1"], "sell_threshold < 0 < buy_threshold"),
    (["dataset.sell_threshold=0.2"], "sell_threshold < 0 < buy_threshold"),
    (["dataset.label_mode=absolute", "dataset.sell_threshold=-1.5"], "impossible for label_mode=absolute"),
    (["dataset.val_fraction=0.6", "dataset.test_fraction=0.5"], "val_fraction + test_fraction"),
    (["dataset.style=neon"], "use classic, charles, yahoo or hollow"),
    (["dataset.renderer=svg"], "dataset.renderer='svg' is invalid: use fast or mplfinance"),
    (["dataset.limit=-1"], "dataset.limit must be >= 0"),
    (["dataset.nan_policy=zero"], "use drop, ffill or error"),
    (["dataset.image_size=60000"], "use 112..4096"),
    (["dataset.workers=999"], "dataset.workers=999 is invalid"),
    (["dataset.workers=-3"], "dataset.workers=-3 is invalid"),
    (["sweep.fees_bps=1e9"], "over 10 % a trade"),
    (["pipeline.timeout=inf"], "not a finite number"),
    (["sweep.risk_free=nan"], "not a finite number"),
])
def test_bad_values_fail_with_a_clear_message(overrides, needle):
    with pytest.raises(ConfigError) as exc:
        load_config(None, overrides)
    assert needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[dataset\nwindow = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    flat = tmp_path / "flat.toml"
    flat.write_text("window = 3\n")
    with pytest.raises(ConfigError, match=r"must be a \[section\] table"):
        load_config(flat)


def _script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "01_generate_dataset.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_script_show_config_and_usage_exit_code():
    ok = _script("--show-config", "--set", "dataset.window=42", "--limit", "7")
    assert ok.returncode == 0, ok.stderr
    assert "window = 42" in ok.stdout and "limit = 7" in ok.stdout
    bad = _script("--set", "dataset.windw=3")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: unknown config key dataset.windw; did you mean 'window'?"]
