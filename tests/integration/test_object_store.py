"""The storage layer, prepare and the text-embedding cache against a real S3 server on loopback
(moto's standalone server with IAM authentication on; tests/s3_server.py), reached through the AWS_*
variables a user exports; plus the errors a wrong credential, a missing bucket or a dead endpoint give.
"""
from __future__ import annotations

import copy

import json
import socket
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from pipeline import storage
from pipeline.text.cache import EmbeddingCache
from stages import embed_text, prepare
from tests.conftest import DEMO_TEST_PARAMS
from tests.s3_server import forget_s3_clients, s3, s3_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ERROR_BOUND_S = 30  # loose on purpose: 2 shared cores; the measured times are printed
TABLES = ("images", "pairs", "classes", "rejects")


def upload(server, local: Path, bucket: str, prefix: str) -> int:
    """Copies a local folder into the bucket with boto3 (independently of the code under test)."""
    client, n = server.client(), 0
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(f), bucket, f"{prefix}/{f.relative_to(local).as_posix()}")
        n += 1
    return n


def test_storage_round_trip_on_s3(s3):
    bucket = s3.new_bucket()
    uri = storage.join(f"s3://{bucket}", "artifacts", "t.parquet")
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    with storage.open_file(uri, "wb") as f:
        import pyarrow.parquet as pq

        pq.write_table(table.replace_schema_metadata({"model": "m"}), f)
    assert s3.keys(bucket) == ["artifacts/t.parquet"]  # seen by a plain boto3 client
    assert storage.exists(uri) and not storage.exists(uri + ".missing")
    assert storage.read_parquet(uri).equals(table)
    assert storage.parquet_metadata(uri) == {"model": "m"}
    with storage.open_file(storage.join(f"s3://{bucket}", "notes.txt"), "wt") as f:
        f.write("one line\n")
    with storage.open_file(f"s3://{bucket}/notes.txt", "rt") as f:
        assert f.read() == "one line\n"
    # The endpoint came from AWS_ENDPOINT_URL and is carried explicitly (Ray workers elsewhere need it).
    fs, path = storage.filesystem(uri)
    assert fs.endpoint_url == s3.endpoint and path == f"{bucket}/artifacts/t.parquet"
    with pytest.raises(FileNotFoundError, match=f"s3://{bucket}/nope.parquet"):
        storage.read_parquet(f"s3://{bucket}/nope.parquet")


def write_prepare_params(path: Path, root: str) -> Path:
    params = copy.deepcopy(DEMO_TEST_PARAMS)
    params["prepare"]["root"] = root
    path.write_text(yaml.safe_dump(params))
    return path


def read_tables(folder: Path, root: str) -> dict[str, pa.Table]:
    """The four prepare tables without schema metadata, with ``root`` in every uri replaced by ROOT/."""
    out = {}
    for name in TABLES:
        t = storage.read_parquet(folder / f"{name}.parquet").replace_schema_metadata(None)
        if "uri" in t.column_names:
            uris = [u.replace(root, "ROOT", 1) for u in t.column("uri").to_pylist()]
            t = t.set_column(t.schema.get_field_index("uri"), "uri", pa.array(uris, pa.string()))
        out[name] = t
    return out


def test_prepare_reads_the_raw_demo_from_s3_into_the_same_tables(s3, prepared_demo, tmp_path):
    raw = prepared_demo.parent / "raw"
    bucket = s3.new_bucket()
    assert upload(s3, raw, bucket, "raw") > 100
    root = f"s3://{bucket}/raw"
    t0 = time.perf_counter()
    summary = prepare.main(["--params", str(write_prepare_params(tmp_path / "params.yaml", root)),
                            "--out", str(tmp_path / "prepared")])
    seconds = time.perf_counter() - t0
    from_s3, from_disk = read_tables(tmp_path / "prepared", root), read_tables(prepared_demo, str(raw))
    for name in TABLES:
        assert from_s3[name].equals(from_disk[name]), name
    assert from_s3["images"].num_rows == summary["images"]["train"] + summary["images"]["val"] + \
        summary["images"]["test"] > 0
    assert all(u.startswith(root + "/images/") for u in
               storage.read_parquet(tmp_path / "prepared" / "images.parquet").column("uri").to_pylist())
    print(f"prepare from s3: {seconds:.1f} s for {from_s3['images'].num_rows} images")




