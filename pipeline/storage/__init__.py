"""Reading and writing artifacts on local disk or any fsspec URI, atomically.

A stage that fails must leave no partial artifact: every writer writes to a temporary sibling and
renames it into place only when the content is complete.

Every URI (dataset roots, artifacts, caches, model directories, checkpoints, Ray Train's storage_path)
goes through :func:`filesystem` (fsspec) or :func:`arrow_filesystem` (pyarrow, for Ray): one driver check,
one set of object-store settings, errors that name the URI (``pipeline.storage.filesystems``).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage.credentials import mask
from pipeline.storage.drivers import DRIVERS, DriverMissing, protocol, require_driver
from pipeline.storage.errors import AccessDenied, BucketNotFound, StorageError, StoreUnreachable
from pipeline.storage.filesystems import (arrow_filesystem, check_access, errors_for, filesystem, is_local,
                                          local_path, storage_options)

__all__ = ["DRIVERS", "AccessDenied", "BucketNotFound", "DriverMissing", "StorageError", "StoreUnreachable",
           "absolute_uris", "arrow_filesystem", "atomic_path", "check_access", "exists", "filesystem",
           "is_local", "join", "local_path", "open_file", "parquet_metadata", "protocol", "read_parquet",
           "remove_stale_temps", "require_driver", "scratch_dir", "storage_options", "write_json",
           "write_parquet", "write_text"]


def join(root: str, *parts: str) -> str:
    """Joins path parts onto a local path or URI root."""
    root = str(root)
    if is_local(root):
        return str(Path(root.removeprefix("file://"), *parts))
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def open_file(uri: str | os.PathLike, mode: str = "rb", param: str = ""):
    """An open file object for a local path or any URI (``mode`` as for ``open``; text modes work too).

    Raises:
        DriverMissing: the URI's driver is not installed (names the pip command).
        FileNotFoundError, AccessDenied, BucketNotFound, StoreUnreachable: naming the URI.
    """
    fs, path = filesystem(uri, param)
    if is_local(uri):
        return fs.open(path, mode)
    with errors_for(str(uri), fs, param):
        return fs.open(path, mode)


def exists(uri: str | os.PathLike, param: str = "") -> bool:
    """Whether a file or directory exists at ``uri``; refused credentials raise (they are not "no")."""
    fs, path = filesystem(uri, param)
    if is_local(uri):
        return fs.exists(path)
    with errors_for(str(uri), fs, param):
        return fs.exists(path)


def _writer_tag(pid: int | None = None) -> str:
    # Host and pid of the writer, so that a later writer can tell a dead writer's temp from a live one's.
    return f"{socket.gethostname().replace('.', '_')}-{os.getpid() if pid is None else pid}"


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Removes the temporaries that writers of ``path`` on this host left when killed (SIGKILL, OOM).

    A killed writer never reaches its cleanup, so its ``.<name>.<host>-<pid>.*.tmp`` sibling stays; it is
    never read (the artifact path itself was not touched) and is removed here once that pid is gone.
    Temporaries of live processes and of other hosts (shared filesystems) are left alone.
    """
    path = Path(path)
    prefix = f".{path.name}.{_writer_tag(0)[:-1]}"
    removed = []
    for sibling in path.parent.glob(f".{path.name}.*.tmp"):
        pid = sibling.name[len(prefix):].split(".", 1)[0]
        if not sibling.name.startswith(prefix) or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def scratch_dir(name: str) -> Path:
    """A new private folder of this process in the system's temp dir, for files that live only while it runs.

    Named like :func:`atomic_path`'s temporaries (``.<name>.<host>-<pid>.*.tmp``), so that the next call
    removes the folders that killed processes left (a SIGKILLed or preempted Ray Train worker never reaches
    its cleanup; a real model's weights are gigabytes). The caller removes its own folder when done.
    """
    return _new_temp(Path(tempfile.gettempdir()) / name)


def _new_temp(path: Path) -> Path:
    """A new folder beside ``path`` named for this writer, after removing those of dead writers."""
    remove_stale_temps(path)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it to ``path`` only if the block succeeds.

    Works for files and directories. Local paths only: stage outputs are local (DVC tracks them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise FileNotFoundError(f"nothing was written to {target} for {path}")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(target, path)
    except OSError as e:
        # A full disk names no file (write() has none to name; pyarrow says "Error writing bytes"): name it.
        if e.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(e):
            raise OSError(errno.ENOSPC, f"No space left on device: cannot write {path} (the disk is full; "
                                        f"{path} is as it was)") from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(table: pa.Table, path: str | os.PathLike, metadata: dict | None = None,
                  row_group_size: int | None = None) -> None:
    """Writes ``table`` atomically; ``metadata`` (str -> JSON-able) goes into the schema metadata."""
    if metadata:
        meta = dict(table.schema.metadata or {})
        # Metadata is read by anyone who gets the file: no URI credentials in it.
        meta.update({k.encode(): mask(v if isinstance(v, str) else json.dumps(v)).encode()
                     for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size)


def read_parquet(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    uri = str(uri)
    if is_local(uri):
        if not Path(local_path(uri)).exists():
            raise FileNotFoundError(f"artifact {uri} does not exist (did its stage run?)")
        return pq.read_table(local_path(uri), columns=columns)
    with open_file(uri) as f:
        return pq.read_table(f, columns=columns)


def parquet_metadata(uri: str | os.PathLike) -> dict[str, str]:
    """The schema metadata of a Parquet file (local or URI), without the ARROW:* entries."""
    if is_local(uri):
        meta = pq.read_schema(local_path(uri)).metadata or {}
    else:
        with open_file(uri) as f:
            meta = pq.read_schema(f).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW")}


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def absolute_uris(table, base: str | os.PathLike | None = None, column: str = "uri"):
    """``table`` with local relative paths in ``column`` made absolute against ``base`` (default: cwd).

    ``prepare`` keeps the paths it was given (a relative root stays relative, so a clone elsewhere
    still works); workers that run in another directory (Ray Train changes into its run folder) need
    them absolute. URIs and absolute paths are left as they are.
    """
    import pyarrow as pa

    base = Path(base or os.getcwd())
    uris = [u if not is_local(u) or Path(u.removeprefix("file://")).is_absolute() else str(base / u)
            for u in table.column(column).to_pylist()]
    return table.set_column(table.schema.get_field_index(column), column, pa.array(uris, pa.string()))
