"""Pillow implementation of the MPS ``ImageTask`` operations the emulator can honestly perform.

``process(data, image_task) -> ProcessedImage`` is a pure function: bytes and an API-shaped
(PascalCase) ``ImageTask`` dict in, encoded bytes out. Pipeline, always in this order:

1. **decode** — EXIF orientation applied; first frame of an animation; palette / 1-bit / LA / CMYK /
   16-bit / float images converted to 8-bit RGB or RGBA; more than ``MAX_PIXELS`` pixels refused
   (decompression bombs) before the pixels are loaded;
2. **enhance** (``EnhanceConfig``) — Denoise, LowLightEnhance, ColorEnhance, ImageQualityEnhance,
   FaceEnhance, SharpEnhance, SuperResolution, AdvancedSuperResolutionConfig, in that order (noise is
   removed before anything amplifies it; upscaling last so filters run on fewer pixels);
3. **transform** (``TransformConfig.ImageResize``);
4. **encode** (``EncodeConfig``) — JPEG / PNG / BMP / WebP; alpha is flattened on white for JPEG and
   BMP.

A config whose ``Switch`` is ``OFF`` is skipped; a missing Switch means ON (the API's default).
Everything the emulator cannot emulate (EraseConfig, BlindWatermarkConfig, BeautyConfig, the AI
configs, unknown keys) raises ``ImagingError`` naming the config instead of pretending. docs/
emulator-imaging.md describes each operation and how it approximates the real service.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageEnhance, ImageFilter, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_QUALITY",
    "MAX_PIXELS",
    "ImagingError",
    "ProcessedImage",
    "normalize_format",
    "process",
]

#: Largest image (input, intermediate or output) the emulator will hold in memory, in pixels.
MAX_PIXELS = 64_000_000
#: Output side limit of AdvancedSuperResolutionConfig (API docs: "不能超过4096").
MAX_SUPER_RESOLUTION_SIDE = 4096
#: Output side limit of ImageResize (API range of Width/Height/LongSide/ShortSide).
MAX_RESIZE_SIDE = 16384
#: JPEG/WebP quality when neither EncodeConfig.Quality nor the source's own quality is known.
DEFAULT_QUALITY = 90

_FORMATS = {"JPEG": "jpeg", "JPG": "jpeg", "PNG": "png", "BMP": "bmp", "WEBP": "webp"}
_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "webp": "WEBP"}
_SUPPORTED_TASK_KEYS = {"EncodeConfig", "EnhanceConfig", "TransformConfig"}
_ENHANCE_ORDER = (
    "Denoise",
    "LowLightEnhance",
    "ColorEnhance",
    "ImageQualityEnhance",
    "FaceEnhance",
    "SharpEnhance",
    "SuperResolution",
    "AdvancedSuperResolutionConfig",
)
# IJG standard luminance quantisation table (quality 50), for estimating a JPEG source's quality.
_STD_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip


class ImagingError(Exception):
    """Processing failed: ``code`` is an MPS-style error code, ``message`` says what and why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ProcessedImage:
    """The encoded result: ``format`` is one of ``jpeg|png|bmp|webp``."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        """File extension for the output name (``jpg`` for JPEG, as MPS names outputs)."""
        return "jpg" if self.format == "jpeg" else self.format

    @property
    def content_type(self) -> str:
        return f"image/{self.format}"


def normalize_format(value: str) -> str:
    """``"jpg"``/``"JPEG"``/``"WebP"``... -> ``jpeg|png|bmp|webp``; ImagingError otherwise."""
    fmt = _FORMATS.get(str(value).strip().upper())
    if fmt is None:
        raise ImagingError(
            "InvalidParameterValue.Format",
            f"ImageTask.EncodeConfig.Format {value!r} is not supported; allowed: JPEG, PNG, BMP, WebP.",
        )
    return fmt


# --------------------------------------------------------------------------------------------
# entry point


def process(data: bytes, image_task: Mapping[str, Any] | None) -> ProcessedImage:
    """Decode ``data``, apply ``image_task`` (EnhanceConfig, TransformConfig, EncodeConfig), encode."""
    task = dict(image_task or {})
    _reject_unsupported(task)
    image, source_format, source_quality = _decode(data)
    image = _enhance(image, _section(task, "EnhanceConfig"))
    image = _transform(image, _section(task, "TransformConfig"))
    return _encode(image, _section(task, "EncodeConfig"), source_format, source_quality)


def _section(task: Mapping[str, Any], name: str, parent: str = "ImageTask") -> dict[str, Any]:
    value = task.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImagingError(
            "InvalidParameterValue", f"{parent}.{name} must be an object, got {type(value).__name__}."
        )
    return dict(value)


def _is_active(value: Any) -> bool:
    """True unless ``value`` is absent (None) or explicitly switched OFF.

    A present config counts as a request even when empty (``{}``: every Switch defaults to ON). A
    config is off when its own ``Switch`` is ``OFF``, or when it only groups sub-configs that are
    all off (e.g. ``EraseConfig: {ImageEraseLogo: {Switch: OFF}}``).
    """
    if value is None:
        return False
    if isinstance(value, Mapping):
        switch = str(value.get("Switch", "")).upper()
        if switch == "OFF":
            return False
        if switch == "ON" or not value:
            return True
        children = [v for k, v in value.items() if v is not None]
        if children and all(isinstance(v, Mapping) for v in children):
            return any(_is_active(v) for v in children)
        return True
    return True


def _reject_unsupported(task: Mapping[str, Any]) -> None:
    for name, value in task.items():
        if name not in _SUPPORTED_TASK_KEYS and _is_active(value):
            raise ImagingError(
                "UnsupportedOperation",
                f"ImageTask.{name} is not supported by the emulator (it cannot be approximated "
                f"honestly with local image operations); supported: EncodeConfig, EnhanceConfig, TransformConfig.",
            )
    enhance = task.get("EnhanceConfig")
    if isinstance(enhance, Mapping):
        for name, value in enhance.items():
            if name not in _ENHANCE_ORDER and _is_active(value):
                raise ImagingError(
                    "UnsupportedOperation",
                    f"ImageTask.EnhanceConfig.{name} is not supported by the emulator; "
                    f"supported: {', '.join(_ENHANCE_ORDER)}.",
                )
    transform = task.get("TransformConfig")
    if isinstance(transform, Mapping):
        for name, value in transform.items():
            if name != "ImageResize" and _is_active(value):
                raise ImagingError(
                    "UnsupportedOperation",
                    f"ImageTask.TransformConfig.{name} is not supported by the emulator; supported: ImageResize.",
                )


# --------------------------------------------------------------------------------------------
# decode


def _check_pixels(width: int, height: int, what: str) -> None:
    if width * height > MAX_PIXELS:
        raise ImagingError(
            "InvalidParameterValue.SrcFile" if what == "input" else "InvalidParameterValue",
            f"The {what} image would be {width}x{height} = {width * height} pixels, above the emulator's "
            f"limit of {MAX_PIXELS} pixels.",
        )


def _jpeg_quality(image: Image.Image) -> int | None:
    """Estimate a JPEG's quality (IJG scale) from its luminance quantisation table."""
    tables = getattr(image, "quantization", None)
    if not tables or 0 not in tables:
        return None
    luma = list(tables[0])
    if len(luma) != 64:
        return None
    scale = sum(luma) * 100.0 / sum(_STD_LUMA)
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return max(1, min(100, round(quality)))


