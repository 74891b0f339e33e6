"""ProcessImage request model: validation (malformed table), round trips, URIs, output-key prediction."""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from typing import Any

import pytest

from airflow_mps.errors import MpsValidationError
from airflow_mps.models import (
    OUTPUT_EXTENSIONS,
    MediaInput,
    OutputStorage,
    ProcessImageRequest,
    cos_uri,
    expected_output_key,
    parse_cos_uri,
    parse_uri,
    validate_image_task,
)

REGION = "ap-guangzhou"
BUCKET = "photos-1250000000"
SRC = f"cos://{BUCKET}/raw/dt=2026-11-01/cat.png"

# The official example body of mps-api.md §1 ("发起图片增强").
OFFICIAL_BODY = {
    "InputInfo": {
        "Type": "COS",
        "CosInputInfo": {"Bucket": "bucket-test", "Region": "ap-shanghai", "Object": "/image/test.png"},
    },
    "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": "bucket-test", "Region": "ap-shanghai"}},
    "ImageTask": {
        "EncodeConfig": {"Format": "jpeg", "Quality": 75},
        "EnhanceConfig": {"SuperResolution": {"Switch": "ON"}},
    },
}
ERASE_BODY = {
    "InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": "https://example.com/a.jpg"}},
    "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": "bucket-test", "Region": "ap-shanghai"}},
    "ImageTask": {
        "EraseConfig": {
            "ImageEraseLogo": {
                "Switch": "ON",
                "ImageAreaBoxes": [{"Type": "logo", "AreaCoordSet": [101, 85, 111, 95]}],
            }
        }
    },
}
FULL_TASK: dict[str, Any] = {
    "EncodeConfig": {"Format": "WebP", "Quality": 90},
    "EnhanceConfig": {
        "SuperResolution": {"Switch": "ON", "Type": "hq", "Size": 2},
        "AdvancedSuperResolutionConfig": {
            "Switch": "OFF",
            "Type": "ultra",
            "Mode": "fixed",
            "Percent": 1.5,
            "Width": 4096,
            "Height": 1,
            "LongSide": 2000,
            "ShortSide": 1000,
        },
        "Denoise": {"Switch": "ON", "Type": "strong"},
        "ImageQualityEnhance": {"Switch": "ON", "Type": "normal"},
        "ColorEnhance": {"Switch": "ON", "Type": "weak"},
        "SharpEnhance": {"Switch": "ON", "Intensity": 0.5},
        "FaceEnhance": {"Switch": "ON", "Intensity": 1},
        "LowLightEnhance": {"Switch": "ON", "Type": "normal"},
    },
    "EraseConfig": {
        "ImageEraseLogo": {
            "Switch": "ON",
            "ImageAreaBoxes": [
                {"Type": "text", "BoundingBox": [0.1, 0.1, 0.3, 0.3], "BoundingBoxUnitType": 1},
                {"Type": "logo", "AreaCoordSet": [0, 0, 4096, 4096]},
            ],
            "DetectTypes": ["logo", "text", "watermark"],
            "EraseStrength": "mid",
            "WatermarkType": "auto_detect_type",
        }
    },
    "BlindWatermarkConfig": {
        "AddBlindWatermark": {"Switch": "ON", "EmbedInfo": {"EmbedText": "aGVsbG8td29ybGQh"}},  # 12 bytes
    },
    "BeautyConfig": {
        "BeautyEffectItems": [
            {"Type": "Smooth", "Switch": "ON", "Value": 40, "ResourcePath": "", "ExtInfo": ""}
        ],
        "BeautyFilterItems": [{"Type": "Dongjing", "Value": -100}],
        "Type": "auto",
    },
    "TransformConfig": {
        "ImageResize": {"Switch": "ON", "Mode": "pad", "Percent": 0.1, "Width": 16384, "Height": 1}
    },
    "AiCutoutConfig": {"Anything": ["goes", 1]},
}


def _body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(OFFICIAL_BODY)
    for key, value in changes.items():
        if value is _DELETE:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DELETE = object()


def _task(**sections: Any) -> dict[str, Any]:
    return _body(ImageTask=sections)


