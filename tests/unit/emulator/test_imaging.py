"""imaging.process asserted on pixels and bytes (no mocks: real Pillow encode/decode)."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from airflow_mps.emulator.imaging import MAX_PIXELS, ImagingError, process


def _encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _gradient(size: tuple[int, int] = (96, 64)) -> Image.Image:
    w, h = size
    image = Image.new("RGB", size)
    image.putdata(
        [(x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)) for y in range(h) for x in range(w)]
    )
    return image


def _noisy(seed: int = 7) -> Image.Image:
    rng = random.Random(seed)
    base = _gradient((96, 96)).tobytes()
    noisy = bytes(max(0, min(255, c + int(rng.gauss(0, 30)))) for c in base)
    return Image.frombytes("RGB", (96, 96), noisy)


def _laplacian_std(image: Image.Image) -> float:
    edges = image.convert("L").filter(
        ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)
    )
    return ImageStat.Stat(edges).stddev[0]


def _differs(a: bytes, b: bytes) -> bool:
    ia, ib = _open(a).convert("RGB"), _open(b).convert("RGB")
    return ia.size != ib.size or ImageChops.difference(ia, ib).getbbox() is not None


def test_super_resolution_doubles_both_sides() -> None:
    for kind in ("lq", "hq"):
        result = process(
            _encode(_gradient()), {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": kind}}}
        )
        assert (result.width, result.height) == (192, 128)
        assert _open(result.data).size == (192, 128)


@pytest.mark.parametrize(
    ("fmt", "magic", "name"),
    [
        ("JPEG", b"\xff\xd8\xff", "jpeg"),
        ("jpg", b"\xff\xd8\xff", "jpeg"),
        ("png", b"\x89PNG", "png"),
        ("BMP", b"BM", "bmp"),
        ("WebP", b"RIFF", "webp"),
    ],
)
def test_format_conversion_writes_the_right_magic(fmt: str, magic: bytes, name: str) -> None:
    result = process(_encode(_gradient()), {"EncodeConfig": {"Format": fmt}})
    assert result.data.startswith(magic)
    assert result.format == name


def test_default_format_is_the_source_format() -> None:
    assert process(_encode(_gradient(), "JPEG"), None).format == "jpeg"
    assert process(_encode(_gradient(), "WEBP"), {}).format == "webp"
    assert process(_encode(_gradient(), "GIF"), None).format == "png"  # documented fallback


def test_lower_quality_gives_fewer_bytes() -> None:
    source = _encode(_noisy())
    low = process(source, {"EncodeConfig": {"Format": "JPEG", "Quality": 20}})
    high = process(source, {"EncodeConfig": {"Format": "JPEG", "Quality": 95}})
    assert len(low.data) < len(high.data) * 0.6


@pytest.mark.parametrize("kind", ["weak", "strong"])
def test_denoise_reduces_noise(kind: str) -> None:
    noisy = _noisy()
    result = process(_encode(noisy), {"EnhanceConfig": {"Denoise": {"Switch": "ON", "Type": kind}}})
    assert _laplacian_std(_open(result.data)) < 0.6 * _laplacian_std(noisy)


ENHANCERS = {
    "SuperResolution": {"Switch": "ON"},
    "AdvancedSuperResolutionConfig": {"Switch": "ON", "Mode": "percent", "Percent": 1.5},
    "Denoise": {"Switch": "ON"},
    "ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
    "ColorEnhance": {"Switch": "ON", "Type": "strong"},
    "SharpEnhance": {"Switch": "ON", "Intensity": 0.8},
    "FaceEnhance": {"Switch": "ON", "Intensity": 0.5},
    "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
}


@pytest.mark.parametrize("name", sorted(ENHANCERS))
def test_every_enhancer_changes_the_output_and_off_skips_it(name: str) -> None:
    source = _encode(_noisy().point(lambda v: v // 3))  # darkish and noisy: every operation has work
    baseline = process(source, {"EncodeConfig": {"Format": "PNG"}})
    on = process(source, {"EncodeConfig": {"Format": "PNG"}, "EnhanceConfig": {name: ENHANCERS[name]}})
    off = process(
        source,
        {"EncodeConfig": {"Format": "PNG"}, "EnhanceConfig": {name: {**ENHANCERS[name], "Switch": "OFF"}}},
    )
    assert _differs(baseline.data, on.data)
    assert not _differs(baseline.data, off.data)


def test_low_light_brightens_a_dark_image() -> None:
    dark = _gradient().point(lambda v: v // 5)
    result = process(_encode(dark), {"EnhanceConfig": {"LowLightEnhance": {"Switch": "ON"}}})
    assert (
        ImageStat.Stat(_open(result.data).convert("L")).mean[0]
        > 2 * ImageStat.Stat(dark.convert("L")).mean[0]
    )


def test_advanced_super_resolution_modes_and_limit() -> None:
    src = _encode(_gradient((100, 50)))
    fixed = process(
        src,
        {"EnhanceConfig": {"AdvancedSuperResolutionConfig": {"Mode": "fixed", "Width": 300, "Height": 90}}},
    )
    assert (fixed.width, fixed.height) == (300, 90)
    aspect = process(
        src,
        {"EnhanceConfig": {"AdvancedSuperResolutionConfig": {"Mode": "aspect", "Width": 300, "Height": 300}}},
    )
    assert (aspect.width, aspect.height) == (600, 300)  # the larger rectangle
    with pytest.raises(ImagingError, match="4096"):
        process(src, {"EnhanceConfig": {"AdvancedSuperResolutionConfig": {"Mode": "percent", "Percent": 50}}})


@pytest.mark.parametrize(
    ("resize", "size"),
    [
        ({"Mode": "percent", "Percent": 0.5}, (50, 25)),
        ({"Mode": "lfit", "Width": 40, "Height": 40}, (40, 20)),
        ({"Mode": "mfit", "Width": 40, "Height": 40}, (80, 40)),
        ({"Mode": "fill", "Width": 40, "Height": 40}, (40, 40)),
        ({"Mode": "pad", "Width": 40, "Height": 40}, (40, 40)),
        ({"Mode": "fixed", "Width": 33, "Height": 77}, (33, 77)),
        ({"Mode": "lfit", "LongSide": 50}, (50, 25)),
        ({"Mode": "lfit", "Width": 20}, (20, 10)),
    ],
)
def test_image_resize_modes(resize: dict, size: tuple[int, int]) -> None:
    result = process(
        _encode(_gradient((100, 50))), {"TransformConfig": {"ImageResize": {"Switch": "ON", **resize}}}
    )
    assert (result.width, result.height) == size == _open(result.data).size


def test_pad_fills_with_white() -> None:
    result = process(
        _encode(Image.new("RGB", (100, 50), (0, 0, 0))),
        {"TransformConfig": {"ImageResize": {"Mode": "pad", "Width": 40, "Height": 40}}},
    )
    image = _open(result.data).convert("RGB")
    assert image.getpixel((20, 0)) == (255, 255, 255)
    assert image.getpixel((20, 20)) == (0, 0, 0)


@pytest.mark.parametrize(
    "task",
    [
        {"EraseConfig": {"ImageEraseLogo": {"Switch": "ON"}}},
        {"BlindWatermarkConfig": {"AddBlindWatermark": {"Switch": "ON", "EmbedInfo": {"EmbedText": "aGk"}}}},
        {"BeautyConfig": {"BeautyEffectItems": [{"Type": "Whiten", "Switch": "ON", "Value": 40}]}},
        {"AiCutoutConfig": {}},
        {"AiExpansionConfig": {"Switch": "ON"}},
        {"EnhanceConfig": {"FutureMagic": {"Switch": "ON"}}},
    ],
)
def test_unsupported_configs_fail_naming_the_config(task: dict) -> None:
    name = next(iter(task))
    if name == "EnhanceConfig":
        name = "FutureMagic"
    with pytest.raises(ImagingError, match="not supported by the emulator") as info:
        process(_encode(_gradient()), task)
    assert name in info.value.message
    assert info.value.code == "UnsupportedOperation"


def test_switched_off_unsupported_config_is_ignored() -> None:
    result = process(_encode(_gradient()), {"EraseConfig": {"ImageEraseLogo": {"Switch": "OFF"}}})
    assert result.format == "png"


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (60, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    result = process(_encode(image, "JPEG", exif=exif.tobytes(), quality=95), None)
    assert (result.width, result.height) == (20, 60)
    top = _open(result.data).convert("RGB").getpixel((10, 2))
    assert top[2] > 200 and top[0] < 60  # the blue band is now on top


def test_alpha_to_jpeg_is_flattened_on_white() -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 10, 20))
    result = process(_encode(image), {"EncodeConfig": {"Format": "JPEG"}})
    out = _open(result.data).convert("RGB")
    assert all(c > 245 for c in out.getpixel((15, 10)))  # transparent -> white, not black
    assert out.getpixel((3, 10))[0] > 200
    kept = _open(process(_encode(image), {"EncodeConfig": {"Format": "PNG"}}).data)
    assert kept.mode == "RGBA" and kept.getpixel((15, 10))[3] == 0


def test_palette_and_one_bit_and_cmyk_inputs() -> None:
    palette = _gradient().convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert process(_encode(palette), {"EncodeConfig": {"Format": "JPEG"}}).format == "jpeg"
    one_bit = Image.new("1", (16, 16), 1)
    assert _open(process(_encode(one_bit), None).data).convert("L").getpixel((0, 0)) == 255
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    red = _open(process(_encode(cmyk, "JPEG"), {"EncodeConfig": {"Format": "PNG"}}).data).getpixel((8, 8))
    assert red[0] > 200 and red[1] < 60


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    image = Image.new("I;16", (8, 8), 32768)
    result = _open(process(_encode(image), None).data).convert("L")
    assert 120 <= result.getpixel((0, 0)) <= 135  # mid grey, not white


def test_animated_input_uses_the_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    result = process(out.getvalue(), {"EncodeConfig": {"Format": "PNG"}})
    assert _open(result.data).convert("RGB").getpixel((5, 5))[0] > 200


@pytest.mark.parametrize("data", [b"", b"not an image at all", _encode(Image.new("RGB", (50, 50)))[:40]])
def test_empty_corrupt_and_truncated_inputs_fail_clearly(data: bytes) -> None:
    with pytest.raises(ImagingError) as info:
        process(data, None)
    assert info.value.code == "InvalidParameterValue.SrcFile"
    assert ("empty" in info.value.message) == (data == b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = _encode(Image.new("1", (9000, 8000)))  # 72 MP, a few KB on disk
    assert MAX_PIXELS < 9000 * 8000
    with pytest.raises(ImagingError, match="pixels"):
        process(bomb, None)


def test_bad_values_fail_clearly_not_crash() -> None:
    with pytest.raises(ImagingError, match="Format"):
        process(_encode(_gradient()), {"EncodeConfig": {"Format": "TIFF"}})
    with pytest.raises(ImagingError, match="Quality"):
        process(_encode(_gradient()), {"EncodeConfig": {"Quality": 0}})
    with pytest.raises(ImagingError, match="Type"):
        process(_encode(_gradient()), {"EnhanceConfig": {"Denoise": {"Type": "extreme"}}})
