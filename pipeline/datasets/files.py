"""Reading annotation files (local paths or fsspec URIs): tables as CSV or JSON Lines, list files, and the
error every reader raises for a malformed file.

Errors name the file, the row (1-based, the header of a CSV being row 1) and the field, so a user can
find the line to fix.
"""
from __future__ import annotations

import csv
import io
import json

from pipeline import storage



class AnnotationError(ValueError):
    """A malformed annotation file; the message names the file, the row and the field."""


def read_records(uri: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> list[dict]:
    """The rows of a ``.csv`` (header row) or ``.jsonl`` / ``.json`` (one object per line) file.

    Every record gets a ``_row`` key: its 1-based line number in the file. Empty CSV cells and JSON nulls
    become None.

    Args:
        uri: the file.
        required: fields every record must have (non-empty).
        optional: the other fields the format knows; any further field is an error (a typo would
            otherwise be ignored silently).

    Raises:
        AnnotationError: unreadable file, unknown format, a missing or unknown field, bad JSON.
    """
    if not storage.exists(uri):
        raise AnnotationError(f"{uri}: file not found")
    with storage.open_file(uri, "rb") as f:
        text = f.read().decode("utf-8-sig")
    if uri.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in reader.fieldnames or []]
        records = []
        for row, values in enumerate(reader, start=2):
            if None in values:
                raise AnnotationError(f"{uri} row {row}: more cells than the header's {len(fields)} columns "
                                      "(quote values that contain commas)")
            records.append({k.strip(): (v.strip() or None) if isinstance(v, str) else v
                            for k, v in values.items()} | {"_row": row})
    elif uri.endswith((".jsonl", ".json")):
        records, fields = [], set()
        for row, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as e:
                raise AnnotationError(f"{uri} row {row}: not a JSON object ({e}); expected one object per line") from e
            if not isinstance(value, dict):
                raise AnnotationError(f"{uri} row {row}: expected a JSON object, got {type(value).__name__}")
            fields.update(value)
            records.append(value | {"_row": row})
        fields = sorted(fields)
    else:
        raise AnnotationError(f"{uri}: unknown table format; expected .csv or .jsonl")
    unknown = [f for f in fields if f not in required + optional]
    if unknown:
        raise AnnotationError(f"{uri}: unknown column(s) {unknown}; expected {list(required)}"
                              + (f" and optionally {list(optional)}" if optional else ""))
    for rec in records:
        missing = [f for f in required if rec.get(f) in (None, "", [])]
        if missing:
            raise AnnotationError(f"{uri} row {rec['_row']}: missing {missing[0]!r} (required: {list(required)})")
    return records


def read_lines(uri: str) -> list[str]:
    """The non-empty, stripped lines of a text file (e.g. a split list); raises naming a missing file."""
    if not storage.exists(uri):
        raise AnnotationError(f"{uri}: file not found")
    with storage.open_file(uri, "rb") as f:
        return [line.strip() for line in f.read().decode("utf-8-sig").splitlines() if line.strip()]
