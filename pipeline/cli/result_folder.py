"""The ``--out`` folder of ``defr``: checked before any work, filled all at once or not at all.

A run writes its files into a temporary folder beside ``--out`` and renames it into place only when every
file is written, so ``--out`` holds either the whole new result or what it held before: never a mix of an
earlier result and a new one, never a result without its ``summary.json``. An ``--out`` that holds an
earlier ``defr`` result is replaced only with ``overwrite``; one that holds anything else is refused. Without
``overwrite`` the final rename itself refuses a result that arrived meanwhile (two runs into one ``--out``:
the kernel's rename onto a non-empty folder fails, so the check and the write are one step). A mount point
cannot be renamed, so it is refused before any work. The folder gets the modes of the user's umask (0755
for most), as the stages' outputs do.
"""
from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import socket
from pathlib import Path
from typing import Iterator

from pipeline import storage

# The file each kind of result always has: how an earlier result is recognised.
RESULT_FILES = ("summary.json", "classes.json")


class OutputError(ValueError):
    """``--out`` cannot take the result; the message names the folder or file and what to do."""


def _tag() -> str:
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"


def check_out(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Checks, before any work, that the result can be written to ``out``; returns it as a Path.

    A temporary folder is made (and removed) beside ``out``: the check meets what the real write will
    meet (a read-only filesystem, a missing permission), also as root, whom file modes do not stop.

    Raises:
        OutputError: ``out`` is a URI, a file or a mount point, its folder cannot be written, or it holds
            files: an earlier result without ``overwrite``, or anything that is not a ``defr`` result.
    """
    if not storage.is_local(str(out)):
        raise OutputError(f"--out {out}: give a local folder (results are written there, then copied wherever)")
    path = Path(storage.local_path(str(out)))
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    _not_a_mount_point(path)
    if path.is_dir():
        held = _foreign(path)
        if held and not overwrite:
            raise OutputError(f"--out {out} holds an earlier result: add --overwrite to replace it, or give "
                              "another folder")
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _new_folder(parent, f".{path.name}.{_tag()}", ".check").rmdir()
    except OSError as e:
        raise OutputError(f"--out {out}: cannot write in {parent}: {e.strerror or e}") from None
    return path


def _not_a_mount_point(path: Path) -> None:
    # Renaming a mount point (EBUSY) would fail only at the end, after all the work. (os.path.ismount
    # resolves the parent with realpath, which misreads paths through /proc/<pid>/root: compare directly.)
    try:
        here, up = os.stat(path), os.stat(path / "..")
    except OSError:
        return
    if here.st_dev != up.st_dev or here.st_ino == up.st_ino:
        raise OutputError(f"--out {path} is a mount point: a result takes the place of its folder in one rename, "
                          f"which a mount point cannot do; give a folder inside it (e.g. {path / 'results'})")


def _new_folder(parent: Path, prefix: str, suffix: str) -> Path:
    """A new folder with a name no other writer uses, made with ``mkdir`` so that the umask sets its mode
    (``tempfile.mkdtemp`` makes it 0700, which the renamed result would keep)."""
    while True:
        folder = parent / f"{prefix}.{secrets.token_hex(4)}{suffix}"
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            return folder


def _foreign(path: Path) -> list[str]:
    """What ``path`` (a folder) holds; raises when that is not a ``defr`` result (never replaced)."""
    held = sorted(p.name for p in path.iterdir())
    if held and not any(name in held for name in RESULT_FILES):
        raise OutputError(f"--out {path} holds other files ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}), "
                          "not a defr result: give a new or empty folder")
    return held


class Staging:
    """The temporary folder a result is written into; :meth:`file` names each file as it is written, so a
    failed write (a full disk says no file name) can name it."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out, self.current = root, out, ""

    def file(self, relative: str) -> Path:
        """The staged path of ``relative`` (its folder made), remembered as the file being written."""
        self.current = relative
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target


@contextlib.contextmanager
def staged(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Staging]:
    """Yields a :class:`Staging` beside ``out``; when the block ends without error, ``out`` becomes its
    content (with ``overwrite``, an earlier result in ``out`` is replaced whole). On error nothing of the new
    result is left and ``out`` is as it was.

    Raises:
        OutputError: ``out`` holds files that are not a ``defr`` result, or (without ``overwrite``) a result
            that another run wrote while this one ran; a write failed (e.g. the disk is full): names the
            file and says ``out`` is unchanged.
    """
    out = Path(storage.local_path(str(out)))
    _not_a_mount_point(out)
    if out.is_dir():
        _foreign(out)  # a folder of other files is never replaced, whoever calls
    out.parent.mkdir(parents=True, exist_ok=True)
    root = _new_folder(out.parent, f".{out.name}.{_tag()}", ".tmp")
    stage = Staging(root, out)
    try:
        try:
            yield stage
        except OSError as e:
            name = out / stage.current if stage.current else out
            full = " (the disk is full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise OutputError(f"cannot write {name}: {e.strerror or e}{full}; nothing of this result was "
                              f"kept and {out} is as it was") from e
        if not overwrite:
            try:  # onto a missing or empty folder only: the kernel refuses a non-empty one, atomically
                os.rename(root, out)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            raise OutputError(f"--out {out} received another result while this run worked (a second defr run "
                              "into the same folder?): that result is kept and this one is not; add --overwrite "
                              "to replace it, or give another folder")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.{_tag()}.old"
            os.rename(out, old)
        try:
            os.rename(root, out)
        except OSError:
            if old is not None:
                os.rename(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
