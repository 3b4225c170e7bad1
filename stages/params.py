"""Reading params.yaml for the stages (the library never reads it)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml


def load(section: str, path: str | Path = "params.yaml") -> dict[str, Any]:
    """Returns one section of params.yaml; raises naming the file and section when absent."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run stages from the project root")
    params = yaml.safe_load(path.read_text()) or {}
    if section not in params:
        raise KeyError(f"{path} has no section {section!r}")
    return params[section]


def require(params: dict[str, Any], key: str, section: str) -> Any:
    if key not in params:
        raise KeyError(f"params.yaml: {section}.{key} is missing")
    return params[key]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
