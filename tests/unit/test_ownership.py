"""One rule set for "which task is ours" (issue 10 item 3): the single-request search
(``ownership.task_finder``: the hook's reconciliation, the single-image operator) and the batch's
(``ownership.batch_finder``, driven by ``batch/adopt.py``) make the same decision on the same evidence.

Both are driven here over scripted listings and details with ``airflow_mps.steps.drive``; the batch's
fingerprint is the one ``batch/adopt.py`` builds, and the single request's body is the batch's own
``ProcessImage`` body, so only the rules differ where they are meant to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_mps.batch import adopt
from airflow_mps.batch.plan import BatchConfig, BatchItem, CosLocation, build_request
from airflow_mps.errors import MpsAmbiguousSubmissionError
from airflow_mps.models import ImageTaskInfo
from airflow_mps.ownership import (
    DetailsStep,
    Fingerprint,
    ListStep,
    batch_finder,
    described_row,
    match_listed_rows,
    newest_first,
    task_finder,
)
from airflow_mps.steps import drive

BUCKET = "b-1250000000"
DEST = CosLocation(BUCKET, "out/")
OURS = {"EncodeConfig": {"Format": "JPEG", "Quality": 80}}
ITEM = BatchItem(BUCKET, "raw/a.png", "out/a.jpg")
CFG = BatchConfig(CosLocation(BUCKET, "raw/"), DEST, (".png",), OURS, "jpg")
BODY = build_request(ITEM, CFG, "ap-guangzhou").to_api()
SINCE = datetime(2026, 11, 1, 8, 0, 0, tzinfo=timezone.utc)


def _info(key: str) -> dict[str, Any]:
    return {"Type": "COS", "CosInputInfo": {"Bucket": BUCKET, "Region": "ap-guangzhou", "Object": "/" + key}}


def _row(task_id: str, created: str | None, listed: str | None = None) -> ImageTaskInfo:
    return ImageTaskInfo(task_id=task_id, status="FINISH", create_time=created, input=listed)


def _detail(key: str = "raw/a.png", image_task: Any = OURS, output: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"Status": "FINISH", "InputInfo": _info(key), "ImageTask": image_task}
    if output:
        detail["ImageProcessTaskResultSet"] = [{"Status": "SUCCESS", "Output": {"Path": "/" + output}}]
    return detail


def _single(
    rows: list[ImageTaskInfo], details: dict[str, Any], *, cap: int = 200
) -> tuple[list[str], list[str]]:
    """task_finder over the batch's own request body: (ids, task ids described in order)."""
    described: list[str] = []

    def perform(step: Any) -> Any:
        if isinstance(step, ListStep):
            return rows if step.status == "FINISH" else []
        described.append(step.task_id)
        return details[step.task_id]

    return drive(task_finder(BODY, SINCE, 5.0, max_describes=cap), perform), described


def _batch(
    rows: list[ImageTaskInfo], details: dict[str, Any], *, cap: int | None = None
) -> tuple[dict[str, str], list[str]]:
    """batch_finder with the fingerprint batch/adopt.py builds: (found, task ids described in order)."""
    described: list[str] = []

    def perform(step: DetailsStep) -> dict[str, Any]:
        described.extend(step.task_ids)
        return {task_id: details.get(task_id) for task_id in step.task_ids}

    wanted = {ITEM.input_uri: adopt.fingerprint(ITEM, OURS, DEST)}
    finder = batch_finder(rows, wanted, max_describes=cap, chunk=1, log=logging.getLogger("test"))
    return drive(finder, perform), described


@pytest.mark.parametrize(
    ("echoed", "ours"),
    [
        (OURS, True),
        ({"EncodeConfig": {"Format": "jpeg", "Quality": 80.0}}, True),  # normalised by the service
        (None, True),  # nothing echoed: no proof
        ({"EncodeConfig": {"Format": "PNG", "Quality": 80}}, False),  # another pipeline
        ({**OURS, "EnhanceConfig": {"Denoise": {"Switch": "ON"}}}, False),
    ],
    ids=["same", "normalised", "not-echoed", "other-format", "extra-enhancement"],
)
@pytest.mark.parametrize("listing", ["input-named", "no-input"])
def test_both_searches_decide_alike_on_the_echoed_image_task(echoed: Any, ours: bool, listing: str) -> None:
    listed = f"cos://{BUCKET}/raw/a.png" if listing == "input-named" else None
    rows = [_row("t", "2026-11-01T08:00:01Z", listed)]
    details = {"t": _detail(image_task=echoed)}
    single, _ = _single(rows, details)
    batch, _ = _batch(rows, details)
    assert single == (["t"] if ours else [])
    assert batch == ({ITEM.input_uri: "t"} if ours else {})


