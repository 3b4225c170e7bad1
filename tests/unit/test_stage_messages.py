"""What a stage and ``defr`` tell the user: ``--help`` on the screen, no URI credentials on the screen, in
the log or in metadata, and a missing dataset root or annotation file named with its param."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pipeline import storage
from pipeline.datasets.adapters import prepare_dataset
from pipeline.datasets.files import AnnotationError
ROOT = Path(__file__).resolve().parents[2]
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCY"


def _stage(args: list[str], logs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEFR_LOG_DIR": str(logs), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_mask_hides_the_userinfo_of_every_uri():
    from pipeline.storage.credentials import mask

    assert mask(f"s3://AKIAXX:{SECRET}@bucket/raw and ftp://me@host/x") == "s3://***@bucket/raw and ftp://***@host/x"
    assert mask("gs://bucket/photo@2x.jpg, a@b.c") == "gs://bucket/photo@2x.jpg, a@b.c"


def test_stage_help_goes_to_the_screen_and_leaves_the_log(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "prepare.log").write_text("the last run's log\n")
    out = _stage(["stages.prepare", "--help"], logs)
    assert out.returncode == 0 and out.stdout.startswith("usage: ") and "--out" in out.stdout
    assert (logs / "prepare.log").read_text() == "the last run's log\n"


def test_credentials_in_a_root_uri_reach_neither_console_nor_log(tmp_path):
    params = tmp_path / "params.yaml"
    root = f"memory://AKIAXX:{SECRET}@defr-no-such-bucket/raw"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "hico", "root": root}}))
    out = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "prepared")], tmp_path / "logs")
    log = (tmp_path / "logs" / "prepare.log").read_text()
    assert out.returncode == 1, out.stdout
    assert "prepare.root: memory://***@defr-no-such-bucket/raw: credentials inside the URI are not used" in out.stdout
    assert SECRET not in out.stdout + out.stderr and SECRET not in log and "***@" in log


def test_metadata_never_holds_uri_credentials(tmp_path):
    storage.write_parquet(pa.table({"x": [1]}), tmp_path / "t.parquet",
                          metadata={"source_root": f"s3://AKIAXX:{SECRET}@bucket/raw", "n": {"uri": "s3://k:s@b"}})
    meta = storage.parquet_metadata(tmp_path / "t.parquet")
    assert meta["source_root"] == "s3://***@bucket/raw" and SECRET not in str(meta) and "k:s@" not in str(meta)


def test_a_missing_root_or_annotation_file_names_its_param(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"prepare.root = '.*nowhere': no such folder"):
        prepare_dataset("hico", str(tmp_path / "nowhere"), {"anno": "", "hicodet_train": "", "hicodet_test": "x.json"})
    (tmp_path / "raw").mkdir()
    with pytest.raises(AnnotationError, match=r"x.json: file not found \(prepare.hico.hicodet_test\)"):
        prepare_dataset("hico", str(tmp_path / "raw"), {"anno": "", "hicodet_train": "", "hicodet_test": "x.json"})
    with pytest.raises(AnnotationError, match=r"anno.mat: file not found \(prepare.hico.anno;"):
        prepare_dataset("hico", str(tmp_path / "raw"), {"anno": "anno.mat"})


def test_a_full_disk_names_the_file_being_written(tmpfs):
    small = tmpfs("size=300k")
    storage.write_text("earlier\n", small / "notes.txt")
    big = pa.table({"x": [os.urandom(400_000)]})
    for write, target in ((lambda p: storage.write_parquet(big, p), small / "images.parquet"),
                          (lambda p: storage.write_text("x" * 400_000, p), small / "notes.txt")):
        with pytest.raises(OSError, match=f"No space left on device: cannot write {target}"):
            write(target)
    assert sorted(p.name for p in small.iterdir()) == ["notes.txt"]     # no temporary left behind
    assert (small / "notes.txt").read_text() == "earlier\n"


def test_an_object_store_uri_with_credentials_is_refused_masked(tmp_path):
    """s3fs reads no key from a URI; left alone, botocore's error would echo it ("Invalid bucket name")."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"dataset": "hico", "root": f"s3://AKIAXX:{SECRET}@bucket/raw"}}))
    out = _stage(["stages.prepare", "--params", str(params), "--out", str(tmp_path / "prepared")], tmp_path / "logs")
    log = (tmp_path / "logs" / "prepare.log").read_text()
    assert out.returncode == 1
    assert "prepare.root: s3://***@bucket/raw: credentials inside the URI are not used" in out.stdout
    assert "AWS_SECRET_ACCESS_KEY" in out.stdout
    assert "AKIAXX" not in out.stdout + log and SECRET.split("/")[0] not in out.stdout + log