def test_text_embedding_cache_on_s3_serves_the_second_run_without_a_model(s3, prepared_demo, tmp_path,
                                                                          load_calls):
    bucket = s3.new_bucket()
    defaults = yaml.safe_load((ROOT / "params.yaml").read_text())["embed_text"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"embed_text": defaults,
                                      "placement": {"embed_text": {"cache": f"s3://{bucket}/text-embeddings"}}}))

    def run(out: str) -> pa.Table:
        assert embed_text.main(["--params", str(params), "--classes", str(prepared_demo / "classes.parquet"),
                                "--out", str(tmp_path / out), "--plots", str(tmp_path / f"{out}-plots")]) == 0
        return storage.read_parquet(tmp_path / out)

    first = run("first.parquet")
    assert len(load_calls) == 1
    entries = s3.keys(bucket, "text-embeddings/")
    assert len(entries) == 1 and entries[0].endswith(".parquet"), entries
    assert entries[0].removesuffix(".parquet").endswith(storage.parquet_metadata(tmp_path / "first.parquet")
                                                        ["content_hash"])
    forget_s3_clients()  # a new process would start without them too
    second = run("second.parquet")
    assert len(load_calls) == 1, "the second run loaded a language model instead of reading the bucket"
    assert second.equals(first)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_failure(kind: str, s3_fixture, monkeypatch) -> tuple[str, type]:
    """Sets up one failure; returns the bucket to use and the error expected."""
    if kind == "wrong secret key":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        return s3_fixture.new_bucket(), storage.AccessDenied
    if kind == "unknown access key":
        bucket = s3_fixture.new_bucket()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
        return bucket, storage.AccessDenied
    if kind == "missing bucket":
        return "defr-no-such-bucket", storage.BucketNotFound
    if kind == "endpoint down":
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
        return "defr-any-bucket", storage.StoreUnreachable
    raise ValueError(kind)


FAILURES = ["wrong secret key", "unknown access key", "missing bucket", "endpoint down"]
TARGETS = {"prepare.root": "raw", "placement.train.storage_path": "runs", "cache": "text-embeddings",
           "read_parquet": "data/images.parquet"}


def use(target: str, uri: str, tmp_path: Path) -> None:
    """Hands ``uri`` to one consumer: the prepare stage, the Ray Train launcher, the cache, a reader."""
    if target == "prepare.root":
        prepare.main(["--params", str(write_prepare_params(tmp_path / "params.yaml", uri)),
                      "--out", str(tmp_path / "prepared")])
    elif target == "placement.train.storage_path":
        from pipeline.training.launcher import make_trainer

        make_trainer({}, num_workers=1, use_gpu=False, run_name="t", storage_path=uri, max_failures=0)
    elif target == "cache":
        EmbeddingCache(uri)
    else:
        storage.read_parquet(uri)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("kind", FAILURES)
def test_a_wrong_credential_missing_bucket_or_dead_endpoint_fails_fast_naming_the_uri(
        s3, monkeypatch, tmp_path, kind, target):
    bucket, expected = make_failure(kind, s3, monkeypatch)
    forget_s3_clients()
    uri = f"s3://{bucket}/{TARGETS[target]}"
    t0 = time.perf_counter()
    with pytest.raises(expected) as err:
        use(target, uri, tmp_path)
    seconds = time.perf_counter() - t0
    message = str(err.value)
    assert uri in message, message
    if target != "read_parquet":
        assert message.startswith(f"{target}: {uri}"), message  # the params key that holds the URI
    if expected is storage.AccessDenied:
        assert "AWS_ACCESS_KEY_ID" in message and "never from params.yaml" in message, message
    if expected is storage.StoreUnreachable:
        assert "AWS_ENDPOINT_URL" in message, message
    assert seconds < ERROR_BOUND_S, f"{kind} took {seconds:.1f} s to fail"
    print(f"{kind} / {target}: {type(err.value).__name__} after {seconds:.2f} s: {message[:200]}")


def test_the_same_calls_succeed_with_the_right_credentials(s3, tmp_path, prepared_demo):
    """The failure test's counterpart: the fixture's key and an existing bucket raise nothing."""
    import pyarrow.fs

    bucket = s3.new_bucket()
    upload(s3, prepared_demo, bucket, "data")
    storage.check_access(f"s3://{bucket}/raw", "prepare.root")
    assert EmbeddingCache(f"s3://{bucket}/text-embeddings").get("0" * 64) is None
    assert storage.read_parquet(f"s3://{bucket}/data/images.parquet").num_rows > 0
    fs, path = storage.arrow_filesystem(f"s3://{bucket}/runs", "placement.train.storage_path")
    assert path == f"{bucket}/runs" and isinstance(fs, pyarrow.fs.PyFileSystem)
    with fs.open_output_stream(f"{bucket}/runs/probe.json") as f:
        f.write(json.dumps({"ok": True}).encode())
    assert s3.keys(bucket, "runs/") == ["runs/probe.json"]
