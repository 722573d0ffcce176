"""Structure rules that keep things written once: no private name imported across modules, one progress bar,
one entry shape per stage (checked on the source, so a new module that breaks them fails here)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*ROOT.glob("alphasignal/**/*.py"), *ROOT.glob("*.py"), *ROOT.glob("benchmarks/*.py")])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_name_is_imported_from_another_module(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [f"line {n.lineno}: from {n.module} import {a.name}" for n in ast.walk(tree)
           if isinstance(n, ast.ImportFrom) for a in n.names if _private(a.name)]
    assert not bad, f"{path.name} imports private names (make them public or move them): {bad}"


def test_rich_progress_bars_are_built_in_one_place():
    users = [str(p.relative_to(ROOT)) for p in SOURCES if p.name != "progress.py"
             and any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", "")) == "Progress"
                     for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))]
    assert users == [], f"use alphasignal.progress.progress_bar instead of rich's Progress in {users}"


def test_the_progress_bar_counts_and_is_silent_when_disabled(capsys):
    from alphasignal.progress import progress_bar

    with progress_bar(True, 10, "work", completed=2, detail="loss {task.fields[loss]}", fields={"loss": "-"}) as bar:
        bar(3)
        bar.update(loss="0.5")
        task = bar._progress.tasks[0]
        assert (task.completed, task.total, task.fields["loss"]) == (5, 10, "0.5")
    with progress_bar(False, 10, "quiet") as bar:
        bar(3)
        bar.update(completed=9)
    assert capsys.readouterr().out == ""  # bars go to stderr, never into a script's stdout
    with pytest.raises(ValueError, match="unit='kg'"):
        progress_bar(True, 1, "x", unit="kg")


STAGE_SCRIPTS = {"01_generate_dataset.py": "alphasignal.cli.dataset",
                 "03_serve_ollama.py": "alphasignal.cli.serve",
                 "04_signal_pipeline.py": "alphasignal.cli.signals",
                 "05_sweep_backtest.py": "alphasignal.cli.sweep",
                 "06_multi_llm_optimize.py": "alphasignal.cli.optimize",
                 "07_dashboard.py": "alphasignal.cli.dashboard"}


@pytest.mark.parametrize("script, module", STAGE_SCRIPTS.items())
def test_every_stage_has_one_entry_shape(script, module):
    """A thin script (imports, then run_stage of one module) over a module with add_arguments and main."""
    import importlib
    import inspect

    tree = ast.parse((ROOT / script).read_text(encoding="utf-8"))
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert defs == [], f"{script} defines {defs}: stage logic belongs in {module}"
    package, _, name = module.rpartition(".")
    assert any(isinstance(n, ast.ImportFrom) and n.module == package and n.names[0].name == name
               for n in tree.body), f"{script} does not run {module}"
    assert "run_stage(stage, __doc__)" in (ROOT / script).read_text(encoding="utf-8")
    stage = importlib.import_module(module)
    assert list(inspect.signature(stage.add_arguments).parameters) == ["parser"]
    assert list(inspect.signature(stage.main).parameters) == ["args", "cfg"]