def _decode(data: bytes) -> tuple[Image.Image, str | None, int | None]:
    if not data:
        raise ImagingError("InvalidParameterValue.SrcFile", "The input file is empty (0 bytes).")
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        _check_pixels(image.width, image.height, "input")
        source_format = image.format
        source_quality = _jpeg_quality(image) if source_format == "JPEG" else None
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated input: the first frame (outputs are never animated)
        image.load()
    except ImagingError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImagingError("InvalidParameterValue.SrcFile", f"The input image is too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImagingError(
            "InvalidParameterValue.SrcFile",
            f"The input is not a decodable image ({type(exc).__name__}: {exc}).",
        ) from None
    try:
        transposed = ImageOps.exif_transpose(image)
        if transposed is not None:
            image = transposed
    except Exception:  # a broken EXIF block must not fail an otherwise good image
        pass
    return _to_working_mode(image), source_format, source_quality


def _to_working_mode(image: Image.Image) -> Image.Image:
    """8-bit RGB, or RGBA when the image has transparency."""
    mode = image.mode
    if mode in ("RGB", "RGBA"):
        return image
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("LA", "PA", "La", "RGBa"):
        return image.convert("RGBA")
    if mode == "L" and "transparency" in image.info:
        return image.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        # 16-bit / 32-bit / float grey: scale the real range into 8 bits instead of clipping.
        image = image.convert("F") if mode != "F" else image
        first, second = image.getextrema()  # (low, high) for one band; per-band tuples otherwise
        low = float(first) if isinstance(first, (int, float)) else 0.0
        high = float(second) if isinstance(second, (int, float)) else 255.0
        if high <= 255 and low >= 0:
            scale, offset = 1.0, 0.0
        else:
            top = 65535.0 if low >= 0 and high <= 65535 else float(high - low) or 1.0
            base = 0.0 if top == 65535.0 else float(low)
            scale, offset = 255.0 / top, -base * 255.0 / top
        return image.point(lambda v: v * scale + offset).convert("L").convert("RGB")
    if mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGBA" if "A" in mode else "RGB")


