"""The demo's before/after contact sheet: native-scale crops, so the enhancement is visible.

Scaling both images to one thumbnail height (what the first sheet did) hides exactly what MPS did: a 2×
super-resolved image shrunk back to the original's size looks like the original, and denoising is lost
in the downscale. So each row shows one region of the picture, chosen where it has the most detail,
three ways at 1:1 pixels (one image pixel = one sheet pixel):

``context`` — the whole "before" picture, small, with the region outlined;
``before 1:1`` — the region as it was;
``before ×2, pixels copied`` — the same pixels blown up by pixel repetition to the "after" size: what the
picture would look like at that size without enhancement (noise, JPEG blocks, jagged edges);
``after 1:1`` — the same region of the enhanced output, untouched.

Used by ``demo/run_demo.py``; Pillow only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageStat

#: Side of the region taken from the "before" image, in its pixels.
CROP = 96
#: Height of the context thumbnail.
CONTEXT_HEIGHT = 150
PAD = 12
LABEL = 30
BACKGROUND = (245, 245, 245)
INK = (25, 25, 25)
OUTLINE = (230, 40, 40)


@dataclass(frozen=True)
class Region:
    """A square region of the "before" image: left, top, side (its pixels)."""

    left: int
    top: int
    side: int

    def box(self, scale_x: float = 1.0, scale_y: float = 1.0) -> tuple[int, int, int, int]:
        return (
            round(self.left * scale_x),
            round(self.top * scale_y),
            round((self.left + self.side) * scale_x),
            round((self.top + self.side) * scale_y),
        )


def detailed_region(img: Image.Image, side: int = CROP, step: int = 16) -> Region:
    """The ``side``×``side`` window with the most edge energy (deterministic: first best in scan order)."""
    side = min(side, img.width, img.height)
    edges = img.convert("L").filter(ImageFilter.FIND_EDGES)
    best, best_energy = Region(0, 0, side), -1.0
    for top in range(0, img.height - side + 1, step):
        for left in range(0, img.width - side + 1, step):
            energy = ImageStat.Stat(edges.crop((left, top, left + side, top + side))).mean[0]
            if energy > best_energy:
                best, best_energy = Region(left, top, side), energy
    return best


@dataclass(frozen=True)
class Row:
    """One image's cells: (caption, picture) left to right, all at 1:1 except the context."""

    title: str
    cells: list[tuple[str, Image.Image]]


def build_row(name: str, before_data: bytes, after_data: bytes) -> Row:
    """The four cells of one image (see the module docstring)."""
    before_img, after_img = Image.open(io.BytesIO(before_data)), Image.open(io.BytesIO(after_data))
    title = (
        f"{name}: before {before_img.width}x{before_img.height} {before_img.format}"
        f" -> after {after_img.width}x{after_img.height} {after_img.format}"
    )
    before, after = before_img.convert("RGB"), after_img.convert("RGB")
    scale_x, scale_y = after.width / before.width, after.height / before.height
    region = detailed_region(before)
    before_crop = before.crop(region.box())
    after_crop = after.crop(region.box(scale_x, scale_y))
    # Pixel repetition to the after crop's size: the "no enhancement" baseline at the same scale.
    blown_up = before_crop.resize(after_crop.size, Image.Resampling.NEAREST)

    context = before.resize(
        (max(1, before.width * CONTEXT_HEIGHT // before.height), CONTEXT_HEIGHT), Image.Resampling.LANCZOS
    )
    k = CONTEXT_HEIGHT / before.height
    ImageDraw.Draw(context).rectangle(region.box(k, k), outline=OUTLINE, width=2)
    return Row(
        title,
        [
            ("context", context),
            (f"before 1:1 ({region.side}px)", before_crop),
            (f"before x{scale_x:g}, pixels copied", blown_up),
            (f"after 1:1 ({after_crop.width}px)", after_crop),
        ],
    )


def draw_contact_sheet(pairs: list[tuple[str, bytes, bytes]], path: Path) -> Path:
    """Write the sheet for ``(name, before bytes, after bytes)`` pairs to ``path`` (PNG: lossless, so
    the crops show the outputs' own pixels)."""
    rows = [build_row(*pair) for pair in pairs]
    if not rows:
        raise ValueError("no before/after pairs to draw")
    widths = [sum(img.width for _, img in row.cells) + PAD * (len(row.cells) + 1) for row in rows]
    heights = [max(img.height for _, img in row.cells) + LABEL + PAD for row in rows]
    sheet = Image.new("RGB", (max(widths), sum(heights) + PAD), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = PAD
    for row, height in zip(rows, heights, strict=True):
        draw.text((PAD, y), row.title, fill=INK)
        x = PAD
        for caption, img in row.cells:
            draw.text((x, y + LABEL // 2), caption, fill=INK)
            sheet.paste(img, (x, y + LABEL))
            x += img.width + PAD
        y += height
    sheet.save(path)
    return path
