"""Which package serves which URI scheme, and the error that says what to install when it is missing.

fsspec knows every scheme but imports its driver only on first use, so without this check a missing driver
surfaces as ``ImportError: Install s3fs to access S3`` deep inside a stage, naming neither the URI nor the
project's install extra. The DVC plugin of the same store is listed too: one extra gives both.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Driver:
    store: str                 # what a person calls the store, for messages
    extra: str                 # this project's install extra (pyproject.toml) that brings the packages
    module: str                # the fsspec implementation's import name
    packages: tuple[str, ...]  # what the extra installs: the fsspec filesystem and the DVC plugin


S3 = Driver("Amazon S3 / S3-compatible storage", "s3", "s3fs", ("s3fs", "dvc-s3"))
GCS = Driver("Google Cloud Storage", "gcs", "gcsfs", ("gcsfs", "dvc-gs"))
AZURE = Driver("Azure Blob Storage", "azure", "adlfs", ("adlfs", "dvc-azure"))

# URI scheme -> driver. ``azure://`` is DVC's scheme for Azure remotes; fsspec calls the same store az://.
DRIVERS = {"s3": S3, "s3a": S3, "gs": GCS, "gcs": GCS, "az": AZURE, "abfs": AZURE, "abfss": AZURE,
           "azure": AZURE}
FSSPEC_ALIASES = {"azure": "az"}


class DriverMissing(ImportError):
    """The fsspec driver of a URI's scheme is not installed; the message gives the pip command."""


def protocol(uri: str) -> str:
    """The URI scheme in lower case (``s3``, ``gs``, ``az``, ...); ``""`` for a local path or ``file://``.

    A chained URL (``simplecache::s3://...``) gives the scheme of its last, innermost link.
    """
    uri = str(uri).rsplit("::", 1)[-1]
    if "://" not in uri:
        return ""
    scheme = uri.split("://", 1)[0].lower()
    return "" if scheme in ("file", "local") else scheme


def fsspec_uri(uri: str) -> str:
    """``uri`` with DVC's scheme names replaced by fsspec's (``azure://c/p`` -> ``az://c/p``)."""
    uri = str(uri)
    scheme = protocol(uri)
    if scheme in FSSPEC_ALIASES and "::" not in uri:
        return FSSPEC_ALIASES[scheme] + uri[len(scheme):]
    return uri


def install_hint(driver: Driver) -> str:
    return (f"pip install -e '.[{driver.extra}]' in the project checkout "
            f"(or: pip install {' '.join(driver.packages)})")


def require_driver(uri: str, param: str = "") -> None:
    """Raises :class:`DriverMissing` at once when the fsspec driver of ``uri``'s scheme is not installed.

    Args:
        uri: a local path or any URI; schemes this project has no extra for are left to fsspec.
        param: the params key that gave ``uri``, named in the message.

    Raises:
        DriverMissing: naming ``param``, ``uri``, the store and the pip command that installs its driver.
    """
    driver = DRIVERS.get(protocol(uri))
    if driver is None or importlib.util.find_spec(driver.module) is not None:
        return
    where = f"{param}: " if param else ""
    raise DriverMissing(f"{where}{uri!r} is on {driver.store}, but its driver ({driver.module}) is not "
                        f"installed. Install it with: {install_hint(driver)}")
