"""Model files (checkpoints, model directories) on local disk or any fsspec URI: telling paths from names,
content fingerprints (so a cache can key on what a checkpoint holds, not where it lies), and local
copies for loaders that only read local files.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from pipeline import storage

log = logging.getLogger(__name__)

_SAMPLE = 1 << 20  # bytes hashed at each end of a large checkpoint file
MODEL_COPIES = "~/.cache/defr-pipeline/models"


def is_path(ref: str) -> bool:
    """Whether a model reference is a file system path or fsspec URI rather than a name or tag."""
    return "://" in ref or ref.startswith(("/", ".", "~")) or Path(ref).suffix in (
        ".pt", ".pth", ".bin", ".safetensors", ".ckpt") or os.path.exists(ref)


def fingerprint(uri: str, param: str) -> str:
    """A content fingerprint of a local or fsspec checkpoint file or directory.

    Hashes every file's relative name and size, small files whole and large files by their first and last
    MiB: cheap on multi-GB checkpoints and equal across machines, so a colleague's copy of the same
    checkpoint hits the same cache entries.

    Raises:
        FileNotFoundError: naming ``param`` when nothing exists at ``uri``.
        DriverMissing: ``uri``'s store driver is not installed (names ``param`` and the pip command).
    """
    fs, root = storage.filesystem(os.path.expanduser(uri), param)  # raises naming param and the pip command
    if not storage.exists(os.path.expanduser(uri), param):
        raise FileNotFoundError(f"{param}: {uri!r} does not exist (expected a local path or fsspec URI "
                                "of a checkpoint file or model directory)")
    files = sorted(fs.find(root)) if fs.isdir(root) else [root]
    h = hashlib.sha256()
    for f in files:
        size = fs.size(f)
        rel = os.path.relpath(f, root) if f != root else Path(f).name
        h.update(f"{rel}\0{size}\0".encode())
        with fs.open(f, "rb") as fh:
            h.update(fh.read(_SAMPLE))
            if size > 2 * _SAMPLE:
                fh.seek(size - _SAMPLE)
                h.update(fh.read(_SAMPLE))
            elif size > _SAMPLE:
                h.update(fh.read())
    return h.hexdigest()[:16]


def local_copy(uri: str, param: str = "model") -> str:
    """A local path for ``uri``: itself when local, else a copy under :data:`MODEL_COPIES`."""
    if storage.is_local(uri):
        return storage.local_path(uri)
    fs, path = storage.filesystem(uri, param)
    dest = Path(MODEL_COPIES).expanduser() / fingerprint(uri, param) / Path(path).name
    if not dest.exists():
        log.info("copying %s to %s", uri, dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        # Copied beside and renamed: an interrupted copy is never mistaken for a complete one.
        fs.get(path, str(tmp), recursive=fs.isdir(path))
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished the same copy first
            if not dest.exists():
                raise
    return str(dest)
