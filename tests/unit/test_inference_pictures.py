"""Annotated pictures: same size, changed along the drawn boxes, untouched elsewhere; the contact sheet."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pipeline.inference.pictures import DrawnPair, PictureOptions, contact_sheet, draw_pairs, png_bytes


def _photo():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))


def test_pairs_are_drawn_on_the_photo_and_nothing_else_changes():
    photo = _photo()
    human, obj = [40, 50, 120, 280], [200, 120, 360, 260]
    out = draw_pairs(photo, [DrawnPair(human, obj, [("ride horse", 0.8), ("feed horse", 0.4)])])
    assert out.size == photo.size and out is not photo
    a, b = np.asarray(photo), np.asarray(out)
    changed = (a != b).any(axis=2)
    assert changed[200, 40] and changed[50, 80] and changed[260, 300]           # box edges
    for x in range(130, 200, 10):   # the line joining the centres (80, 165) and (280, 190), left of the label
        y = round(165 + 25 * (x - 80) / 200)
        assert changed[y - 1:y + 2, x].any()
    assert not changed[5:40, 5:30].any() and not changed[280:, 380:].any()      # far from anything drawn
    # PNG round trip is lossless.
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(out)))), b)


def test_an_image_without_pairs_shows_its_boxes_and_why():
    photo = _photo()
    out = draw_pairs(photo, [], [([10, 10, 100, 100], "dog 0.95")], "no person among the 1 boxes",
                     PictureOptions(note="DEMO ONLY model"))
    changed = (np.asarray(photo) != np.asarray(out)).any(axis=2)
    assert changed[50, 10] and changed[-5:, :100].any()                         # box, and the note band
    assert not changed[150:250, 200:380].any()


def test_contact_sheet_has_a_cell_per_image():
    sheet = contact_sheet([(_photo(), "a.jpg", [("ride horse", 0.9)]), (_photo(), "b.jpg", [])], cell=100,
                          columns=4, note="DEMO ONLY")
    assert sheet.width == 2 * 112 and sheet.height > 112
