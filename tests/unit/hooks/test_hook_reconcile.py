"""Reconciliation matching: a listed task must be recognised as ours exactly when it is ours.

The hook (after an ambiguous ProcessImage) and the batch operator (on a retry) both read
DescribeImageTasks' ``Input`` and must agree on every form of it, above all the emulator's (the
submitted InputInfo as compact JSON), for keys with spaces, ``+``, ``#``, ``?``, ``%`` and unicode.
"""

from __future__ import annotations

import json

import pytest

from airflow_mps.models import ImageTaskInfo
from airflow_mps.ownership import input_matches, match_listed_rows

BUCKET = "b-1250000000"
KEYS = ["raw/a b.jpg", "raw/a+b.jpg", "raw/a#1.jpg", "raw/what?.jpg", "raw/100%41.jpg", "raw/图片 ü.jpg"]


def _body(key: str, bucket: str = BUCKET) -> dict:
    return {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": bucket, "Region": "ap-guangzhou", "Object": "/" + key},
        }
    }


def _listed_location(listed: str) -> tuple[str, str] | None:
    """The COS input the batch's matcher (``ownership.match_listed_rows``) reads from one listed row."""
    row = ImageTaskInfo(task_id="t", input=listed)
    for key in KEYS:
        if match_listed_rows([row], {(BUCKET, key): "ours"}) == {"ours": ["t"]}:
            return BUCKET, key
    return None


def _emulator_row(key: str, bucket: str = BUCKET) -> str:
    """Exactly what the emulator's DescribeImageTasks puts in ``Input``."""
    return json.dumps(_body(key, bucket)["InputInfo"], separators=(",", ":"), sort_keys=True)


@pytest.mark.parametrize("key", KEYS)
def test_emulator_rows_match_in_hook_and_batch(key: str) -> None:
    listed = _emulator_row(key)
    assert input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)
    other = _emulator_row(key, "other-1250000000")
    assert input_matches(other, _body(key)) is False


@pytest.mark.parametrize("key", KEYS)
def test_cos_uri_rows_keep_the_key_verbatim(key: str) -> None:
    listed = f"cos://{BUCKET}/{key}"
    assert input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)


@pytest.mark.parametrize("key", KEYS)
def test_cos_url_rows_are_percent_decoded(key: str) -> None:
    from urllib.parse import quote

    listed = f"https://{BUCKET}.cos.ap-guangzhou.myqcloud.com/{quote(key)}"
    assert input_matches(listed, _body(key)) is True
    assert _listed_location(listed) == (BUCKET, key)


def test_a_url_task_never_matches_a_cos_input() -> None:
    listed = json.dumps({"Type": "URL", "UrlInputInfo": {"Url": f"https://x/{KEYS[0]}"}, "CosInputInfo": {}})
    assert input_matches(listed, _body(KEYS[0])) is False
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
    from airflow_mps.hooks.failures import classify_failure

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


# ---- the finder core (shared by find_tasks_for, afind_tasks_for and the hook's reconciliation) ------
def _drive(body: dict, since, rows: list, details: dict) -> tuple[list[str], list]:
    """Run the I/O-free finder over scripted listings (FINISH only) and details; return (ids, steps)."""
    from airflow_mps.ownership import ListStep, task_finder

    steps: list = []
    finder = task_finder(body, since, 5.0)
    reply = None
    try:
        while True:
            step = finder.send(reply)
            steps.append(step)
            if isinstance(step, ListStep):
                reply = rows if step.status == "FINISH" else []
            else:
                reply = details.get(step.task_id, {"Status": "FINISH"})
    except StopIteration as done:
        return done.value, steps


def _row(task_id: str, listed: str | None, created: str | None = None):
    from airflow_mps.models import ImageTaskInfo

    return ImageTaskInfo(task_id=task_id, status="FINISH", input=listed, create_time=created)


def test_finder_asks_the_task_when_the_listing_names_no_input() -> None:
    """Real listings may carry an empty ``Input``: the task's own ``InputInfo`` decides (a miss here
    would make the hook resubmit a request that did arrive)."""
    from datetime import datetime, timezone

    from airflow_mps.ownership import DetailStep, ListStep

    key = KEYS[0]
    since = datetime(2026, 11, 1, 8, 0, 0, 500000, tzinfo=timezone.utc)
    rows = [_row("ours", None), _row("other-image", None), _row("listed-other", _emulator_row(KEYS[1]))]
    details = {"ours": _body(key), "other-image": _body(KEYS[1])}
    ids, steps = _drive(_body(key), since, rows, details)
    assert ids == ["ours"]
    assert [s.status for s in steps if isinstance(s, ListStep)] == ["PROCESSING", "FINISH"]
    assert steps[0].start == "2026-11-01T07:59:55Z"  # since minus the skew allowance
    # The listed other image is refused from the listing alone (no detail call).
    assert {s.task_id for s in steps if isinstance(s, DetailStep)} == {"ours", "other-image"}


def test_finder_prefers_tasks_from_our_second_and_drops_rows_before_the_window() -> None:
    from datetime import datetime, timezone

    key = KEYS[0]
    since = datetime(2026, 11, 1, 8, 0, 0, 700000, tzinfo=timezone.utc)
    listed = _emulator_row(key)
    rows = [
        _row("too-old", listed, "2026-11-01T07:59:50Z"),
        _row("sibling", listed, "2026-11-01T07:59:58Z"),
        _row("ours", listed, "2026-11-01T08:00:00Z"),
    ]
    assert _drive(_body(key), since, rows, {})[0] == ["ours"]
    # Server clock behind ours: nothing at/after our second, so the skew window's matches count.
    assert _drive(_body(key), since, rows[:2], {})[0] == ["sibling"]
    # Another request's echo (a different ImageTask) is not ours.
    body = {**_body(key), "ImageTask": OURS}
    details = {"ours": {"Status": "FINISH", "ImageTask": {"EncodeConfig": {"Format": "PNG"}}}}
    assert _drive(body, since, rows, details)[0] == ["sibling"]
