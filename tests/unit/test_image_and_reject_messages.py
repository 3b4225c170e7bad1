"""Messages about bad images and lost inputs say what is wrong: a 0-byte JPEG is named and called empty
(not ``cannot identify image file <fsspec ... LocalFileOpener object at 0x...>``), and losing every item
of an input does not suggest a threshold that cannot help."""
from __future__ import annotations

import pytest

from pipeline.datasets.images import ImageError, check_image, read_rgb
from pipeline.rejects import DataLossError, check_loss


def test_an_empty_or_foreign_image_file_is_named_with_what_is_wrong(tmp_path):
    empty, text = tmp_path / "empty.jpg", tmp_path / "notes.jpg"
    empty.write_bytes(b"")
    text.write_text("not a picture at all")
    with pytest.raises(ImageError, match=rf"^empty file \(0 bytes\): {empty}$"):
        read_rgb(str(empty))
    assert check_image(str(empty)).problem == f"empty file (0 bytes): {empty}"
    for problem in (check_image(str(text)).problem, _reason(lambda: read_rgb(str(text)))):
        assert problem.startswith(f"cannot decode image {text}: UnidentifiedImageError: cannot identify image file")
        assert "object at 0x" not in problem and "Opener" not in problem and str(text) in problem


def _reason(read) -> str:
    with pytest.raises(ImageError) as e:
        read()
    return str(e.value)


def test_losing_every_item_suggests_no_threshold_and_losing_many_does():
    with pytest.raises(DataLossError) as every:
        check_loss("test split images", 40, ["missing image file"] * 40, 0.05)
    assert "40 of 40 rejected" in str(every.value) and "That is every one" in str(every.value)
    assert "max_reject_fraction" not in str(every.value)
    with pytest.raises(DataLossError, match=r"more than checks.max_reject_fraction = 0.05: .*raise "
                                            r"checks.max_reject_fraction in params.yaml"):
        check_loss("test split images", 40, ["missing image file"] * 10, 0.05)