# ------------------------------------------------------------------------------------------------
# malformed API bodies (from_api, the emulator's path): (id, body, field in message, allowed fragment, code)
# ------------------------------------------------------------------------------------------------
MALFORMED_API = [
    ("missing-input", _body(InputInfo=_DELETE), "InputInfo", "Type (COS, URL", "MissingParameter"),
    ("input-not-dict", _body(InputInfo=["COS"]), "InputInfo", "an object", "InvalidParameter"),
    (
        "input-bad-type",
        _body(InputInfo={"Type": "FTP"}),
        "InputInfo.Type",
        "COS, URL, AWS-S3, VOD",
        "InvalidParameterValue",
    ),
    (
        "input-no-type",
        _body(InputInfo={"CosInputInfo": {}}),
        "InputInfo.Type",
        "COS, URL",
        "MissingParameter",
    ),
    (
        "cos-missing-bucket",
        _body(InputInfo={"Type": "COS", "CosInputInfo": {"Region": "ap-shanghai", "Object": "/a.png"}}),
        "InputInfo.CosInputInfo.Bucket",
        "non-empty",
        "MissingParameter",
    ),
    (
        "cos-missing-object",
        _body(InputInfo={"Type": "COS", "CosInputInfo": {"Bucket": "b-1", "Region": "ap-shanghai"}}),
        "InputInfo.CosInputInfo.Object",
        "non-empty",
        "MissingParameter",
    ),
    (
        "cos-missing-sub",
        _body(InputInfo={"Type": "COS"}),
        "InputInfo.CosInputInfo",
        "Bucket, Region, Object",
        "MissingParameter",
    ),
    (
        "cos-bad-region",
        _body(
            InputInfo={
                "Type": "COS",
                "CosInputInfo": {"Bucket": "b-1", "Region": "Shanghai!", "Object": "/a.png"},
            }
        ),
        "InputInfo.CosInputInfo.Region",
        "ap-guangzhou",
        "InvalidParameterValue",
    ),
    (
        "cos-object-dotdot",
        _body(
            InputInfo={
                "Type": "COS",
                "CosInputInfo": {"Bucket": "b-1", "Region": "ap-shanghai", "Object": "/a/../b.png"},
            }
        ),
        "InputInfo.CosInputInfo.Object",
        "no '..' segments",
        "InvalidParameterValue",
    ),
    (
        "cos-object-int",
        _body(
            InputInfo={"Type": "COS", "CosInputInfo": {"Bucket": "b-1", "Region": "ap-shanghai", "Object": 5}}
        ),
        "InputInfo.CosInputInfo.Object",
        "a string",
        "InvalidParameter",
    ),
    (
        "url-ftp",
        _body(InputInfo={"Type": "URL", "UrlInputInfo": {"Url": "ftp://host/a.png"}}),
        "InputInfo.UrlInputInfo.Url",
        "http:// or https://",
        "InvalidParameterValue",
    ),
    (
        "url-missing",
        _body(InputInfo={"Type": "URL", "UrlInputInfo": {}}),
        "InputInfo.UrlInputInfo.Url",
        "non-empty",
        "MissingParameter",
    ),
    (
        "s3-missing-region",
        _body(InputInfo={"Type": "AWS-S3", "S3InputInfo": {"S3Bucket": "b", "S3Object": "/a.png"}}),
        "InputInfo.S3InputInfo.S3Region",
        "non-empty",
        "MissingParameter",
    ),
    (
        "input-unknown-sub-key",
        _body(
            InputInfo={
                "Type": "COS",
                "CosInputInfo": {"Bucket": "b-1", "Region": "ap-shanghai", "Object": "/a", "Key": 1},
            }
        ),
        "InputInfo.CosInputInfo.Key",
        "Bucket, Region, Object",
        "InvalidParameter",
    ),
    (
        "output-bad-type",
        _body(OutputStorage={"Type": "FTP"}),
        "OutputStorage.Type",
        "COS, AWS-S3, VOD",
        "InvalidParameterValue",
    ),
    ("output-list", _body(OutputStorage=[]), "OutputStorage", "an object", "InvalidParameter"),
    ("outputdir-int", _body(OutputDir=7), "OutputDir", "a directory path", "InvalidParameter"),
    (
        "outputdir-dotdot",
        _body(OutputDir="/a/../../etc/"),
        "OutputDir",
        "a directory path",
        "InvalidParameterValue",
    ),
    (
        "outputdir-too-long",
        _body(OutputDir="/" + "a" * 1100 + "/"),
        "OutputDir",
        "1024",
        "InvalidParameterValue",
    ),
    (
        "outputpath-literal-ext",
        _body(OutputPath="/out/x.jpg"),
        "OutputPath",
        "ending with .{format}",
        "InvalidParameterValue",
    ),
    (
        "outputpath-unknown-variable",
        _body(OutputPath="/out/{inputname}.{format}"),
        "OutputPath",
        "{inputName}, {inputFormat}, {format}, {definition}, {number}",
        "InvalidParameterValue",
    ),
    ("outputpath-no-ext", _body(OutputPath="/out/x"), "OutputPath", ".{format}", "InvalidParameterValue"),
    ("definition-negative", _body(Definition=-1), "Definition", "an integer >= 0", "InvalidParameterValue"),
    ("definition-str", _body(Definition="10"), "Definition", "an integer", "InvalidParameter"),
    ("definition-bool", _body(Definition=True), "Definition", "an integer", "InvalidParameter"),
    ("schedule-float", _body(ScheduleId=30000.0), "ScheduleId", "an integer", "InvalidParameter"),
    ("stdextinfo-dict", _body(StdExtInfo={"a": 1}), "StdExtInfo", "a string", "InvalidParameter"),
    ("addon-list", _body(AddOnParameter=[1]), "AddOnParameter", "an object", "InvalidParameter"),
    ("unknown-top-key", _body(SessionId="s-1"), "SessionId", "InputInfo", "UnknownParameter"),
    ("imagetask-list", _body(ImageTask=[]), "ImageTask", "EncodeConfig", "InvalidParameter"),
    ("imagetask-typo", _task(EnhanceConfg={}), "ImageTask.EnhanceConfg", "EnhanceConfig", "InvalidParameter"),
    (
        "format-gif",
        _task(EncodeConfig={"Format": "GIF"}),
        "ImageTask.EncodeConfig.Format",
        "JPEG, PNG, BMP, WebP",
        "InvalidParameterValue",
    ),
    (
        "format-int",
        _task(EncodeConfig={"Format": 1}),
        "ImageTask.EncodeConfig.Format",
        "JPEG, PNG",
        "InvalidParameter",
    ),
    (
        "quality-0",
        _task(EncodeConfig={"Quality": 0}),
        "ImageTask.EncodeConfig.Quality",
        "an integer from 1 to 100",
        "InvalidParameterValue",
    ),
    (
        "quality-101",
        _task(EncodeConfig={"Quality": 101}),
        "ImageTask.EncodeConfig.Quality",
        "1 to 100",
        "InvalidParameterValue",
    ),
    (
        "quality-str",
        _task(EncodeConfig={"Quality": "80"}),
        "ImageTask.EncodeConfig.Quality",
        "1 to 100",
        "InvalidParameter",
    ),
    (
        "quality-bool",
        _task(EncodeConfig={"Quality": True}),
        "ImageTask.EncodeConfig.Quality",
        "1 to 100",
        "InvalidParameter",
    ),
    (
        "quality-float",
        _task(EncodeConfig={"Quality": 80.5}),
        "ImageTask.EncodeConfig.Quality",
        "1 to 100",
        "InvalidParameter",
    ),
    (
        "encode-unknown",
        _task(EncodeConfig={"Qualty": 80}),
        "ImageTask.EncodeConfig.Qualty",
        "Format, Quality",
        "InvalidParameter",
    ),
    (
        "switch-lower",
        _task(EnhanceConfig={"SuperResolution": {"Switch": "on"}}),
        "ImageTask.EnhanceConfig.SuperResolution.Switch",
        "ON, OFF",
        "InvalidParameterValue",
    ),
    (
        "sr-type",
        _task(EnhanceConfig={"SuperResolution": {"Type": "mq"}}),
        "ImageTask.EnhanceConfig.SuperResolution.Type",
        "lq, hq",
        "InvalidParameterValue",
    ),
    (
        "sr-size-4",
        _task(EnhanceConfig={"SuperResolution": {"Size": 4}}),
        "ImageTask.EnhanceConfig.SuperResolution.Size",
        "only 2",
        "InvalidParameterValue",
    ),
    (
        "asr-type",
        _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"Type": "mega"}}),
        "ImageTask.EnhanceConfig.AdvancedSuperResolutionConfig.Type",
        "standard, super, ultra",
        "InvalidParameterValue",
    ),
    (
        "asr-mode",
        _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"Mode": "lfit"}}),
        "ImageTask.EnhanceConfig.AdvancedSuperResolutionConfig.Mode",
        "percent, aspect, fixed",
        "InvalidParameterValue",
    ),
    (
        "asr-percent-0",
        _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"Percent": 0}}),
        "ImageTask.EnhanceConfig.AdvancedSuperResolutionConfig.Percent",
        "a number > 0",
        "InvalidParameterValue",
    ),
    (
        "asr-width-4097",
        _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"Width": 4097}}),
        "ImageTask.EnhanceConfig.AdvancedSuperResolutionConfig.Width",
        "0 to 4096",
        "InvalidParameterValue",
    ),
    (
        "asr-longside-negative",
        _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"LongSide": -1}}),
        "ImageTask.EnhanceConfig.AdvancedSuperResolutionConfig.LongSide",
        "0 to 4096",
        "InvalidParameterValue",
    ),
    (
        "denoise-type",
        _task(EnhanceConfig={"Denoise": {"Type": "normal"}}),
        "ImageTask.EnhanceConfig.Denoise.Type",
        "weak, strong",
        "InvalidParameterValue",
    ),
    (
        "iqe-type",
        _task(EnhanceConfig={"ImageQualityEnhance": {"Type": "max"}}),
        "ImageTask.EnhanceConfig.ImageQualityEnhance.Type",
        "weak, normal, strong",
        "InvalidParameterValue",
    ),
    (
        "color-type",
        _task(EnhanceConfig={"ColorEnhance": {"Type": "STRONG"}}),
        "ImageTask.EnhanceConfig.ColorEnhance.Type",
        "weak, normal, strong",
        "InvalidParameterValue",
    ),
    (
        "sharp-intensity-high",
        _task(EnhanceConfig={"SharpEnhance": {"Intensity": 1.5}}),
        "ImageTask.EnhanceConfig.SharpEnhance.Intensity",
        "a number from 0.0 to 1.0",
        "InvalidParameterValue",
    ),
    (
        "face-intensity-negative",
        _task(EnhanceConfig={"FaceEnhance": {"Intensity": -0.1}}),
        "ImageTask.EnhanceConfig.FaceEnhance.Intensity",
        "0.0 to 1.0",
        "InvalidParameterValue",
    ),
    (
        "face-intensity-str",
        _task(EnhanceConfig={"FaceEnhance": {"Intensity": "0.5"}}),
        "ImageTask.EnhanceConfig.FaceEnhance.Intensity",
        "0.0 to 1.0",
        "InvalidParameter",
    ),
    (
        "sharp-intensity-nan",
        _task(EnhanceConfig={"SharpEnhance": {"Intensity": float("nan")}}),
        "ImageTask.EnhanceConfig.SharpEnhance.Intensity",
        "0.0 to 1.0",
        "InvalidParameterValue",
    ),
    (
        "lowlight-type",
        _task(EnhanceConfig={"LowLightEnhance": {"Type": "strong"}}),
        "ImageTask.EnhanceConfig.LowLightEnhance.Type",
        "one of normal",
        "InvalidParameterValue",
    ),
    (
        "enhance-list-for-dict",
        _task(EnhanceConfig={"Denoise": ["weak"]}),
        "ImageTask.EnhanceConfig.Denoise",
        "Switch, Type",
        "InvalidParameter",
    ),
    (
        "resize-mode",
        _task(TransformConfig={"ImageResize": {"Mode": "stretch"}}),
        "ImageTask.TransformConfig.ImageResize.Mode",
        "percent, mfit, lfit, fill, pad, fixed",
        "InvalidParameterValue",
    ),
    (
        "resize-percent-small",
        _task(TransformConfig={"ImageResize": {"Percent": 0.05}}),
        "ImageTask.TransformConfig.ImageResize.Percent",
        "0.1 to 10.0",
        "InvalidParameterValue",
    ),
    (
        "resize-percent-large",
        _task(TransformConfig={"ImageResize": {"Percent": 10.5}}),
        "ImageTask.TransformConfig.ImageResize.Percent",
        "0.1 to 10.0",
        "InvalidParameterValue",
    ),
    (
        "resize-height-16385",
        _task(TransformConfig={"ImageResize": {"Height": 16385}}),
        "ImageTask.TransformConfig.ImageResize.Height",
        "1 to 16384",
        "InvalidParameterValue",
    ),
    (
        "erase-17-boxes",
        _task(
            EraseConfig={
                "ImageEraseLogo": {"ImageAreaBoxes": [{"Type": "logo", "AreaCoordSet": [0, 0, 1, 1]}] * 17}
            }
        ),
        "ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes",
        "at most 16",
        "InvalidParameterValue",
    ),
    (
        "erase-box-type",
        _task(EraseConfig={"ImageEraseLogo": {"ImageAreaBoxes": [{"Type": "face"}]}}),
        "ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes[0].Type",
        "logo, text",
        "InvalidParameterValue",
    ),
    (
        "erase-coords-3",
        _task(EraseConfig={"ImageEraseLogo": {"ImageAreaBoxes": [{"AreaCoordSet": [1, 2, 3]}]}}),
        "ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes[0].AreaCoordSet",
        "exactly 4",
        "InvalidParameterValue",
    ),
    (
        "erase-coords-4097",
        _task(EraseConfig={"ImageEraseLogo": {"ImageAreaBoxes": [{"AreaCoordSet": [0, 0, 4097, 10]}]}}),
        "ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes[0].AreaCoordSet[2]",
        "0 to 4096",
        "InvalidParameterValue",
    ),
    (
        "erase-unit-type",
        _task(EraseConfig={"ImageEraseLogo": {"ImageAreaBoxes": [{"BoundingBoxUnitType": 3}]}}),
        "ImageTask.EraseConfig.ImageEraseLogo.ImageAreaBoxes[0].BoundingBoxUnitType",
        "0, 1, 2",
        "InvalidParameterValue",
    ),
    (
        "erase-detect-types",
        _task(EraseConfig={"ImageEraseLogo": {"DetectTypes": ["logo", "face"]}}),
        "ImageTask.EraseConfig.ImageEraseLogo.DetectTypes[1]",
        "logo, text, watermark",
        "InvalidParameterValue",
    ),
    (
        "erase-strength",
        _task(EraseConfig={"ImageEraseLogo": {"EraseStrength": "max"}}),
        "ImageTask.EraseConfig.ImageEraseLogo.EraseStrength",
        "low, mid, high",
        "InvalidParameterValue",
    ),
    (
        "erase-watermark-type",
        _task(EraseConfig={"ImageEraseLogo": {"WatermarkType": "tiled"}}),
        "ImageTask.EraseConfig.ImageEraseLogo.WatermarkType",
        "corner_watermark",
        "InvalidParameterValue",
    ),
    (
        "embedtext-too-long",
        _task(
            BlindWatermarkConfig={"AddBlindWatermark": {"EmbedInfo": {"EmbedText": "dGhpcyBpcyB0aGlydGVlbg"}}}
        ),
        "ImageTask.BlindWatermarkConfig.AddBlindWatermark.EmbedInfo.EmbedText",
        "at most 12 bytes",
        "InvalidParameterValue",
    ),
    (
        "embedtext-not-urlsafe",
        _task(BlindWatermarkConfig={"AddBlindWatermark": {"EmbedInfo": {"EmbedText": "ab+/cd"}}}),
        "ImageTask.BlindWatermarkConfig.AddBlindWatermark.EmbedInfo.EmbedText",
        "URL-safe base64",
        "InvalidParameterValue",
    ),
    (
        "embedtext-missing",
        _task(BlindWatermarkConfig={"AddBlindWatermark": {"Switch": "ON", "EmbedInfo": {}}}),
        "ImageTask.BlindWatermarkConfig.AddBlindWatermark.EmbedInfo.EmbedText",
        "",
        "MissingParameter",
    ),
    (
        "beauty-effect-type",
        _task(BeautyConfig={"BeautyEffectItems": [{"Type": "Glow", "Value": 10}]}),
        "ImageTask.BeautyConfig.BeautyEffectItems[0].Type",
        "Whiten",
        "InvalidParameterValue",
    ),
    (
        "beauty-effect-value",
        _task(BeautyConfig={"BeautyEffectItems": [{"Type": "Whiten", "Value": 101}]}),
        "ImageTask.BeautyConfig.BeautyEffectItems[0].Value",
        "0 to 100",
        "InvalidParameterValue",
    ),
    (
        "beauty-effect-no-type",
        _task(BeautyConfig={"BeautyEffectItems": [{"Value": 10}]}),
        "ImageTask.BeautyConfig.BeautyEffectItems[0].Type",
        "",
        "MissingParameter",
    ),
    (
        "beauty-filter-value",
        _task(BeautyConfig={"BeautyFilterItems": [{"Type": "Meiwei", "Value": -101}]}),
        "ImageTask.BeautyConfig.BeautyFilterItems[0].Value",
        "-100 to 100",
        "InvalidParameterValue",
    ),
    (
        "beauty-type",
        _task(BeautyConfig={"Type": "manual"}),
        "ImageTask.BeautyConfig.Type",
        "one of auto",
        "InvalidParameterValue",
    ),
    (
        "ai-config-list",
        _task(AiCutoutConfig=["x"]),
        "ImageTask.AiCutoutConfig",
        "an object",
        "InvalidParameter",
    ),
    (
        "url-input-no-output",
        {"InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": "https://example.com/a.png"}}},
        "OutputStorage",
        "URL input",
        "MissingParameter",
    ),
]


