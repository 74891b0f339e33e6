"""The ProcessImage request model, its validation, task status/result types and COS URI helpers.

One model serves three callers: the operators (validate user arguments at execute time, before any API
call), the hook (``to_api()`` is the body sent with the official SDK) and the emulator (which validates
every ProcessImage body it receives with :meth:`ProcessImageRequest.from_api`). It is pure stdlib so it
can be imported at DAG-parse time and by the emulator without Airflow or the SDK.

Validation follows the SDK 3.1.194 model docstrings and ``docs/internals.md``: every documented type,
enum and range is checked, unknown keys inside ``ImageTask`` are refused (they are typos such as
``EnhanceConfg`` that the SDK would silently drop), and each error names the field path and what is
allowed. ``bool`` is never accepted where an integer or a number is expected.

Decisions documented here (and relied on by the operators and the emulator):

* ``Format`` is validated case-insensitively; ``to_api()`` sends what the user wrote.
* ``BlindWatermarkConfig...EmbedText`` longer than 12 bytes once decoded is refused (the service
  silently truncates it, which would embed a different watermark than asked for).
* ``OutputDir`` is a directory: any string without ``..`` segments, at most 1024 characters; it need
  not start or end with ``/`` (:func:`expected_output_key` treats it as a directory either way).
* ``OutputPath`` must end with ``.{format}`` (the literal variable) or, when ``EncodeConfig.Format``
  is given, with that format's extension (``jpeg`` → ``.jpg`` or ``.jpeg``).
* ``build(output_storage="cos://bucket/prefix/")``: the bucket becomes ``OutputStorage`` and the prefix
  becomes ``OutputDir`` (``/prefix/``); giving both a prefix there and ``output_dir`` is an error.
* :class:`ImageTaskStatus`: a ``FINISH`` task with no error signal and an empty result set counts as
  succeeded with no outputs (the 2025 service returned exactly that shape for a successful task).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from airflow_mps.errors import MpsValidationError
from airflow_mps.models.constants import (
    ACCEPTED_EXTENSIONS,
    FORMATS,
    INPUT_TYPES,
    MASK,
    MAX_PATH,
    OUTPUT_EXTENSIONS,
    OUTPUT_TYPES,
    TASK_STATES,
    UNSET_TIMES,
)

__all__ = [
    "FORMATS",
    "OUTPUT_EXTENSIONS",
    "ImageTaskInfo",
    "ImageTaskStatus",
    "MediaInput",
    "OutputStorage",
    "ProcessImageRequest",
    "TaskOutput",
    "cos_uri",
    "expected_output_key",
    "parse_cos_uri",
    "parse_output_storage",
    "parse_uri",
    "validate_image_task",
]

_ACCEPTED_EXTENSIONS = ACCEPTED_EXTENSIONS
_MAX_PATH = MAX_PATH
_UNSET_TIMES = UNSET_TIMES


# ==================================================================================================
# validation primitives
# ==================================================================================================
def _fail(
    path: str, value: Any, allowed: str, reason: str = "is not valid", code: str = "InvalidParameterValue"
) -> None:
    raise MpsValidationError(field=path, value=value, allowed=allowed, code=code, reason=reason)


def _type_error(path: str, value: Any, allowed: str) -> None:
    _fail(
        path, value, allowed, reason=f"has the wrong type ({type(value).__name__})", code="InvalidParameter"
    )


def _missing(path: str, allowed: str) -> None:
    raise MpsValidationError(field=path, value=None, allowed=allowed, code="MissingParameter")


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


Validator = Callable[[Any, str], None]


def _string(max_len: int | None = None, allow_empty: bool = True) -> Validator:
    def check(value: Any, path: str) -> None:
        desc = "a string" + (f" of at most {max_len} characters" if max_len else "")
        if not isinstance(value, str):
            _type_error(path, value, desc)
        if not allow_empty and not value.strip():
            _fail(path, value, "a non-empty string", reason="is empty")
        if max_len is not None and len(value) > max_len:
            _fail(path, value, desc, reason="is too long")

    return check


def _enum(*values: str, case_insensitive: bool = False) -> Validator:
    allowed = "one of " + ", ".join(values) + (" (case-insensitive)" if case_insensitive else "")
    folded = {v.lower() for v in values}

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str):
            _type_error(path, value, allowed)
        ok = value.lower() in folded if case_insensitive else value in values
        if not ok:
            _fail(path, value, allowed, reason="is not an allowed value")

    return check


_SWITCH = _enum("ON", "OFF")


def _int(lo: int | None = None, hi: int | None = None, choices: tuple[int, ...] | None = None) -> Validator:
    if choices is not None:
        allowed = (
            "an integer, one of " + ", ".join(map(str, choices)) if len(choices) > 1 else f"only {choices[0]}"
        )
    elif lo is not None and hi is not None:
        allowed = f"an integer from {lo} to {hi}"
    elif lo is not None:
        allowed = f"an integer >= {lo}"
    else:
        allowed = "an integer"

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            _type_error(path, value, allowed)
        if choices is not None:
            if value not in choices:
                _fail(path, value, allowed, reason="is not an allowed value")
            return
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            _fail(path, value, allowed, reason="is out of range")

    return check


def _number(lo: float | None = None, hi: float | None = None, lo_exclusive: bool = False) -> Validator:
    if lo is not None and hi is not None:
        allowed = f"a number from {lo} to {hi}"
    elif lo is not None:
        allowed = f"a number {'>' if lo_exclusive else '>='} {lo}"
    else:
        allowed = "a number"

    def check(value: Any, path: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _type_error(path, value, allowed)
        if not math.isfinite(value):
            _fail(path, value, allowed, reason="is not a finite number")
        too_low = lo is not None and (value <= lo if lo_exclusive else value < lo)
        if too_low or (hi is not None and value > hi):
            _fail(path, value, allowed, reason="is out of range")

    return check


def _bool(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        _type_error(path, value, "true or false")


def _dict_passthrough(value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        _type_error(path, value, "an object (JSON dict)")


def _list(
    item: Validator, max_len: int | None = None, exact_len: int | None = None, what: str = ""
) -> Validator:
    if exact_len is not None:
        allowed = f"a list of exactly {exact_len} {what}".rstrip()
    elif max_len is not None:
        allowed = f"a list of at most {max_len} {what}".rstrip()
    else:
        allowed = f"a list of {what}".rstrip()

    def check(value: Any, path: str) -> None:
        if not isinstance(value, (list, tuple)):
            _type_error(path, value, allowed)
        if exact_len is not None and len(value) != exact_len:
            _fail(path, value, allowed, reason=f"has {len(value)} items")
        if max_len is not None and len(value) > max_len:
            _fail(path, value, allowed, reason=f"has {len(value)} items")
        for i, element in enumerate(value):
            item(element, _join(path, i))

    return check


def _object(schema: Mapping[str, Validator], required: tuple[str, ...] = ()) -> Validator:
    """An API object: a dict whose keys are all in ``schema``; ``None`` values mean "not set"."""
    known = ", ".join(schema)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            _type_error(path, value, f"an object with keys {known}")
        for key in value:
            if key not in schema:
                _fail(
                    _join(path, str(key)),
                    key,
                    f"keys {known}",
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        for key in required:
            if value.get(key) is None:
                _missing(_join(path, key), _describe(schema[key]))
        for key, sub in value.items():
            if sub is not None:
                schema[key](sub, _join(path, key))

    check.schema = schema  # type: ignore[attr-defined]
    return check


def _describe(validator: Validator) -> str:
    schema = getattr(validator, "schema", None)
    if schema is not None:
        return "an object with keys " + ", ".join(schema)
    return "a value"


def _embed_text(value: Any, path: str) -> None:
    allowed = "URL-safe base64 text that decodes to at most 12 bytes"
    if not isinstance(value, str):
        _type_error(path, value, allowed)
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", value):
        _fail(path, value, allowed, reason="is not URL-safe base64")
    padded = value + "=" * (-len(value) % 4)
    try:
        decoded = base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):
        _fail(path, value, allowed, reason="is not URL-safe base64")
    if not decoded:
        _fail(path, value, allowed, reason="is empty")
    if len(decoded) > 12:
        _fail(path, value, allowed, reason=f"decodes to {len(decoded)} bytes")


def _area_coords(value: Any, path: str) -> None:
    _list(_int(0, 4096), exact_len=4, what="integers from 0 to 4096 [x1, y1, x2, y2]")(value, path)
    if value[0] >= value[2] or value[1] >= value[3]:
        _fail(path, value, "[x1, y1, x2, y2] with x1 < x2 and y1 < y2", reason="is an empty box")


def _bounding_box(value: Any, path: str) -> None:
    _list(_number(0, 4096), exact_len=4, what="numbers from 0 to 4096 [x1, y1, x2, y2]")(value, path)
    if value[0] >= value[2] or value[1] >= value[3]:
        _fail(path, value, "[x1, y1, x2, y2] with x1 < x2 and y1 < y2", reason="is an empty box")


_SIDE_4096 = _int(1, 4096)
_SIDE_16384 = _int(1, 16384)

_ENHANCE = _object(
    {
        "SuperResolution": _object(
            {"Switch": _SWITCH, "Type": _enum("lq", "hq"), "Size": _int(choices=(2,))}
        ),
        "AdvancedSuperResolutionConfig": _object(
            {
                "Switch": _SWITCH,
                "Type": _enum("standard", "super", "ultra"),
                "Mode": _enum("percent", "aspect", "fixed"),
                "Percent": _number(0, None, lo_exclusive=True),
                "Width": _SIDE_4096,
                "Height": _SIDE_4096,
                "LongSide": _SIDE_4096,
                "ShortSide": _SIDE_4096,
            }
        ),
        "Denoise": _object({"Switch": _SWITCH, "Type": _enum("weak", "strong")}),
        "ImageQualityEnhance": _object({"Switch": _SWITCH, "Type": _enum("weak", "normal", "strong")}),
        "ColorEnhance": _object({"Switch": _SWITCH, "Type": _enum("weak", "normal", "strong")}),
        "SharpEnhance": _object({"Switch": _SWITCH, "Intensity": _number(0.0, 1.0)}),
        "FaceEnhance": _object({"Switch": _SWITCH, "Intensity": _number(0.0, 1.0)}),
        "LowLightEnhance": _object({"Switch": _SWITCH, "Type": _enum("normal")}),
    }
)

_ERASE = _object(
    {
        "ImageEraseLogo": _object(
            {
                "Switch": _SWITCH,
                "ImageAreaBoxes": _list(
                    _object(
                        {
                            "Type": _enum("logo", "text"),
                            "AreaCoordSet": _area_coords,
                            "BoundingBox": _bounding_box,
                            "BoundingBoxUnitType": _int(choices=(0, 1, 2)),
                        }
                    ),
                    max_len=16,
                    what="area boxes",
                ),
                "DetectTypes": _list(_enum("logo", "text", "watermark"), what="detect types"),
                "EraseStrength": _enum("low", "mid", "high"),
                "WatermarkType": _enum(
                    "corner_watermark", "tiled_watermark", "auto_detect_type", "selected_watermark"
                ),
            }
        )
    }
)

_BLIND_WATERMARK = _object(
    {
        "AddBlindWatermark": _object(
            {"Switch": _SWITCH, "EmbedInfo": _object({"EmbedText": _embed_text}, required=("EmbedText",))}
        ),
        "ExtractBlindWatermark": _object({"Switch": _SWITCH}),
        "RemoveBlindWatermark": _object({"Switch": _SWITCH}),
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
_BEAUTY = _object(
    {
        "BeautyEffectItems": _list(
            _object(
                {
                    "Type": _enum(*_BEAUTY_EFFECTS),
                    "Switch": _SWITCH,
                    "Value": _int(0, 100),
                    "ResourcePath": _string(),
                    "ExtInfo": _string(),
                },
                required=("Type",),
            ),
            what="beauty effect items",
        ),
        "BeautyFilterItems": _list(
            _object(
                {
                    "Type": _enum("Dongjing", "Qingjiaopian", "Meiwei"),
                    "Switch": _SWITCH,
                    "Value": _int(-100, 100),
                },
                required=("Type",),
            ),
            what="beauty filter items",
        ),
        "Type": _enum("auto"),
    }
)

_TRANSFORM = _object(
    {
        "ImageResize": _object(
            {
                "Switch": _SWITCH,
                "Mode": _enum("percent", "mfit", "lfit", "fill", "pad", "fixed"),
                "Percent": _number(0.1, 10.0),
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

_IMAGE_TASK = _object(
    {
        "EncodeConfig": _object(
            {"Format": _enum(*FORMATS.values(), case_insensitive=True), "Quality": _int(1, 100)}
        ),
        "EnhanceConfig": _ENHANCE,
        "EraseConfig": _ERASE,
        "BlindWatermarkConfig": _BLIND_WATERMARK,
        "BeautyConfig": _BEAUTY,
        "TransformConfig": _TRANSFORM,
        **dict.fromkeys(_AI_CONFIGS, _dict_passthrough),
    }
)


def validate_image_task(image_task: Any, path: str = "ImageTask") -> None:
    """Validate an API-shaped ``ImageTask`` dict; raise :class:`MpsValidationError` naming the field."""
    _IMAGE_TASK(image_task, path)


def _output_format(image_task: Mapping[str, Any] | None) -> str | None:
    """The lower-case output format requested by ``ImageTask.EncodeConfig.Format`` (``None`` = source)."""
    if not image_task:
        return None
    encode = image_task.get("EncodeConfig") or {}
    fmt = encode.get("Format") if isinstance(encode, Mapping) else None
    return fmt.lower() if isinstance(fmt, str) and fmt else None


def _check_path_text(value: Any, path: str, allowed: str) -> None:
    if not isinstance(value, str):
        _type_error(path, value, allowed)
    if len(value) > _MAX_PATH:
        _fail(path, value, allowed, reason="is too long")
    if any(part == ".." for part in value.split("/")):
        _fail(path, value, allowed, reason="contains a '..' segment")
    if any(ord(c) < 32 for c in value):
        _fail(path, value, allowed, reason="contains a control character")


# ==================================================================================================
# inputs and output storage
# ==================================================================================================
def _mask(value: str | None) -> str | None:
    return None if value is None else MASK


@dataclass(frozen=True)
class MediaInput:
    """``InputInfo`` of ProcessImage: where the source image is.

    ``type`` is ``COS``, ``URL``, ``AWS-S3`` or ``VOD``; ``object`` is the API's object path (a COS
    object as sent, normally with a leading ``/``). S3 secrets never appear in ``repr()``.
    """

    type: str
    bucket: str | None = None
    region: str | None = None
    object: str | None = None
    url: str | None = None
    s3_secret_id: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    sub_app_id: int | None = None
    vod_basic: int | None = None
    file_id: str | None = None

    @property
    def key(self) -> str | None:
        """The object key without a leading slash (COS/S3/VOD), ``None`` for a URL input."""
        return None if self.object is None else self.object.lstrip("/")

    @property
    def uri(self) -> str:
        """A readable URI: ``cos://bucket/key``, ``s3://bucket/key``, the URL, or ``vod://…``."""
        if self.type == "URL":
            return self.url or ""
        if self.type == "AWS-S3":
            return f"s3://{self.bucket}/{self.key or ''}"
        if self.type == "VOD":
            return f"vod://{self.sub_app_id or ''}/{self.file_id or self.key or ''}"
        return cos_uri(self.bucket or "", self.key or "", scheme="cos")

    def __repr__(self) -> str:
        parts = [f"type={self.type!r}"]
        for f in fields(self):
            if f.name == "type":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "s3_secret_key":
                value = MASK
            parts.append(f"{f.name}={value!r}")
        return f"MediaInput({', '.join(parts)})"

    # ---- API form --------------------------------------------------------------------------------
    def to_api(self) -> dict[str, Any]:
        """The ``MediaInputInfo`` dict (None fields omitted)."""
        if self.type == "COS":
            sub = {"Bucket": self.bucket, "Region": self.region, "Object": self.object}
            return {"Type": "COS", "CosInputInfo": _drop_none(sub)}
        if self.type == "URL":
            return {"Type": "URL", "UrlInputInfo": {"Url": self.url}}
        if self.type == "AWS-S3":
            sub = {
                "S3Bucket": self.bucket,
                "S3Region": self.region,
                "S3Object": self.object,
                "S3SecretId": self.s3_secret_id,
                "S3SecretKey": self.s3_secret_key,
            }
            return {"Type": "AWS-S3", "S3InputInfo": _drop_none(sub)}
        sub = {
            "Bucket": self.bucket,
            "Region": self.region,
            "Object": self.object,
            "SubAppId": self.sub_app_id,
            "VodBasic": self.vod_basic,
            "FileId": self.file_id,
        }
        return {"Type": "VOD", "VODInputInfo": _drop_none(sub)}

    @classmethod
    def from_api(cls, info: Any, path: str = "InputInfo") -> MediaInput:
        """Parse + validate a ``MediaInputInfo`` dict. Sub-objects of other types may be present (the
        service echoes an empty ``CosInputInfo`` for URL inputs) and are ignored."""
        allowed = "an object with Type (COS, URL, AWS-S3, VOD) and the matching *InputInfo"
        if info is None:
            _missing(path, allowed)
        if not isinstance(info, Mapping):
            _type_error(path, info, allowed)
        for key in info:
            if key not in ("Type", "CosInputInfo", "UrlInputInfo", "S3InputInfo", "VODInputInfo"):
                _fail(
                    _join(path, str(key)),
                    key,
                    allowed,
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        kind = info.get("Type")
        if kind is None:
            _missing(_join(path, "Type"), "one of " + ", ".join(INPUT_TYPES))
        _enum(*INPUT_TYPES)(kind, _join(path, "Type"))
        if kind == "COS":
            sub = _sub_object(info, "CosInputInfo", path, ("Bucket", "Region", "Object"), ())
            _check_bucket(sub["Bucket"], _join(path, "CosInputInfo.Bucket"))
            _check_region(sub["Region"], _join(path, "CosInputInfo.Region"))
            _check_object(sub["Object"], _join(path, "CosInputInfo.Object"))
            return cls("COS", bucket=sub["Bucket"], region=sub["Region"], object=sub["Object"])
        if kind == "URL":
            sub = _sub_object(info, "UrlInputInfo", path, ("Url",), ())
            _check_url(sub["Url"], _join(path, "UrlInputInfo.Url"))
            return cls("URL", url=sub["Url"])
        if kind == "AWS-S3":
            sub = _sub_object(
                info, "S3InputInfo", path, ("S3Bucket", "S3Region", "S3Object"), ("S3SecretId", "S3SecretKey")
            )
            _check_bucket(sub["S3Bucket"], _join(path, "S3InputInfo.S3Bucket"))
            _check_region(sub["S3Region"], _join(path, "S3InputInfo.S3Region"))
            _check_object(sub["S3Object"], _join(path, "S3InputInfo.S3Object"))
            return cls(
                "AWS-S3",
                bucket=sub["S3Bucket"],
                region=sub["S3Region"],
                object=sub["S3Object"],
                s3_secret_id=sub.get("S3SecretId"),
                s3_secret_key=sub.get("S3SecretKey"),
            )
        sub = _sub_object(
            info, "VODInputInfo", path, (), ("Bucket", "Region", "Object", "SubAppId", "VodBasic", "FileId")
        )
        vpath = _join(path, "VODInputInfo")
        if sub.get("SubAppId") is not None:
            _int(0)(sub["SubAppId"], _join(vpath, "SubAppId"))
        if sub.get("VodBasic") is not None:
            _int(choices=(0, 1))(sub["VodBasic"], _join(vpath, "VodBasic"))
        if sub.get("VodBasic") == 1:
            if not sub.get("FileId"):
                _missing(_join(vpath, "FileId"), "a VOD FileId when VodBasic is 1")
        elif not sub.get("Object"):
            _missing(_join(vpath, "Object"), "the VOD object path (or VodBasic=1 with a FileId)")
        return cls(
            "VOD",
            bucket=sub.get("Bucket"),
            region=sub.get("Region"),
            object=sub.get("Object"),
            sub_app_id=sub.get("SubAppId"),
            vod_basic=sub.get("VodBasic"),
            file_id=sub.get("FileId"),
        )


@dataclass(frozen=True)
class OutputStorage:
    """``OutputStorage`` (TaskOutputStorage) of ProcessImage. ``bucket``/``region`` may be ``None`` for
    COS (then they are inherited from the input). S3 secrets never appear in ``repr()``."""

    type: str
    bucket: str | None = None
    region: str | None = None
    s3_secret_id: str | None = None
    s3_secret_key: str | None = field(default=None, repr=False)
    sub_app_id: int | None = None
    vod_basic: int | None = None

    def __repr__(self) -> str:
        parts = [f"type={self.type!r}"]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "type" or value is None:
                continue
            if f.name == "s3_secret_key":
                value = MASK
            parts.append(f"{f.name}={value!r}")
        return f"OutputStorage({', '.join(parts)})"

    def to_api(self) -> dict[str, Any]:
        """The ``TaskOutputStorage`` dict (None fields omitted)."""
        if self.type == "COS":
            return {
                "Type": "COS",
                "CosOutputStorage": _drop_none({"Bucket": self.bucket, "Region": self.region}),
            }
        if self.type == "AWS-S3":
            sub = {
                "S3Bucket": self.bucket,
                "S3Region": self.region,
                "S3SecretId": self.s3_secret_id,
                "S3SecretKey": self.s3_secret_key,
            }
            return {"Type": "AWS-S3", "S3OutputStorage": _drop_none(sub)}
        sub = {
            "Bucket": self.bucket,
            "Region": self.region,
            "SubAppId": self.sub_app_id,
            "VodBasic": self.vod_basic,
        }
        return {"Type": "VOD", "VODOutputStorage": _drop_none(sub)}

    @classmethod
    def from_api(cls, info: Any, path: str = "OutputStorage") -> OutputStorage:
        """Parse + validate a ``TaskOutputStorage`` dict."""
        allowed = "an object with Type (COS, AWS-S3, VOD) and the matching *OutputStorage"
        if not isinstance(info, Mapping):
            _type_error(path, info, allowed)
        for key in info:
            if key not in ("Type", "CosOutputStorage", "S3OutputStorage", "VODOutputStorage"):
                _fail(
                    _join(path, str(key)),
                    key,
                    allowed,
                    reason="is not a known parameter",
                    code="InvalidParameter",
                )
        kind = info.get("Type")
        if kind is None:
            _missing(_join(path, "Type"), "one of " + ", ".join(OUTPUT_TYPES))
        _enum(*OUTPUT_TYPES)(kind, _join(path, "Type"))
        if kind == "COS":
            raw = info.get("CosOutputStorage")
            sub = {} if raw is None else _sub_object(info, "CosOutputStorage", path, (), ("Bucket", "Region"))
            if sub.get("Bucket"):
                _check_bucket(sub["Bucket"], _join(path, "CosOutputStorage.Bucket"))
            elif sub.get("Bucket") is not None:
                _string()(sub["Bucket"], _join(path, "CosOutputStorage.Bucket"))
            if sub.get("Region"):
                _check_region(sub["Region"], _join(path, "CosOutputStorage.Region"))
            elif sub.get("Region") is not None:
                _string()(sub["Region"], _join(path, "CosOutputStorage.Region"))
            return cls("COS", bucket=sub.get("Bucket"), region=sub.get("Region"))
        if kind == "AWS-S3":
            sub = _sub_object(
                info, "S3OutputStorage", path, ("S3Bucket", "S3Region"), ("S3SecretId", "S3SecretKey")
            )
            _check_bucket(sub["S3Bucket"], _join(path, "S3OutputStorage.S3Bucket"))
            _check_region(sub["S3Region"], _join(path, "S3OutputStorage.S3Region"))
            return cls(
                "AWS-S3",
                bucket=sub["S3Bucket"],
                region=sub["S3Region"],
                s3_secret_id=sub.get("S3SecretId"),
                s3_secret_key=sub.get("S3SecretKey"),
            )
        raw = info.get("VODOutputStorage")
        sub = (
            {}
            if raw is None
            else _sub_object(info, "VODOutputStorage", path, (), ("Bucket", "Region", "SubAppId", "VodBasic"))
        )
        vpath = _join(path, "VODOutputStorage")
        if sub.get("SubAppId") is not None:
            _int(0)(sub["SubAppId"], _join(vpath, "SubAppId"))
        if sub.get("VodBasic") is not None:
            _int(choices=(0, 1))(sub["VodBasic"], _join(vpath, "VodBasic"))
        return cls(
            "VOD",
            bucket=sub.get("Bucket"),
            region=sub.get("Region"),
            sub_app_id=sub.get("SubAppId"),
            vod_basic=sub.get("VodBasic"),
        )


_SECRET_KEYS = {"S3SecretKey"}


def _sub_object(
    info: Mapping[str, Any], name: str, path: str, required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, Any]:
    """Validate the ``name`` sub-object of an input/output dict: known keys, required strings present."""
    sub_path = _join(path, name)
    sub = info.get(name)
    known = required + optional
    if sub is None:
        _missing(sub_path, "an object with " + ", ".join(known))
    if not isinstance(sub, Mapping):
        _type_error(sub_path, sub, "an object with " + ", ".join(known))
    for key in sub:
        if key not in known:
            _fail(
                _join(sub_path, str(key)),
                key,
                "keys " + ", ".join(known),
                reason="is not a known parameter",
                code="InvalidParameter",
            )
    for key in required:
        if sub.get(key) is None or sub.get(key) == "":
            _missing(_join(sub_path, key), "a non-empty string")
    for key in known:
        value = sub.get(key)
        if value is not None and key not in ("SubAppId", "VodBasic") and not isinstance(value, str):
            shown = MASK if key in _SECRET_KEYS else value
            raise MpsValidationError(
                field=_join(sub_path, key),
                value=shown,
                allowed="a string",
                code="InvalidParameter",
                reason=f"has the wrong type ({type(value).__name__})",
            )
    return dict(sub)


_BUCKET_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")


def _check_bucket(value: Any, path: str) -> None:
    allowed = "a bucket name (letters, digits, '.', '_', '-'; at most 63 characters), e.g. photos-1250000000"
    _string(allow_empty=False)(value, path)
    if not _BUCKET_RE.fullmatch(value):
        _fail(path, value, allowed, reason="is not a valid bucket name")


def _check_region(value: Any, path: str) -> None:
    allowed = "a region id such as ap-guangzhou or us-east-1"
    _string(allow_empty=False)(value, path)
    if not _REGION_RE.fullmatch(value):
        _fail(path, value, allowed, reason="is not a valid region")


def _check_object(value: Any, path: str) -> None:
    allowed = "an object path such as /raw/a.png (at most 1024 characters, no '..' segments)"
    _string(allow_empty=False)(value, path)
    _check_path_text(value, path, allowed)
    if value.endswith("/") or not value.strip("/"):
        _fail(path, value, allowed, reason="names a directory, not an object")


def _check_url(value: Any, path: str) -> None:
    allowed = "an http:// or https:// URL with a host"
    _string(allow_empty=False)(value, path)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        _fail(path, value, allowed, reason="is not an http(s) URL")
    if any(c.isspace() for c in value):
        _fail(path, value, allowed, reason="contains whitespace")


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if v is not None}


