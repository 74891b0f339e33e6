"""Requests go out exactly as validated (issue 11 item 7).

A ProcessImage body that uses *every* member the validator accepts — generated from the ImageTask
schema itself (``airflow_mps.models.schema``), so a config added to the schema is covered without
touching this test — is sent by the hook (sync and async) through the official SDK to the emulator,
and the JSON the emulator received must equal the validated body. An SDK request model would drop
what its version does not know (``EraseStrength``, ``WatermarkType``, ``BeautyConfig.Type`` and
``AiDecomposeConfig`` on SDKs before 3.1.183 / 3.1.189); the hook sends the body itself.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from airflow_mps.hooks._buckets import reset_shared_buckets
from airflow_mps.hooks._retry import RetryPolicy
from airflow_mps.hooks.mps import MpsHook
from airflow_mps.models import ProcessImageRequest

BUCKET = "wire-1250000000"
REGION = "ap-guangzhou"


# ---- a value for every member of the schema ---------------------------------------------------------
def _closure(validator: Callable[..., Any]) -> dict[str, Any]:
    """The arguments a validator combinator (``one_of``, ``integer``, ...) closed over."""
    cells = getattr(validator, "__closure__", None) or ()
    return dict(zip(validator.__code__.co_freevars, (cell.cell_contents for cell in cells), strict=True))


def sample(validator: Any, path: str) -> Any:
    """A value ``validator`` accepts, for every kind the schema uses; an unknown kind fails loudly
    (extend this function when the schema grows a new kind of validator)."""
    from airflow_mps.models.validation import ApiObject

    if isinstance(validator, ApiObject):
        return {key: sample(sub, f"{path}.{key}") for key, sub in validator.schema.items()}
    name = validator.__qualname__.split(".")[0]
    args = _closure(validator)
    if name == "one_of":
        return args["values"][-1]  # the last value: rarely a default, so a dropped member shows
    if name == "integer":
        if args.get("choices"):
            return args["choices"][-1]
        lo, hi = args.get("lo"), args.get("hi")
        return hi if hi is not None else (lo if lo is not None else 0) + 1
    if name == "number":
        lo, hi = args.get("lo"), args.get("hi")
        return (lo + hi) / 2 if lo is not None and hi is not None else (lo or 0) + 0.5
    if name == "string":
        return "wire-check"
    if name == "list_of":
        item = sample(args["item"], f"{path}[0]")
        return [item] * (args.get("exact_len") or 1)
    if name == "json_object":
        return {"Probe": path, "Nested": {"List": [1, 2.5, "x"], "Flag": True}}
    if name in ("_area_coords", "_bounding_box"):
        return [10, 20, 30, 40]
    if name == "_embed_text":
        return "aGVsbG8"  # "hello"
    raise AssertionError(f"no sample for the validator {validator.__qualname__} of {path}")


def every_config_image_task() -> dict[str, Any]:
    """An ImageTask using every member of the schema, accepted by the validator."""
    from airflow_mps.models.schema import _IMAGE_TASK, validate_image_task

    image_task = sample(_IMAGE_TASK, "ImageTask")
    image_task["EncodeConfig"]["Format"] = "PNG"  # a format every emulator build can write
    validate_image_task(image_task)
    return image_task


def every_member_body(key: str) -> dict[str, Any]:
    """A validated ProcessImage API body with every top-level member and every ImageTask config."""
    body = {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": f"/{key}"},
        },
        "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}},
        "OutputDir": "/wire-out/",
        "OutputPath": f"/wire-out/{uuid.uuid4().hex}.{{format}}",
        "Definition": 0,
        "ResourceId": "wire-resource",
        "ImageTask": every_config_image_task(),
        "ScheduleId": 0,
        "AddOnParameter": {"OutputConfig": {"Format": "PNG"}, "Probe": [1, {"Deep": None}]},
        "StdExtInfo": '{"probe": "wire"}',
    }
    return ProcessImageRequest.from_api(copy.deepcopy(body)).to_api()


def test_the_sample_uses_every_member_the_older_sdks_drop() -> None:
    image_task = every_config_image_task()
    erase = image_task["EraseConfig"]["ImageEraseLogo"]
    assert {"EraseStrength", "WatermarkType"} <= set(erase)
    assert "Type" in image_task["BeautyConfig"] and "AiDecomposeConfig" in image_task


# ---- through the hook, the SDK and HTTP to the emulator ----------------------------------------------
@pytest.fixture
def hook(emulator, monkeypatch) -> MpsHook:
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    reset_shared_buckets()
    emulator.cos_backend.create_bucket(BUCKET)
    yield MpsHook(retry_policy=RetryPolicy(max_retry_seconds=20, base_delay=0.05, max_delay=0.5))
    reset_shared_buckets()


def _received(emulator, task_id: str) -> dict[str, Any]:
    """The ProcessImage body the emulator received for ``task_id`` (its task record keeps it)."""
    return emulator.app.mps.get(task_id).request


@pytest.mark.parametrize("path", ["sync", "async"])
def test_every_validated_member_reaches_the_service(hook, emulator, path: str) -> None:
    key = f"raw/{uuid.uuid4().hex}.png"
    body = every_member_body(key)
    request = ProcessImageRequest.from_api(body)
    if path == "sync":
        submission = hook.process_image(request)
    else:

        async def run() -> Any:
            try:
                return await hook.aprocess_image(request)
            finally:
                await hook.aclose()

        submission = asyncio.run(run())
    assert _received(emulator, submission.task_id) == body