@pytest.mark.parametrize(
    ("body", "field", "allowed", "code"), [c[1:] for c in MALFORMED_API], ids=[c[0] for c in MALFORMED_API]
)
def test_malformed_api_bodies_are_refused(body: dict[str, Any], field: str, allowed: str, code: str) -> None:
    with pytest.raises(MpsValidationError) as info:
        ProcessImageRequest.from_api(body)
    err = info.value
    assert err.field == field
    assert err.code == code
    assert err.message.startswith(f"{field}:")
    assert allowed in (err.allowed or "")
    assert "allowed:" in str(err)
    assert err.request_id is None


def test_malformed_table_is_large_and_distinct() -> None:
    assert len(MALFORMED_API) >= 40
    assert len({c[0] for c in MALFORMED_API}) == len(MALFORMED_API)
    assert len({json.dumps(c[1], sort_keys=True, default=str) for c in MALFORMED_API}) == len(MALFORMED_API)


# ------------------------------------------------------------------------------------------------
# malformed user arguments (build, the operators' path): errors name the argument
# ------------------------------------------------------------------------------------------------
MALFORMED_BUILD = [
    ("no-input", {"input": None}, "input", "MissingParameter"),
    ("empty-input", {"input": ""}, "input", "MissingParameter"),
    ("cos-scheme-only", {"input": "cos://", "region": REGION}, "input", "InvalidParameterValue"),
    ("cos-bucket-only", {"input": "cos://bucket", "region": REGION}, "input", "InvalidParameterValue"),
    ("cos-dir-only", {"input": "cos://bucket/dir/", "region": REGION}, "input", "InvalidParameterValue"),
    ("ftp", {"input": "ftp://x/a.png", "region": REGION}, "input", "InvalidParameterValue"),
    ("no-scheme", {"input": "bucket/key.png", "region": REGION}, "input", "InvalidParameterValue"),
    ("cos-missing-region", {"input": SRC}, "region", "MissingParameter"),
    ("s3-missing-region", {"input": "s3://bkt/a.png"}, "region", "MissingParameter"),
    ("bad-region", {"input": SRC, "region": "Guangzhou"}, "region", "InvalidParameterValue"),
    ("input-int", {"input": 42, "region": REGION}, "input", "InvalidParameter"),
    ("input-bad-json", {"input": "{not json", "region": REGION}, "input", "InvalidParameter"),
    (
        "input-dict-missing-bucket",
        {"input": {"Type": "COS", "CosInputInfo": {"Region": REGION, "Object": "/a"}}},
        "input.CosInputInfo.Bucket",
        "MissingParameter",
    ),
    (
        "output-ftp",
        {"input": SRC, "region": REGION, "output_storage": "ftp://b"},
        "output_storage",
        "InvalidParameterValue",
    ),
    (
        "output-no-bucket",
        {"input": SRC, "region": REGION, "output_storage": "cos://"},
        "output_storage",
        "InvalidParameterValue",
    ),
    (
        "output-int",
        {"input": SRC, "region": REGION, "output_storage": 5},
        "output_storage",
        "InvalidParameter",
    ),
    (
        "output-prefix-and-dir",
        {"input": SRC, "region": REGION, "output_storage": f"cos://{BUCKET}/enhanced/", "output_dir": "/x/"},
        "output_dir",
        "InvalidParameter",
    ),
    (
        "url-input-output-no-region",
        {"input": "https://example.com/a.png", "output_storage": f"cos://{BUCKET}"},
        "region",
        "MissingParameter",
    ),
    ("url-input-no-output", {"input": "https://example.com/a.png"}, "output_storage", "MissingParameter"),
    (
        "task-json-invalid",
        {"input": SRC, "region": REGION, "image_task": '{"EncodeConfig": '},
        "image_task",
        "InvalidParameter",
    ),
    ("task-list", {"input": SRC, "region": REGION, "image_task": [1]}, "image_task", "InvalidParameter"),
    (
        "task-typo",
        {"input": SRC, "region": REGION, "image_task": {"EnhanceConfg": {}}},
        "image_task.EnhanceConfg",
        "InvalidParameter",
    ),
    (
        "task-quality",
        {"input": SRC, "region": REGION, "image_task": '{"EncodeConfig": {"Quality": 0}}'},
        "image_task.EncodeConfig.Quality",
        "InvalidParameterValue",
    ),
    (
        "path-ext",
        {
            "input": SRC,
            "region": REGION,
            "image_task": {"EncodeConfig": {"Format": "PNG"}},
            "output_path": "out.jpg",
        },
        "output_path",
        "InvalidParameterValue",
    ),
    (
        "definition-text",
        {"input": SRC, "region": REGION, "definition": "ten"},
        "definition",
        "InvalidParameter",
    ),
    (
        "definition-bool",
        {"input": SRC, "region": REGION, "definition": False},
        "definition",
        "InvalidParameter",
    ),
    (
        "schedule-list",
        {"input": SRC, "region": REGION, "schedule_id": [1]},
        "schedule_id",
        "InvalidParameter",
    ),
    (
        "addon-json-list",
        {"input": SRC, "region": REGION, "add_on_parameter": "[1, 2]"},
        "add_on_parameter",
        "InvalidParameter",
    ),
    (
        "outputdir-dotdot",
        {"input": SRC, "region": REGION, "output_dir": "/../x/"},
        "output_dir",
        "InvalidParameterValue",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "field", "code"), [c[1:] for c in MALFORMED_BUILD], ids=[c[0] for c in MALFORMED_BUILD]
)
def test_malformed_user_arguments_are_refused(kwargs: dict[str, Any], field: str, code: str) -> None:
    with pytest.raises(MpsValidationError) as info:
        ProcessImageRequest.build(**kwargs)
    assert info.value.field == field
    assert info.value.code == code
    assert str(info.value).startswith(f"[{code}] {field}:")
    assert info.value.allowed


