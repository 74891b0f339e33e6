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
