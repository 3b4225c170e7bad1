"""The storage drivers are declared where they are installed: pyproject extras agree with
pipeline.storage.drivers (whose pip commands the errors print), S3 is a default dependency, the cluster
image installs every driver, and the docs name each extra."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from pipeline.storage.drivers import AZURE, GCS, S3

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


@pytest.mark.parametrize("driver", [S3, GCS, AZURE], ids=lambda d: d.extra)
def test_each_extra_installs_the_packages_the_error_message_names(driver):
    assert names(PROJECT["optional-dependencies"][driver.extra]) == set(driver.packages)


def test_s3_is_in_the_default_install_and_storage_has_all_three():
    assert set(S3.packages) <= names(PROJECT["dependencies"])
    assert PROJECT["optional-dependencies"]["storage"] == ["defr-pipeline[s3,gcs,azure]"]
    assert "moto" in names(PROJECT["optional-dependencies"]["dev"])  # the loopback S3 server of the tests
    assert any("moto[server]" in r for r in PROJECT["optional-dependencies"]["dev"])


def test_the_cluster_image_installs_every_driver():
    # The image and the launcher nodes install requirements.lock, which holds every storage driver.
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert re.search(r"pip install [^\n]*--require-hashes --no-deps -r requirements.lock", dockerfile), dockerfile
    for launcher in ("aws.yaml", "gcp.yaml"):
        assert "make install" in (ROOT / "cluster" / launcher).read_text(), launcher
    locked = {line.split("==")[0] for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    assert {"s3fs", "dvc-s3", "gcsfs", "dvc-gs", "adlfs", "dvc-azure"} <= locked, "requirements.lock misses a driver"


@pytest.mark.parametrize("doc", ["README.md", "docs/team_storage.md"])
def test_docs_say_which_extra_serves_which_uri(doc):
    text = (ROOT / doc).read_text()
    for extra in ("gcs", "azure"):
        assert f"pip install -e '.[{extra}]'" in text, (doc, extra)
    for var in ("AWS_ENDPOINT_URL", "GOOGLE_APPLICATION_CREDENTIALS", "AZURE_STORAGE_CONNECTION_STRING"):
        assert var in text, (doc, var)
