"""No credential from a URI reaches a console, a log or a written file, from any entry point: every ``defr``
command and a stage, each fed a URI with a fake key and secret (refused before any client sees it), and a
URI without credentials on a machine that has none (one line naming the URI and what to set).

bench takes no URI of its own (its stages and the library refuse them as here).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "AKIAFAKEKEY7Q", "fakeSecretVALUE/K7MDENG+bPx"
URI = f"s3://{KEY}:{SECRET}@defr-bucket/photos/x.jpg"
# No credentials anywhere (and no instance-metadata probe, which would wait on a network timeout).
NO_AWS = {"AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
          "AWS_EC2_METADATA_DISABLED": "true"}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RAY_ADDRESS"}
    env.update(NO_AWS, PYTHONPATH=str(ROOT), DEFR_LOG_DIR=str(cwd / "logs"))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def _written(folder: Path, inputs: set[Path]) -> str:
    """Everything the command wrote under ``folder`` (logs, outputs), not the inputs the test wrote."""
    return "".join(p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*")
                   if p.is_file() and p not in inputs)


def _entry_points(tmp: Path) -> dict[str, list[str]]:
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "hico", "root": URI.rsplit("/", 2)[0]}}))
    anno = "instances_test2015.json"
    return {
        "defr detect (image)": ["pipeline.cli", "detect", URI, "--model", "m", "--boxes", "b.json", "--out", "o1"],
        "defr classify": ["pipeline.cli", "classify", URI, "--model", "m", "--out", "o3"],
        "defr evaluate (results)": ["pipeline.cli", "evaluate", URI.replace(".jpg", ".json"), "--benchmark",
                                    "hicodet", "--anno", anno, "--out", "o4"],
        "defr evaluate (annotations)": ["pipeline.cli", "evaluate", "r.csv", "--benchmark", "hicodet", "--anno",
                                        URI.replace("x.jpg", anno), "--out", "o5"],
        # a model URI: the same refusal as defr detect's and classify's --model
        "defr serve": ["pipeline.cli", "serve", "--model", URI.rsplit("/", 1)[0], "--port", "8799"],
        "stage prepare": ["stages.prepare", "--params", str(params), "--out", str(tmp / "prepared")],
    }


@pytest.mark.parametrize("entry", ["defr detect (image)", "defr classify",
                                   "defr evaluate (results)", "defr evaluate (annotations)", "defr serve",
                                   "stage prepare"])
def test_a_uri_with_a_key_and_secret_is_refused_masked_everywhere(tmp_path, entry):
    (tmp_path / "r.csv").write_text("image,hoi,human_box,object_box,score\n")
    args = _entry_points(tmp_path)[entry]
    inputs = set(tmp_path.iterdir())
    out = _run(args, tmp_path)
    everything = out.stdout + out.stderr + _written(tmp_path, inputs)
    assert out.returncode != 0, everything
    assert SECRET not in everything and KEY not in everything, everything
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert "s3://***@defr-bucket" in out.stdout + out.stderr and "AWS_SECRET_ACCESS_KEY" in out.stdout + out.stderr


def test_an_object_store_without_credentials_is_one_line_naming_the_uri_and_what_to_set(tmp_path):
    out = _run(["pipeline.cli", "detect", "s3://defr-bucket/photos/x.jpg", "--model", "m", "--out", "o"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    line, = out.stderr.strip().splitlines()
    assert line.startswith("defr detect: error: s3://defr-bucket/photos/x.jpg: found no credentials for AWS S3")
    assert "AWS_ACCESS_KEY_ID" in line
    out = _run(["pipeline.cli", "detect", "s3://Bad!Bucket/x.jpg", "--model", "m", "--out", "o"], tmp_path)
    line, = out.stderr.strip().splitlines()   # botocore's own message spans lines
    assert out.returncode == 2 and line.startswith("defr detect: error: s3://Bad!Bucket/x.jpg: AWS S3 error: ")


def test_refuse_credentials_is_the_one_check(tmp_path):
    """What serve, the stages and ``defr`` share: user:secret in any scheme, any userinfo on an object store."""
    from pipeline.storage.credentials import refuse_credentials

    for uri in (URI, f"ftp://me:{SECRET}@host/x.jpg", "gs://someone@bucket/x", f"simplecache::{URI}"):
        with pytest.raises(ValueError, match=r"model: \w+.*://\*\*\*@.*credentials inside the URI") as e:
            refuse_credentials(uri, "model")
        assert SECRET not in str(e.value)
    for uri in ("ftp://me@host/x.jpg", "gs://bucket/photo@2x.jpg", str(tmp_path / "a:b@c.jpg"), "s3://bucket/x"):
        refuse_credentials(uri, "model")