# ==================================================================================================
# URIs
# ==================================================================================================
def parse_cos_uri(uri: str, field_name: str = "uri") -> tuple[str, str]:
    """``cos://bucket/prefix/`` (or ``cosn://``) → ``(bucket, key)``; the key has no leading slash
    and may be empty (a bucket root)."""
    allowed = "a COS URI cos://<bucket>/<key>"
    if not isinstance(uri, str):
        _type_error(field_name, uri, allowed)
    parts = urlsplit(uri.strip())
    if parts.scheme not in ("cos", "cosn") or not parts.netloc:
        _fail(field_name, uri, allowed, reason="is not a COS URI")
    _check_bucket(parts.netloc, field_name)
    key = uri.strip().split("://", 1)[1][len(parts.netloc) :].lstrip("/")
    if any(part == ".." for part in key.split("/")):
        _fail(field_name, uri, allowed, reason="contains a '..' segment")
    return parts.netloc, key


def cos_uri(bucket: str, key: str, scheme: str = "cosn") -> str:
    """``cosn://bucket/key`` (no leading slash on the key)."""
    return f"{scheme}://{bucket}/{key.lstrip('/')}"


def parse_uri(uri: str, region: str | None = None, field_name: str = "input") -> MediaInput:
    """A user URI → :class:`MediaInput`: ``cos://bucket/key`` and ``s3://bucket/key`` (both need
    ``region``), ``http(s)://…`` (URL input)."""
    allowed = "cos://<bucket>/<key> or s3://<bucket>/<key> (with region), or an http(s):// URL"
    if not isinstance(uri, str):
        _type_error(field_name, uri, allowed)
    text = uri.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        _check_url(text, field_name)
        return MediaInput("URL", url=text)
    if scheme in ("cos", "cosn", "s3"):
        rest = text.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket:
            _fail(field_name, uri, allowed, reason="has no bucket")
        _check_bucket(bucket, field_name)
        if not key.strip("/") or key.endswith("/"):
            _fail(field_name, uri, allowed, reason="has no object key")
        _check_path_text(key, field_name, allowed)
        if region is None or region == "":
            _missing("region", f"a region (e.g. ap-guangzhou) to go with {field_name}={uri!r}")
        _check_region(region, "region")
        if scheme == "s3":
            return MediaInput("AWS-S3", bucket=bucket, region=region, object="/" + key.lstrip("/"))
        return MediaInput("COS", bucket=bucket, region=region, object="/" + key.lstrip("/"))
    _fail(field_name, uri, allowed, reason="is not a supported URI")
    raise AssertionError  # unreachable


