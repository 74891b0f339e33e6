"""``airflow_mps.ownership.match_listed_rows``: many wanted COS inputs against one set of listing rows
(the batch operator's retry adoption), with the same reading of ``Input`` as the single-task finder."""

from __future__ import annotations

import json
from typing import Any

from airflow_mps.ownership import match_listed_rows

BUCKET = "b-1250000000"


def _row(task_id: str, listed: Any, created: str | None = None) -> Any:
    from airflow_mps.models import ImageTaskInfo

    return ImageTaskInfo(task_id=task_id, status="FINISH", input=listed, create_time=created)


def _emulator(key: str, bucket: str = BUCKET) -> str:
    info = {"Type": "COS", "CosInputInfo": {"Bucket": bucket, "Region": "ap-guangzhou", "Object": "/" + key}}
    return json.dumps(info, separators=(",", ":"), sort_keys=True)


def test_rows_match_by_bucket_and_key_newest_first() -> None:
    wanted = {
        (BUCKET, "raw/a b.jpg"): "uri-a",
        (BUCKET, "raw/b.jpg"): "uri-b",
        ("other-125", "raw/a b.jpg"): "x",
    }
    rows = [
        _row("t-old", _emulator("raw/a b.jpg"), "2026-11-01T08:00:00Z"),
        _row("t-new", f"cos://{BUCKET}/raw/a b.jpg", "2026-11-01T08:00:05Z"),
        _row("t-b", f"https://{BUCKET}.cos.ap-guangzhou.myqcloud.com/raw/b.jpg", "2026-11-01T08:00:01Z"),
        _row("t-new", _emulator("raw/a b.jpg"), "2026-11-01T08:00:05Z"),  # listed again (moved on)
    ]
    assert match_listed_rows(rows, wanted) == {"uri-a": ["t-new", "t-old"], "uri-b": ["t-b"]}


def test_a_row_without_a_bucket_matches_the_key_in_every_bucket() -> None:
    wanted = {(BUCKET, "raw/a.jpg"): 1, ("other-125", "raw/a.jpg"): 2}
    assert match_listed_rows([_row("t", "/raw/a.jpg")], wanted) == {1: ["t"], 2: ["t"]}


def test_rows_naming_nothing_a_url_or_another_storage_match_nothing() -> None:
    wanted = {(BUCKET, "raw/a.jpg"): "a"}
    rows = [
        _row("none", None),
        _row("url", json.dumps({"Type": "URL", "UrlInputInfo": {"Url": "https://x/raw/a.jpg"}})),
        _row("s3", f"s3://{BUCKET}/raw/a.jpg"),
        _row("other-key", f"cos://{BUCKET}/raw/b.jpg"),
    ]
    assert match_listed_rows(rows, wanted) == {}
