"""Loading and writing a config made of frozen dataclass sections, generic over the sections.

``load(defaults, path, overrides)``: the defaults, then a TOML file, then ``section.key=value`` overrides; each value
converted to its field's annotation as it is read (``ConfigError`` naming the key and the fix), unknown sections and
keys refused with the closest valid name, each section validated once (its ``__post_init__``) after all overrides.
``toml_text`` renders nested tables back as TOML. config.py holds the sections and calls these; this module imports
neither it nor anything else of alphasignal; config.py re-exports its ``ConfigError``.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A configuration value, key or file is invalid (exit code 2); also ``config.ConfigError``."""

    exit_code = 2


def suggest(name: str, options: Iterable[str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``options``, else the list of valid names."""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(options))}"


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a TOML value or a command-line string to the annotated type."""
    origin = typing.get_origin(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on", "false", "0", "no", "off"}:
            return value.lower() in {"true", "1", "yes", "on"}
        raise ConfigError(f"{where}={value!r} is not a boolean: use true or false")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}={value!r} is not a number")
        try:
            num = tp(value) if not isinstance(value, float) or tp is float else value
        except (TypeError, ValueError):
            raise ConfigError(f"{where}={value!r} is not a valid {tp.__name__}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}={value!r} is not an integer")
        if not math.isfinite(num):
            raise ConfigError(f"{where}={value!r} is not a finite number")
        return int(num) if tp is int else float(num)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}={value!r} is not a string")
        return value
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str):
            value = parse_literal(value) if value.strip().startswith("[") else [
                v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(coerce(v, inner, where) for v in value)
    if origin is dict:
        if isinstance(value, str):
            value = parse_literal(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table/dict, e.g. {{a = [1, 2]}}")
        return dict(value)
    raise ConfigError(f"{where}: unsupported type {tp}")  # pragma: no cover - guards new fields


def parse_literal(text: str) -> Any:
    """One TOML value written on the command line (``[1, 2]``, ``{a = 1}``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse {text!r} as a TOML value ({exc})") from None


def parse_cli_value(text: str, tp: Any, where: str) -> Any:
    """A ``--set`` value (always a string) converted to the annotated type."""
    if tp is str:
        return text
    if typing.get_origin(tp) is dict or (typing.get_origin(tp) is tuple and text.strip().startswith("[")):
        return coerce(parse_literal(text), tp, where)
    return coerce(text, tp, where)


def typed_updates(cfg: Any, section: str, updates: Mapping[str, Any], *, from_cli: bool,
                  removed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check section and key names of ``cfg`` (a dataclass of dataclass sections) and convert the values to their
    annotated types (no range checks yet). ``removed`` maps a retired ``section.key`` to the hint shown instead of
    the closest-name suggestion."""
    sections = {f.name for f in fields(cfg)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}{suggest(section, sections)}")
    current = getattr(cfg, section)
    hints = typing.get_type_hints(type(current))
    known = {f.name for f in fields(current)}
    typed = {}
    for key, raw in updates.items():
        if key not in known:
            hint = (removed or {}).get(f"{section}.{key}") or suggest(key, known)
            raise ConfigError(f"unknown config key {section}.{key}{hint}")
        where = f"{section}.{key}"
        typed[key] = parse_cli_value(raw, hints[key], where) if from_cli else coerce(raw, hints[key], where)
    return typed


def load(defaults: C, path: str | Path | None = None, overrides: Sequence[str] = (), *,
         removed: Mapping[str, str] | None = None) -> C:
    """``defaults`` (a dataclass of dataclass sections), then a TOML file, then ``section.key=value`` overrides.

    Every value is type-checked as it is read, but each section is validated once, after all overrides, so
    settings that depend on each other (e.g. dataset.val_fraction and test_fraction) can be set in any order.
    """
    pending: dict[str, dict[str, Any]] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} not found: check the --config path")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(f"config file {str(p)!r}: top-level key {section!r} must be a [section] table")
            pending.setdefault(section, {}).update(typed_updates(defaults, section, table, from_cli=False,
                                                                 removed=removed))
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"--set {item!r} is malformed: use --set section.key=value, e.g. --set dataset.window=60")
        pending.setdefault(section, {}).update(typed_updates(defaults, section, {name: value.strip()}, from_cli=True,
                                                             removed=removed))
    return replace(defaults, **{s: replace(getattr(defaults, s), **typed) for s, typed in pending.items()})


def toml_text(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Nested plain tables (``{section: {key: value}}``) as TOML text."""
    out: list[str] = []
    for section, table in tables.items():
        out.append(f"[{section}]")
        for key, value in table.items():
            out.append(f"{key} = {toml_value(value)}")
        out.append("")
    return "\n".join(out)


def toml_value(v: Any) -> str:
    """One plain value (bool, number, string, list, dict) as a TOML literal."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot render {v!r} as TOML")  # pragma: no cover
