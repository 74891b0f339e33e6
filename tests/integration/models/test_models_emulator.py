"""The request model over the real path: official SDK → HTTP → emulator (which validates with from_api).

Shows that the service stand-in refuses exactly what the provider refuses (same code, message naming
the field, no task created), and that a real DescribeImageTaskDetail answer parses into a status whose
output key is the one :func:`expected_output_key` predicts.
"""

from __future__ import annotations

import io
import json
import math
import time
import uuid
from typing import Any

import pytest

from airflow_mps.errors import error_from_exception
from airflow_mps.models import ImageTaskStatus, ProcessImageRequest, expected_output_key
from tests.unit.models.test_models import MALFORMED_API

BUCKET = "modeltest-1250000000"
REGION = "ap-guangzhou"

# JSON cannot carry NaN faithfully (the SDK writes a bare NaN token), so that row stays a unit-only case.
_WIRE_CASES = [c for c in MALFORMED_API if "nan" not in c[0]]


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


def test_wire_cases_exclude_only_nan() -> None:
    assert len(MALFORMED_API) - len(_WIRE_CASES) == sum(1 for c in MALFORMED_API if _has_nan(c[1]))


def test_emulator_refuses_every_malformed_body_like_the_model(emulator: Any) -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    client = emulator.mps_client()
    mismatches = []
    for case_id, body, field, _allowed, code in _WIRE_CASES:
        # The emulator enforces ProcessImage's 20/s limit on refused calls too: wait out throttling.
        for _ in range(200):
            with pytest.raises(TencentCloudSDKException) as info:
                client.call_json("ProcessImage", body)
            err = error_from_exception(info.value)
            if err.category != "throttled":
                break
            time.sleep(0.05)
        if err.code != code or field not in err.message or not err.request_id:
            mismatches.append((case_id, err.code, err.message))
    assert mismatches == []
    assert emulator.stats()["tasks_created"] == 0


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 12), "red").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("output_dir", "output_path", "fmt"),
    [
        (None, None, "JPEG"),
        ("/enhanced/dt=2026-11-01/", None, "webp"),
        ("/o/", "{inputName}_v2.{format}", "png"),
    ],
)
def test_built_request_runs_and_output_key_is_predicted(
    emulator: Any, output_dir: str | None, output_path: str | None, fmt: str
) -> None:
    from tencentcloud.mps.v20190612 import models as sdk

    emulator.cos_backend.create_bucket(BUCKET)
    key = f"raw/{uuid.uuid4().hex}/cat.png"
    emulator.cos_backend.put_object(BUCKET, key, _png(), "image/png")
    request = ProcessImageRequest.build(
        input=f"cos://{BUCKET}/{key}",
        region=REGION,
        output_storage=f"cos://{BUCKET}",
        output_dir=output_dir,
        output_path=output_path,
        image_task={"EncodeConfig": {"Format": fmt, "Quality": 80}},
    )
    client = emulator.mps_client()
    sdk_request = sdk.ProcessImageRequest()
    sdk_request.from_json_string(json.dumps(request.to_api()))
    task_id = client.ProcessImage(sdk_request).TaskId
    assert task_id

    status = None
    for _ in range(400):
        detail = sdk.DescribeImageTaskDetailRequest()
        detail.TaskId = task_id
        response = json.loads(client.DescribeImageTaskDetail(detail).to_json_string())
        status = ImageTaskStatus.from_api(response, task_id)
        if status.done:
            break
        time.sleep(0.025)
    assert status is not None and status.succeeded, status
    (output,) = status.outputs
    assert output.path == expected_output_key(
        key, request.output_dir, request.output_path, request.output_format
    )
    assert output.bucket == BUCKET
    assert output.uri == f"cosn://{BUCKET}/{output.path}"
    assert emulator.cos_backend.head_object(BUCKET, output.path) is not None
