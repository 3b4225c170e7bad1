"""What a request to ``POST /v1/detect`` may carry, checked before any model work: the photo and its boxes.

Every refusal is an :class:`UploadError` with the HTTP status and a one-line message naming the form
field: the request body over the size limit (413, from ``Content-Length`` before a byte is read), an empty
file (400), a file that is not an image of an allowed format (415), an image over the pixel limit (413,
from its header, before its pixels are decoded: a decompression bomb of a few kilobytes never expands),
a ``boxes`` field that is not a JSON list of ``{category, box, score}`` (400). A short clip (a file with a
video suffix) is checked by :mod:`pipeline.serve.deployment` against the duration and pixel limits.

Only raster formats are opened (:data:`FORMATS`): Pillow would otherwise hand an EPS upload to
Ghostscript.
"""
from __future__ import annotations

import io
import json
import warnings

import numpy as np
from PIL import Image, ImageOps

from pipeline.classes.coco import coco80_label

# The formats an upload may be in (Pillow's names). Never EPS / PDF / PS (Ghostscript) or exotic decoders.
FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
# A file that is no image but has one of these suffixes is taken as a short clip (pipeline.video).
CLIP_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv")
MB = 1024 * 1024


class UploadError(ValueError):
    """A request the server refuses: ``status`` is the HTTP status, the message says why (one line)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_length(content_length: str | None, limit: int) -> None:
    """Refuses a body over ``limit`` bytes from its ``Content-Length`` header, before it is read.

    Raises:
        UploadError: 411 without the header (a chunked upload could not be bounded before reading it),
            413 over the limit.
    """
    if content_length is None or not content_length.strip().isdigit():
        raise UploadError(411, "send the upload with a Content-Length header (multipart/form-data)")
    if int(content_length) > limit:
        raise UploadError(413, f"upload of {int(content_length) / MB:.1f} MB is over the limit of "
                               f"{limit / MB:.1f} MB (defr serve --max-upload-mb)")


def decode_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """The uploaded bytes as an upright RGB image (EXIF orientation applied, as ``defr detect`` does).

    Args:
        data: the file's bytes.
        name: its file name, for messages.
        max_pixels: refuse images with more pixels than this (read from the header, before decoding).

    Raises:
        UploadError: 400 empty or truncated, 415 not an image of :data:`FORMATS`, 413 too many pixels.
    """
    if not data:
        raise UploadError(400, f"image {name!r}: the uploaded file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError(413, f"image {name!r}: {e}") from None
    except Exception as e:  # UnidentifiedImageError, or a header Pillow cannot parse
        raise UploadError(415, f"image {name!r} is not an image in a supported format "
                               f"({', '.join(FORMATS)}): {type(e).__name__}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise UploadError(413, f"image {name!r} is {w} x {h} = {w * h / 1e6:.1f} megapixels, over the limit "
                               f"of {max_pixels / 1e6:.1f} (defr serve --max-pixels)")
    try:
        return ImageOps.exif_transpose(im).convert("RGB")
    except Exception as e:  # truncated or corrupt pixel data
        raise UploadError(400, f"image {name!r} cannot be decoded: {type(e).__name__}: {e}") from None


def _json(text: str, field: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UploadError(400, f"{field}: not JSON ({e.msg} at character {e.pos})") from None


def parse_boxes(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``boxes`` form field of a photo: a JSON list of ``{"category": COCO name, "box": [x1, y1, x2, y2],
    "score": s}`` (pixels of the upright photo; ``score`` defaults to 1, as in a ``defr detect`` boxes file).

    Returns:
        (boxes float32 [N, 4], COCO-80 labels int64 [N], scores float32 [N]).

    Raises:
        UploadError: 400 naming the entry and what is wrong with it.
    """
    return box_list(_json(text, "boxes"), "boxes")


def parse_clip_boxes(text: str) -> tuple | dict[int, tuple]:
    """The ``boxes`` form field of a clip: one list (the same boxes on every frame: a fixed camera) or an
    object of frame index (0-based, among the decoded frames) -> list.

    Raises:
        UploadError: 400 naming the frame and entry.
    """
    doc = _json(text, "boxes")
    if isinstance(doc, list):
        return box_list(doc, "boxes")
    if not isinstance(doc, dict):
        raise UploadError(400, "boxes of a clip: expected a list (every frame) or an object frame -> list")
    out = {}
    for key, entries in doc.items():
        if not str(key).isdigit():
            raise UploadError(400, f"boxes[{key!r}]: expected a frame index (0, 1, ...)")
        out[int(key)] = box_list(entries, f"boxes[{key!r}]")
    return out


def box_list(entries, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes, COCO-80 labels, scores) of a list of ``{category, box, score}`` (see :func:`parse_boxes`)."""
    if not isinstance(entries, list):
        raise UploadError(400, f"{field}: expected a JSON list of {{category, box, score}}, got "
                               f"{type(entries).__name__}")
    boxes, labels, scores = [], [], []
    for j, e in enumerate(entries):
        if not isinstance(e, dict) or "category" not in e or "box" not in e:
            raise UploadError(400, f"{field}[{j}]: expected an object with keys category, box (and score)")
        label = coco80_label(str(e["category"]))
        if label is None:
            raise UploadError(400, f"{field}[{j}]: category {e['category']!r} is not a COCO class")
        try:
            box = [float(v) for v in e["box"]]
            score = float(e.get("score", 1.0))
        except (TypeError, ValueError):
            raise UploadError(400, f"{field}[{j}]: box must be 4 numbers and score a number") from None
        if len(box) != 4 or not np.isfinite(box).all():
            raise UploadError(400, f"{field}[{j}]: box must be [x1, y1, x2, y2] (4 finite numbers)")
        if not 0 <= score <= 1:
            raise UploadError(400, f"{field}[{j}]: score {score} is not in [0, 1]")
        boxes.append(box)
        labels.append(label)
        scores.append(score)
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
            np.asarray(scores, np.float32))
