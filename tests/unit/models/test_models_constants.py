"""Domain constants defined once, and the API time helpers that replace the per-module copies."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_mps.models.constants import (
    API_TIME_FORMAT,
    FINISH,
    PROCESSING,
    TASK_RETENTION_SECONDS,
    TASK_STATES,
    WAITING,
    format_api_time,
    parse_api_time,
)

EPOCH = 1793491200.0  # 2026-11-01T00:00:00Z


def test_domain_facts() -> None:
    assert TASK_STATES == ("WAITING", "PROCESSING", "FINISH") == (WAITING, PROCESSING, FINISH)
    assert TASK_RETENTION_SECONDS == 7 * 24 * 3600  # mps-api.md §2: tasks are queryable for 7 days
    assert API_TIME_FORMAT == "%Y-%m-%dT%H:%M:%SZ"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EPOCH, "2026-11-01T00:00:00Z"),
        (EPOCH + 59.999, "2026-11-01T00:00:59Z"),  # rounded down, never up
        (int(EPOCH), "2026-11-01T00:00:00Z"),
        (datetime(2026, 11, 1, 8, 0, 0, 999999, tzinfo=timezone(timedelta(hours=8))), "2026-11-01T00:00:00Z"),
        (datetime(2026, 11, 1, 0, 0, 1), "2026-11-01T00:00:01Z"),  # naive = UTC
    ],
)
def test_format_api_time(value: float | datetime, expected: str) -> None:
    assert format_api_time(value) == expected


@pytest.mark.parametrize("value", ["2026-11-01T00:00:00Z", None, True])
def test_format_api_time_refuses_other_types(value: object) -> None:
    with pytest.raises(TypeError):
        format_api_time(value)  # type: ignore[arg-type]  # the wrong type is the point


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T00:00:00Z", EPOCH),
        ("2026-11-01T08:00:00+08:00", EPOCH),  # other ISO 8601 forms are read too
        ("2026-11-01T00:00:00.5Z", EPOCH + 0.5),
        ("2026-11-01T00:00:00", EPOCH),  # no zone = UTC
        ("0000-00-00T00:00:00Z", None),  # the service's "not set"
        ("", None),
        (None, None),
        ("yesterday", None),
        ("2026-13-01T00:00:00Z", None),
    ],
)
def test_parse_api_time(text: str | None, expected: float | None) -> None:
    assert parse_api_time(text) == expected


def test_round_trip() -> None:
    assert parse_api_time(format_api_time(EPOCH + 0.7)) == EPOCH