# ------------------------------------------------------------------------------------------------
# valid requests and round trips
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [OFFICIAL_BODY, ERASE_BODY], ids=["official-enhance", "official-erase"])
def test_official_examples_round_trip(body: dict[str, Any]) -> None:
    request = ProcessImageRequest.from_api(body)
    assert request.to_api() == body
    assert ProcessImageRequest.from_api(request.to_api()).to_api() == body


def test_every_documented_section_is_accepted_and_round_trips() -> None:
    body = _body(
        ImageTask=FULL_TASK,
        OutputDir="/enhanced/",
        OutputPath="{inputName}_x.{format}",
        Definition=0,
        ResourceId="vts-1",
        ScheduleId=30010,
        AddOnParameter={"OutputConfig": {"Format": "PNG"}},
        StdExtInfo='{"k": 1}',
    )
    request = ProcessImageRequest.from_api(body)
    assert request.to_api() == body
    assert request.output_format == "webp"


def test_format_is_case_insensitive_and_kept_as_written() -> None:
    for fmt in ("jpeg", "JPEG", "Jpeg", "webp", "WEBP", "WebP", "png", "bmp"):
        request = ProcessImageRequest.from_api(_task(EncodeConfig={"Format": fmt}))
        assert request.to_api()["ImageTask"]["EncodeConfig"]["Format"] == fmt