def parse_output_storage(
    value: str, region: str | None = None, field_name: str = "output_storage"
) -> tuple[OutputStorage, str | None]:
    """``cos://bucket`` / ``cos://bucket/prefix/`` / ``s3://bucket`` → (storage, ``/prefix/`` or None)."""
    allowed = "cos://<bucket> or cos://<bucket>/<prefix>/ (or s3://<bucket>)"
    if not isinstance(value, str):
        _type_error(field_name, value, allowed)
    text = value.strip()
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("cos", "cosn", "s3"):
        _fail(field_name, value, allowed, reason="is not a supported URI")
    bucket, _, prefix = text.split("://", 1)[1].partition("/")
    if not bucket:
        _fail(field_name, value, allowed, reason="has no bucket")
    _check_bucket(bucket, field_name)
    if region is not None:
        _check_region(region, "region")
    directory = None
    if prefix.strip("/"):
        _check_path_text(prefix, field_name, allowed)
        directory = "/" + prefix.strip("/") + "/"
    if scheme == "s3":
        if not region:
            _missing("region", f"a region to go with {field_name}={value!r}")
        return OutputStorage("AWS-S3", bucket=bucket, region=region), directory
    return OutputStorage("COS", bucket=bucket, region=region or None), directory


def expected_output_key(
    input_key: str,
    output_dir: str | None = None,
    output_path: str | None = None,
    format: str | None = None,
) -> str:
    """Predict the object key (no leading slash) MPS writes for an input, following the documented
    defaults: ``OutputPath`` absolute (``/…``) is used as is, relative is joined to ``OutputDir`` (or
    the input's directory); without ``OutputPath`` the name is ``{inputName}.{format}`` in
    ``OutputDir`` (or the input's directory). ``{inputName}`` and ``{format}`` variables are
    substituted; ``format`` ``None`` keeps the input's extension. ``jpeg`` gives ``.jpg``."""
    key = input_key.lstrip("/")
    directory, filename = posixpath.split(key)
    input_name, dot, input_ext = filename.rpartition(".")
    if not dot:
        input_name, input_ext = filename, ""
    if format:
        ext = OUTPUT_EXTENSIONS.get(format.lower(), format.lower())
    else:
        ext = OUTPUT_EXTENSIONS.get(input_ext.lower(), input_ext.lower()) if input_ext else ""
    if output_dir is not None and output_dir.strip("/"):
        directory = output_dir.strip("/")
    elif output_dir is not None:
        directory = ""
    if output_path:
        name = output_path.replace("{inputName}", input_name).replace("{format}", ext)
        if name.startswith("/"):
            return name.lstrip("/")
        return f"{directory}/{name}" if directory else name
    name = f"{input_name}.{ext}" if ext else input_name
    return f"{directory}/{name}" if directory else name


