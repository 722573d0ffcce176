"""Every command in README.md and docs/*.md is true (docs/testing.md, "Commands in the docs").

Each ``bash`` block's commands are collected. Fast tier: every stage script, benchmark module, requirements file and
test path named exists; every stage command's flags parse (it runs with ``--show-config`` appended: flags parsed,
config loaded and validated, exit 0); every flag a benchmark command gives is one the benchmark defines; a
command that is none of these carries a marker; every link between the pages resolves. Slow tier: every command
without a marker runs as written in a scratch folder, and docs/api.md's example runs. A marker is a comment that
starts with ``slow``, ``needs:`` or ``runs until Ctrl-C``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKERS = ("slow", "needs:", "runs until ctrl-c")
STAGE = re.compile(r"^0[1-7]_\w+\.py$")
QUICK_START = "python 04_signal_pipeline.py --demo"


@dataclass(frozen=True)
class Command:
    """One command of a doc's bash block: where it is, its words (prefixes and redirection removed) and marker."""

    doc: str
    line: int
    text: str
    argv: tuple[str, ...]
    stdout_to: str | None
    marker: str | None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{' '.join(self.argv[:3])}"

    @property
    def kind(self) -> str:
        a = self.argv
        if a[:1] == ("python",) and len(a) > 1 and STAGE.match(a[1]):
            return "stage"
        if a[:3] == ("python", "-m", "pytest"):
            return "pytest"
        if a[:2] == ("python", "-m") and len(a) > 2 and a[2].startswith("benchmarks."):
            return "benchmark"
        if a[:2] == ("pip", "install"):
            return "pip"
        return "other"


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of one shell line: the comment starts at a ``#`` after a space, outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def words(code: str) -> tuple[list[list[str]], str | None]:
    """The commands of one logical line (split on ``&&``), each without its prefixes (``!``, ``VAR=value``,
    ``time``, ``env [-u NAME]``, ``flock FILE``), and the file a ``>`` redirects stdout to."""
    argv, target = shlex.split(code), None
    if ">" in argv:
        i = argv.index(">")
        argv, target = argv[:i], argv[i + 1]
    parts: list[list[str]] = [[]]
    for w in argv:
        if w == "&&":
            parts.append([])
        else:
            parts[-1].append(w)
    out = []
    for part in parts:
        part = [part[0].lstrip("!"), *part[1:]] if part else part
        while part:
            if re.match(r"^[A-Z_][A-Z0-9_]*=", part[0]) and "$(" in part[0] and not part[0].endswith(")"):
                end = next((i for i, w in enumerate(part) if w.endswith(")")), len(part) - 1)
                part = part[end + 1:]  # VAR=$(command with words)
            elif re.match(r"^[A-Z_][A-Z0-9_]*=", part[0]) or part[0] == "time":
                part = part[1:]
            elif part[0] == "env":
                part = part[3:] if part[1:2] == ["-u"] else part[1:]
            elif part[0] == "flock":
                part = part[2:]
            else:
                break
        out.append(part)
    return out, target


def collect() -> list[Command]:
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
            first = text[:block.start()].count("\n") + 2
            lines = block.group(1).split("\n")
            i = 0
            while i < len(lines):
                start, joined = i, ""
                while True:
                    code, comment = split_comment(lines[i])
                    i += 1
                    if code.endswith("\\") and i < len(lines):
                        joined += code[:-1] + " "
                        continue
                    joined += code
                    break
                if not joined.strip():
                    continue
                marker = comment if comment.lower().startswith(MARKERS) else None
                argvs, target = words(joined)
                for argv in argvs:
                    found.append(Command(str(doc.relative_to(ROOT)), first + start, joined.strip(), tuple(argv),
                                         target, marker))
        for m in re.finditer(r"^\|.*?`(python 0[1-7]_\w+\.py[^`]*)`", text, re.M):  # a table's "try it" column
            line = text[:m.start()].count("\n") + 1
            found.append(Command(str(doc.relative_to(ROOT)), line, m.group(1), tuple(shlex.split(m.group(1))), None,
                                 "needs: nothing, parsed only (a table cell)"))
    return found


COMMANDS = collect()


def test_the_docs_have_commands_and_the_readme_keeps_its_two_setup_commands():
    readme = [c.text for c in COMMANDS if c.doc == "README.md"]
    assert "pip install -r requirements.txt && python 04_signal_pipeline.py --demo" in readme
    assert "pip install -r requirements-dev.txt && python -m pytest" in readme
    assert {c.kind for c in COMMANDS} >= {"stage", "benchmark", "pip", "pytest"}
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 150


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: c.id)
def test_every_command_names_what_exists_and_is_runnable_or_marked(cmd: Command):
    a = cmd.argv
    if cmd.kind == "stage":
        assert (ROOT / a[1]).is_file()
    elif cmd.kind == "benchmark":
        source = ROOT / (a[2].replace(".", "/") + ".py")
        assert source.is_file(), f"{cmd.text}: no {source.relative_to(ROOT)}"
        text = source.read_text(encoding="utf-8")
        unknown = [f for f in (w.split("=")[0] for w in a[3:] if w.startswith("--")) if f'"{f}"' not in text]
        assert not unknown, f"{cmd.text}: {source.name} defines no {unknown}"
        assert cmd.marker, f"{cmd.text}: a benchmark is a long run: mark it '# slow' (or '# needs: ...')"
    elif cmd.kind == "pip":
        reqs = [a[i + 1] for i, w in enumerate(a) if w == "-r"]
        assert cmd.marker or reqs, f"{cmd.text}: an install that is not from a requirements file needs a marker"
        assert all((ROOT / r).is_file() for r in reqs), f"{cmd.text}: missing {reqs}"
    elif cmd.kind == "pytest":
        paths = [w.split("::")[0] for w in a[3:] if w.startswith("tests/")]
        assert all((ROOT / p).exists() for p in paths), f"{cmd.text}: missing {paths}"
    else:
        assert cmd.marker, f"{cmd.doc}:{cmd.line}: {cmd.text!r} is not run by any test: add '# needs: ...'"


