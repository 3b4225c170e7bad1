"""Reading params.yaml for the stages, checked against the one schema (stage_support/schema.py) before any work.

The library never reads params.yaml; each stage calls :func:`load` for its result params and
:func:`placement` for where and how fast it runs. Both validate in the driver, in milliseconds, before
Ray starts: types, ranges, allowed names (with a did-you-mean), unknown keys (with the closest known
key). A configuration error is a :class:`ParamsError` that names the key, the value and what is allowed.

The schema and its vocabulary (:class:`Param`, ``NO_FILE``) live in schema.py, which this module imports.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from stage_support.schema import (CHECKS, MOVED, NO_FILE, PLACEMENT, REQUIRED, SECTIONS, Param, Schema,
                                  describe)

# NO_FILE, REQUIRED, Param and Schema are schema.py's; stages and tests reach them here too (P.NO_FILE).
__all__ = ["NO_FILE", "REQUIRED", "Param", "ParamsError", "Schema", "check_value", "checks", "load", "named_file",
           "parser", "placement", "read_file", "setup_logging", "validate"]


class ParamsError(ValueError):
    """A params.yaml value that the schema refuses; the message names the key and what is allowed."""


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list)
    raise ValueError(f"schema error: unknown kind {kind!r}")


def check_value(key: str, value: Any, p: Param) -> str | None:
    """The problem with ``value`` for key ``key``, or None when it is allowed."""
    def problem(what: str) -> str:
        return f"{key} = {value!r}: {what}" + (f" ({p.doc})" if p.doc else "")

    if not _kind_ok(p.kind, value):
        return problem(f"expected {describe(p)}")
    if p.choices and value not in p.choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in p.choices], n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return problem(f"expected one of {', '.join(map(str, p.choices))}{hint}")
    number = len(value) if p.kind == "list" else value
    if p.kind in ("int", "float", "list"):
        if p.positive and number <= 0:
            return problem(f"expected {describe(p)}")
        if (p.low is not None and number < p.low) or (p.high is not None and number > p.high):
            return problem(f"expected {describe(p)}")
    if p.length is not None and len(value) != p.length:
        return problem(f"expected {describe(p)}")
    if p.items is not None:
        for i, item in enumerate(value):
            found = check_value(f"{key}[{i}]", item, p.items)
            if found:
                return found
    if p.file and (not isinstance(value, str) or not value.strip()):
        return problem(f"expected a path or URI, or {NO_FILE} for none (DVC dependencies cannot be empty)")
    if p.check is not None:
        found = p.check(value)
        if found:
            return problem(found)
    return None


def validate(values: Any, schema: Schema, prefix: str, moved: dict[str, str] | None = None) -> tuple[dict, list[str]]:
    """Checks ``values`` against ``schema``; returns (values with defaults filled in, problems).

    Args:
        values: the section as read from YAML.
        schema: key -> Param or nested schema.
        prefix: the dotted name of the section (for messages), e.g. ``train``.
        moved: full dotted key -> where it lives now (refused with that hint).
    """
    if values is None:
        values = {}
    if not isinstance(values, dict):
        return {}, [f"{prefix} = {values!r}: expected a mapping of keys"]
    out, problems = {}, []
    for key, value in values.items():
        full = f"{prefix}.{key}"
        if key not in schema:
            if moved and full in moved:
                why = ("where and how fast a stage runs is not a param of its result" if
                       moved[full].startswith("placement.") else "each dataset adapter has its own section")
                problems.append(f"{full}: this key moved to {moved[full]} ({why}: docs/params.md)")
                continue
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            hint = f"; did you mean {prefix}.{close[0]}?" if close else ""
            problems.append(f"{full}: unknown key{hint} (known: {', '.join(schema)})")
            continue
        spec = schema[key]
        if isinstance(spec, dict):
            out[key], sub = validate(value, spec, full, moved)
            problems += sub
            continue
        found = check_value(full, value, spec)
        if found:
            problems.append(found)
        out[key] = value
    for key, spec in schema.items():
        if key in out or key in values:
            continue
        if isinstance(spec, dict):
            out[key], sub = validate({}, spec, f"{prefix}.{key}", moved)
            problems += sub
        elif spec.default is REQUIRED:
            problems.append(f"{prefix}.{key} is missing: expected {describe(spec)}" +
                            (f" ({spec.doc})" if spec.doc else ""))
        else:
            out[key] = spec.default
    return out, problems


def read_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The whole params file; raises naming the file when it is absent or not YAML."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run stages from the project root (or pass --params)")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return params


def _raise(path: str | Path, problems: list[str]) -> None:
    if problems:
        raise ParamsError(f"{path}: " + ("\n  ".join([""] + problems) if len(problems) > 1 else problems[0]))


def load(section: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """One section of params.yaml, validated against the schema, defaults filled in.

    Raises:
        ParamsError: naming each key that is unknown, missing, of the wrong type or out of range.
    """
    params = read_file(path)
    if section not in params:
        raise ParamsError(f"{path} has no section {section!r}")
    values, problems = validate(params[section], SECTIONS[section], section, MOVED)
    _raise(path, problems)
    return values


def placement(stage: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Where and how fast ``stage`` runs: ``placement.<stage>`` plus the shared keys (``ray_address``, ...).

    ``placement`` is listed by no stage in dvc.yaml: changing it re-runs nothing. Absent keys take their
    defaults, so a params file without the section runs on a local Ray with the defaults.
    """
    raw = read_file(path).get("placement") or {}
    values, problems = validate(raw, PLACEMENT, "placement")
    _raise(path, problems)
    shared = {k: v for k, v in values.items() if not isinstance(PLACEMENT[k], dict)}
    return {**shared, **values.get(stage, {})}


def checks(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The ``checks`` section (guards such as ``max_reject_fraction``), defaults filled in."""
    values, problems = validate(read_file(path).get("checks") or {}, CHECKS, "checks")
    _raise(path, problems)
    return values


def named_file(value: str) -> str:
    """A file param's value, or "" when it names no file (``inputs/none``)."""
    value = str(value or "").strip()
    return "" if value in ("", NO_FILE) or os.path.normpath(value) == NO_FILE else value


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