@pytest.mark.parametrize(
    "path",
    [
        "{inputName}.{format}",
        "/out/{inputName}_{inputFormat}_{definition}_{number}.{format}",
        "thumb/small.{format}",
        "/fixed.{format}",
    ],
)
def test_output_path_ending_with_the_format_variable_is_accepted(path: str) -> None:
    ProcessImageRequest.from_api(_body(OutputPath=path))


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/out/a.jpg", "does not end with .{format}"),  # docs: "路径需以`.{format}`结尾"
        ("/out/a.jpeg", "does not end with .{format}"),
        ("a.{FORMAT}", "does not end with .{format}"),
        ("{inputName}/", "does not end with .{format}"),
        ("{input}.{format}", "unknown variable {input}"),
        ("{taskId}.{format}", "unknown variable {taskId}"),  # a live-task variable
    ],
)
def test_output_path_must_end_with_the_format_variable(path: str, reason: str) -> None:
    with pytest.raises(MpsValidationError, match=r"OutputPath") as info:
        ProcessImageRequest.from_api(_body(OutputPath=path))
    assert reason in str(info.value)


def test_schedule_id_request_needs_no_input_info() -> None:
    # api.json: ProcessImage.InputInfo is `required: false` (ScheduleId flows, e.g. 30010 expansion).
    body = {"ScheduleId": 30010, "AddOnParameter": {"OutputConfig": {"Format": "PNG"}}}
    request = ProcessImageRequest.from_api(body)
    assert request.input is None and request.to_api() == body
    built = ProcessImageRequest.build(
        input=None, schedule_id="30010", output_storage=f"cos://{BUCKET}/out/", region=REGION
    )
    assert built.input is None and built.schedule_id == 30010
    assert "InputInfo" not in built.to_api()
    with pytest.raises(MpsValidationError, match=r"^\[MissingParameter\] InputInfo: is required"):
        ProcessImageRequest.from_api({"ImageTask": {"EncodeConfig": {"Format": "PNG"}}})
    with pytest.raises(MpsValidationError, match=r"^\[MissingParameter\] input"):
        ProcessImageRequest.build(input=None, region=REGION)


