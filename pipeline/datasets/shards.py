"""A split's images packed into shards of a few hundred MB, for training from an object store.

Read one file per image from a bucket, training costs one GET per image: about 2,400 GETs/s for 8 GPUs at
300 images/s each, each paying the store's per-request latency and price. Packed, a node fetches each shard
once, with one GET, into a local cache, and the loader reads an image there by offset: the bytes of the
file, so the same decoding and the same augmentation draws per seed as reading the file (the loader's
batches are the same, bit for bit: tests/unit/test_shards.py).

Format, WebDataset's layout (any tar or webdataset tool reads it): uncompressed tar files
``shard-00000.tar``, ... of about ``SHARD_BYTES`` each, one member per image named ``<position>.<ext>``;
and ``index.parquet``, written last (a pack is complete when it exists): per image its original ``uri``,
the ``shard``, the ``offset`` and ``size`` of its bytes there and their ``crc32``, checked on every read (a
damaged or stale shard fails, naming the image).

The train stage packs the train split where ``placement.train.shards`` says (once: a pack that holds every
image of the split is reused) and its loader reads from there (:func:`pack_split`, :class:`ShardReader`).
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import os
import shutil
import tarfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import storage
from pipeline.datasets.splits import split_rows

log = logging.getLogger(__name__)

SHARD_BYTES = 256 * 2**20  # a few hundred MB: one GET's latency is nothing next to its transfer
INDEX = "index.parquet"
INDEX_SCHEMA = pa.schema([("uri", pa.string()), ("shard", pa.string()), ("offset", pa.int64()),
                          ("size", pa.int64()), ("crc32", pa.uint32())])
CACHE = os.environ.get("DEFR_SHARD_CACHE", "~/.cache/defr-pipeline/shards")  # a node's fetched shards


def split_uris(images_path: str, split: str, base: str | None = None) -> list[str]:
    """The image URIs of one split of an images table, relative paths made absolute against ``base`` (as
    the training workers see them)."""
    return split_rows(storage.absolute_uris(storage.read_parquet(images_path), base), split).column("uri").to_pylist()


def _read(uri: str) -> bytes:
    try:
        with storage.open_file(uri) as f:
            return f.read()
    except OSError as e:
        raise OSError(f"cannot read image {uri} to pack it: {e}") from e


def _put(local: Path, target: str, name: str) -> None:
    """Moves the finished local file ``local`` to ``target/name`` (a rename on local disk, one upload else)."""
    dest = storage.join(target, name)
    if storage.is_local(target):
        os.replace(local, dest)
        return
    fs, path = storage.filesystem(dest, "placement.train.shards")
    with storage.errors_for(dest, fs, "placement.train.shards"):
        fs.put_file(str(local), path)
    local.unlink()


def pack(uris: list[str], target: str, shard_bytes: int = SHARD_BYTES, threads: int = 16) -> pa.Table:
    """Packs the files ``uris`` (each once, in this order) into tar shards and an index under ``target``.

    Args:
        uris: local paths or URIs of the images.
        target: a local folder or a URI (``s3://bucket/prefix``); shards already there are replaced.
        shard_bytes: a shard is closed once it holds this many bytes.
        threads: files read at once (object stores: their latency overlaps).

    Returns:
        The index (:data:`INDEX_SCHEMA`).

    Raises:
        OSError: an image that cannot be read, naming it. Nothing is indexed then: the target holds no pack.
    """
    from tqdm import tqdm

    if storage.is_local(target):
        Path(storage.local_path(target)).mkdir(parents=True, exist_ok=True)
        work = Path(storage.local_path(target))
    else:
        work = storage.scratch_dir("defr-shards")
    index_uri = storage.join(target, INDEX)
    if storage.exists(index_uri, "placement.train.shards"):  # a repack that fails leaves no pack, not a mix
        fs, path = storage.filesystem(index_uri, "placement.train.shards")
        fs.rm_file(path)
    unique = list(dict.fromkeys(uris))
    rows = {name: [] for name in INDEX_SCHEMA.names}
    shard, tar, number = None, None, 0

    def close():
        if tar is not None:
            tar.close()
            _put(shard, target, shard.name.removeprefix("."))

    try:
        with ThreadPoolExecutor(threads) as pool, tqdm(total=len(unique), desc="pack shards", unit="img",
                                                       mininterval=2) as bar:
            # In chunks, so that at most a chunk of images is held in memory while a shard is written.
            for start in range(0, len(unique), 4 * threads):
                chunk = unique[start:start + 4 * threads]
                for i, (uri, data) in enumerate(zip(chunk, pool.map(_read, chunk)), start):
                    if tar is None or tar.offset >= shard_bytes:
                        close()
                        shard = work / f".shard-{number:05d}.tar"  # hidden until complete
                        tar, number = tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT), number + 1
                    info = tarfile.TarInfo(f"{i:08d}{Path(uri).suffix.lower() or '.jpg'}")
                    info.size, info.mode = len(data), 0o644
                    offset = tar.offset + len(info.tobuf(tar.format, tar.encoding, tar.errors))  # after its header
                    tar.addfile(info, io.BytesIO(data))
                    for key, value in (("uri", uri), ("shard", shard.name.removeprefix(".")),
                                       ("offset", offset), ("size", len(data)),
                                       ("crc32", zlib.crc32(data))):
                        rows[key].append(value)
                    bar.update()
        close()
        index = pa.table(rows, schema=INDEX_SCHEMA)
        local_index = work / f".{INDEX}.{os.getpid()}"
        pq.write_table(index, local_index)
        _put(local_index, target, INDEX)  # last: the pack exists from here on
    finally:
        if tar is not None and not tar.closed:
            tar.close()
        for stale in work.glob(".shard-*.tar"):
            stale.unlink()
        if not storage.is_local(target):
            shutil.rmtree(work, ignore_errors=True)
    log.info("packed %d images into %d shard(s) at %s", index.num_rows, number, target)
    return index


def pack_split(images_path: str, split: str, target: str, base: str | None = None,
               shard_bytes: int = SHARD_BYTES) -> str:
    """Packs the images of ``split`` at ``target`` unless a pack there already holds every one of them.

    Returns:
        A line for the log: what was done.
    """
    uris = split_uris(images_path, split, base)
    if storage.exists(storage.join(target, INDEX), "placement.train.shards"):
        have = set(storage.read_parquet(storage.join(target, INDEX), ["uri"]).column("uri").to_pylist())
        missing = [u for u in uris if u not in have]
        if not missing:
            return f"the {len(uris)} {split} images are packed at {target} already"
        log.info("the pack at %s lacks %d %s image(s) (e.g. %s): packing again", target, len(missing), split,
                 missing[0])
    index = pack(uris, target, shard_bytes)
    return f"packed the {index.num_rows} {split} images into {len(set(index['shard'].to_pylist()))} shard(s) at {target}"


class ShardReader:
    """The bytes of an image from a pack (:func:`pack`), by its original URI: the loader's ``read``.

    A pack on local disk is read in place; one at a URI is fetched shard by shard, each with one GET, into
    ``cache`` (by the processes of a node together: one fetch per shard, under a file lock) the first time
    one of its images is read. Picklable: DataLoader processes each open the files they read.

    Args:
        target: the pack's folder or URI (``placement.train.shards``).
        cache: where a node keeps fetched shards (a folder per pack, named by its index's hash).
    """

    def __init__(self, target: str, cache: str = CACHE):
        self.target, self.cache = target, cache
        self._index: dict[str, tuple[str, int, int, int]] | None = None
        self._folder: Path | None = None
        self._files: dict[str, int] = {}

    def __getstate__(self):
        return {"target": self.target, "cache": self.cache}

    def __setstate__(self, state):
        self.__init__(**state)

    def _load(self) -> None:
        with storage.open_file(storage.join(self.target, INDEX), param="placement.train.shards") as f:
            raw = f.read()
        t = pq.read_table(io.BytesIO(raw))
        self._index = dict(zip(t["uri"].to_pylist(), zip(t["shard"].to_pylist(), t["offset"].to_pylist(),
                                                         t["size"].to_pylist(), t["crc32"].to_pylist())))
        if storage.is_local(self.target):
            self._folder = Path(storage.local_path(self.target))
        else:  # a repacked target gets a new folder: a stale shard is never read
            self._folder = Path(self.cache).expanduser() / hashlib.sha256(raw).hexdigest()[:16]
            self._folder.mkdir(parents=True, exist_ok=True)

    def _local(self, shard: str) -> Path:
        path = self._folder / shard
        if storage.is_local(self.target) or path.exists():
            return path
        with open(self._folder / f".{shard}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the node's other loader processes wait for this fetch
            if not path.exists():
                uri = storage.join(self.target, shard)
                fs, remote = storage.filesystem(uri, "placement.train.shards")
                tmp = path.with_name(f".{shard}.{os.getpid()}.tmp")
                with storage.errors_for(uri, fs, "placement.train.shards"):
                    fs.get_file(remote, str(tmp))  # one GET of the whole object
                os.replace(tmp, path)
        return path

    def read(self, uri: str) -> bytes:
        """The bytes of the file ``uri`` was when packed.

        Raises:
            OSError: ``uri`` is not in the pack, or its bytes there are damaged; naming both.
        """
        if self._index is None:
            self._load()
        entry = self._index.get(uri)
        if entry is None:
            raise OSError(f"image {uri} is not in the pack at {self.target} (placement.train.shards): the "
                          "images changed since it was packed; remove its index.parquet to pack again")
        shard, offset, size, crc = entry
        if shard not in self._files:
            self._files[shard] = os.open(self._local(shard), os.O_RDONLY)
        data = os.pread(self._files[shard], size, offset)
        if len(data) != size or zlib.crc32(data) != crc:
            raise OSError(f"image {uri}: its bytes in {storage.join(self.target, shard)} (offset {offset}) are "
                          "damaged (CRC mismatch)")
        return data

    def image(self, uri: str):
        """The image as RGB, decoded as :func:`pipeline.datasets.images.read_rgb` decodes its file."""
        from PIL import Image

        with Image.open(io.BytesIO(self.read(uri))) as im:
            return im.convert("RGB")
