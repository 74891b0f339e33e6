"""Metrics for real (issue 14 item 6): the single-image operator against the emulator with throttling
injected, through the real hook and SDK; ``Stats`` replaced by a stub that records what it is given."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("PIL")
from PIL import Image

from airflow_mps.utils.metrics import CALLS_THROTTLED, IMAGES_SUBMITTED, IMAGES_SUCCEEDED, SUBMIT_LATENCY
from tests.metrics_support import StatsStub

BUCKET = "metrics-1250000000"


def test_throttled_attempts_submission_and_success_are_counted(
    emulator: Any, monkeypatch: pytest.MonkeyPatch, stats: StatsStub
) -> None:
    from airflow_mps.operators.mps import MpsProcessImageOperator

    stub = stats
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    key = f"raw/{uuid.uuid4().hex[:8]}.png"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    emulator.cos_backend.put_object(BUCKET, key, buf.getvalue(), "image/png")
    emulator.faults.throttle("ProcessImage", count=2)
    emulator.faults.throttle("DescribeImageTaskDetail", count=1)
    store: dict[str, Any] = {}
    context = {
        "ti": SimpleNamespace(
            try_number=1, xcom_push=lambda *a, **k: None, start_date=datetime.now(timezone.utc), stats_tags={}
        ),
        "task_state_store": SimpleNamespace(
            get=lambda k, d=None: store.get(k, d), set=lambda k, v, **_: store.__setitem__(k, v)
        ),
    }
    op = MpsProcessImageOperator(
        task_id="enhance",
        input=f"cos://{BUCKET}/{key}",
        region="ap-guangzhou",
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        poll_interval=0.1,
        deferrable=False,
    )
    assert op.execute(context)["status"] == "SUCCESS"
    assert stub.total(IMAGES_SUBMITTED) == 1 and stub.total(IMAGES_SUCCEEDED) == 1
    assert stub.total(CALLS_THROTTLED) == 3  # every throttled attempt the hook retried
    assert stub.total(SUBMIT_LATENCY) == 1
    assert {tags["operator"] for _, _, _, tags in stub.calls} == {"MpsProcessImageOperator"}