# ------------------------------------------------------------------------------------------------ flags
DRIVER = r"""
import contextlib, io, json, runpy, sys
from pathlib import Path
script, jobs, results = sys.argv[1], json.loads(sys.argv[2]), []
for argv, target in jobs:
    sys.argv = [script, *argv, "--show-config"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if target:
        Path(target).write_text(out.getvalue(), encoding="utf-8")
    results.append([code, err.getvalue()[-800:]])
print(json.dumps(results))
"""


def scratch(tmp: Path) -> dict[str, str]:
    """A working folder that looks like the repository root for inputs (scripts, examples), with its own outputs;
    returns the environment that imports this checkout."""
    for name in ("examples", "config.py", *(p.name for p in ROOT.glob("0[1-7]_*.py"))):
        (tmp / name).symlink_to(ROOT / name)
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"}


def by_script() -> dict[str, list[Command]]:
    groups: dict[str, list[Command]] = defaultdict(list)
    for c in COMMANDS:
        if c.kind == "stage":
            groups[c.argv[1]].append(c)
    return dict(groups)


@pytest.mark.parametrize("script, cmds", sorted(by_script().items()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_stage_command_parses_its_flags(script: str, cmds: list[Command], tmp_path: Path):
    env = scratch(tmp_path)
    jobs = [[list(c.argv[2:]), c.stdout_to] for c in cmds]
    res = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT / script), json.dumps(jobs)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    results = json.loads(res.stdout.strip().splitlines()[-1])
    bad = [f"{c.doc}:{c.line}: {c.text} -> exit {code}: {err.strip()}" for c, (code, err) in zip(cmds, results,
                                                                                                  strict=True)
           if code and not missing_input(c, code, err)]
    assert not bad, "\n".join(bad)


def missing_input(cmd: Command, code: int, err: str) -> bool:
    """A ``# needs: ...`` command may name an input of your own that is not here: its flags parsed (argparse would
    have printed its usage) and the one error line names that file."""
    named = any(f"'{w}'" in err for w in cmd.argv[2:] if not w.startswith("-"))
    return bool(cmd.marker and cmd.marker.startswith("needs:")) and code == 2 and "usage:" not in err and named


# ------------------------------------------------------------------------------------------------ links
def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves(doc: Path):
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.S | re.M)
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            bad.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            bad.append(f"{target}: no heading #{anchor}")
    assert not bad, f"{doc.name}: {bad}"


def test_every_docs_page_is_linked_from_the_readme_or_another_page():
    linked = set()
    for doc in DOCS:
        linked |= {(doc.parent / t.partition("#")[0]).resolve()
                   for t in re.findall(r"\]\(([^)#\s]+)[^)]*\)", doc.read_text(encoding="utf-8"))}
    orphans = [p.name for p in DOCS[1:] if p.resolve() not in linked]
    assert not orphans, f"pages no other page links to: {orphans}"


# ------------------------------------------------------------------------------------------------ runs
def run_as_written(cmd: Command, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, str(ROOT / cmd.argv[1]), *cmd.argv[2:]], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    if cmd.stdout_to:
        (cwd / cmd.stdout_to).write_text(res.stdout, encoding="utf-8")
    return res


def test_the_quick_start_demo_runs_as_written(tmp_path: Path):
    cmd = next(c for c in COMMANDS if c.doc == "README.md" and " ".join(c.argv) == QUICK_START)
    res = run_as_written(cmd, tmp_path, scratch(tmp_path))
    assert res.returncode == 0, res.stderr[-2000:]
    decision = json.loads((tmp_path / "decision.json").read_text(encoding="utf-8"))
    assert decision["final_action"] in {"BUY", "SELL", "HOLD"} and decision["meta"]["engine"]


def unmarked_by_doc() -> dict[str, list[Command]]:
    groups: dict[str, list[Command]] = defaultdict(list)
    for c in COMMANDS:
        if c.kind == "stage" and not c.marker:
            groups[c.doc].append(c)
    return dict(groups)


@pytest.mark.slow
@pytest.mark.parametrize("doc, cmds", sorted(unmarked_by_doc().items()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_unmarked_command_runs_as_written(doc: str, cmds: list[Command], tmp_path: Path):
    """A page's commands run in order in one scratch folder (a later one may read what an earlier one wrote)."""
    env = scratch(tmp_path)
    for cmd in cmds:
        res = run_as_written(cmd, tmp_path, env)
        assert res.returncode == 0, f"{cmd.doc}:{cmd.line}: {cmd.text}\n{res.stderr[-2000:]}"


@pytest.mark.slow
def test_the_api_example_runs_as_written(tmp_path: Path):
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M))
    assert "from alphasignal import SignalPipeline, Strategy, backtest, replay, sweep" in code
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=scratch(tmp_path), capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "decisions; DSR" in res.stdout and "BULLISH" in res.stdout
