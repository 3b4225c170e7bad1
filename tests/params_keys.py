"""The params schema (stage_support/schema.py) seen whole, for the tests: every problem of a params file,
the dotted keys of a stage section and the ones that name files (what dvc.yaml must list for the stage).
Stages read only their own section (stage_support.params.load); these views serve the checks of dvc.yaml,
params.yaml and the presets."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from stage_support.params import read_file, validate
from stage_support.schema import CHECKS, MOVED, PLACEMENT, SECTIONS, Schema


def validate_file(path: str | Path = "params.yaml") -> list[str]:
    """Every problem of the whole params file (all sections; unknown sections too)."""
    problems = []
    for name, values in read_file(path).items():
        if name == "placement":
            problems += validate(values, PLACEMENT, "placement")[1]
        elif name == "checks":
            problems += validate(values, CHECKS, "checks")[1]
        elif name in SECTIONS:
            problems += validate(values, SECTIONS[name], name, MOVED)[1]
        else:
            close = difflib.get_close_matches(name, [*SECTIONS, "placement", "checks"], n=1)
            problems.append(f"{name}: unknown section" + (f"; did you mean {close[0]}?" if close else ""))
    return problems


def result_keys(section: str) -> list[str]:
    """The dotted keys of a section (every one changes the stage's outputs: dvc.yaml lists them)."""
    def walk(schema: Schema, prefix: str):
        for key, spec in schema.items():
            if isinstance(spec, dict):
                yield from walk(spec, f"{prefix}.{key}")
            else:
                yield f"{prefix}.{key}"

    return list(walk(SECTIONS[section], section))


def file_keys(section: str) -> list[str]:
    """The dotted keys of a section whose values name files the stage reads (its DVC dependencies)."""
    out = []
    for key in result_keys(section):
        spec: Any = SECTIONS[section]
        for part in key.split(".")[1:]:
            spec = spec[part]
        if spec.file:
            out.append(key)
    return out
