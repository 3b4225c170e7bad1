"""pipeline.storage's URI layer without a network: schemes, the missing-driver error (for real, with the
driver hidden from this process: requirements.lock installs every driver), the object-store settings, and how
SDK errors are named."""
from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import fsspec.config
import pytest
import yaml

from pipeline import storage
from pipeline.text.cache import EmbeddingCache
from pipeline.storage.drivers import fsspec_uri, protocol
from pipeline.storage.errors import translate
from stages import prepare



@pytest.fixture
def hide(monkeypatch):
    """hide(module): for this test the driver is not installed, as Python sees it: ``import adlfs`` raises
    ImportError and ``importlib.util.find_spec`` finds nothing (a None entry in sys.modules does both), and
    fsspec has no class of it registered. Undone after the test."""
    import fsspec  # noqa: F401 (loads fsspec.registry, whose name the package shadows with a read-only view)

    registry = sys.modules["fsspec.registry"]._registry

    def hidden(module: str) -> None:
        for name in [m for m in sys.modules if m.startswith(f"{module}.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)
        for scheme, cls in list(registry.items()):
            if cls.__module__.split(".")[0] == module:
                monkeypatch.delitem(registry, scheme)
        with pytest.raises(ImportError):
            __import__(module)

    return hidden


@pytest.mark.parametrize("uri, scheme", [("data/x.parquet", ""), ("/abs/x", ""), ("file:///abs/x", ""),
                                         ("s3://b/k", "s3"), ("S3://b/k", "s3"), ("gs://b/k", "gs"),
                                         ("azure://c/p", "azure"), ("simplecache::s3://b/k", "s3"),
                                         ("memory://x", "memory")])
def test_protocol(uri, scheme):
    assert protocol(uri) == scheme


def test_dvc_azure_scheme_maps_to_fsspec_az():
    assert fsspec_uri("azure://container/raw/anno.mat") == "az://container/raw/anno.mat"
    assert fsspec_uri("s3://b/k") == "s3://b/k" and fsspec_uri("rel/path") == "rel/path"
    assert storage.is_local("file:///x") and not storage.is_local("az://c/x")
    assert storage.join("azure://c", "raw", "/anno.mat") == "azure://c/raw/anno.mat"


@pytest.mark.parametrize("uri", ["azure://container/raw/anno.mat", "az://container/x", "abfs://c@acct/x"])
def test_a_missing_driver_fails_at_once_with_the_pip_command(uri, hide):
    hide("adlfs")
    t0 = time.perf_counter()
    with pytest.raises(storage.DriverMissing) as err:
        storage.open_file(uri)
    assert time.perf_counter() - t0 < 1.0
    message = str(err.value)
    assert uri in message and "Azure Blob Storage" in message
    assert "pip install -e '.[azure]'" in message and "pip install adlfs dvc-azure" in message


def test_the_prepare_stage_names_its_param_when_the_root_needs_a_missing_driver(tmp_path, hide):
    hide("adlfs")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"prepare": {"root": "azure://team/hico", "hico": {
        "anno": "anno.mat", "hicodet_train": "", "hicodet_test": ""}}}))
    with pytest.raises(storage.DriverMissing, match=r"^prepare\.root: 'azure://team/hico' .*\[azure\]"):
        prepare.main(["--params", str(params), "--out", str(tmp_path / "prepared")])
    assert not (tmp_path / "prepared").exists()


def test_a_gcs_cache_without_gcsfs_names_the_gcs_extra(hide):
    hide("gcsfs")
    with pytest.raises(storage.DriverMissing, match=r"cache: 'gs://team/cache'.*pip install -e '\.\[gcs\]'"):
        EmbeddingCache("gs://team/cache")


