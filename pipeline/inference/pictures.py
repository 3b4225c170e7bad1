"""Pictures of results: human-object pairs drawn on their photo, and a contact sheet of image-level classes.

The annotated picture keeps the photo's size and pixels except where something is drawn: for each of the
best pairs (by their top score), the human and the object box in one colour, a line joining their
centres, and a label with the pair's top class names and scores; boxes that are in no drawn pair are
drawn thin and grey with their category. A note (why there are no pairs, or that the model is a demo)
goes in a band at the bottom.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

# Colour of pair 1, 2, ... (colour-blind-safe Okabe-Ito hues); boxes of no pair are grey.
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
           (204, 121, 167)]
GREY = (170, 170, 170)


@dataclass(frozen=True)
class PictureOptions:
    """What an annotated picture shows.

    Attributes:
        pairs: number of pairs drawn, best first.
        classes: class names listed per pair.
        note: a line at the bottom of every picture (e.g. that the model is a demo).
    """
    pairs: int = 3
    classes: int = 3
    note: str = ""


@dataclass
class DrawnPair:
    """One pair to draw: boxes in the photo's pixels and its (class name, score) lines, best first; its
    colour and tag (default: by its rank, ``#1`` in the first colour; a video gives each linked pair its
    own, so that they stay the same from frame to frame)."""
    human_box: list[float]
    object_box: list[float]
    lines: list[tuple[str, float]]
    colour: tuple[int, int, int] | None = None
    tag: str | None = None


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill, font, bounds: tuple[int, int]):
    """Text on a filled box at ``xy`` (top-left), moved inside the picture."""
    left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=2)
    w, h = right - left + 6, bottom - top + 6
    x = min(max(0, xy[0]), max(0, bounds[0] - w))
    y = min(max(0, xy[1]), max(0, bounds[1] - h))
    draw.rectangle([x, y, x + w, y + h], fill=fill)
    dark = sum(fill[:3]) > 450
    draw.multiline_text((x + 3 - left, y + 3 - top), text, fill=(0, 0, 0) if dark else (255, 255, 255),
                        font=font, spacing=2)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` with line breaks so that no line is wider than ``width`` pixels."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}".strip()
            if line and draw.textlength(trial, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return "\n".join(lines)


def draw_pairs(image: Image.Image, pairs: list[DrawnPair], other_boxes: list[tuple[list[float], str]] = (),
               note: str = "", options: PictureOptions = PictureOptions()) -> Image.Image:
    """The photo with its pairs drawn (a new RGB image of the same size).

    Args:
        image: the photo (as the model saw it: upright).
        pairs: pairs to draw, best first (at most ``options.pairs`` are drawn).
        other_boxes: (box, text) of boxes to draw thin and grey (e.g. boxes of an image without a person).
        note: a line for the bottom band, besides ``options.note``.
        options: see :class:`PictureOptions`.
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    width = max(2, round(min(w, h) / 160))
    font = _font(max(11, round(min(w, h) / 34)))
    for box, text in other_boxes:
        draw.rectangle([float(v) for v in box], outline=GREY, width=max(1, width // 2))
        _label(draw, (float(box[0]), float(box[1])), text, GREY, font, (w, h))
    drawn = pairs[:options.pairs]
    for k, pair in reversed(list(enumerate(drawn))):  # the best pair last, on top
        colour = pair.colour or PALETTE[k % len(PALETTE)]
        tag = pair.tag or f"#{k + 1}"
        for box in (pair.human_box, pair.object_box):
            draw.rectangle([float(v) for v in box], outline=colour, width=width)
        centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (pair.human_box, pair.object_box)]
        draw.line(centres, fill=colour, width=width)
        for cx, cy in centres:
            draw.ellipse([cx - 2 * width, cy - 2 * width, cx + 2 * width, cy + 2 * width], fill=colour)
        text = "\n".join(f"{tag + ' ' if i == 0 else ' ' * (len(tag) + 1)}{name.replace('_', ' ')} {score:.2f}"
                         for i, (name, score) in enumerate(pair.lines[:options.classes]))
        _label(draw, (float(pair.object_box[0]), float(pair.object_box[1])), text or tag, colour, font, (w, h))
    footer = "\n".join(t for t in (note, *options.note.split(" | ")) if t)
    if footer:
        _label(draw, (0, h), _wrap(draw, footer, font, w - 8), (0, 0, 0), font, (w, h))
    return out


def contact_sheet(items: list[tuple[Image.Image, str, list[tuple[str, float]]]], cell: int = 240,
                  columns: int = 4, note: str = "") -> Image.Image:
    """A grid of thumbnails, each with its title and its (class name, score) lines underneath.

    Args:
        items: (image, title, lines) per image.
        cell: thumbnail size (the longer side).
        columns: thumbnails per row.
        note: a line at the top of the sheet (e.g. that the model is a demo).
    """
    font = _font(13)
    line_h = 17
    n_lines = 1 + max((len(lines) for _, _, lines in items), default=0)
    cols = max(1, min(columns, len(items)))
    rows = -(-len(items) // cols) if items else 1
    cw, ch = cell + 12, cell + 12 + n_lines * line_h
    note = _wrap(ImageDraw.Draw(Image.new("RGB", (1, 1))), note, font, cols * cw - 12) if note else ""
    top = (note.count("\n") + 1) * line_h + 8 if note else 0
    sheet = Image.new("RGB", (cols * cw, top + rows * ch), "white")
    draw = ImageDraw.Draw(sheet)
    if note:
        draw.multiline_text((6, 4), note, fill=(160, 0, 0), font=font, spacing=4)
    for i, (image, title, lines) in enumerate(items):
        x, y = (i % cols) * cw + 6, top + (i // cols) * ch + 6
        thumb = image.convert("RGB").copy()
        thumb.thumbnail((cell, cell))
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
        ty = y + cell + 4
        draw.text((x, ty), title[:40], fill=(0, 0, 0), font=font)
        for j, (name, score) in enumerate(lines):
            draw.text((x, ty + (j + 1) * line_h), f"{name} {score:.2f}"[:40], fill=(40, 40, 40), font=font)
    return sheet


def png_bytes(image: Image.Image) -> bytes:
    """The image as PNG bytes (what actors return; the driver writes them)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