# --------------------------------------------------------------------------------------------
# helpers


def _on_color(image: Image.Image, fn: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply ``fn`` to the colour channels, leaving an alpha channel untouched."""
    if image.mode == "RGBA":
        rgb = image.convert("RGB")
        out = fn(rgb).convert("RGB")
        out.putalpha(image.getchannel("A"))
        return out
    return fn(image)


def _switch_on(config: Mapping[str, Any]) -> bool:
    return str(config.get("Switch", "ON")).upper() != "OFF"


def _choice(config: Mapping[str, Any], field: str, allowed: tuple[str, ...], path: str) -> str:
    value = config.get(field)
    if value in (None, ""):
        return allowed[0]
    lowered = str(value).lower()
    if lowered not in allowed:
        raise ImagingError(
            "InvalidParameterValue",
            f"{path}.{field} {value!r} is not supported; allowed: {', '.join(allowed)}.",
        )
    return lowered


def _number(
    config: Mapping[str, Any], field: str, default: float, low: float, high: float, path: str
) -> float:
    value = config.get(field)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImagingError(
            "InvalidParameterValue", f"{path}.{field} must be a number, got {value!r}."
        ) from None
    if not (low <= number <= high) or math.isnan(number):
        raise ImagingError(
            "InvalidParameterValue", f"{path}.{field} {value!r} is out of range [{low}, {high}]."
        )
    return number


def _resize(image: Image.Image, width: float, height: float, what: str) -> Image.Image:
    w, h = max(1, round(width)), max(1, round(height))
    _check_pixels(w, h, what)
    if (w, h) == image.size:
        return image
    return image.resize((w, h), Image.Resampling.LANCZOS)


def _unsharp(radius: float, percent: float, threshold: int = 2) -> Callable[[Image.Image], Image.Image]:
    return lambda img: img.filter(
        ImageFilter.UnsharpMask(radius=radius, percent=int(percent), threshold=threshold)
    )


# --------------------------------------------------------------------------------------------
# enhance


def _enhance(image: Image.Image, config: Mapping[str, Any]) -> Image.Image:
    for name in _ENHANCE_ORDER:
        section = _section(config, name, "ImageTask.EnhanceConfig")
        if name not in config or config.get(name) is None or not _switch_on(section):
            continue
        image = _ENHANCERS[name](image, section, f"ImageTask.EnhanceConfig.{name}")
    return image


def _denoise(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    kind = _choice(config, "Type", ("weak", "strong"), path)
    if kind == "weak":
        return _on_color(image, lambda img: img.filter(ImageFilter.MedianFilter(3)))
    return _on_color(
        image, lambda img: img.filter(ImageFilter.MedianFilter(5)).filter(ImageFilter.GaussianBlur(0.6))
    )


def _low_light(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    _choice(config, "Type", ("normal",), path)

    def brighten(img: Image.Image) -> Image.Image:
        grey = img.convert("L")
        hist = grey.histogram()
        total = sum(hist) or 1
        mean = sum(i * n for i, n in enumerate(hist)) / total / 255.0
        # Gamma that maps the mean luminance towards mid-grey; never darkens.
        gamma = 1.0 if mean <= 0.0 or mean >= 0.5 else max(0.35, math.log(0.5) / math.log(max(mean, 1e-3)))
        exponent = gamma if gamma < 1.0 else 1.0
        lut = [min(255, round(255.0 * (i / 255.0) ** exponent)) for i in range(256)]
        return ImageOps.autocontrast(img.point(lut * 3), cutoff=0.5)

    return _on_color(image, brighten)


def _color(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    factor = {"weak": 1.15, "normal": 1.3, "strong": 1.5}[
        _choice(config, "Type", ("weak", "normal", "strong"), path)
    ]
    return _on_color(image, lambda img: ImageEnhance.Color(img).enhance(factor))


def _quality(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    kind = _choice(config, "Type", ("weak", "normal", "strong"), path)
    radius, percent, cutoff = {"weak": (1.2, 50, 0.0), "normal": (1.5, 80, 0.5), "strong": (2.0, 120, 1.0)}[
        kind
    ]

    def improve(img: Image.Image) -> Image.Image:
        if kind != "weak":
            img = img.filter(ImageFilter.MedianFilter(3))  # remove compression speckle first
        img = _unsharp(radius, percent)(img)
        return (
            ImageOps.autocontrast(img, cutoff=cutoff) if cutoff else ImageEnhance.Contrast(img).enhance(1.05)
        )

    return _on_color(image, improve)


def _face(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    intensity = _number(config, "Intensity", 0.0, 0.0, 1.0, path)

    def soften(img: Image.Image) -> Image.Image:
        smooth = img.filter(ImageFilter.GaussianBlur(1.0 + intensity))
        img = Image.blend(img, smooth, 0.3 + 0.4 * intensity)
        return _unsharp(1.0, 40 + 60 * intensity, 3)(img)

    return _on_color(image, soften)


def _sharp(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    intensity = _number(config, "Intensity", 0.0, 0.0, 1.0, path)
    return _on_color(image, _unsharp(2.0, 30 + 170 * intensity))


def _super_resolution(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    kind = _choice(config, "Type", ("lq", "hq"), path)
    size = config.get("Size", 2)
    if size not in (None, 2):
        raise ImagingError("InvalidParameterValue", f"{path}.Size {size!r} is not supported; allowed: 2.")
    image = _resize(image, image.width * 2, image.height * 2, "super-resolved")
    if kind == "hq":
        image = _on_color(image, _unsharp(2.0, 60))
    return image


def _target_box(
    image: Image.Image, config: Mapping[str, Any], path: str, limit: int
) -> tuple[int | None, int | None]:
    """(width, height) a non-percent mode aims at: Width/Height first, else LongSide/ShortSide."""

    def side(field: str) -> int | None:
        value = config.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ImagingError("InvalidParameterValue", f"{path}.{field} must be an integer, got {value!r}.")
        if not 1 <= int(value) <= limit:
            raise ImagingError(
                "InvalidParameterValue", f"{path}.{field} {value!r} is out of range [1, {limit}]."
            )
        return int(value)

    width, height = side("Width"), side("Height")
    if width is None and height is None:
        long_side, short_side = side("LongSide"), side("ShortSide")
        if image.width >= image.height:
            width, height = long_side, short_side
        else:
            width, height = short_side, long_side
    if width is None and height is None:
        raise ImagingError(
            "MissingParameter", f"{path} needs Width/Height or LongSide/ShortSide for this Mode."
        )
    return width, height


def _fit(image: Image.Image, width: int | None, height: int | None, cover: bool) -> tuple[float, float]:
    """Scaled size keeping the aspect ratio: inside the box (cover=False) or covering it."""
    w, h = image.size
    scales = [s for s in ((width / w) if width else None, (height / h) if height else None) if s is not None]
    scale = max(scales) if cover else min(scales)
    return w * scale, h * scale


def _advanced_super_resolution(image: Image.Image, config: Mapping[str, Any], path: str) -> Image.Image:
    kind = _choice(config, "Type", ("standard", "super", "ultra"), path)
    mode = _choice(config, "Mode", ("percent", "aspect", "fixed"), path)
    if mode == "percent":
        percent = _number(config, "Percent", 2.0, 0.01, 100.0, path)
        width, height = image.width * percent, image.height * percent
    else:
        box_w, box_h = _target_box(image, config, path, MAX_SUPER_RESOLUTION_SIDE)
        if mode == "aspect":
            width, height = _fit(image, box_w, box_h, cover=True)
        else:
            fit_w, fit_h = _fit(image, box_w, box_h, cover=False)
            width, height = box_w or fit_w, box_h or fit_h
    width, height = max(1, round(width)), max(1, round(height))
    if width > MAX_SUPER_RESOLUTION_SIDE or height > MAX_SUPER_RESOLUTION_SIDE:
        raise ImagingError(
            "InvalidParameterValue",
            f"{path}: the result would be {width}x{height}; each side must be at most {MAX_SUPER_RESOLUTION_SIDE}.",
        )
    image = _resize(image, width, height, "super-resolved")
    if kind != "standard":
        image = _on_color(image, _unsharp(2.0, 60 if kind == "super" else 100))
    return image


_ENHANCERS: dict[str, Callable[[Image.Image, Mapping[str, Any], str], Image.Image]] = {
    "Denoise": _denoise,
    "LowLightEnhance": _low_light,
    "ColorEnhance": _color,
    "ImageQualityEnhance": _quality,
    "FaceEnhance": _face,
    "SharpEnhance": _sharp,
    "SuperResolution": _super_resolution,
    "AdvancedSuperResolutionConfig": _advanced_super_resolution,
}


# --------------------------------------------------------------------------------------------
# transform


def _transform(image: Image.Image, config: Mapping[str, Any]) -> Image.Image:
    resize = _section(config, "ImageResize", "ImageTask.TransformConfig")
    if config.get("ImageResize") is None or not _switch_on(resize):
        return image
    path = "ImageTask.TransformConfig.ImageResize"
    mode = _choice(resize, "Mode", ("percent", "mfit", "lfit", "fill", "pad", "fixed"), path)
    if mode == "percent":
        percent = _number(resize, "Percent", 1.0, 0.1, 10.0, path)
        return _resize(image, image.width * percent, image.height * percent, "resized")
    box_w, box_h = _target_box(image, resize, path, MAX_RESIZE_SIDE)
    if mode in ("mfit", "lfit"):
        width, height = _fit(image, box_w, box_h, cover=(mode == "mfit"))
        return _resize(image, width, height, "resized")
    if mode == "fixed":
        fit_w, fit_h = _fit(image, box_w, box_h, cover=False)
        return _resize(image, box_w or fit_w, box_h or fit_h, "resized")
    # fill / pad need both sides: a missing one follows the aspect ratio.
    fit_w, fit_h = _fit(image, box_w, box_h, cover=False)
    target_w, target_h = round(box_w or fit_w), round(box_h or fit_h)
    _check_pixels(target_w, target_h, "resized")
    if mode == "fill":
        width, height = _fit(image, target_w, target_h, cover=True)
        scaled = _resize(image, max(target_w, round(width)), max(target_h, round(height)), "resized")
        left = (scaled.width - target_w) // 2
        top = (scaled.height - target_h) // 2
        return scaled.crop((left, top, left + target_w, top + target_h))
    width, height = _fit(image, target_w, target_h, cover=False)
    scaled = _resize(image, min(target_w, round(width)), min(target_h, round(height)), "resized")
    fill = (255, 255, 255, 0) if scaled.mode == "RGBA" else (255, 255, 255)
    canvas = Image.new(scaled.mode, (target_w, target_h), fill)
    canvas.paste(scaled, ((target_w - scaled.width) // 2, (target_h - scaled.height) // 2))
    return canvas


# --------------------------------------------------------------------------------------------
# encode


def _flatten(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image.convert("RGB") if image.mode != "RGB" else image
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def _encode(
    image: Image.Image, config: Mapping[str, Any], source_format: str | None, source_quality: int | None
) -> ProcessedImage:
    requested = config.get("Format")
    if requested not in (None, ""):
        fmt = normalize_format(str(requested))
    else:
        # Default: the source format; sources that are not JPEG/PNG/BMP/WebP (GIF, TIFF, ...) -> PNG.
        fmt = _FORMATS.get((source_format or "").upper(), "png")
    quality_value = config.get("Quality")
    if quality_value is None:
        quality = source_quality or DEFAULT_QUALITY
    else:
        if isinstance(quality_value, bool) or not isinstance(quality_value, (int, float)):
            raise ImagingError(
                "InvalidParameterValue.Quality",
                f"ImageTask.EncodeConfig.Quality must be an integer 1-100, got {quality_value!r}.",
            )
        quality = int(quality_value)
        if not 1 <= quality <= 100:
            raise ImagingError(
                "InvalidParameterValue.Quality",
                f"ImageTask.EncodeConfig.Quality {quality_value!r} is out of range [1, 100].",
            )
    if fmt in ("jpeg", "bmp"):
        image = _flatten(image)
    options: dict[str, Any] = {}
    if fmt == "jpeg":
        options = {"quality": quality}
    elif fmt == "webp":
        options = {"quality": quality, "method": 4}
    elif fmt == "png":
        options = {"compress_level": 6}
    out = io.BytesIO()
    try:
        image.save(out, _PIL_FORMAT[fmt], **options)
    except (OSError, ValueError) as exc:
        raise ImagingError("InternalError", f"Encoding the result as {fmt.upper()} failed: {exc}") from None
    return ProcessedImage(data=out.getvalue(), format=fmt, width=image.width, height=image.height)