# ==================================================================================================
# the request
# ==================================================================================================
@dataclass
class ProcessImageRequest:
    """A validated ProcessImage request. Build it with :meth:`build` (user arguments) or
    :meth:`from_api` (an API body); send :meth:`to_api`."""

    input: MediaInput
    output_storage: OutputStorage | None = None
    output_dir: str | None = None
    output_path: str | None = None
    definition: int | None = None
    resource_id: str | None = None
    image_task: dict[str, Any] | None = None
    schedule_id: int | None = None
    add_on_parameter: dict[str, Any] | None = None
    std_ext_info: str | None = None

    _API_FIELDS = (
        ("InputInfo", "input"),
        ("OutputStorage", "output_storage"),
        ("OutputDir", "output_dir"),
        ("OutputPath", "output_path"),
        ("Definition", "definition"),
        ("ResourceId", "resource_id"),
        ("ImageTask", "image_task"),
        ("ScheduleId", "schedule_id"),
        ("AddOnParameter", "add_on_parameter"),
        ("StdExtInfo", "std_ext_info"),
    )

    def __repr__(self) -> str:
        parts = [
            f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if getattr(self, f.name) is not None
        ]
        text = f"ProcessImageRequest({', '.join(parts)})"
        return _mask_secrets_in_text(text, self)

    @property
    def output_format(self) -> str | None:
        """Lower-case ``EncodeConfig.Format`` (``None`` = keep the source format)."""
        return _output_format(self.image_task)

    def to_api(self) -> dict[str, Any]:
        """The API body (PascalCase, None fields omitted) for ``call_json`` / ``from_json_string``."""
        body: dict[str, Any] = {"InputInfo": self.input.to_api()}
        if self.output_storage is not None:
            body["OutputStorage"] = self.output_storage.to_api()
        for api_name, attr in self._API_FIELDS[2:]:
            value = getattr(self, attr)
            if value is not None:
                body[api_name] = copy.deepcopy(value)
        return body

    def to_json(self) -> str:
        """``json.dumps(self.to_api())``."""
        return json.dumps(self.to_api(), ensure_ascii=False, sort_keys=True)

    # ---- parsing -----------------------------------------------------------------------------------
    @classmethod
    def from_api(cls, body: Mapping[str, Any]) -> ProcessImageRequest:
        """Parse and validate an API-shaped ProcessImage body (what the SDK sends)."""
        if not isinstance(body, Mapping):
            _type_error("", body, "a JSON object")
        allowed_keys = [api for api, _ in cls._API_FIELDS]
        for key in body:
            if key not in allowed_keys:
                _fail(
                    str(key),
                    key,
                    "keys " + ", ".join(allowed_keys),
                    reason="is not a known parameter",
                    code="UnknownParameter",
                )
        if body.get("InputInfo") is None:
            _missing("InputInfo", "an object with Type (COS, URL, AWS-S3, VOD) and the matching *InputInfo")
        media = MediaInput.from_api(body["InputInfo"], "InputInfo")
        storage = None
        if body.get("OutputStorage") is not None:
            storage = OutputStorage.from_api(body["OutputStorage"], "OutputStorage")
        request = cls(
            input=media,
            output_storage=storage,
            output_dir=body.get("OutputDir"),
            output_path=body.get("OutputPath"),
            definition=body.get("Definition"),
            resource_id=body.get("ResourceId"),
            image_task=copy.deepcopy(dict(body["ImageTask"]))
            if isinstance(body.get("ImageTask"), Mapping)
            else body.get("ImageTask"),
            schedule_id=body.get("ScheduleId"),
            add_on_parameter=copy.deepcopy(dict(body["AddOnParameter"]))
            if isinstance(body.get("AddOnParameter"), Mapping)
            else body.get("AddOnParameter"),
            std_ext_info=body.get("StdExtInfo"),
        )
        request.validate(names={api: api for api, _ in cls._API_FIELDS})
        return request

    @classmethod
    def build(
        cls,
        *,
        input: Any,
        output_storage: Any = None,
        output_dir: str | None = None,
        output_path: str | None = None,
        image_task: Any = None,
        definition: Any = None,
        resource_id: str | None = None,
        schedule_id: Any = None,
        add_on_parameter: Any = None,
        std_ext_info: str | None = None,
        region: str | None = None,
    ) -> ProcessImageRequest:
        """Build from user arguments (after templating). ``input``: ``cos://bucket/key`` /
        ``s3://bucket/key`` (need ``region``), ``http(s)://…``, an API ``InputInfo`` dict (or its JSON)
        or a :class:`MediaInput`. ``output_storage``: ``cos://bucket`` (region = ``region`` or the
        input's), ``cos://bucket/prefix/`` (prefix → ``output_dir``), an API dict/JSON or an
        :class:`OutputStorage`. ``image_task``: API dict or its JSON. Errors name the argument."""
        if region is not None and region != "":
            _check_region(region, "region")
        else:
            region = None
        media = _build_input(input, region)

        storage: OutputStorage | None = None
        if isinstance(output_storage, str) and output_storage.strip().startswith("{"):
            output_storage = _json_arg(output_storage, "output_storage")
        if output_storage is None or output_storage == "":
            storage = None
        elif isinstance(output_storage, OutputStorage):
            storage = output_storage
        elif isinstance(output_storage, Mapping):
            storage = OutputStorage.from_api(output_storage, "output_storage")
        elif isinstance(output_storage, str):
            inherited = region or (media.region if media.type in ("COS", "AWS-S3") else None)
            storage, prefix_dir = parse_output_storage(output_storage, inherited, "output_storage")
            if storage.region is None and media.type != "COS":
                _missing("region", f"a region to go with output_storage={output_storage!r}")
            if prefix_dir is not None:
                if output_dir:
                    _fail(
                        "output_dir",
                        output_dir,
                        "an output prefix in output_storage or output_dir, not both",
                        reason="conflicts with the prefix in output_storage",
                        code="InvalidParameter",
                    )
                output_dir = prefix_dir
        else:
            _type_error(
                "output_storage", output_storage, "cos://<bucket>[/<prefix>/], or a TaskOutputStorage dict"
            )

        if isinstance(image_task, str):
            image_task = _json_arg(image_task, "image_task") if image_task.strip() else None
        if isinstance(add_on_parameter, str):
            add_on_parameter = (
                _json_arg(add_on_parameter, "add_on_parameter") if add_on_parameter.strip() else None
            )

        request = cls(
            input=media,
            output_storage=storage,
            output_dir=output_dir or None,
            output_path=output_path or None,
            definition=_int_arg(definition, "definition"),
            resource_id=resource_id or None,
            image_task=copy.deepcopy(dict(image_task)) if isinstance(image_task, Mapping) else image_task,
            schedule_id=_int_arg(schedule_id, "schedule_id"),
            add_on_parameter=copy.deepcopy(dict(add_on_parameter))
            if isinstance(add_on_parameter, Mapping)
            else add_on_parameter,
            std_ext_info=std_ext_info if std_ext_info != "" else None,
        )
        request.validate(
            names={
                "OutputDir": "output_dir",
                "OutputPath": "output_path",
                "Definition": "definition",
                "ResourceId": "resource_id",
                "ImageTask": "image_task",
                "ScheduleId": "schedule_id",
                "AddOnParameter": "add_on_parameter",
                "StdExtInfo": "std_ext_info",
            }
        )
        return request

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """Validate the scalar fields and ``ImageTask``; ``names`` maps API names to the names used in
        error messages (argument names for :meth:`build`)."""
        names = dict(names or {})

        def n(api: str) -> str:
            return names.get(api, api)

        if self.output_dir is not None:
            _check_path_text(
                self.output_dir,
                n("OutputDir"),
                "a directory path such as /enhanced/ (at most 1024 characters)",
            )
        if self.image_task is not None:
            validate_image_task(self.image_task, n("ImageTask"))
        if self.output_path is not None:
            allowed = "a path ending with .{format}"
            fmt = self.output_format
            if fmt:
                exts = _ACCEPTED_EXTENSIONS.get(fmt, (fmt,))
                allowed += " or " + " / ".join("." + e for e in exts)
            _check_path_text(self.output_path, n("OutputPath"), allowed)
            lowered = self.output_path.lower()
            ok = lowered.endswith(".{format}")
            if fmt:
                ok = ok or any(lowered.endswith("." + e) for e in _ACCEPTED_EXTENSIONS.get(fmt, (fmt,)))
            else:
                ok = ok or any(
                    lowered.endswith("." + e) for exts in _ACCEPTED_EXTENSIONS.values() for e in exts
                )
            if not ok or self.output_path.endswith("/"):
                _fail(n("OutputPath"), self.output_path, allowed, reason="has the wrong extension")
        if self.definition is not None:
            _int(0)(self.definition, n("Definition"))
        if self.schedule_id is not None:
            _int(0)(self.schedule_id, n("ScheduleId"))
        if self.resource_id is not None:
            _string(max_len=256)(self.resource_id, n("ResourceId"))
        if self.std_ext_info is not None:
            _string()(self.std_ext_info, n("StdExtInfo"))
        if self.add_on_parameter is not None:
            _dict_passthrough(self.add_on_parameter, n("AddOnParameter"))
        if self.input.type == "URL" and self.output_storage is None and self.schedule_id is None:
            _missing(
                n("OutputStorage") if "OutputStorage" in names else "output_storage",
                "an output storage: a URL input has no storage to inherit",
            )