def test_resource_id_has_no_invented_length_limit() -> None:
    # The docs give ResourceId no length limit; the model used to invent 256.
    assert ProcessImageRequest.from_api(_body(ResourceId="r" * 1000)).resource_id == "r" * 1000
    with pytest.raises(MpsValidationError, match="ResourceId"):
        ProcessImageRequest.from_api(_body(ResourceId=5))


@pytest.mark.parametrize("side", ["Width", "Height", "LongSide", "ShortSide"])
def test_advanced_super_resolution_sides_accept_zero(side: str) -> None:
    # "不能超过4096" is the only documented bound; 0 is the API's "not set".
    body = _task(EnhanceConfig={"AdvancedSuperResolutionConfig": {"Mode": "aspect", side: 0}})
    ProcessImageRequest.from_api(body)


@pytest.mark.parametrize(
    "vod",
    [{}, {"FileId": "528589"}, {"SubAppId": 1, "VodBasic": 1}, {"Bucket": "b", "Region": "ap-guangzhou"}],
)
def test_vod_input_fields_are_all_optional(vod: dict[str, Any]) -> None:
    request = ProcessImageRequest.from_api(_body(InputInfo={"Type": "VOD", "VODInputInfo": vod}))
    assert request.to_api()["InputInfo"] == {"Type": "VOD", "VODInputInfo": vod}


