"""The one way the project writes a file: atomically (temp file in the same folder + rename), mode 0644; a file
another program wrote beside its destination is put in place with the same rename (``move_atomic``).

Also the one check of an output location before any work starts, so a bad path fails in a second, not after
an hour of work. Every OS error becomes a one-line ``UsageError`` (exit 2) that names the path and the fix.
``source_digest`` hashes source files: the identity of code whose results are cached.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .errors import UsageError

FILE_MODE = 0o644  # mkstemp creates 0600 files; outputs are readable like any file the user writes


def _os_error(path: Path, exc: OSError) -> UsageError:
    if exc.errno == errno.ENOSPC:
        fix = "free some space or choose another location"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "fix its permissions or choose another location"
    else:
        fix = "choose another location"
    return UsageError(f"cannot write {str(path)!r} ({exc.strerror or exc}): {fix}")


def _kind(st_mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(st_mode):
            return name
    return "not a regular file"


def refuse_special(path: str | Path, what: str = "output") -> None:
    """Refuse an existing ``path`` that is not a regular file (a device, a FIFO, a socket, a symbolic link): the
    project replaces only plain files, never what such a path stands for."""
    try:
        st_mode = os.lstat(path).st_mode
    except OSError:
        return  # absent (or unreadable: the write itself then says why)
    if not stat.S_ISREG(st_mode) and not stat.S_ISDIR(st_mode):
        raise UsageError(f"{what} {str(path)!r} exists and is {_kind(st_mode)}, not a regular file: give the path "
                         "of a new or ordinary file")


Data = str | bytes | Callable[[str], object]  # text, bytes, or a function that writes to the temp path it is given


def _write_temp(path: Path, data: Data, mode: int) -> str:
    """``data`` written to a new temp file beside ``path`` (creating the folder); returns its name. On failure
    the temp file is gone and the error is raised."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, mode)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def write_atomic(path: str | Path, data: Data, *, mode: int = FILE_MODE) -> Path:
    """Write ``data`` (text, bytes, or a function that writes to the temp path it is given) to ``path`` so that
    readers never see a partial file; creates the parent folder. Returns ``path``. An existing ``path`` that is
    not a regular file (device, FIFO, symlink) is refused, not replaced."""
    return write_all({path: data}, mode=mode)[0]


def write_all(files: Mapping[str | Path, Data], *, mode: int = FILE_MODE) -> list[Path]:
    """Write several files so that they appear together or not at all: each is written to a temp file beside it
    first, and only when every one is complete are they renamed into place (a full disk half-way leaves none of
    them, and no temp file). Returns the paths."""
    paths = [Path(p) for p in files]
    for path in paths:
        refuse_special(path)
    temps: list[str] = []
    current = paths[0] if paths else Path()
    try:
        for current, data in zip(paths, files.values(), strict=True):
            temps.append(_write_temp(current, data, mode))
        for current, tmp in zip(paths, temps, strict=True):
            os.replace(tmp, current)
        temps = []
    except IsADirectoryError:
        raise UsageError(f"output {str(current)!r} is a directory: give a file path") from None
    except OSError as exc:
        raise _os_error(current, exc) from None
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return paths


def move_atomic(src: str | Path, dst: str | Path) -> Path:
    """Put a finished file ``src`` (written by another program, e.g. llama.cpp) at ``dst`` in one rename, so
    readers see the old file or the whole new one, never part of it; an existing ``dst`` is replaced. ``src`` must
    be on ``dst``'s file system (write it beside ``dst``). Creates the parent folder. Returns ``dst``."""
    dst = Path(dst)
    refuse_special(dst)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    except IsADirectoryError:
        raise UsageError(f"output {str(dst)!r} is a directory: give a file path") from None
    except OSError as exc:
        raise _os_error(dst, exc) from None
    return dst


def check_output_file(path: str | Path, *, what: str = "output") -> Path:
    """Refuse, before any work, an output file path that is a directory or whose folder cannot be written."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a directory: give a file path, e.g. {str(path / 'out')!r}")
    refuse_special(path, what)
    check_output_dir(path.parent, what=f"{what} folder")
    return path


def check_output_dir(path: str | Path, *, what: str = "output folder") -> Path:
    """Refuse, before any work, a folder that is a file (or lies under one) or that cannot be created or written.
    Creates nothing: the nearest existing folder on the path must be writable."""
    path = Path(path).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under the file {str(existing)!r}"
        raise UsageError(f"{what} {str(path)!r} {where}, not a folder: choose another location")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {str(path)!r} is not writable ({str(existing)!r} is read-only for this user): "
                         "fix its permissions or choose another location")
    return path


def input_file(path: str | Path, what: str, fix: str, *, error: type[Exception] = UsageError) -> Path:
    """``path`` as an existing, readable file, or one line that says which of those it is not and how to fix it.
    ``error`` is the exception class to raise (a missing model file is a model problem, exit 3)."""
    p = Path(path).expanduser()
    if str(path).strip() in {"", "."}:
        raise error(f"no {what} given: {fix}")
    if p.is_dir():
        raise error(f"{what} {str(p)!r} is a folder, not a file: {fix}")
    if not p.is_file():
        raise error(f"{what} {str(p)!r} not found: {fix}")
    if not os.access(p, os.R_OK):
        raise error(f"{what} {str(p)!r} is not readable: fix its permissions")
    return p


def source_digest(modules: Iterable[str], versions: Iterable[object] = ()) -> str:
    """sha256 of the source files of ``modules`` (dotted names, imported if needed) and of ``versions`` (library
    versions): the identity of code whose results are cached, so any edit to it misses the cache."""
    h = hashlib.sha256()
    for name in modules:
        h.update(name.encode() + b"\0" + Path(importlib.import_module(name).__file__ or name).read_bytes())
    h.update(repr(tuple(str(v) for v in versions)).encode())
    return h.hexdigest()
