"""Reconciliation matching: a listed task must be recognised as ours exactly when it is ours.

The hook (after an ambiguous ProcessImage) and the batch operator (on a retry) both read
DescribeImageTasks' ``Input`` and must agree on every form of it, above all the emulator's (the
submitted InputInfo as compact JSON), for keys with spaces, ``+``, ``#``, ``?``, ``%`` and unicode.
"""

from __future__ import annotations

import json

import pytest

from airflow_mps.hooks.mps import _input_matches
from airflow_mps.operators.batch import _listed_location

BUCKET = "b-1250000000"
KEYS = ["raw/a b.jpg", "raw/a+b.jpg", "raw/a#1.jpg", "raw/what?.jpg", "raw/100%41.jpg", "raw/图片 ü.jpg"]


def _body(key: str, bucket: str = BUCKET) -> dict:
    return {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": bucket, "Region": "ap-guangzhou", "Object": "/" + key},
        }
    }


def _emulator_row(key: str, bucket: str = BUCKET) -> str:
    """Exactly what the emulator's DescribeImageTasks puts in ``Input``."""
    return json.dumps(_body(key, bucket)["InputInfo"], separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize("key", KEYS)
def test_emulator_rows_match_in_hook_and_batch(key: str) -> None:
    listed = _emulator_row(key)
    assert _input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)
    other = _emulator_row(key, "other-1250000000")
    assert _input_matches(other, _body(key)) is False


@pytest.mark.parametrize("key", KEYS)
def test_cos_uri_rows_keep_the_key_verbatim(key: str) -> None:
    listed = f"cos://{BUCKET}/{key}"
    assert _input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)


@pytest.mark.parametrize("key", KEYS)
def test_cos_url_rows_are_percent_decoded(key: str) -> None:
    from urllib.parse import quote

    listed = f"https://{BUCKET}.cos.ap-guangzhou.myqcloud.com/{quote(key)}"
    assert _input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)


def test_a_url_task_never_matches_a_cos_input() -> None:
    listed = json.dumps({"Type": "URL", "UrlInputInfo": {"Url": f"https://x/{KEYS[0]}"}, "CosInputInfo": {}})
    assert _input_matches(listed, _body(KEYS[0])) is False
    assert _listed_location(listed) is None


# ---- telling our task from another request with the same input -----------------------------------
OURS = {
    "EncodeConfig": {"Format": "JPEG", "Quality": 80},
    "EnhanceConfig": {"SuperResolution": {"Switch": "ON"}},
}


@pytest.mark.parametrize(
    ("echoed", "conflict"),
    [
        (OURS, False),
        # What a service adds or normalises is not a contradiction.
        (
            {
                "EncodeConfig": {"Format": "jpeg", "Quality": 80.0},
                "EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Type": ""}},
            },
            False,
        ),
        (
            {
                **OURS,
                "BeautyConfig": {"BeautyEffectItems": [{"ExtInfo": "", "ResourcePath": "", "Switch": "OFF"}]},
            },
            False,
        ),
        ({**OURS, "EraseConfig": None}, False),
        # Another pipeline: another format, quality, a missing or an extra enhancement.
        ({**OURS, "EncodeConfig": {"Format": "PNG", "Quality": 80}}, True),
        ({**OURS, "EncodeConfig": {"Format": "JPEG", "Quality": 30}}, True),
        ({"EncodeConfig": {"Format": "JPEG", "Quality": 80}}, True),
        ({**OURS, "EnhanceConfig": {"SuperResolution": {"Switch": "ON"}, "Denoise": {"Switch": "ON"}}}, True),
    ],
)
def test_image_task_conflicts(echoed: dict, conflict: bool) -> None:
    from airflow_mps.models import image_task_conflicts

    assert image_task_conflicts(OURS, echoed) is conflict
    assert image_task_conflicts(echoed, OURS) is conflict  # symmetric


def _status(image_task: dict | None, path: str | None) -> object:
    from airflow_mps.models import ImageTaskStatus

    result = (
        {
            "Status": "SUCCESS",
            "Output": {
                "Path": "/" + path,
                "OutputStorage": {
                    "Type": "COS",
                    "CosOutputStorage": {"Bucket": BUCKET, "Region": "ap-guangzhou"},
                },
            },
        }
        if path
        else None
    )
    return ImageTaskStatus.from_api(
        {
            "Status": "FINISH" if path else "PROCESSING",
            "ImageTask": image_task,
            "ImageProcessTaskResultSet": [result] if result else [],
        }
    )


def test_conflicts_with_uses_only_what_the_service_returned() -> None:
    # Unfinished, no ImageTask echoed: nothing proves it is not ours.
    assert (
        _status(None, None).conflicts_with(image_task=OURS, output_bucket=BUCKET, output_key="out/a.jpg")
        is None
    )
    # Finished at our key with our ImageTask: ours.
    assert (
        _status(OURS, "out/a.jpg").conflicts_with(
            image_task=OURS, output_bucket=BUCKET, output_key="/out/a.jpg"
        )
        is None
    )
    # Finished elsewhere: not ours, even with the same ImageTask.
    assert "not where ours go" in _status(OURS, "thumbs/a.jpg").conflicts_with(
        image_task=OURS, output_bucket=BUCKET, output_key="out/a.jpg"
    )
    assert _status(OURS, "thumbs/a.jpg").conflicts_with(image_task=OURS, output_dir="/thumbs/") is None
    assert _status(OURS, "thumbs/a.jpg").conflicts_with(image_task=OURS, output_dir="/out") is not None
    assert "ImageTask" in _status({"EncodeConfig": {"Format": "PNG"}}, None).conflicts_with(image_task=OURS)
    # The echo is not part of the XCom form.
    assert "image_task" not in _status(OURS, "out/a.jpg").to_dict()


# ---- a refusal that is not throttling ------------------------------------------------------------
def test_create_task_limit_is_a_refusal_so_process_image_is_retried_not_reconciled() -> None:
    """``LimitExceeded.CreateTask`` ("无法创建任务": too many running tasks) says no task was created.
    Treated like InternalError it sent every submission of a large batch through reconciliation
    (listings, a second listing, one resubmission) and then ``MpsAmbiguousSubmissionError``."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    from airflow_mps.hooks._retry import Arrival, Decision, RetryPolicy
    from airflow_mps.hooks.mps import classify_failure

    failure = classify_failure(TencentCloudSDKException("LimitExceeded.CreateTask", "busy", "rid-7"))
    assert failure.arrival is Arrival.REFUSED and failure.error.request_id == "rid-7"
    decision = RetryPolicy().decide(
        retryable=failure.error.retryable,
        throttled=failure.throttled,
        arrival=failure.arrival,
        idempotent=False,
    )
    assert decision is Decision.RETRY
    # An answered InternalError stays ambiguous for ProcessImage (the backend may have created it).
    internal = classify_failure(TencentCloudSDKException("InternalError", "boom", "rid-8"))
    assert internal.arrival is Arrival.ANSWERED
    assert (
        RetryPolicy().decide(
            retryable=internal.error.retryable, throttled=False, arrival=internal.arrival, idempotent=False
        )
        is Decision.RECONCILE
    )