def test_embed_text_over_twelve_bytes_stays_refused() -> None:
    # Documented as truncated to 12 bytes; refused on purpose (the embedded mark would differ).
    thirteen = "dGhpcyBpcyB0aGlydGVlbg"  # "this is thirteen" (16 bytes)
    body = _task(BlindWatermarkConfig={"AddBlindWatermark": {"EmbedInfo": {"EmbedText": thirteen}}})
    with pytest.raises(MpsValidationError, match="decodes to 16 bytes"):
        ProcessImageRequest.from_api(body)


def test_jpg_is_not_a_documented_encode_format() -> None:
    # ImageEncodeConfig.Format (api.json and SDK 3.1.194): "JPEG、PNG、BMP、WebP" — no JPG.
    with pytest.raises(MpsValidationError, match=r"EncodeConfig\.Format"):
        ProcessImageRequest.from_api(_task(EncodeConfig={"Format": "jpg"}))


def test_null_fields_mean_not_set() -> None:
    body = _body(OutputDir=None, ImageTask={"EncodeConfig": {"Format": "PNG", "Quality": None}})
    request = ProcessImageRequest.from_api(body)
    assert request.output_dir is None
    assert "OutputDir" not in request.to_api()


def test_service_echo_of_url_input_with_empty_cos_info_is_accepted() -> None:
    # mps-api.md §2.1: the 2026 example returns an empty CosInputInfo (and nulls) for a URL input.
    echo = {
        "CosInputInfo": {"Bucket": "", "Object": "", "Region": ""},
        "S3InputInfo": None,
        "Type": "URL",
        "UrlInputInfo": {"Url": "http://x.cos.ap-shanghai.tencentcos.cn/01.jpeg"},
        "VODInputInfo": None,
    }
    media = MediaInput.from_api(echo)
    assert media.type == "URL"
    assert media.url == "http://x.cos.ap-shanghai.tencentcos.cn/01.jpeg"


def test_build_from_uris_and_round_trip() -> None:
    request = ProcessImageRequest.build(
        input=SRC,
        region=REGION,
        output_storage=f"cos://{BUCKET}/enhanced/dt=2026-11-01/",
        image_task='{"EncodeConfig": {"Format": "JPEG", "Quality": 85}}',
        definition="12",
        schedule_id=30000,
        add_on_parameter='{"OutputConfig": {"Format": "PNG"}}',
        std_ext_info="x",
        resource_id="r-1",
    )
    api = request.to_api()
    assert api["InputInfo"] == {
        "Type": "COS",
        "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/raw/dt=2026-11-01/cat.png"},
    }
    assert api["OutputStorage"] == {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}}
    assert api["OutputDir"] == "/enhanced/dt=2026-11-01/"
    assert api["Definition"] == 12
    assert api["AddOnParameter"] == {"OutputConfig": {"Format": "PNG"}}
    again = ProcessImageRequest.from_api(api)
    assert again.to_api() == api
    assert again == request


def test_build_variants() -> None:
    url = ProcessImageRequest.build(
        input="https://example.com/a.png", output_storage=f"cos://{BUCKET}", region=REGION
    )
    assert url.to_api()["InputInfo"] == {"Type": "URL", "UrlInputInfo": {"Url": "https://example.com/a.png"}}
    s3 = ProcessImageRequest.build(input="s3://my-bucket/in/a.png", region="us-east-1")
    assert s3.to_api()["InputInfo"]["S3InputInfo"] == {
        "S3Bucket": "my-bucket",
        "S3Region": "us-east-1",
        "S3Object": "/in/a.png",
    }
    as_dict = ProcessImageRequest.build(
        input=OFFICIAL_BODY["InputInfo"], output_storage=OFFICIAL_BODY["OutputStorage"]
    )
    assert as_dict.input.bucket == "bucket-test"
    as_json = ProcessImageRequest.build(input=json.dumps(OFFICIAL_BODY["InputInfo"]), image_task="")
    assert as_json.image_task is None
    typed = ProcessImageRequest.build(
        input=MediaInput("COS", "b-1", REGION, "/a.png"), output_storage=OutputStorage("COS")
    )
    assert typed.to_api()["OutputStorage"] == {"Type": "COS", "CosOutputStorage": {}}
    # cos://bucket output inherits the input's region when no region argument is given.
    inherit = ProcessImageRequest.build(input=OFFICIAL_BODY["InputInfo"], output_storage="cos://other-1")
    assert inherit.output_storage == OutputStorage("COS", "other-1", "ap-shanghai")


def test_build_does_not_alias_user_dicts() -> None:
    task = {"EncodeConfig": {"Format": "PNG"}}
    request = ProcessImageRequest.build(input=SRC, region=REGION, image_task=task)
    request.to_api()["ImageTask"]["EncodeConfig"]["Format"] = "BMP"
    task["EncodeConfig"]["Format"] = "JPEG"
    assert request.image_task == {"EncodeConfig": {"Format": "PNG"}}


def test_sdk_accepts_to_api_body_unchanged() -> None:
    """The SDK's own model parses our body without dropping a field (no "fileds are useless" warning)."""
    from tencentcloud.mps.v20190612 import models as sdk

    body = _body(
        ImageTask={k: v for k, v in FULL_TASK.items() if k != "AiCutoutConfig"},
        OutputDir="/enhanced/",
        OutputPath="{inputName}.{format}",
        Definition=0,
        ScheduleId=30010,
        StdExtInfo="x",
    )
    api = ProcessImageRequest.from_api(body).to_api()
    sdk_request = sdk.ProcessImageRequest()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sdk_request.from_json_string(json.dumps(api))
    assert sdk_request._serialize() == api


