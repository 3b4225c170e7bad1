"""Checking images in parallel: exists, decodes fully, size matches the annotation."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PIL import Image, ImageOps
from tqdm import tqdm

from pipeline import storage


class ImageError(ValueError):
    """An image that cannot be used; the message is the reason (for errors and rejects reports)."""


def read_rgb(uri: str, expected: tuple[int, int] | None = None, upright: bool = False) -> Image.Image:
    """The whole image as RGB (local path or fsspec URI), checked against the annotated (width, height).

    Args:
        uri: local path or fsspec URI.
        expected: the annotated (width, height); None: any size.
        upright: apply the EXIF orientation (a phone photo stored sideways comes out as it is shown). Off
            for dataset images, whose boxes are annotated in the stored pixel frame.

    Raises:
        ImageError: missing, undecodable (e.g. truncated), or not the annotated size.
    """
    try:
        with storage.open_file(uri) as f:
            try:
                with Image.open(f) as im:
                    img = (ImageOps.exif_transpose(im) if upright else im).convert("RGB")
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
                raise ImageError(_undecodable(e, f, uri)) from e
    except FileNotFoundError:
        raise ImageError("missing image file") from None
    except IsADirectoryError:
        raise ImageError("a folder, not an image file") from None
    if expected is not None and img.size != tuple(expected):
        raise ImageError(f"image is {img.size[0]}x{img.size[1]} but the annotation says "
                         f"{expected[0]}x{expected[1]}")
    return img


def _undecodable(e: Exception, f, uri: str) -> str:
    """Why PIL could not read ``f``, naming ``uri`` (PIL names the file object: ``<fsspec ... LocalFileOpener
    object at 0x...>``) and saying so when the file is simply empty."""
    try:
        empty = f.seek(0, 2) == 0
    except (OSError, ValueError):
        empty = False
    if empty:
        return f"empty file (0 bytes): {uri}"
    return f"cannot decode image {uri}: {type(e).__name__}: {str(e).replace(repr(f), uri)}"


@dataclass
class ImageCheck:
    uri: str
    width: int | None = None
    height: int | None = None
    problem: str | None = None  # None when the image is usable


def check_image(uri: str, expected: tuple[int, int] | None = None, decode: bool = True) -> ImageCheck:
    """Opens ``uri``; with ``decode`` reads every pixel (catches truncated JPEGs)."""
    try:
        with storage.open_file(uri) as f:
            try:
                with Image.open(f) as im:
                    size = im.size
                    if decode:
                        im.load()
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
                return ImageCheck(uri, problem=_undecodable(e, f, uri))
    except FileNotFoundError:
        return ImageCheck(uri, problem="missing image file")
    except IsADirectoryError:
        return ImageCheck(uri, problem="a folder, not an image file")
    except OSError as e:
        return ImageCheck(uri, problem=f"cannot read image file: {e}")
    if expected is not None and tuple(expected) != size:
        return ImageCheck(uri, *size, problem=f"image is {size[0]}x{size[1]} but the annotation "
                                              f"says {expected[0]}x{expected[1]}")
    return ImageCheck(uri, *size)


def check_images(uris: list[str], expected: list[tuple[int, int] | None], decode: bool = True,
                 workers: int = 8, desc: str = "checking images") -> list[ImageCheck]:
    """Checks many images with a thread pool (I/O and libjpeg release the GIL); order is kept."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        it = pool.map(lambda a: check_image(a[0], a[1], decode), zip(uris, expected))
        return list(tqdm(it, total=len(uris), desc=desc, unit="img", mininterval=1.0))
