"""Image arguments of the ``defr`` command -> one row per image to run.

An argument may be an image file, a folder (its image files, not recursive), a glob (``photos/*.jpg``,
``s3://bucket/set/*.png``), any fsspec URI, or a text file (``.txt`` / ``.lst``) with one of those per line
(``#`` comments and blank lines skipped; relative lines are relative to the list's folder). An argument
that matches nothing is a problem to report, never skipped silently; a path that does not exist is kept,
so that reading it fails with its reason like any unreadable image.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pyarrow as pa

from pipeline import storage

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv")  # `defr detect` only (pipeline.video)
LIST_SUFFIXES = (".txt", ".lst")
GLOB_CHARS = "*?["


@dataclass
class ImageInputs:
    """Images to run and the arguments that gave none.

    Attributes:
        table: image_id (0, 1, ... in argument order), uri, file_name (last path part, to find the image
            in a boxes file), name (unique output name: the file stem, suffixed ``_2``, ... on clashes).
        problems: (argument, why it gave no image).
    """
    table: pa.Table
    problems: list[tuple[str, str]] = field(default_factory=list)


def _fs(arg: str):
    """The filesystem of ``arg`` through :func:`pipeline.storage.filesystem` (credentials in the URI refused,
    the project's object-store settings), and the context that turns store errors into one line naming it."""
    fs, path = storage.filesystem(arg)
    return fs, path, (contextlib.nullcontext() if storage.is_local(arg) else storage.errors_for(arg, fs))


def _full(fs, path: str, like: str) -> str:
    """``path`` as returned by ``fs`` turned back into what the user wrote (local path or URI)."""
    return path if storage.is_local(like) else fs.unstrip_protocol(path)


def _expand(arg: str, depth: int = 0, suffixes: tuple[str, ...] = IMAGE_SUFFIXES
            ) -> tuple[list[str], list[tuple[str, str]]]:
    arg = arg.strip()
    if not arg:
        return [], []
    fs, path, errors = _fs(arg)
    with errors:
        return _expand_on(fs, path, arg, depth, suffixes)


def _expand_on(fs, path: str, arg: str, depth: int, suffixes: tuple[str, ...]
               ) -> tuple[list[str], list[tuple[str, str]]]:
    if any(c in arg for c in GLOB_CHARS):
        hits = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        return ([_full(fs, p, arg) for p in hits], [] if hits else [(arg, "matches no file")])
    if fs.isdir(path):
        hits = sorted(p for p in fs.ls(path, detail=False) if str(p).lower().endswith(suffixes))
        return ([_full(fs, p, arg) for p in hits],
                [] if hits else [(arg, f"folder without image files ({', '.join(suffixes)})")])
    if arg.lower().endswith(LIST_SUFFIXES) and fs.isfile(path):
        if depth:
            return [], [(arg, "a list inside a list is not read")]
        with storage.open_file(arg, "r") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
        base = os.path.dirname(arg)
        uris, problems = [], []
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if storage.is_local(line) and storage.is_local(arg) and not os.path.isabs(line):
                line = os.path.join(base, line)
            u, p = _expand(line, depth + 1, suffixes)
            uris += u
            problems += p
        if not uris and not problems:
            problems.append((arg, "list without any line"))
        return uris, problems
    return [arg], []


def expand_images(args: list[str], videos: bool = False) -> ImageInputs:
    """The images that ``args`` name, in order, each once (see the module docstring); with ``videos``, a
    folder's video files too (:data:`VIDEO_SUFFIXES`)."""
    uris, problems, seen = [], [], set()
    for arg in args:
        found, bad = _expand(str(arg), suffixes=IMAGE_SUFFIXES + (VIDEO_SUFFIXES if videos else ()))
        problems += bad
        for u in found:
            if u not in seen:
                seen.add(u)
                uris.append(u)
    file_names = [PurePosixPath(u.split("://", 1)[-1]).name for u in uris]
    names, used = [], {}
    for f in file_names:
        stem = PurePosixPath(f).stem or "image"
        used[stem] = used.get(stem, 0) + 1
        names.append(stem if used[stem] == 1 else f"{stem}_{used[stem]}")
    table = pa.table({"image_id": pa.array(range(len(uris)), pa.int64()), "uri": pa.array(uris, pa.string()),
                      "file_name": pa.array(file_names, pa.string()), "name": pa.array(names, pa.string())})
    return ImageInputs(table, problems)