def test_s3_options_endpoint_timeouts_retries(monkeypatch):
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE",
                "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(fsspec.config, "conf", {})
    opts = storage.storage_options("s3")
    assert "endpoint_url" not in opts and opts["use_listings_cache"] is False
    assert opts["config_kwargs"] == {"connect_timeout": 10, "read_timeout": 60,
                                     "retries": {"max_attempts": 3, "mode": "standard"}}
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000")
    assert storage.storage_options("s3")["endpoint_url"] == "http://minio.local:9000"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only.local:9000")  # botocore: the service one wins
    assert storage.storage_options("s3")["endpoint_url"] == "http://s3-only.local:9000"
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert "endpoint_url" not in storage.storage_options("s3")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "10")  # botocore reads it; an explicit retries config would win
    assert "retries" not in storage.storage_options("s3")["config_kwargs"]
    # fsspec's own config (FSSPEC_S3_* variables, ~/.config/fsspec) overrides key by key.
    monkeypatch.setattr(fsspec.config, "conf", {"s3": {"config_kwargs": {"connect_timeout": 2}, "anon": True}})
    opts = storage.storage_options("s3")
    assert opts["config_kwargs"]["connect_timeout"] == 2 and opts["config_kwargs"]["read_timeout"] == 60
    assert opts["anon"] is True
    assert storage.storage_options("memory") == {}
    assert storage.storage_options("gs") == {"use_listings_cache": False}


def test_s3_filesystem_carries_the_endpoint_and_settings(monkeypatch):
    monkeypatch.setattr(fsspec.config, "conf", {})
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    fs, path = storage.filesystem("s3://bucket/runs/x")
    assert path == "bucket/runs/x" and fs.endpoint_url == "http://127.0.0.1:9"
    assert fs.config_kwargs["connect_timeout"] == 10 and fs.dircache.use_listings_cache is False
    assert "key" not in fs.storage_options and "secret" not in fs.storage_options  # nothing secret pickled


def test_local_and_memory_uris_need_no_probe(tmp_path):
    storage.check_access(tmp_path / "nothing-yet")
    storage.check_access("memory://scratch/x")
    fs, path = storage.arrow_filesystem("runs")
    assert fs is None and path == str(Path.cwd() / "runs")   # relative paths: from the working directory
    name = f"memory://defr-unit-{uuid.uuid4().hex}"           # the memory filesystem is process-wide
    assert not storage.exists(f"{name}/a.txt")
    with storage.open_file(f"{name}/a.txt", "wt") as f:
        f.write("written")
    assert storage.exists(f"{name}/a.txt") and not storage.exists(f"{name}/b.txt")
    with storage.open_file(f"{name}/a.txt", "rt") as f:
        assert f.read() == "written"


def test_unknown_scheme_names_the_param():
    with pytest.raises(ValueError, match=r"^model: cannot open 'nosuchfs://x'"):
        storage.filesystem("nosuchfs://x", "model")


@pytest.mark.parametrize("exc, expected", [
    (PermissionError("Forbidden"), storage.AccessDenied),
    (FileNotFoundError("The specified bucket does not exist"), storage.BucketNotFound),
    (ConnectionRefusedError("refused"), storage.StoreUnreachable),
    (TimeoutError("timed out"), storage.StoreUnreachable),
    (OSError("Internal error"), storage.StorageError),
])
def test_sdk_errors_become_errors_naming_the_uri(exc, expected):
    named = translate(exc, "s3://team/runs/x", "train.storage_path", "http://minio:9000")
    assert type(named) is expected and str(named).startswith("train.storage_path: s3://team/runs/x: ")
    assert "minio:9000" in str(named)
    if expected is storage.AccessDenied:
        assert "AWS_ACCESS_KEY_ID" in str(named) and isinstance(named, PermissionError)
    if expected is storage.BucketNotFound:
        assert "'team'" in str(named) and isinstance(named, FileNotFoundError)


def test_a_missing_object_stays_a_plain_file_not_found_and_other_errors_pass_through():
    named = translate(FileNotFoundError("Not Found"), "gs://team/x.parquet")
    assert type(named) is FileNotFoundError and "gs://team/x.parquet does not exist" in str(named)
    assert translate(ValueError("bad arg"), "s3://b/k") is None
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(translate(PermissionError("403"), "gs://team/x"))
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(translate(PermissionError("403"), "azure://c/x"))


