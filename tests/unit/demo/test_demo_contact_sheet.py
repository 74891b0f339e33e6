"""The demo's contact sheet shows the output at native scale (issue 14 item 7): the "after" crop is the
output's own pixels, 1:1, never an after-image scaled down to thumbnail size."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "demo"))
from contact_sheet import CROP, build_row, detailed_region, draw_contact_sheet  # noqa: E402


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _before() -> Image.Image:
    """A flat picture with one busy patch (a checkerboard of noise) at (200, 48)."""
    img = Image.new("RGB", (320, 240), (90, 120, 150))
    rng = random.Random(7)
    draw = ImageDraw.Draw(img)
    for y in range(48, 48 + CROP, 4):
        for x in range(200, 200 + CROP, 4):
            shade = rng.randint(0, 255)
            draw.rectangle([x, y, x + 3, y + 3], fill=(shade, 255 - shade, shade // 2))
    return img


def test_the_region_is_where_the_detail_is() -> None:
    region = detailed_region(_before())
    assert region.side == CROP
    assert abs(region.left - 200) <= 16 and abs(region.top - 48) <= 16


def test_after_crop_is_the_outputs_own_pixels_at_one_to_one() -> None:
    before = _before()
    after = before.resize((before.width * 2, before.height * 2), Image.Resampling.BICUBIC)
    row = build_row("busy.png", _png(before), _png(after))
    captions = [caption for caption, _ in row.cells]
    assert captions[0] == "context"
    assert captions[1] == f"before 1:1 ({CROP}px)"
    assert captions[2] == "before x2, pixels copied"
    assert captions[3] == f"after 1:1 ({2 * CROP}px)"
    assert "before 320x240 PNG -> after 640x480 PNG" in row.title

    region = detailed_region(before)
    (_, before_crop), (_, blown_up), (_, after_crop) = row.cells[1:]
    assert before_crop.size == (CROP, CROP)
    assert after_crop.size == blown_up.size == (2 * CROP, 2 * CROP)
    # 1:1 — exactly the output's pixels of the same region, not resampled.
    assert after_crop.tobytes() == after.crop(region.box(2, 2)).tobytes()
    assert before_crop.tobytes() == before.crop(region.box()).tobytes()


def test_sheet_is_written_as_png_with_one_row_per_image(tmp_path: Path) -> None:
    before = _before()
    after = before.resize((before.width * 2, before.height * 2))
    path = draw_contact_sheet(
        [("a.png", _png(before), _png(after)), ("b.png", _png(before), _png(after))], tmp_path / "s.png"
    )
    sheet = Image.open(path)
    assert sheet.format == "PNG"
    assert sheet.height > 2 * 2 * CROP  # two rows, each at least as tall as the 1:1 after crop
    with pytest.raises(ValueError, match="no before/after pairs"):
        draw_contact_sheet([], tmp_path / "empty.png")
