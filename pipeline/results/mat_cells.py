"""A fast reader for one cell array of numeric matrices in a MATLAB v5 ``.mat`` file (``all_boxes``).

``scipy.io.loadmat`` builds one Python object per cell: the 80 ``detections_NN.mat`` files of a full
HICO-DET test set hold 600 x 9,658 = 5.8M cells, almost all empty, which takes it about 20 s. Here the
empty cells, which are byte-for-byte identical, are found with one vectorised comparison, and only the
cells that hold numbers are parsed one by one. A file this reader does not handle (big-endian, v7.3 /
HDF5, sparse or complex cells) goes to ``scipy.io.loadmat``, which is slower but reads everything.

MAT v5 layout (MathWorks, "MAT-File Format"): a 128-byte header, then 8-byte aligned elements, each a tag
(uint32 type, uint32 byte count; or the "small element" form, count in the upper 16 bits of the first word
and data in the second) and its data padded to 8 bytes. A variable is ``miMATRIX`` (14), possibly inside
``miCOMPRESSED`` (15, zlib). A matrix holds array flags, dimensions, a name and the real part; a cell
array holds one ``miMATRIX`` per cell, in column-major order.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

MI_MATRIX, MI_COMPRESSED = 14, 15
MX_CELL = 1
# MAT data types -> NumPy (MATLAB may store a double matrix of whole numbers as a narrower type).
MI_DTYPES = {1: "<i1", 2: "<u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 9: "<f8", 12: "<i8", 13: "<u8"}


class FormatNotHandled(Exception):
    """The fast path cannot read this file; the caller falls back to scipy."""


@dataclass
class Cells:
    """The non-empty cells of a [rows, cols] cell array of numeric matrices with the same column count.

    Attributes:
        shape: (rows, cols) of the cell array.
        index: [m] column-major index of each non-empty cell (row = index % rows, column = index // rows).
        count: [m] rows of each cell's matrix.
        data: [sum(count), width] float64, the matrices stacked in ``index`` order.
    """

    shape: tuple[int, int]
    index: np.ndarray
    count: np.ndarray
    data: np.ndarray

    @classmethod
    def from_list(cls, shape, cells: list[tuple[int, np.ndarray]]) -> "Cells":
        widths = {m.shape[1] for _, m in cells}
        if len(widths) > 1:
            k, m = next((k, m) for k, m in cells if m.shape[1] != cells[0][1].shape[1])
            raise ValueError(f"cell {k % shape[0] + 1},{k // shape[0] + 1} has {m.shape[1]} columns, others "
                             f"{cells[0][1].shape[1]}")
        width = widths.pop() if widths else 0
        return cls(tuple(shape), np.array([k for k, _ in cells], np.int64),
                   np.array([len(m) for _, m in cells], np.int64),
                   np.concatenate([m for _, m in cells]) if cells else np.zeros((0, width)))


def read_cell_array(data: bytes | memoryview, name: str) -> Cells:
    """The non-empty cells of the 2-D cell array ``name``.

    Raises:
        FormatNotHandled: not a little-endian v5 file, or cells the fast path does not read (the caller then
            uses scipy).
        KeyError: the file has no variable ``name``.
        ValueError: cells with different column counts.
    """
    if len(data) < 128 or data[126:128] != b"IM" or data[124:126] != b"\x00\x01":
        raise FormatNotHandled("not a little-endian MAT v5 file")
    data = memoryview(data)   # slices of a memoryview do not copy the (hundreds of MB of) bytes
    pos = 128
    while pos + 8 <= len(data):
        mtype, nbytes = np.frombuffer(data, "<u4", 2, pos)
        body = data[pos + 8:pos + 8 + int(nbytes)]
        pos += 8 + int(nbytes) + (-int(nbytes)) % 8 if mtype != MI_COMPRESSED else 8 + int(nbytes)
        if mtype == MI_COMPRESSED:
            body = memoryview(zlib.decompress(body))
            mtype, nbytes = np.frombuffer(body, "<u4", 2, 0)
            body = body[8:8 + int(nbytes)]
        if mtype != MI_MATRIX:
            continue
        cls, dims, var, start = _matrix_head(body, 0)
        if var != name:
            continue
        if cls != MX_CELL or len(dims) != 2:
            raise FormatNotHandled(f"variable {name!r} is not a 2-D cell array")
        return _cells(body, start, dims)
    raise KeyError(name)


def _tag(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """(type, byte count, data offset, offset after the element) of the element at ``pos``."""
    first, second = np.frombuffer(buf, "<u4", 2, pos)
    first, second = int(first), int(second)
    if first >> 16:          # small data element: count in the upper half, data in the second word
        return first & 0xFFFF, first >> 16, pos + 4, pos + 8
    return first, second, pos + 8, pos + 8 + second + (-second) % 8


def _matrix_head(buf: bytes, pos: int) -> tuple[int, list[int], str, int]:
    """(class, dims, name, offset of the real part) of the matrix whose flags start at ``pos``."""
    _, _, flags_at, after = _tag(buf, pos)
    flags = int(np.frombuffer(buf, "<u4", 1, flags_at)[0])
    if flags & 0x0800:
        raise FormatNotHandled("complex data")
    mtype, nbytes, at, after = _tag(buf, after)
    dims = np.frombuffer(buf, MI_DTYPES.get(mtype, "<i4"), nbytes // np.dtype(MI_DTYPES.get(mtype, "<i4")).itemsize,
                         at).tolist()
    _, nbytes, at, after = _tag(buf, after)
    return flags & 0xFF, [int(d) for d in dims], bytes(buf[at:at + nbytes]).decode("ascii", "replace"), after


def _cell(buf: bytes, pos: int) -> tuple[np.ndarray | None, int]:
    """(the matrix of the cell at ``pos`` as float64 [rows, cols], or None when empty; next cell offset)."""
    mtype, nbytes, at, after = _tag(buf, pos)
    if mtype != MI_MATRIX:
        raise FormatNotHandled(f"cell at byte {pos} is not a matrix (type {mtype})")
    if nbytes == 0:
        return None, after
    cls, dims, _, data_at = _matrix_head(buf, at)
    if cls in (MX_CELL, 2, 3, 4, 5):   # cell, struct, object, char, sparse
        raise FormatNotHandled(f"cell at byte {pos} holds a non-numeric matrix (class {cls})")
    size = int(np.prod(dims)) if dims else 0
    if size == 0:
        return None, after
    dtype_code, dbytes, dat, _ = _tag(buf, data_at)
    if dtype_code not in MI_DTYPES:
        raise FormatNotHandled(f"cell at byte {pos}: data type {dtype_code}")
    values = np.frombuffer(buf, MI_DTYPES[dtype_code], size, dat).astype(np.float64)
    return values.reshape(dims[::-1]).T.reshape(dims[0], -1), after


def _cells(buf, start: int, dims: list[int]) -> Cells:
    """The non-empty cells among rows x cols cells from byte ``start`` (8-aligned)."""
    count = dims[0] * dims[1]
    if count == 0:
        return Cells.from_list(dims, [])
    words = np.frombuffer(buf, "<u8", (len(buf) - start) // 8, start)
    # The signature of an empty cell: the first empty cell's bytes (every empty cell a writer makes is the same).
    sig, pos = None, start
    for _ in range(min(count, 64)):
        mat, nxt = _cell(buf, pos)
        if mat is None:
            sig = words[(pos - start) // 8:(nxt - start) // 8].copy()
            break
        pos = nxt
    if sig is None or not len(sig):
        return Cells.from_list(dims, _walk(buf, start, count, words, 0, np.zeros(0, np.int64), np.zeros(0, np.int64)))
    size = len(sig)
    cand = np.flatnonzero(words[:len(words) - size + 1] == sig[0])
    for k in range(1, size):
        cand = cand[words[cand + k] == sig[k]]
    first = np.concatenate([[0], np.flatnonzero(np.diff(cand) != size) + 1]) if len(cand) else np.zeros(0, np.int64)
    last = np.append(first[1:] - 1, len(cand) - 1) if len(cand) else first
    fast = _vectorised(buf, start, words, count, size, cand[first], cand[last] + size, last - first + 1)
    if fast is not None:
        return Cells(tuple(dims), *fast)
    # Something did not line up (e.g. the signature also occurs inside a cell's numbers): walk cell by cell.
    run_end = np.repeat(last, last - first + 1)
    return Cells.from_list(dims, _walk(buf, start, count, words, size, cand, run_end))


def _walk(buf, start, count, words, size, cand, run_end) -> list[tuple[int, np.ndarray]]:
    """Cell by cell from the start, jumping over runs of empty cells (``run_end[i]``: the last candidate of
    the run that starts at candidate i). A candidate inside a parsed cell is skipped."""
    out: list[tuple[int, np.ndarray]] = []
    cell, word = 0, 0
    while cell < count:
        i = int(np.searchsorted(cand, word, side="left")) if len(cand) else 0
        if i < len(cand) and cand[i] == word:
            n = min(int(run_end[i]) - i + 1, count - cell)
            cell += n
            word += n * size
            continue
        mat, nxt = _cell(buf, start + 8 * word)
        if mat is not None:
            out.append((cell, mat))
        cell += 1
        word = (nxt - start) // 8
        if word > len(words):
            raise FormatNotHandled("cell array runs past the end of the variable")
    return out


def _vectorised(buf, start, words, count, size, run_start, run_stop, run_len):
    """(index, count, data) of the non-empty cells, parsed for all gaps between runs of empty cells at once,
    or None when anything does not line up (the caller then walks cell by cell)."""
    w32 = np.frombuffer(buf, "<u4", 2 * len(words), start)
    gap_start = np.concatenate([[0], run_stop])
    gap_stop = np.concatenate([run_start, [len(words)]])
    if (gap_stop < gap_start).any():
        return None
    open_ = gap_stop > gap_start
    pos, stop = gap_start[open_] * 2, gap_stop[open_] * 2          # in uint32 words
    found = []
    while len(pos):
        if (pos + 14 > len(w32)).any() or (w32[pos] != MI_MATRIX).any():
            return None
        found.append(pos)
        nxt = pos + 2 + w32[pos + 1].astype(np.int64) // 4
        if (w32[pos + 1] % 8).any() or (nxt > stop).any():
            return None
        more = nxt < stop
        pos, stop = nxt[more], stop[more]
    cells = np.sort(np.concatenate(found)) if found else np.zeros(0, np.int64)
    if len(cells) + int(run_len.sum()) != count:
        return None
    # Cell index = empty cells before it (whole runs that start before it) + non-empty cells before it.
    empties_before = np.concatenate([[0], np.cumsum(run_len)])[np.searchsorted(run_start * 2, cells)]
    index = empties_before + np.arange(len(cells))
    # The layout scipy and MATLAB write for an [r, c] numeric matrix: flags, 2 dims, empty name, data.
    regular = ((w32[cells + 2] == 6) & (w32[cells + 3] == 8) & ((w32[cells + 4] & 0x08FF) != MX_CELL)
               & ((w32[cells + 4] & 0x0800) == 0) & np.isin(w32[cells + 4] & 0xFF, (6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
               & (w32[cells + 6] == 5) & (w32[cells + 7] == 8) & (w32[cells + 10] == 1) & (w32[cells + 11] == 0)
               & np.isin(w32[cells + 12], list(MI_DTYPES)))
    if not regular.all():
        return None
    rows, cols, dtype = (w32[cells + k].astype(np.int64) for k in (8, 9, 12))
    nonempty = rows * cols > 0
    if not nonempty.all():
        cells, index, rows, cols, dtype = (a[nonempty] for a in (cells, index, rows, cols, dtype))
    if len(cells) == 0:
        return index, rows, np.zeros((0, 0))
    if (cols != cols[0]).any():
        k = int(np.argmax(cols != cols[0]))
        raise ValueError(f"cell {index[k] + 1} has {cols[k]} columns, others {cols[0]}")
    width = int(cols[0])
    itemsize = np.array([np.dtype(MI_DTYPES.get(int(t), "<f8")).itemsize for t in range(16)])
    if (w32[cells + 13] != rows * cols * itemsize[dtype]).any():
        return None
    out = np.empty((int(rows.sum()), width))
    first_row = np.cumsum(rows) - rows
    for code in np.unique(dtype):
        sel = np.flatnonzero(dtype == code)
        view = np.frombuffer(buf, MI_DTYPES[int(code)], (len(buf) - start) // int(itemsize[code]), start)
        n = rows[sel] * width
        element = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)       # position inside its cell
        offset = (cells[sel] + 14) * 4 // int(itemsize[code])                  # data start, in items
        values = view[np.repeat(offset, n) + element]
        r = np.repeat(rows[sel], n)
        # MAT stores column-major: element e of a cell is (row e % r, column e // r)
        out[np.repeat(first_row[sel], n) + element % r, element // r] = values
    return index, rows, out
