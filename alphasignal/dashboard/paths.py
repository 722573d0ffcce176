"""Where the dashboard may read: the project's results, dataset and models folders, nothing else.

Every path a page opens goes through :func:`guard`: a path with a ``..`` part, an absolute path outside the roots
or a symlink whose target lies outside them is refused with a :class:`PathRefused` message for the page. Every
file read beside such a path (metadata, a replay's CSVs, a ladder's Markdown) goes through :func:`confined`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError


class PathRefused(UsageError):
    """A path outside the dashboard's roots (or one that tries to leave them)."""


@dataclass(frozen=True)
class Roots:
    """The folders pickers may read, by name (``results``, ``dataset``, ``models``)."""

    folders: tuple[tuple[str, Path], ...]

    @classmethod
    def from_config(cls, dc: object, base: str | Path = ".") -> Roots:
        """The roots of a ``DashboardConfig``; relative folders are relative to ``base`` (the project folder)."""
        b = Path(base)
        return cls(tuple((name, (b / Path(getattr(dc, f"{name}_dir")).expanduser()).absolute())
                         for name in ("results", "dataset", "models")))

    def __getitem__(self, name: str) -> Path:
        return dict(self.folders)[name]

    def text(self) -> str:
        """The roots for a message: ``results (/abs/results), ...``."""
        return ", ".join(f"{n} ({p})" for n, p in self.folders)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def guard(path: str | Path, roots: Roots, *, base: str | Path = ".") -> Path:
    """The absolute path of ``path`` (relative ones are relative to ``base``) if it and every symlink on it stay
    inside one of ``roots``; otherwise :class:`PathRefused`. The file need not exist."""
    text = str(path).strip()
    if not text:
        raise PathRefused("no path given: pick a file under " + roots.text())
    p = Path(text).expanduser()
    if ".." in p.parts:
        raise PathRefused(f"{text!r} contains '..': give a path under {roots.text()}")
    full = p if p.is_absolute() else (Path(base) / p).absolute()
    root = next((r for _, r in roots.folders if _inside(full, r)), None)
    if root is None:
        raise PathRefused(f"{text!r} is outside the dashboard's folders: use a file under {roots.text()} "
                          "(or point --set dashboard.results_dir=... at its folder)")
    real_root = root.resolve()
    if not _inside(full.resolve(), real_root):
        raise PathRefused(f"{text!r} is a symlink (or lies under one) that leads outside {str(root)!r}: "
                          "copy the file into the folder instead")
    return full


def confined(path: str | Path, folder: str | Path) -> Path:
    """``path``, a file the dashboard reads beside a path :func:`guard` accepted (a sweep's ``.meta.json``, a
    replay's ``trades.csv``), if it resolves inside ``folder``; a symlink that leads out of it is refused."""
    p, root = Path(path), Path(folder).resolve()
    if not _inside(p.resolve(), root):
        raise PathRefused(f"{str(p)!r} is a symlink that leads outside {str(folder)!r}: copy the file into the "
                          "folder instead")
    return p


def find_files(roots: Roots, names: Iterable[str], suffixes: Sequence[str], *, limit: int = 200) -> list[Path]:
    """Files under the named roots whose name ends with one of ``suffixes`` (newest first, at most ``limit``),
    skipping hidden files, temp files and anything :func:`guard` refuses."""
    found: list[Path] = []
    for name in names:
        root = roots[name]
        if not root.is_dir():
            continue
        for f in root.rglob("*"):
            if f.name.startswith(".") or not f.name.lower().endswith(tuple(suffixes)) or not f.is_file():
                continue
            try:
                found.append(guard(f, roots))
            except PathRefused:
                continue
            if len(found) >= 10 * limit:
                break
    found.sort(key=lambda f: (-f.stat().st_mtime, str(f)))
    return found[:limit]
