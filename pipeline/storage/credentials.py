"""Credentials inside URIs (``s3://KEY:SECRET@bucket``, ``ftp://user:password@host``) never reach a
console, a log or an artifact's metadata: :func:`mask` replaces the part before ``@`` with ``***``.

Credentials belong in the environment or the provider's own files (docs/failures.md, security): a URI is
printed, logged and written into metadata as a matter of course.
"""
from __future__ import annotations

import logging
import re

# scheme://userinfo@ : a user (no /) or user:secret (a pasted secret may hold an unescaped /), up to the @.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)(?:[^/\s@'\"]+|[^/\s@'\":]*:[^\s@'\"]*)@")


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
