"""The ``ImageTask`` schema of ProcessImage and :func:`validate_image_task`.

Every documented type, enum and range of ``ImageTask`` (SDK 3.1.194 model docstrings; see
``docs/internals.md``) as a tree of validators. Unknown keys are refused: they are typos such as
``EnhanceConfg`` that the SDK would silently drop. Two decisions relied on by the operators and the
emulator:

* ``EncodeConfig.Format`` is validated case-insensitively (``to_api()`` sends what the user wrote).
* ``BlindWatermarkConfig...EmbedText`` longer than 12 bytes once decoded is refused, on purpose
  stricter than the service: the docs say it is truncated to 12 bytes, which would silently embed (and
  later extract) a different watermark than the one asked for (docs/emulator-fidelity.md).
* ``AdvancedSuperResolutionConfig`` ``Width``/``Height``/``LongSide``/``ShortSide`` take 0 to 4096:
  the docs give only the upper bound ("不能超过4096"), and 0 is the API's usual "not set".

AI configs are passed through unchecked (they must be objects): their schemas change often.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from airflow_mps.models.constants import FORMATS
from airflow_mps.models.validation import (
    ApiObject,
    fail,
    integer,
    json_object,
    list_of,
    number,
    one_of,
    string,
    type_error,
)

__all__ = ["SWITCH", "requested_format", "validate_image_task"]

#: The ``Switch`` of every feature: ``ON`` or ``OFF``.
SWITCH = one_of("ON", "OFF")


def _embed_text(value: Any, path: str) -> None:
    """``EmbedInfo.EmbedText``: URL-safe base64 of 1 to 12 bytes (the service truncates longer text to
    12 bytes; refused here so that what is embedded is what was asked for)."""
    allowed = "URL-safe base64 text that decodes to at most 12 bytes"
    if not isinstance(value, str):
        type_error(path, value, allowed)
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
        fail(path, value, allowed, reason="is not URL-safe base64")
    padded = value + "=" * (-len(value) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        fail(path, value, allowed, reason="is not URL-safe base64")
    if not decoded:
        fail(path, value, allowed, reason="is empty")
    if len(decoded) > 12:
        fail(path, value, allowed, reason=f"decodes to {len(decoded)} bytes")


def _area_coords(value: Any, path: str) -> None:
    """``AreaCoordSet``: a non-empty pixel box ``[x1, y1, x2, y2]`` of integers."""
    list_of(integer(0, 4096), exact_len=4, what="integers from 0 to 4096 [x1, y1, x2, y2]")(value, path)
    if value[0] >= value[2] or value[1] >= value[3]:
        fail(path, value, "[x1, y1, x2, y2] with x1 < x2 and y1 < y2", reason="is an empty box")


def _bounding_box(value: Any, path: str) -> None:
    """``BoundingBox``: a non-empty box ``[x1, y1, x2, y2]`` of numbers from 0 to 4096."""
    list_of(number(0, 4096), exact_len=4, what="numbers from 0 to 4096 [x1, y1, x2, y2]")(value, path)
    if value[0] >= value[2] or value[1] >= value[3]:
        fail(path, value, "[x1, y1, x2, y2] with x1 < x2 and y1 < y2", reason="is an empty box")


#: Side lengths in pixels: super-resolution targets stop at 4096 ("不能超过4096", no lower bound
#: documented: 0 = not set), resizes take 1 to 16384 (their documented range "[1，16384]").
_SIDE_4096 = integer(0, 4096)
_SIDE_16384 = integer(1, 16384)

_ENHANCE = ApiObject(
    {
        "SuperResolution": ApiObject(
            {"Switch": SWITCH, "Type": one_of("lq", "hq"), "Size": integer(choices=(2,))}
        ),
        "AdvancedSuperResolutionConfig": ApiObject(
            {
                "Switch": SWITCH,
                "Type": one_of("standard", "super", "ultra"),
                "Mode": one_of("percent", "aspect", "fixed"),
                "Percent": number(0, None, lo_exclusive=True),
                "Width": _SIDE_4096,
                "Height": _SIDE_4096,
                "LongSide": _SIDE_4096,
                "ShortSide": _SIDE_4096,
            }
        ),
        "Denoise": ApiObject({"Switch": SWITCH, "Type": one_of("weak", "strong")}),
        "ImageQualityEnhance": ApiObject({"Switch": SWITCH, "Type": one_of("weak", "normal", "strong")}),
        "ColorEnhance": ApiObject({"Switch": SWITCH, "Type": one_of("weak", "normal", "strong")}),
        "SharpEnhance": ApiObject({"Switch": SWITCH, "Intensity": number(0.0, 1.0)}),
        "FaceEnhance": ApiObject({"Switch": SWITCH, "Intensity": number(0.0, 1.0)}),
        "LowLightEnhance": ApiObject({"Switch": SWITCH, "Type": one_of("normal")}),
    }
)

_ERASE = ApiObject(
    {
        "ImageEraseLogo": ApiObject(
            {
                "Switch": SWITCH,
                "ImageAreaBoxes": list_of(
                    ApiObject(
                        {
                            "Type": one_of("logo", "text"),
                            "AreaCoordSet": _area_coords,
                            "BoundingBox": _bounding_box,
                            "BoundingBoxUnitType": integer(choices=(0, 1, 2)),
                        }
                    ),
                    max_len=16,
                    what="area boxes",
                ),
                "DetectTypes": list_of(one_of("logo", "text", "watermark"), what="detect types"),
                "EraseStrength": one_of("low", "mid", "high"),
                "WatermarkType": one_of(
                    "corner_watermark", "tiled_watermark", "auto_detect_type", "selected_watermark"
                ),
            }
        )
    }
)

_BLIND_WATERMARK = ApiObject(
    {
        "AddBlindWatermark": ApiObject(
            {"Switch": SWITCH, "EmbedInfo": ApiObject({"EmbedText": _embed_text}, required=("EmbedText",))}
        ),
        "ExtractBlindWatermark": ApiObject({"Switch": SWITCH}),
        "RemoveBlindWatermark": ApiObject({"Switch": SWITCH}),
    }
)

_BEAUTY_EFFECTS = (
    "Whiten",
    "BlackAlpha1",
    "BlackAlpha2",
    "FoundationAlpha2",
    "Clear",
    "Sharpen",
    "Smooth",
    "BeautyThinFace",
    "NatureFace",
    "VFace",
    "EnlargeEye",
    "EyeLighten",
    "RemoveEyeBags",
    "ThinNose",
    "RemoveLawLine",
    "CheekboneThin",
    "FaceFeatureLipsLut",
    "ToothWhiten",
    "FaceFeatureSoftlight",
    "Makeup",
)
_BEAUTY = ApiObject(
    {
        "BeautyEffectItems": list_of(
            ApiObject(
                {
                    "Type": one_of(*_BEAUTY_EFFECTS),
                    "Switch": SWITCH,
                    "Value": integer(0, 100),
                    "ResourcePath": string(),
                    "ExtInfo": string(),
                },
                required=("Type",),
            ),
            what="beauty effect items",
        ),
        "BeautyFilterItems": list_of(
            ApiObject(
                {
                    "Type": one_of("Dongjing", "Qingjiaopian", "Meiwei"),
                    "Switch": SWITCH,
                    "Value": integer(-100, 100),
                },
                required=("Type",),
            ),
            what="beauty filter items",
        ),
        "Type": one_of("auto"),
    }
)

_TRANSFORM = ApiObject(
    {
        "ImageResize": ApiObject(
            {
                "Switch": SWITCH,
                "Mode": one_of("percent", "mfit", "lfit", "fill", "pad", "fixed"),
                "Percent": number(0.1, 10.0),
                "Width": _SIDE_16384,
                "Height": _SIDE_16384,
                "LongSide": _SIDE_16384,
                "ShortSide": _SIDE_16384,
            }
        )
    }
)

#: AI configs are passed through unchanged (they must be objects); their schemas change often.
_AI_CONFIGS = (
    "AiTryOnConfig",
    "AiPosterSuiteConfig",
    "CreateImageConfig",
    "AiCutoutConfig",
    "AiExpansionConfig",
    "AiStoryboardConfig",
    "UnderstandImageConfig",
    "ImageQualityConfig",
    "AiComposeConfig",
    "AiDecomposeConfig",
)

_IMAGE_TASK = ApiObject(
    {
        "EncodeConfig": ApiObject(
            {"Format": one_of(*FORMATS.values(), case_insensitive=True), "Quality": integer(1, 100)}
        ),
        "EnhanceConfig": _ENHANCE,
        "EraseConfig": _ERASE,
        "BlindWatermarkConfig": _BLIND_WATERMARK,
        "BeautyConfig": _BEAUTY,
        "TransformConfig": _TRANSFORM,
        **dict.fromkeys(_AI_CONFIGS, json_object),
    }
)


def validate_image_task(image_task: Any, path: str = "ImageTask") -> None:
    """Validate an API-shaped ``ImageTask`` dict; raise :class:`MpsValidationError` naming the field."""
    _IMAGE_TASK(image_task, path)


def requested_format(image_task: Mapping[str, Any] | None) -> str | None:
    """The lower-case output format requested by ``ImageTask.EncodeConfig.Format`` (``None`` = source)."""
    if not image_task:
        return None
    encode = image_task.get("EncodeConfig") or {}
    fmt = encode.get("Format") if isinstance(encode, Mapping) else None
    return fmt.lower() if isinstance(fmt, str) and fmt else None