# ------------------------------------------------------------------------------------------------
# secrets
# ------------------------------------------------------------------------------------------------
def test_s3_secret_key_never_in_repr_or_errors() -> None:
    secret = "S3-SUPER-SECRET-value"
    info = {
        "Type": "AWS-S3",
        "S3InputInfo": {
            "S3Bucket": "b-1",
            "S3Region": "us-east-1",
            "S3Object": "/a.png",
            "S3SecretId": "AKIDx",
            "S3SecretKey": secret,
        },
    }
    out = {
        "Type": "AWS-S3",
        "S3OutputStorage": {"S3Bucket": "b-1", "S3Region": "us-east-1", "S3SecretKey": secret},
    }
    request = ProcessImageRequest.build(input=info, output_storage=out)
    for text in (
        repr(request),
        str(request),
        repr(request.input),
        repr(request.output_storage),
        str(request.input),
    ):
        assert secret not in text
        assert "***" in text
    # The body for the API still carries it (the SDK must send it).
    assert request.to_api()["InputInfo"]["S3InputInfo"]["S3SecretKey"] == secret
    bad = copy.deepcopy(info)
    bad["S3InputInfo"]["S3SecretKey"] = 123456789
    with pytest.raises(MpsValidationError) as excinfo:
        ProcessImageRequest.build(input=bad)
    assert "123456789" not in str(excinfo.value)
    assert "123456789" not in repr(excinfo.value.to_dict())


# ------------------------------------------------------------------------------------------------
# URIs and output keys
# ------------------------------------------------------------------------------------------------
def test_parse_cos_uri_and_cos_uri() -> None:
    assert parse_cos_uri("cos://photos-1250000000/raw/dt=2026-11-01/") == (BUCKET, "raw/dt=2026-11-01/")
    assert parse_cos_uri("cos://photos-1250000000") == (BUCKET, "")
    assert parse_cos_uri("cosn://b-1//a.png") == ("b-1", "a.png")
    assert cos_uri("b-1", "/x/y.jpg") == "cosn://b-1/x/y.jpg"
    for bad in ("cos://", "s3://b/k", "photos/raw", "cos://b/../x"):
        with pytest.raises(MpsValidationError):
            parse_cos_uri(bad, "source")


def test_parse_uri() -> None:
    media = parse_uri(SRC, REGION)
    assert (media.type, media.bucket, media.region, media.object, media.key) == (
        "COS",
        BUCKET,
        REGION,
        "/raw/dt=2026-11-01/cat.png",
        "raw/dt=2026-11-01/cat.png",
    )
    assert media.uri == SRC
    assert parse_uri("https://example.com/a.png?x=1").url == "https://example.com/a.png?x=1"


@pytest.mark.parametrize(
    ("input_key", "output_dir", "output_path", "fmt", "expected"),
    [
        ("raw/dt=1/cat.png", None, None, None, "raw/dt=1/cat.png"),
        ("/raw/dt=1/cat.png", None, None, "jpeg", "raw/dt=1/cat.jpg"),
        ("raw/dt=1/cat.png", "/enhanced/dt=1/", None, "webp", "enhanced/dt=1/cat.webp"),
        ("raw/dt=1/cat.png", "enhanced/dt=1", None, "JPEG", "enhanced/dt=1/cat.jpg"),
        ("raw/dt=1/cat.png", "/", None, "bmp", "cat.bmp"),
        ("raw/cat.tar.png", None, None, "png", "raw/cat.tar.png"),
        ("cat", None, None, "png", "cat.png"),
        ("raw/cat.png", "/out/", "{inputName}_v2.{format}", "jpeg", "out/cat_v2.jpg"),
        ("raw/cat.png", None, "/abs/{inputName}.{format}", "webp", "abs/cat.webp"),
        ("raw/cat.png", None, "fixed.{format}", None, "raw/fixed.png"),
        ("raw/cat.png", "", None, "png", "raw/cat.png"),  # an empty OutputDir = the input's directory
        ("raw/cat.PNG", None, "{inputName}_{inputFormat}.{format}", None, "raw/cat_PNG.png"),
        ("raw/cat.png", None, "{inputName}_{definition}_{number}.{format}", "webp", "raw/cat_0_0.webp"),
        ("raw/.hidden", None, None, "png", "raw/.hidden.png"),
    ],
)
def test_expected_output_key(
    input_key: str, output_dir: str | None, output_path: str | None, fmt: str | None, expected: str
) -> None:
    assert expected_output_key(input_key, output_dir, output_path, fmt) == expected


def test_output_extensions() -> None:
    assert OUTPUT_EXTENSIONS == {"jpeg": "jpg", "png": "png", "bmp": "bmp", "webp": "webp"}


def test_validate_image_task_directly() -> None:
    validate_image_task(FULL_TASK)
    with pytest.raises(
        MpsValidationError, match=r"^\[InvalidParameterValue\] t\.EncodeConfig\.Quality: 0 is out of range"
    ):
        validate_image_task({"EncodeConfig": {"Quality": 0}}, "t")


def test_request_pickles() -> None:
    request = ProcessImageRequest.build(
        input=SRC, region=REGION, image_task={"EncodeConfig": {"Format": "PNG"}}
    )
    assert pickle.loads(pickle.dumps(request)) == request
