"""One way to turn any URI the pipeline touches into a filesystem: fsspec for the library, pyarrow for Ray.

Every dataset root, artifact URI, cache location, model directory, detector checkpoint and Ray Train
``storage_path`` goes through :func:`filesystem`, so all of them get the same driver check, the same
object-store settings and the same error messages:

- credentials are the SDK's own chain (environment variables, config files, instance roles), never
  arguments: nothing secret is ever pickled to Ray workers or written to params;
- an S3-compatible endpoint (MinIO, Ceph, on-prem) comes from ``AWS_ENDPOINT_URL_S3`` /
  ``AWS_ENDPOINT_URL`` (botocore's variables) and is passed explicitly, so Ray workers on other nodes use
  the driver's endpoint even where their environment lacks the variable;
- S3 fails fast: 10 s connect timeout and 3 attempts (botocore "standard" retries; ``AWS_MAX_ATTEMPTS`` /
  ``AWS_RETRY_MODE`` override), instead of botocore's 60 s and 5 legacy attempts;
- directory listings are never cached in the process (``use_listings_cache=False``): Ray Train workers and
  other stages write to the same prefixes, and a stale listing would hide their checkpoints;
- fsspec's own configuration (``FSSPEC_S3_*`` environment variables, ``~/.config/fsspec/*.json``) overrides
  these defaults, key by key.
"""
from __future__ import annotations

import os
from pathlib import Path

import fsspec
import fsspec.config

from pipeline.storage.credentials import mask, refuse_credentials
from pipeline.storage.drivers import fsspec_uri, protocol, require_driver
from pipeline.storage.errors import named_errors, s3_endpoint

OBJECT_STORES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
S3_CONFIG = {"connect_timeout": 10, "read_timeout": 60, "retries": {"max_attempts": 3, "mode": "standard"}}


def is_local(uri: str | os.PathLike) -> bool:
    """Whether ``uri`` is a local path (or ``file://`` URI) rather than a URI of another filesystem."""
    return protocol(str(uri)) == "" and "::" not in str(uri)


def local_path(uri: str | os.PathLike) -> str:
    """A local path or ``file://`` URI as a plain path, ``~`` expanded."""
    return os.path.expanduser(str(uri).removeprefix("file://"))


def storage_options(scheme: str) -> dict:
    """The fsspec keyword arguments this project uses for a URI scheme (see the module docstring)."""
    opts: dict = {}
    if scheme in OBJECT_STORES:
        opts["use_listings_cache"] = False
    if scheme in ("s3", "s3a"):
        config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in S3_CONFIG.items()}
        if os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE"):
            del config["retries"]  # botocore reads them itself; an explicit Config would override them
        opts["config_kwargs"] = config
        if s3_endpoint():
            opts["endpoint_url"] = s3_endpoint()
    for key, value in fsspec.config.conf.get(scheme, {}).items():
        if isinstance(value, dict) and isinstance(opts.get(key), dict):
            opts[key] = {**opts[key], **value}
        else:
            opts[key] = value
    return opts


def filesystem(uri: str | os.PathLike, param: str = "") -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of ``uri`` and the path on it.

    Args:
        uri: a local path, ``file://``, or any fsspec URI (``s3://``, ``gs://``, ``az://`` / ``azure://``,
            ``memory://``, ...).
        param: the params key that gave ``uri``, named in errors.

    Raises:
        DriverMissing: the scheme's driver is not installed (the message gives the pip command).
        ValueError: a scheme fsspec does not know (names ``param`` and ``uri``), or a URI with credentials
            in it (:func:`pipeline.storage.credentials.refuse_credentials`, masked in the message).
    """
    uri = str(uri)
    if is_local(uri):
        return fsspec.filesystem("file"), local_path(uri)
    refuse_credentials(uri, param)  # before any driver sees it: its errors would echo them
    require_driver(uri, param)
    target = fsspec_uri(uri)
    try:
        return fsspec.core.url_to_fs(target, **storage_options(protocol(target)))
    except (ValueError, ImportError) as e:  # unknown scheme, or a driver this module has no extra for
        where = f"{param}: " if param else ""
        raise ValueError(f"{where}cannot open {mask(uri)!r}: {mask(str(e))}") from e


def _endpoint(fs) -> str | None:
    return getattr(fs, "endpoint_url", None) or (fs.storage_options.get("endpoint_url")
                                                 if hasattr(fs, "storage_options") else None)


def errors_for(uri: str, fs=None, param: str = "", bucket_probe: bool = False):
    """:func:`pipeline.storage.errors.named_errors` for ``uri`` (the endpoint taken from ``fs``)."""
    return named_errors(uri, param, _endpoint(fs) if fs is not None else s3_endpoint(), bucket_probe)


def check_access(uri: str | os.PathLike, param: str = "") -> None:
    """Fails within seconds, naming ``uri``, when its store cannot be reached, refuses the credentials or
    lacks the bucket. Local paths and in-memory URIs pass without a check.

    Call it before long work that will write to ``uri`` (a training run, a cache), so that a typo in a
    bucket name or an expired key fails at once and not after an hour.

    Raises:
        DriverMissing, AccessDenied, BucketNotFound, StoreUnreachable, StorageError.
    """
    uri = str(uri)
    if is_local(uri):
        return
    fs, path = filesystem(uri, param)
    scheme = protocol(fsspec_uri(uri))
    if scheme not in OBJECT_STORES:
        return
    bucket = path.strip("/").split("/", 1)[0]
    with errors_for(uri, fs, param, bucket_probe=True):
        if scheme in ("s3", "s3a"):
            # HEAD on the bucket: one request that checks endpoint, credentials and bucket together
            # (s3fs's exists() answers False for all three failures alike).
            fs.call_s3("head_bucket", Bucket=bucket)
        else:
            fs.info(bucket)


def arrow_filesystem(uri: str | os.PathLike, param: str = ""):
    """``(pyarrow filesystem or None, path)`` for Ray Train's ``RunConfig(storage_filesystem=, storage_path=)``.

    A local path gives ``(None, absolute path)``: Ray uses its own local filesystem. A URI gives the same
    fsspec filesystem as :func:`filesystem` wrapped for pyarrow, and the path without its scheme (what
    Ray expects with a custom filesystem), after :func:`check_access`. The wrapper pickles to Ray workers
    with its endpoint and settings but without credentials (each node's own chain supplies them).
    """
    import pyarrow.fs

    uri = str(uri)
    if is_local(uri):
        return None, str(Path(local_path(uri)).resolve())
    check_access(uri, param)
    fs, path = filesystem(uri, param)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)), path