def _client_error(code: str, message: str, operation: str = "HeadObject"):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_real_sdk_exceptions_as_s3fs_raises_them_are_named():
    """botocore's own exception classes, translated the way s3fs does it (``translate_boto_error``: an
    OSError subclass with the ClientError as its cause), or raised as botocore raises them (credentials,
    connections: s3fs lets those through untranslated)."""
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, ReadTimeoutError
    from s3fs.errors import translate_boto_error

    uri, endpoint = "s3://team/runs/x", "http://127.0.0.1:9"
    no_bucket = translate_boto_error(_client_error("NoSuchBucket", "The specified bucket does not exist",
                                                   "ListObjectsV2"))
    named = translate(no_bucket, uri, "train.storage_path", endpoint)
    assert type(named) is storage.BucketNotFound and "bucket 'team' does not exist" in str(named)
    assert "NoSuchBucket" in str(named) and str(named).startswith("train.storage_path: s3://team/runs/x: ")
    bad_key = translate_boto_error(_client_error("InvalidAccessKeyId", "The AWS Access Key Id you provided "
                                                 "does not exist in our records."))
    named = translate(bad_key, uri, "train.storage_path", endpoint)
    assert type(named) is storage.AccessDenied and "InvalidAccessKeyId" in str(named)
    assert "AWS_ACCESS_KEY_ID" in str(named) and "never from params.yaml" in str(named)
    missing_key = translate_boto_error(_client_error("NoSuchKey", "Not Found"))
    named = translate(missing_key, uri, "model", endpoint)
    assert type(named) is FileNotFoundError and str(named).startswith("model: s3://team/runs/x does not exist")
    named = translate(NoCredentialsError(), uri, "model", endpoint)
    assert type(named) is storage.AccessDenied and "Unable to locate credentials" in str(named)
    for exc in (EndpointConnectionError(endpoint_url=f"{endpoint}/team"),
                ReadTimeoutError(endpoint_url=f"{endpoint}/team")):
        named = translate(exc, uri, "model", endpoint)
        assert type(named) is storage.StoreUnreachable, exc
        assert f"cannot reach S3 endpoint {endpoint} (set by AWS_ENDPOINT_URL" in str(named)
    # The context manager the storage layer wraps every access in: the named error, the SDK one as cause.
    from pipeline.storage.errors import named_errors

    with pytest.raises(storage.AccessDenied, match=r"^train.storage_path: s3://team/runs/x: ") as raised:
        with named_errors(uri, "train.storage_path", endpoint):
            raise NoCredentialsError()
    assert isinstance(raised.value.__cause__, NoCredentialsError)


def test_stale_temporaries_of_dead_writers_go_and_others_stay(tmp_path):
    """remove_stale_temps removes the temporaries of this host's dead writers of that artifact only: not a
    live process's, not another host's (a shared filesystem: its pid means nothing here), not another
    artifact's."""
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                       # a pid that no process has now
    live = os.getpid()
    host = storage._writer_tag(0)[:-2]                # this host's name as writers tag it
    artifact = tmp_path / "images.parquet"
    names = {"dead": f".images.parquet.{host}-{dead.pid}.abc.tmp",
             "live": f".images.parquet.{host}-{live}.def.tmp",
             "other host": f".images.parquet.elsewhere-{dead.pid}.ghi.tmp",
             "other artifact": f".pairs.parquet.{host}-{dead.pid}.jkl.tmp",
             "no pid": f".images.parquet.{host}-x{dead.pid}.mno.tmp"}
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_text("half written")
    removed = storage.remove_stale_temps(artifact)
    assert removed == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for k, n in names.items() if k != "dead")
    # atomic_path cleans up the same way before it writes, and leaves no temporary of its own behind
    (tmp_path / names["dead"]).mkdir()
    with storage.atomic_path(artifact) as target:
        target.write_text("complete")
    assert artifact.read_text() == "complete" and not (tmp_path / names["dead"]).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([artifact.name, *(n for k, n in names.items()
                                                                                  if k != "dead")])


def test_a_scratch_dir_is_private_and_clears_what_killed_processes_left(tmp_path, monkeypatch):
    """The training workers' folders for the best weights and checkpoints in the making: a worker killed
    mid-run leaves its folder, which the next one removes; a live process's folder stays."""
    import subprocess
    import sys
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = storage._writer_tag(0)[:-2]
    left = tmp_path / f".defr-best.{host}-{dead.pid}.abc.tmp"
    left.mkdir()
    (left / "model.safetensors").write_bytes(b"weights")
    first = storage.scratch_dir("defr-best")
    second = storage.scratch_dir("defr-best")
    assert not left.exists()
    assert first != second and first.is_dir() and second.is_dir() and first.parent == tmp_path
    assert first.name.startswith(f".defr-best.{host}-{os.getpid()}.")  # this process's: kept
