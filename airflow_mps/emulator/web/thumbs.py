"""Thumbnails for the web pages: scaled server-side with Pillow when it is installed, cached by ETag.

Why server-side: a task list of 50 rows would otherwise make the browser download 100 full images.
Pillow is the emulator's imaging dependency (the ``emulator`` extra) but the web page must not need it:
without Pillow `make_thumbnail` returns None and the caller serves the original bytes, which the page's
CSS scales down instead. Anything that is not a decodable image (or is too large to decode safely) also
gives None, and the caller answers with a small SVG placeholder.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from airflow_mps.emulator.web.pages import esc

#: Images above this many pixels are not decoded for a thumbnail (decompression bombs).
MAX_THUMBNAIL_SOURCE_PIXELS = 64_000_000
MIN_SIZE, MAX_SIZE = 16, 1024


def clamp_size(raw: str | None, default: int) -> int:
    """The requested longest side in pixels, clamped to 16..1024; garbage means ``default``."""
    try:
        value = int(raw) if raw else default
    except ValueError:
        value = default
    return max(MIN_SIZE, min(MAX_SIZE, value))


def make_thumbnail(data: bytes, size: int) -> tuple[bytes, str] | None:
    """(encoded bytes, content type) of ``data`` scaled to fit ``size``×``size``, or None (see module doc).

    EXIF orientation is applied; images with transparency become PNG, everything else JPEG.
    """
    try:
        from PIL import Image, ImageOps
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_THUMBNAIL_SOURCE_PIXELS:
                return None
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, much faster
            frame = ImageOps.exif_transpose(img) or img
            alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
            frame = frame.convert("RGBA" if alpha else "RGB")
            frame.thumbnail((size, size))
            buf = io.BytesIO()
            if alpha:
                frame.save(buf, "PNG", optimize=True)
                return buf.getvalue(), "image/png"
            frame.save(buf, "JPEG", quality=82)
            return buf.getvalue(), "image/jpeg"
    except Exception:  # Pillow raises many types for broken or unsupported files
        return None


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from the image header only, or None (not an image, or no Pillow)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.width), int(img.height)
    except Exception:
        return None


def placeholder_svg(text: str) -> bytes:
    """A neutral 160×120 box with ``text`` in it: what an ``<img>`` shows for a missing or non-image object."""
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="120" viewBox="0 0 160 120">'
        '<rect width="160" height="120" fill="#e9edf3"/>'
        f'<text x="80" y="64" font-family="sans-serif" font-size="13" text-anchor="middle" fill="#6b7587">{esc(text)}</text>'
        "</svg>"
    ).encode()


class ThumbnailCache:
    """LRU of rendered thumbnails keyed by (bucket, key, ETag, size): a rewritten object gets a new ETag."""

    def __init__(self, max_entries: int = 512) -> None:
        self._max = max_entries
        self._items: OrderedDict[tuple[str, str, str, int], tuple[bytes, str] | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, bucket: str, key: str, etag: str, size: int, data: bytes) -> tuple[bytes, str] | None:
        """The cached thumbnail, rendering it from ``data`` on a miss (None results are cached too)."""
        ident = (bucket, key, etag, size)
        with self._lock:
            if ident in self._items:
                self._items.move_to_end(ident)
                return self._items[ident]
        rendered = make_thumbnail(data, size)
        with self._lock:
            self._items[ident] = rendered
            while len(self._items) > self._max:
                self._items.popitem(last=False)
        return rendered


__all__ = ["ThumbnailCache", "clamp_size", "image_dimensions", "make_thumbnail", "placeholder_svg"]
