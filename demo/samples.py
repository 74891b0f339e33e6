"""Deterministic, procedurally drawn sample photos for the offline demo.

Nothing is downloaded and nothing is shipped: each picture is drawn from a seed, so every clone gets the
same images and there is no licence question. They are made deliberately imperfect (sensor noise, JPEG
blocking, low light, small size) so that the enhancement the demo applies is visible.
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter


@dataclass(frozen=True)
class SamplePhoto:
    """One generated photo: its file name inside a partition and its encoded bytes."""

    name: str
    data: bytes
    content_type: str


def _lerp(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    return tuple(int(a[i] + (b[i] - a[i]) * t) for i in range(3))  # type: ignore[return-value]


def _vertical_gradient(
    size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> Image.Image:
    width, height = size
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=_lerp(top, bottom, y / max(height - 1, 1)))
    return img


def _add_noise(img: Image.Image, rng: random.Random, amount: float) -> Image.Image:
    """Blend in seeded grain (uniform per pixel, so every clone draws the same picture)."""
    grain = Image.frombytes("L", img.size, rng.randbytes(img.size[0] * img.size[1]))
    return Image.blend(img, Image.merge("RGB", (grain, grain, grain)), amount)


def _landscape(rng: random.Random) -> Image.Image:
    size = (480, 320)
    img = _vertical_gradient(size, (70, 120, 190), (235, 190, 150))
    draw = ImageDraw.Draw(img)
    sun_x, sun_y = rng.randint(80, 400), rng.randint(40, 110)
    draw.ellipse([sun_x - 26, sun_y - 26, sun_x + 26, sun_y + 26], fill=(255, 230, 170))
    for layer, colour in enumerate([(90, 100, 120), (60, 80, 70), (35, 55, 40)]):
        base = 170 + layer * 40
        points = [(0, size[1])]
        for x in range(0, size[0] + 40, 40):
            points.append((x, base - rng.randint(0, 70 - layer * 15)))
        points.append((size[0], size[1]))
        draw.polygon(points, fill=colour)
    return img


def _night_street(rng: random.Random) -> Image.Image:
    size = (400, 300)
    img = _vertical_gradient(size, (8, 10, 25), (25, 22, 30))
    draw = ImageDraw.Draw(img)
    x = 0
    while x < size[0]:
        width = rng.randint(40, 80)
        height = rng.randint(90, 220)
        draw.rectangle([x, size[1] - height, x + width - 4, size[1]], fill=(20, 20, 28))
        for wy in range(size[1] - height + 10, size[1] - 10, 18):
            for wx in range(x + 6, x + width - 12, 14):
                if rng.random() < 0.35:
                    draw.rectangle([wx, wy, wx + 6, wy + 9], fill=(110, 95, 50))
        x += width
    return img


def _flowers(rng: random.Random) -> Image.Image:
    size = (360, 360)
    img = _vertical_gradient(size, (40, 90, 40), (20, 60, 25))
    draw = ImageDraw.Draw(img)
    for _ in range(14):
        cx, cy, r = rng.randint(20, 340), rng.randint(20, 340), rng.randint(14, 30)
        petal = rng.choice([(220, 80, 120), (240, 200, 60), (200, 120, 230), (250, 250, 250)])
        for k in range(6):
            angle = k * math.pi / 3
            px, py = cx + int(r * math.cos(angle)), cy + int(r * math.sin(angle))
            draw.ellipse([px - r // 2, py - r // 2, px + r // 2, py + r // 2], fill=petal)
        draw.ellipse([cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3], fill=(250, 210, 40))
    return img.filter(ImageFilter.GaussianBlur(1.2))


def _harbour(rng: random.Random) -> Image.Image:
    size = (320, 240)
    img = _vertical_gradient(size, (150, 180, 210), (40, 80, 120))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 150, size[0], size[1]], fill=(30, 70, 110))
    for _ in range(4):
        x = rng.randint(10, 270)
        draw.polygon([(x, 160), (x + 50, 160), (x + 40, 175), (x + 8, 175)], fill=(200, 60, 50))
        draw.line([(x + 25, 160), (x + 25, 110)], fill=(240, 240, 240), width=2)
        draw.polygon([(x + 26, 112), (x + 26, 155), (x + 50, 155)], fill=(245, 245, 235))
    return img


def _encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def sample_photos(partition: str) -> Iterator[SamplePhoto]:
    """Yield the demo photos for one date partition (same partition → same bytes)."""
    rng = random.Random(f"airflow-mps-demo/{partition}")
    yield SamplePhoto(
        "landscape.jpg", _encode(_add_noise(_landscape(rng), rng, 0.10), "JPEG", 45), "image/jpeg"
    )
    night = _add_noise(_night_street(rng), rng, 0.06)
    yield SamplePhoto("night/street.jpg", _encode(night, "JPEG", 55), "image/jpeg")
    yield SamplePhoto("flowers.png", _encode(_add_noise(_flowers(rng), rng, 0.08), "PNG", 0), "image/png")
    yield SamplePhoto("harbour.jpg", _encode(_harbour(rng), "JPEG", 30), "image/jpeg")
