"""Object-store failures as errors that name the URI and say what to check.

fsspec drivers raise what the cloud SDK says (``PermissionError: Forbidden``, ``FileNotFoundError: Not
Found``, ``botocore...NoCredentialsError``) without the URI, the params key or where credentials come
from. :func:`named_errors` turns them into the classes below, which keep the built-in bases callers already
catch (a missing bucket is still a ``FileNotFoundError``, refused credentials a ``PermissionError``).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from pipeline.storage.credentials import mask
from pipeline.storage.drivers import DriverMissing, protocol


class StorageError(OSError):
    """An object store refused or could not serve a URI; the message names the URI and what to check."""


class AccessDenied(StorageError, PermissionError):
    """Credentials missing, unknown or without the right to this bucket or object."""


class BucketNotFound(StorageError, FileNotFoundError):
    """The bucket (container) of a URI does not exist."""


class StoreUnreachable(StorageError, ConnectionError):
    """The store's endpoint did not answer (wrong endpoint URL, no network, DNS)."""


# Where each store's SDK looks for credentials (never params.yaml): named in AccessDenied messages.
CREDENTIALS = {
    "s3": "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), AWS_PROFILE with "
          "~/.aws/credentials, or the node's instance profile / IRSA role",
    "gs": "GOOGLE_APPLICATION_CREDENTIALS (a service-account key file), `gcloud auth application-default "
          "login`, or the VM's service account",
    "az": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY / "
          "AZURE_STORAGE_SAS_TOKEN, or `az login` / a managed identity",
}
_FAMILY = {"s3a": "s3", "gcs": "gs", "abfs": "az", "abfss": "az", "azure": "az"}

_MISSING = {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError", "CredentialUnavailableError"}
_DENIED = _MISSING | {"CredentialRetrievalError", "InvalidAccessKeyId", "SignatureDoesNotMatch", "RefreshError",
                      "ClientAuthenticationError"}
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
                "ClientConnectorError", "ServerTimeoutError", "ServiceRequestError", "TransportError",
                "InvalidURL", "InvalidEndpoint"}


def s3_endpoint() -> str | None:
    """The S3 endpoint override set by the environment (botocore's own variables), if any."""
    if os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def _family(uri: str) -> str:
    scheme = protocol(uri)
    return _FAMILY.get(scheme, scheme)


def _store(uri: str, endpoint: str | None) -> str:
    family = _family(uri)
    if family == "s3":
        return f"S3 endpoint {endpoint}" if endpoint else "AWS S3"
    return {"gs": "Google Cloud Storage", "az": "Azure Blob Storage"}.get(family, f"{family}://")


def _code(exc: BaseException) -> str:
    """The store's error code (``InvalidAccessKeyId``, ``NoSuchBucket``, ...) kept on the SDK exception."""
    for e in (exc, exc.__cause__, exc.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code", ""))
    return ""


def _names(exc: BaseException) -> set[str]:
    return {c.__name__ for e in (exc, exc.__cause__) if e is not None for c in type(e).__mro__}


def translate(exc: BaseException, uri: str, param: str = "", endpoint: str | None = None,
              bucket_probe: bool = False) -> BaseException | None:
    """The named error for ``exc`` raised while accessing ``uri``, or None to let ``exc`` through.

    Args:
        exc: what the fsspec driver raised.
        uri: the URI being accessed.
        param: the params key that gave ``uri``.
        endpoint: the S3 endpoint in use (for the message).
        bucket_probe: ``exc`` came from probing the bucket itself, so "not found" means no bucket.
    """
    if isinstance(exc, (StorageError, DriverMissing)):
        return None
    where = f"{param}: " if param else ""
    uri = mask(uri)  # messages are printed and logged: no credentials in them, whatever the caller passed
    family = _family(uri)
    store = _store(uri, endpoint if family == "s3" else None)
    code, names = _code(exc), _names(exc)
    detail = mask(f"{code}: {exc}" if code and code not in str(exc) else str(exc) or type(exc).__name__)
    detail = " ".join(detail.split())  # one line (botocore's validation errors span several)
    bucket = uri.split("://", 1)[-1].split("/", 1)[0]
    if names & _MISSING:
        return AccessDenied(f"{where}{uri}: found no credentials for {store} ({detail}). Set "
                            f"{CREDENTIALS.get(family, 'the store SDK defaults')}; never params.yaml or the URI")
    if isinstance(exc, PermissionError) or names & _DENIED or code in _DENIED | {"AccessDenied", "403"}:
        return AccessDenied(f"{where}{uri}: {store} refused the credentials ({detail}). Credentials come from "
                            f"{CREDENTIALS.get(family, 'the store SDK defaults')}; never from params.yaml")
    if isinstance(exc, FileNotFoundError) and (bucket_probe or code in ("NoSuchBucket", "ContainerNotFound")
                                               or "bucket does not exist" in str(exc).lower()):
        return BucketNotFound(f"{where}{uri}: bucket {bucket!r} does not exist on {store} ({detail}); "
                              "create it, or fix the bucket name or the endpoint")
    if isinstance(exc, FileNotFoundError):
        return None if uri in str(exc) else FileNotFoundError(f"{where}{uri} does not exist ({detail})")
    if isinstance(exc, (ConnectionError, TimeoutError)) or names & _UNREACHABLE:
        hint = " (set by AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3)" if family == "s3" and endpoint else ""
        return StoreUnreachable(f"{where}{uri}: cannot reach {store}{hint}: {detail}")
    if isinstance(exc, OSError) or "BotoCoreError" in names:
        return StorageError(f"{where}{uri}: {store} error: {detail}")
    return None


@contextlib.contextmanager
def named_errors(uri: str, param: str = "", endpoint: str | None = None,
                 bucket_probe: bool = False) -> Iterator[None]:
    """Re-raises object-store errors of the block as :class:`StorageError` subclasses naming ``uri``."""
    try:
        yield
    except Exception as e:
        named = translate(e, str(uri), param, endpoint, bucket_probe)
        if named is None:
            raise
        raise named from e