def _mask_secrets_in_text(text: str, request: ProcessImageRequest) -> str:
    for secret in (
        request.input.s3_secret_key,
        request.output_storage.s3_secret_key if request.output_storage else None,
    ):
        if secret:
            text = text.replace(secret, MASK)
    return text


def _json_arg(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MpsValidationError(
            field=name,
            value=text,
            allowed="a dict or its JSON text",
            code="InvalidParameter",
            reason=f"is not valid JSON ({exc})",
        ) from None


def _int_arg(value: Any, name: str) -> int | None:
    """An integer argument that a template may have rendered as a digit string."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        _type_error(name, value, "an integer >= 0")
    return value


def _build_input(value: Any, region: str | None) -> MediaInput:
    if value is None or value == "":
        _missing("input", "cos://<bucket>/<key>, s3://<bucket>/<key>, an http(s):// URL or an InputInfo dict")
    if isinstance(value, MediaInput):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        value = _json_arg(value, "input")
    if isinstance(value, Mapping):
        return MediaInput.from_api(value, "input")
    if isinstance(value, str):
        return parse_uri(value, region, "input")
    _type_error(
        "input", value, "cos://<bucket>/<key>, s3://<bucket>/<key>, an http(s):// URL or an InputInfo dict"
    )
    raise AssertionError  # unreachable


# ==================================================================================================
# status / results
# ==================================================================================================
@dataclass(frozen=True)
class TaskOutput:
    """One output file of a finished task. ``path`` is the object key without a leading slash."""

    bucket: str | None
    region: str | None
    path: str | None
    uri: str | None = None
    signed_url: str | None = None
    content: str | None = None
    file_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskOutput:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    @classmethod
    def from_api(
        cls, output: Mapping[str, Any] | None, default_storage: Mapping[str, Any] | None = None
    ) -> TaskOutput | None:
        """From an ``ImageProcessTaskOutput`` dict; ``None`` when there is nothing to report."""
        if not output:
            return None
        raw_path = output.get("Path") or None
        storage = output.get("OutputStorage") or default_storage or {}
        cos = storage.get("CosOutputStorage") or {}
        s3 = storage.get("S3OutputStorage") or {}
        bucket = cos.get("Bucket") or s3.get("S3Bucket") or None
        region = cos.get("Region") or s3.get("S3Region") or None
        path = raw_path.lstrip("/") if raw_path else None
        uri = None
        if bucket and path:
            uri = f"s3://{bucket}/{path}" if storage.get("Type") == "AWS-S3" else cos_uri(bucket, path)
        result = cls(
            bucket=bucket,
            region=region,
            path=path,
            uri=uri,
            signed_url=output.get("SignedUrl") or None,
            content=output.get("Content") or None,
            file_id=output.get("FileId") or None,
        )
        if not any((result.path, result.signed_url, result.content, result.file_id)):
            return None
        return result


_CODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z0-9_]+)+|[A-Z][A-Za-z0-9]+")


def _looks_like_code(text: str | None) -> bool:
    return bool(text) and _CODE_RE.fullmatch(text or "") is not None


def _time(value: Any) -> str | None:
    if not isinstance(value, str) or value in _UNSET_TIMES:
        return None
    return value


@dataclass(frozen=True)
class SubTaskResult:
    """One ``ImageProcessTaskResult``: status ``PROCESSING|SUCCESS|FAIL``, error text, progress."""

    status: str | None
    err_msg: str | None = None
    message: str | None = None
    progress: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubTaskResult:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class ImageTaskStatus:
    """The state of an image task (``DescribeImageTaskDetail``).

    ``succeeded``: ``FINISH`` and ``ErrCode`` in (0, None) and ``ErrMsg`` empty and no sub-result is
    ``FAIL`` (or still ``PROCESSING``) or carries an ``ErrMsg``; an empty result set counts as success
    with no outputs, and a sub-result without any ``Status`` is judged by its ``ErrMsg`` alone (null
    tolerance). ``failed``: ``FINISH`` and not succeeded. ``error_code``: ``ErrMsg`` when it is a code (``FailedOperation.Xxx``), else a failing
    sub-result's ``ErrMsg`` code, else ``str(ErrCode)`` when non-zero, else ``"TaskFailed"`` (a sub-result
    failed without a code). ``error_message``: ``Message``, else the failing sub-result's
    ``Message``/``ErrMsg``, else ``ErrMsg`` when it is prose.
    """

    task_id: str | None
    state: str
    outputs: tuple[TaskOutput, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    request_id: str | None = None
    create_time: str | None = None
    finish_time: str | None = None
    progress: int | None = None
    err_code: int | None = None
    results: tuple[SubTaskResult, ...] = ()
    #: The ``ImageTask`` the service echoes back, as canonical JSON (``None`` when not echoed). Used to
    #: tell our task from another request with the same input (:meth:`conflicts_with`); not part of
    #: :meth:`to_dict` (XCom and events stay small).
    image_task: str | None = field(default=None, compare=False, repr=False)

    @property
    def done(self) -> bool:
        return self.state == "FINISH"

    @property
    def succeeded(self) -> bool:
        return self.done and self.error_code is None

    @property
    def failed(self) -> bool:
        return self.done and not self.succeeded

    @classmethod
    def from_api(cls, response: Mapping[str, Any] | None, task_id: str | None = None) -> ImageTaskStatus:
        """From the ``Response`` object of DescribeImageTaskDetail (or the whole ``{"Response": …}``);
        tolerant of missing/null fields everywhere."""
        resp: Mapping[str, Any] = response or {}
        if "Response" in resp and isinstance(resp.get("Response"), Mapping):
            resp = resp["Response"]
        state = resp.get("Status") or "WAITING"
        if state not in TASK_STATES:
            state = str(state).upper() if str(state).upper() in TASK_STATES else "PROCESSING"
        err_code_raw = resp.get("ErrCode")
        err_code = (
            err_code_raw if isinstance(err_code_raw, int) and not isinstance(err_code_raw, bool) else None
        )
        err_msg = resp.get("ErrMsg") or None
        message = resp.get("Message") or None

        # Outputs without their own OutputStorage were written next to a COS input (the API's default).
        default_storage = None
        input_info = resp.get("InputInfo") or {}
        if isinstance(input_info, Mapping) and input_info.get("Type") == "COS":
            cos_in = input_info.get("CosInputInfo") or {}
            if isinstance(cos_in, Mapping) and cos_in.get("Bucket"):
                default_storage = {
                    "Type": "COS",
                    "CosOutputStorage": {"Bucket": cos_in.get("Bucket"), "Region": cos_in.get("Region")},
                }
        results_raw = resp.get("ImageProcessTaskResultSet") or []
        results: list[SubTaskResult] = []
        outputs: list[TaskOutput] = []
        for item in results_raw:
            if not isinstance(item, Mapping):
                continue
            progress = item.get("Progress")
            results.append(
                SubTaskResult(
                    status=item.get("Status") or None,
                    err_msg=item.get("ErrMsg") or None,
                    message=item.get("Message") or None,
                    progress=progress
                    if isinstance(progress, int) and not isinstance(progress, bool)
                    else None,
                )
            )
            out = TaskOutput.from_api(item.get("Output"), default_storage)
            if out is not None:
                outputs.append(out)

        error_code: str | None = None
        error_message: str | None = None
        if state == "FINISH":
            # A sub-result with no Status at all (null-tolerance) is judged by its ErrMsg only.
            failing = [r for r in results if r.status in ("FAIL", "PROCESSING") or r.err_msg]
            has_error = bool(err_msg) or (err_code not in (0, None)) or bool(failing)
            if has_error:
                sub = failing[0] if failing else None
                if _looks_like_code(err_msg):
                    error_code = err_msg
                elif sub is not None and _looks_like_code(sub.err_msg):
                    error_code = sub.err_msg
                elif err_code not in (0, None):
                    error_code = str(err_code)
                else:
                    error_code = "TaskFailed"
                candidates = [
                    message,
                    sub.message if sub else None,
                    None if _looks_like_code(err_msg) else err_msg,
                    sub.err_msg if sub and not _looks_like_code(sub.err_msg) else None,
                ]
                error_message = next((c for c in candidates if c), None)
                if error_message is None:
                    if sub is not None and sub.status != "SUCCESS":
                        error_message = f"sub-task status {sub.status or 'missing'}"
                    else:
                        error_message = f"task finished with error {error_code}"

        if state == "FINISH":
            progress_value: int | None = 100
        else:
            values = [r.progress for r in results if r.progress is not None]
            progress_value = min(values) if values else (0 if state == "WAITING" else None)

        return cls(
            task_id=task_id if task_id is not None else (resp.get("TaskId") or None),
            state=state,
            outputs=tuple(outputs),
            error_code=error_code,
            error_message=error_message,
            request_id=resp.get("RequestId") or None,
            create_time=_time(resp.get("CreateTime")),
            finish_time=_time(resp.get("FinishTime")),
            progress=progress_value,
            err_code=err_code,
            results=tuple(results),
            image_task=(
                json.dumps(resp["ImageTask"], sort_keys=True, separators=(",", ":"))
                if isinstance(resp.get("ImageTask"), Mapping)
                else None
            ),
        )

    def conflicts_with(
        self,
        *,
        image_task: Mapping[str, Any] | None,
        output_bucket: str | None = None,
        output_key: str | None = None,
        output_dir: str | None = None,
    ) -> str | None:
        """Why this task cannot be the one a request with these values created, or ``None``.

        Reconciliation matches listed tasks by input; another pipeline processing the same image
        (thumbnails next to enhanced copies) creates tasks with the same input. Two proofs tell them
        apart: the echoed ``ImageTask`` contradicts ours (:func:`image_task_conflicts`), or the task
        finished with outputs none of which is at our output key (or under our output directory).
        Fields the service did not return never conflict (null tolerance): no proof, no conflict.
        """
        if self.image_task is not None and image_task_conflicts(image_task, json.loads(self.image_task)):
            return "its ImageTask differs from ours"
        paths = [(o.bucket, (o.path or "").lstrip("/")) for o in self.outputs if o.path]
        if paths and (output_key or output_dir):
            want_key = (output_key or "").lstrip("/")
            want_dir = (output_dir or "").strip("/")

            def ours(bucket: str | None, path: str) -> bool:
                if output_bucket and bucket and bucket != output_bucket:
                    return False
                if want_key:
                    return path == want_key
                return path.startswith(want_dir + "/") if want_dir else "/" not in path

            if not any(ours(b, p) for b, p in paths):
                return f"its outputs ({', '.join(p for _, p in paths)}) are not where ours go"
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (XCom, trigger events); :meth:`from_dict` inverts it."""
        return {
            "task_id": self.task_id,
            "state": self.state,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "outputs": [o.to_dict() for o in self.outputs],
            "error_code": self.error_code,
            "error_message": self.error_message,
            "request_id": self.request_id,
            "create_time": self.create_time,
            "finish_time": self.finish_time,
            "progress": self.progress,
            "err_code": self.err_code,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageTaskStatus:
        return cls(
            task_id=data.get("task_id"),
            state=data.get("state") or "WAITING",
            outputs=tuple(TaskOutput.from_dict(o) for o in data.get("outputs") or ()),
            error_code=data.get("error_code"),
            error_message=data.get("error_message"),
            request_id=data.get("request_id"),
            create_time=data.get("create_time"),
            finish_time=data.get("finish_time"),
            progress=data.get("progress"),
            err_code=data.get("err_code"),
            results=tuple(SubTaskResult.from_dict(r) for r in data.get("results") or ()),
        )


@dataclass(frozen=True)
class ImageTaskInfo:
    """One row of ``DescribeImageTasks.TaskSet``."""

    task_id: str
    status: str | None = None
    create_time: str | None = None
    begin_process_time: str | None = None
    finish_time: str | None = None
    sub_task_has_failed: bool | None = None
    input: str | None = None

    @classmethod
    def from_api(cls, row: Mapping[str, Any]) -> ImageTaskInfo:
        row = row or {}
        failed = row.get("SubTaskHasFailed")
        return cls(
            task_id=row.get("TaskId") or "",
            status=row.get("Status") or None,
            create_time=_time(row.get("CreateTime")),
            begin_process_time=_time(row.get("BeginProcessTime")),
            finish_time=_time(row.get("FinishTime")),
            sub_task_has_failed=failed if isinstance(failed, bool) else None,
            input=row.get("Input") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageTaskInfo:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


# --------------------------------------------------------------------------------------------------
# reconciliation: which input does a listed task carry?
# --------------------------------------------------------------------------------------------------
def _info_location(info: Mapping[str, Any]) -> tuple[str | None, str | None, str] | None:
    """(kind, bucket, key-or-url) of an ``InputInfo`` object; None when it names nothing."""
    kind = str(info.get("Type") or "").upper() or None
    cos = info.get("CosInputInfo") if isinstance(info.get("CosInputInfo"), Mapping) else {}
    if kind in (None, "COS") and cos.get("Object"):
        return "COS", cos.get("Bucket") or None, str(cos["Object"]).lstrip("/")
    if kind == "URL":
        url = (
            (info.get("UrlInputInfo") or {}).get("Url")
            if isinstance(info.get("UrlInputInfo"), Mapping)
            else None
        )
        return ("URL", None, str(url)) if url else None
    if kind == "AWS-S3":
        s3 = info.get("S3InputInfo") if isinstance(info.get("S3InputInfo"), Mapping) else {}
        if s3.get("S3Object"):
            return "AWS-S3", s3.get("S3Bucket") or None, str(s3["S3Object"]).lstrip("/")
        return None
    if kind == "VOD":
        vod = info.get("VODInputInfo") if isinstance(info.get("VODInputInfo"), Mapping) else {}
        name = vod.get("Object") or vod.get("FileId")
        return ("VOD", vod.get("Bucket") or None, str(name).lstrip("/")) if name else None
    return None


def parse_listed_input(listed: Any) -> tuple[str | None, str | None, str] | None:
    """``(kind, bucket, key)`` named by a DescribeImageTasks ``Input`` value; ``None`` if it names nothing.

    The SDK types ``Input`` as a free-form string. Forms understood (the one place both the hook's
    ProcessImage reconciliation and the batch operator's retry adoption read it):

    * the ``InputInfo`` object, or that object as JSON (what the emulator sends): exact fields;
    * ``cos://bucket/key`` / ``cosn://bucket/key`` / ``s3://bucket/key``: the key verbatim (``#``,
      ``?`` and ``%`` are part of COS keys, not URL syntax);
    * an ``http(s)://`` URL: percent-decoded path; the bucket from a ``<bucket>.cos.…`` host, kind
      ``COS`` then, else kind ``URL`` with the URL as given;
    * a bare ``/key``: kind and bucket unknown (``None``).

    ``kind`` is ``COS``, ``URL``, ``AWS-S3``, ``VOD`` or ``None`` (unknown).
    """
    from urllib.parse import unquote

    if listed in (None, ""):
        return None
    if isinstance(listed, Mapping):
        return _info_location(listed)
    text = str(listed).strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except ValueError:
            return None
        return _info_location(info) if isinstance(info, Mapping) else None
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in ("cos", "cosn", "s3"):
        bucket, _, key = rest.partition("/")
        return ("AWS-S3" if scheme == "s3" else "COS"), bucket or None, key.lstrip("/")
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        host = parts.hostname or ""
        if ".cos." in host:
            return "COS", host.split(".", 1)[0], unquote(parts.path).lstrip("/")
        return "URL", None, text
    if sep:
        return None
    return None, None, text.lstrip("/")


def listed_input_matches(listed: Any, kind: str | None, bucket: str | None, key: str) -> bool | None:
    """Whether a listed ``Input`` names the input ``(kind, bucket, key)``; None when it names nothing.

    Unknown parts (a bare path has no bucket or kind) do not contradict. A ``cos://`` key is compared
    verbatim and, failing that, percent-decoded (a service might encode it); URLs are compared
    percent-decoded.
    """
    from urllib.parse import unquote

    parsed = parse_listed_input(listed)
    if parsed is None:
        return None
    listed_kind, listed_bucket, listed_key = parsed
    if kind == "URL" or listed_kind == "URL":
        return kind == listed_kind and unquote(listed_key) == unquote(key)
    if listed_kind is not None and kind is not None and listed_kind != kind:
        return False
    if listed_key != key and unquote(listed_key) != key:
        return False
    return listed_bucket is None or bucket is None or listed_bucket == bucket


def request_input(body: Mapping[str, Any]) -> tuple[str | None, str | None, str] | None:
    """``(kind, bucket, key-or-url)`` of a ProcessImage body's ``InputInfo`` (the API-shaped dict)."""
    info = body.get("InputInfo")
    return _info_location(info) if isinstance(info, Mapping) else None


def _blank(value: Any) -> bool:
    """A value that asks for nothing: null, empty, zero, False, ``"OFF"`` (or containers of those)."""
    if value is None or value is False or value == "" or (isinstance(value, (int, float)) and value == 0):
        return True
    if isinstance(value, str):
        return value.strip().upper() == "OFF"
    if isinstance(value, Mapping):
        return all(_blank(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_blank(v) for v in value)
    return False


def image_task_conflicts(ours: Any, echoed: Any) -> bool:
    """True when an echoed ``ImageTask`` definitely contradicts ours.

    Tolerant of what a service adds or normalises: a field present on one side only conflicts only
    when it asks for something (not null/empty/0/``"OFF"``); strings compare case-insensitively
    (``jpeg`` = ``JPEG``), numbers by value (``80`` = ``80.0``).
    """
    if isinstance(ours, Mapping) or isinstance(echoed, Mapping):
        if not isinstance(ours, Mapping) or not isinstance(echoed, Mapping):
            return not (_blank(ours) and _blank(echoed))
        return any(image_task_conflicts(ours.get(k), echoed.get(k)) for k in set(ours) | set(echoed))
    if ours is None or echoed is None:
        return not _blank(echoed if ours is None else ours)
    if isinstance(ours, (list, tuple)) or isinstance(echoed, (list, tuple)):
        if not isinstance(ours, (list, tuple)) or not isinstance(echoed, (list, tuple)):
            return True
        if len(ours) != len(echoed):
            return not (_blank(ours) and _blank(echoed))
        return any(image_task_conflicts(a, b) for a, b in zip(ours, echoed, strict=True))
    if isinstance(ours, str) and isinstance(echoed, str):
        return ours.strip().lower() != echoed.strip().lower()
    if isinstance(ours, bool) or isinstance(echoed, bool):
        return ours != echoed
    if isinstance(ours, (int, float)) and isinstance(echoed, (int, float)):
        return float(ours) != float(echoed)
    return str(ours) != str(echoed)
