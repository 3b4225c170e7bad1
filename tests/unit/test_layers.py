"""The import layers of docs/architecture.md hold: every import-linter contract in pyproject.toml
(``[tool.importlinter]``) is kept. A broken one fails with import-linter's report, which names the import
chain to fix (the fix is in the import, not in the contract)."""
from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, require_module

require_module("importlinter", "import-linter is in the dev extra: `pip install -e '.[dev]'` (make install-dev)")

PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]

# The contracts issue 19 asks for: deleting one must fail here, not pass silently.
REQUIRED = {"entry-points", "pipeline-layers", "no-cycles", "no-dvc-in-pipeline", "ray-only-where-work-is-distributed"}


def test_every_required_contract_is_configured():
    assert REQUIRED <= {c["id"] for c in CONTRACTS}, f"{PYPROJECT}: [tool.importlinter] lost a contract"


def test_every_contract_is_kept():
    # One lint-imports run of this interpreter checks every contract (building the import graph is most of
    # its time), from the repository root (it puts the cwd on sys.path); --no-cache: no
    # .import_linter_cache folder in the working tree.
    cmd = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
           "--no-cache", "--no-logo", str(PYPROJECT)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    kept = report.count(" KEPT")
    if run.returncode != 0 or "BROKEN" in report or kept != len(CONTRACTS):
        pytest.fail(f"import contracts of {PYPROJECT}: {kept} of {len(CONTRACTS)} kept (exit {run.returncode}); "
                    f"the report names each broken import chain:\n{report}", pytrace=False)