def test_the_batch_fingerprint_is_its_request_body_with_the_rendered_output_key() -> None:
    """The one deliberate difference of the request check is a parameter, not a second rule: the body's
    ``OutputPath`` has a ``{format}`` placeholder (not checked), the batch knows the key it renders to."""
    from_body = Fingerprint.of_body(BODY)
    assert from_body is not None and from_body.output_key is None
    assert adopt.fingerprint(ITEM, OURS, DEST) == replace(from_body, output_key=ITEM.output_key)
    elsewhere = _detail(output="thumbs/a.jpg")
    assert from_body.conflict(elsewhere, "t") is None
    assert "not where ours go" in (adopt.fingerprint(ITEM, OURS, DEST).conflict(elsewhere, "t") or "")


def _unnamed_rows() -> list[ImageTaskInfo]:
    return [
        _row("a", "2026-11-01T08:00:01Z"),
        _row("b", None),  # no CreateTime: nothing proves it older
        _row("c", "2026-11-01T08:00:03Z"),
    ]


def test_rows_naming_no_input_are_described_in_one_order() -> None:
    details = {t: _detail(key=f"raw/{t}-other.png") for t in "abc"}
    single, single_order = _single(_unnamed_rows(), details)
    batch, batch_order = _batch(_unnamed_rows(), details)
    assert single == [] and batch == {}
    assert single_order == batch_order == ["b", "c", "a"]


def test_rows_naming_no_input_are_described_under_one_cap(caplog: pytest.LogCaptureFixture) -> None:
    """Past the cap one request refuses before any describe; a batch describes the newest and warns."""
    details = {t: _detail(key=f"raw/{t}-other.png") for t in "abc"}
    with pytest.raises(MpsAmbiguousSubmissionError) as refused:
        _single(_unnamed_rows(), details, cap=2)
    assert refused.value.code == "AmbiguousSubmission.TooManyCandidates"
    with caplog.at_level("WARNING"):
        batch, described = _batch(_unnamed_rows(), details, cap=2)
    assert batch == {} and described == ["b", "c"]
    assert "describing the newest 2" in caplog.text and "1 older" in caplog.text
    assert _single(_unnamed_rows(), details, cap=3)[1] == _batch(_unnamed_rows(), details, cap=3)[1]


def test_a_row_whose_input_names_nothing_readable_is_described_by_both() -> None:
    rows = [_row("t", "2026-11-01T08:00:01Z", "ftp://somewhere/raw/a.png")]
    details = {"t": _detail()}
    assert _single(rows, details) == (["t"], ["t"])
    assert _batch(rows, details) == ({ITEM.input_uri: "t"}, ["t"])


def test_described_row_names_the_details_input_info() -> None:
    row = _row("t", "2026-11-01T08:00:01Z")
    named = described_row(row, _detail())
    assert json.loads(named.input or "") == _info("raw/a.png") and named.create_time == row.create_time
    assert described_row(row, {"Status": "FINISH"}).input is None


def test_newest_first_is_the_one_order_and_match_listed_rows_uses_it() -> None:
    rows = [
        _row("t2", "2026-11-01T08:00:05Z", f"cos://{BUCKET}/raw/a.png"),
        _row("t1", "2026-11-01T08:00:05Z", f"cos://{BUCKET}/raw/a.png"),  # same second: by task id
        _row("old", "2026-11-01T08:00:00Z", f"cos://{BUCKET}/raw/a.png"),
        _row("unset", "0000-00-00T00:00:00Z", f"cos://{BUCKET}/raw/a.png"),
    ]
    assert [r.task_id for r in newest_first(rows)] == ["unset", "t1", "t2", "old"]
    assert match_listed_rows(rows, {(BUCKET, "raw/a.png"): "a"}) == {"a": ["unset", "t1", "t2", "old"]}
