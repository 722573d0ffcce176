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
