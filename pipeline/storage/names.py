"""File names read from data files (annotations, detection files) stay inside the folder they are
relative to: the one check every reader applies before it opens a named file."""
from __future__ import annotations

import re
from pathlib import PurePosixPath

from pipeline.storage import join

_ABSOLUTE = re.compile(r"^(/|\\|[A-Za-z]:[\\/]|~)|://|::")


def name_problem(name: str, folder: str = "its folder") -> str | None:
    """Why ``name`` cannot be a file name relative to ``folder`` (absolute, a URI, ``~``, a ``..`` that
    climbs out), or None. Only the text is read."""
    text = str(name)
    if not text.strip() or "\x00" in text:
        return f"file name {text!r} is empty or not a file name"
    if _ABSOLUTE.search(text):
        return f"file name {text!r} is an absolute path or URI; names are relative to {folder}"
    depth = 0
    for part in PurePosixPath(text).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return f"file name {text!r} leads out of {folder} ('..')"
    return None


def path_inside(folder: str, name: str) -> tuple[str, str | None]:
    """Where the file ``name`` (from a data file) is under ``folder``, or why it is not there.

    A data file only names files inside its folder: an absolute path, a URI, ``~`` or a ``..`` that
    climbs out of ``folder`` is refused. The check reads the name, not the disk: a symbolic link inside
    the folder was put there by the dataset's owner (DVC's ``cache.type symlink`` links every file into
    its cache; shared stores are often linked in) and is followed.

    Args:
        folder: the folder the names are relative to (local path or fsspec URI).
        name: the name as the data file gives it.

    Returns:
        (the file's path or URI, None), or ("", the reason it is refused).
    """
    text = str(name)
    problem = name_problem(text, folder)
    if problem:
        return "", problem
    return join(folder, text), None
