"""The command-line layer: nothing below ``alphasignal.cli`` imports it or argparse, no sys.path edits, one flag
table whose keys are real config values, and the scripts, ``python -m alphasignal`` and the ``alphasignal``
console script build the same parser."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from alphasignal import cli
from alphasignal.cli.flags import FLAGS, flag_overrides
from alphasignal.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "alphasignal"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (top level and inside functions), relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1], *filter(None, [base])])
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


BELOW_CLI = sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts[:1]
                   and p.name != "__main__.py")


def test_the_import_resolver_sees_relative_and_function_level_imports(tmp_path):
    assert "alphasignal.cli.common" in _imports(PACKAGE / "cli" / "__init__.py")
    assert "alphasignal.backtest.run" in _imports(PACKAGE / "cli" / "sweep.py")  # inside main()


@pytest.mark.parametrize("path", BELOW_CLI, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_cli_layer_imports_it_or_argparse(path):
    imported = _imports(path)
    upward = sorted(m for m in imported if m == "alphasignal.cli" or m.startswith("alphasignal.cli."))
    assert not upward, f"{path.relative_to(ROOT)} imports the cli layer ({upward}): return a result instead"
    assert "argparse" not in imported, f"{path.relative_to(ROOT)} imports argparse: flags belong in alphasignal/cli/"


@pytest.mark.parametrize("path", [p for p in BELOW_CLI if p.name != "progress.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_below_the_cli_layer_prints(path):
    """Stage output is printed by alphasignal/cli/; below it only progress.py writes (its bar and status lines)."""
    calls = [f"line {n.lineno}: {ast.unparse(n.func)}(...)" for n in ast.walk(ast.parse(path.read_text("utf-8")))
             if isinstance(n, ast.Call) and (getattr(n.func, "id", None) in ("print", "Console")
                                              or getattr(n.func, "attr", None) == "Console")]
    assert calls == [], f"{path.relative_to(ROOT)} prints ({calls}): return the result, print it in alphasignal/cli/"


def test_no_sys_path_edits_anywhere():
    sources = [*ROOT.glob("*.py"), *PACKAGE.rglob("*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py"),
               *ROOT.glob("examples/*.py")]
    bad = [f"{p.relative_to(ROOT)}:{n.lineno}" for p in sources
           for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
           if isinstance(n, ast.Attribute) and n.attr == "path" and getattr(n.value, "id", None) == "sys"]
    assert bad == [], f"sys.path is edited or read in {bad}: run from the repo root (python -m ...) instead"


# ---- the flag table -----------------------------------------------------------------------------------------------
def test_every_table_flag_names_a_real_config_value_once_per_stage():
    cfg = Config().to_dict()
    assert set(FLAGS) == set(cli.STAGES)
    for stage, flags in FLAGS.items():
        names = [f.flag for f in flags]
        assert len(names) == len(set(names)), f"{stage} names a flag twice"
        for f in flags:
            section, _, key = f.key.partition(".")
            assert key in cfg.get(section, {}), f"{stage} {f.flag} -> {f.key} is not a config value"


@pytest.mark.parametrize("name", list(cli.STAGES))
def test_each_stage_parser_has_its_table_flags_and_records_them(name):
    parser = cli.parser_for(name)
    options = {s for a in parser._actions for s in a.option_strings}
    assert {f.flag for f in FLAGS[name]} <= options
    recorded = [f.flag for f in parser.get_default("config_flags")]
    assert sorted(recorded) == sorted(f.flag for f in FLAGS[name])  # each once


def _overrides(name: str, *argv: str) -> list[str]:
    args = cli.parser_for(name).parse_args(list(argv))
    return flag_overrides(args.config_flags, args)


def test_flags_become_set_overrides_after_the_users_own_and_win():
    sets = _overrides("sweep", "--fees-bps", "5", "--anchored", "--top", "3", "--walk-forward", "3")
    assert sets == ["sweep.fees_bps=5", "sweep.top_n=3", "sweep.walk_forward=3", "sweep.anchored=true"]
    cfg = load_config(None, ["sweep.fees_bps=1", *sets])
    assert (cfg.sweep.fees_bps, cfg.sweep.anchored, cfg.sweep.top_n) == (5.0, True, 3)


def test_implied_values_yield_to_a_flag_that_sets_the_same_key(tmp_path):
    csv = tmp_path / "my_prices.csv"
    csv.write_text("Date,Open,High,Low,Close\n2020-01-02,1,1,1,1\n")
    assert _overrides("dataset", "--csv", str(csv)) == [
        "dataset.source=csv", "dataset.tickers=MY_PRICES", f"dataset.csv_path={csv}"]
    for argv in (["--tickers", "X", "--csv", str(csv)], ["--csv", str(csv), "--tickers", "X"]):
        assert "dataset.tickers=X" in _overrides("dataset", *argv)
        assert "dataset.tickers=MY_PRICES" not in _overrides("dataset", *argv)
    assert sorted(_overrides("sweep", "--csv", str(csv), "--source", "offline")) == [
        f"dataset.csv_path={csv}", "dataset.source=offline", "dataset.tickers=my_prices"]


def test_a_conditional_flag_applies_only_with_its_mode_and_values_are_normalised():
    assert _overrides("signals", "--image", "c.png", "--news-file", "n.txt") == []
    assert sorted(_overrides("signals", "--replay", "--news-file", "n.csv", "--tickers", "aapl, goog,aapl")) == [
        "replay.news_file=n.csv", "replay.tickers=AAPL,GOOG"]


def test_show_config_shows_the_flags(capsys):
    assert cli.main(["sweep", "--show-config", "--fees-bps", "7", "--set", "sweep.fees_bps=2"]) == 0
    assert "fees_bps = 7.0" in capsys.readouterr().out


def test_a_bad_flag_value_is_the_configs_one_line_error(capsys):
    assert cli.main(["optimize", "--show-config", "--compare", "random,nope"]) == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines()
           if not x.startswith("model calls:")]  # this process's earlier model calls (other tests) may be summed
    assert len(err) == 1 and err[0].startswith("error:") and "optimizer.compare" in err[0]


# ---- one parser, three ways in -------------------------------------------------------------------------------------
def _script(name: str):
    path = ROOT / cli.STAGES[name][1]
    spec = importlib.util.spec_from_file_location(f"script_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", list(cli.STAGES))
def test_scripts_and_the_console_script_build_the_same_parser(name):
    mod = _script(name)
    assert mod.stage is cli.stage_module(name) is cli.stage_module(cli.STAGES[name][0])
    assert mod.__doc__ == mod.stage.__doc__, f"{cli.STAGES[name][1]}'s docstring (its --help) differs from the stage's"
    ours, theirs = cli.parser_for(name), cli.stage_parser(mod.stage, mod.__doc__)
    assert [a.option_strings for a in ours._actions] == [a.option_strings for a in theirs._actions]
    assert (ours.description, ours.epilog) == (theirs.description, theirs.epilog)


def test_console_script_and_python_m_call_the_same_function():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, func = scripts["alphasignal"].partition(":")
    assert getattr(importlib.import_module(module), func) is cli.main
    tree = ast.parse((PACKAGE / "__main__.py").read_text())
    assert any(isinstance(n, ast.ImportFrom) and n.module == "alphasignal.cli" and n.names[0].name == "main"
               for n in tree.body)


def test_unknown_stage_and_bare_command_are_usage_errors(capsys):
    assert cli.main(["swep"]) == 2
    assert "did you mean 'sweep'" in capsys.readouterr().err
    assert cli.main([]) == 2 and "alphasignal <stage>" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert all(f"{n:<10} {num}" in listing for n, (num, _) in cli.STAGES.items())


def test_python_m_alphasignal_and_the_script_print_the_same_config():
    argv = ["--show-config", "--top", "7", "--tickers", "GOOG"]
    via_m = subprocess.run([sys.executable, "-m", "alphasignal", "05", *argv], capture_output=True, text=True,
                           cwd=ROOT, timeout=120)
    via_script = subprocess.run([sys.executable, "05_sweep_backtest.py", *argv], capture_output=True, text=True,
                                cwd=ROOT, timeout=120)
    assert via_m.returncode == via_script.returncode == 0, via_m.stderr + via_script.stderr
    assert via_m.stdout == via_script.stdout and "top_n = 7" in via_m.stdout


def test_the_dashboard_app_reads_the_launchers_config_arguments_without_argparse():
    from alphasignal.dashboard.common import app_arguments

    assert app_arguments(["--config=a.toml", "--set=dashboard.port=9", "--set", "x.y=1", "--other"]) == (
        "a.toml", ["dashboard.port=9", "x.y=1"])
    assert app_arguments([]) == (None, [])


def test_the_finetune_scripts_standalone_path_has_the_packages_flags():
    """02_finetune_colab.py uploaded alone has its own parser: the same stage options as alphasignal.cli.finetune."""
    import argparse

    mod = _script("finetune")
    alone = {s for a in mod._add_args(argparse.ArgumentParser())._actions for s in a.option_strings}
    shared = {s for a in cli.build_parser("x")._actions for s in a.option_strings}
    packaged = {s for a in cli.parser_for("finetune")._actions for s in a.option_strings} - shared
    assert alone - {"-h", "--help"} == packaged
