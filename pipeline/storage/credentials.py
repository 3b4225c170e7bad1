"""Credentials inside URIs (``s3://KEY:SECRET@bucket``, ``ftp://user:password@host``) never reach a
console, a log, a result file or an artifact's metadata: :func:`refuse_credentials` refuses such a URI
before any client (fsspec, botocore) sees it, and :func:`mask` replaces the part before ``@`` with ``***``
wherever a URI is printed or logged.

Credentials belong in the environment or the provider's own files (docs/failures.md, security): a URI is
printed, logged and written into metadata and result files as a matter of course.
"""
from __future__ import annotations

import logging
import re

# scheme://userinfo@ : a user (no /) or user:secret (a pasted secret may hold an unescaped /), up to the @.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/\s@'\"]+|[^/\s@'\":]*:[^\s@'\"]*)@")


# a secret in a URI: scheme://user:secret@ (a bare user, as in sftp://me@host, holds none)
_SECRET = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s@'\":]*:[^\s@'\"]+@")
# stores whose drivers take no credentials from a URI: there any userinfo is refused (it would be echoed).
# Not abfs / abfss: in abfs://container@account.dfs.core.windows.net/path the part before @ is the container
# (adlfs's form, docs/team_storage.md); a secret there (container:key@) is still refused by _SECRET.
_NO_USERINFO = ("s3", "s3a", "gs", "gcs", "az", "azure")
WHERE_CREDENTIALS_GO = ("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or ~/.aws, GOOGLE_APPLICATION_CREDENTIALS, "
                        "AZURE_STORAGE_*, or fsspec's configuration (~/.config/fsspec/<protocol>.json)")


def refuse_credentials(uri: str, param: str = "") -> None:
    """Raises before any client sees ``uri`` when it carries credentials (``scheme://user:secret@``, or any
    user on an object store, whose drivers would only echo it in their errors).

    Every URI the project opens goes through :func:`pipeline.storage.filesystem`, which calls this; an entry
    point that takes URIs for another client (a server, a downloader) calls it first itself.

    Raises:
        ValueError: naming ``param`` and the masked URI, and where credentials go instead.
    """
    uri = str(uri)
    if "@" not in uri or mask(uri) == uri:
        return
    scheme = uri.rsplit("::", 1)[-1].split("://", 1)[0].lower()
    if _SECRET.search(uri) or scheme in _NO_USERINFO:
        where = f"{param}: " if param else ""
        raise ValueError(f"{where}{mask(uri)}: credentials inside the URI are not used (and would be printed, "
                         f"logged and written into results): remove them and give them the store's usual way "
                         f"({WHERE_CREDENTIALS_GO})")


def mask(text: str) -> str:
    """``text`` with the credentials of every URI in it replaced by ``***`` (``s3://***@bucket/key``)."""
    return _USERINFO.sub(r"\1***@", text) if "@" in text else text


class MaskFilter(logging.Filter):
    """A handler filter that masks URI credentials in every record it passes (message, arguments and the
    traceback text), so that one filter per handler covers every logger of the process."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True
