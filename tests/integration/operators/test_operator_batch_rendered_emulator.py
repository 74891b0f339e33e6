"""The batch operator against the emulator: a templated field that Airflow's renderer turned into
nothing (``"None"``, ``""``, ``"null"``, ``"[]"``, or ``None`` with native rendering) fails the task
naming the field, and the emulator's own counters show **0 requests** (MPS and COS alike) and 0 tasks.

The control row renders real values through the same path and does reach the emulator, so a refusal
here is the check's doing, not a broken set-up.
"""

from __future__ import annotations

import io
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

BUCKET = "rendered-1250000000"
JPEG = {"EncodeConfig": {"Format": "JPEG", "Quality": 80}}

# (field, kwargs with templates, params, native rendering)
ROWS: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("source", {"source": "{{ params.src }}"}, {"src": None}, False),  # a missing value → "None"
    ("destination", {"destination": "{{ params.dst }}"}, {"dst": ""}, False),
    ("image_task", {"image_task": "{{ params.t | tojson }}"}, {"t": None}, False),  # → "null"
    ("image_task", {"image_task": "{{ params.t }}"}, {"t": None}, True),  # → None
    ("suffixes", {"suffixes": "{{ params.s }}"}, {"s": []}, False),  # → "[]"
    ("region", {"region": "{{ params.r }}"}, {"r": ""}, False),  # used to fall back to the connection's
    ("region", {"region": "{{ params.r }}"}, {"r": None}, True),
    ("tencentcloud_conn_id", {"tencentcloud_conn_id": "{{ params.c }}"}, {"c": "None"}, False),
]


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 160, 90)).save(buf, format="PNG")
    return buf.getvalue()


def _operator(part: str, kwargs: dict[str, Any], native: bool, task_id: str) -> Any:
    from airflow.sdk import DAG

    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": task_id,
        "source": f"cos://{BUCKET}/raw/{part}/",
        "destination": f"cos://{BUCKET}/enhanced/{part}/",
        "image_task": JPEG,
        "deferrable": False,
        "wait_for_completion": False,
        "poll_interval": 0.2,
    }
    args.update(kwargs)
    with DAG(f"rendered_{task_id}", schedule=None, render_template_as_native_obj=native):
        return MpsBatchProcessImageOperator(**args)


def _context(params: dict[str, Any]) -> dict[str, Any]:
    return {"ti": SimpleNamespace(try_number=1, xcom_push=lambda *a, **k: None), "params": params}


def _requests(emulator: Any) -> dict[str, int]:
    return {a: c["received"] for a, c in emulator.stats()["actions"].items() if c["received"]}


@pytest.fixture
def partition(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    part = f"dt={uuid.uuid4().hex[:10]}"
    emulator.cos_backend.put_object(BUCKET, f"raw/{part}/a.png", _png(), "image/png")
    emulator.reset()  # the counters start from the seeding above
    return part


@pytest.mark.parametrize(
    ("field", "kwargs", "params", "native"),
    ROWS,
    ids=[f"{f}-{'native' if n else repr(next(iter(p.values())))}" for f, _, p, n in ROWS],
)
def test_a_field_rendered_to_nothing_is_refused_with_zero_requests(
    field: str, kwargs: dict[str, Any], params: dict[str, Any], native: bool, partition: str, emulator: Any
) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = _operator(partition, kwargs, native, task_id=f"r_{field}")
    ctx = _context(params)
    op.render_template_fields(ctx)
    with pytest.raises(AirflowFailException) as info:
        op.execute(ctx)
    assert str(info.value).startswith(f"{field}: "), str(info.value)
    assert _requests(emulator) == {}, f"the emulator saw requests: {_requests(emulator)}"
    assert emulator.stats()["tasks_created"] == 0


def test_control_the_same_templates_with_values_reach_the_emulator(partition: str, emulator: Any) -> None:
    op = _operator(
        partition,
        {
            "destination": "{{ params.dst }}",
            "region": "{{ params.r }}",
            "image_task": "{{ params.t | tojson }}",
        },
        native=False,
        task_id="control",
    )
    ctx = _context({"dst": f"cos://{BUCKET}/enhanced/{partition}/", "r": "ap-guangzhou", "t": JPEG})
    op.render_template_fields(ctx)
    summary = op.execute(ctx)
    assert summary["total"] == 1 and summary["submitted"] == 1, summary
    assert _requests(emulator).get("ProcessImage") == 1
    assert emulator.stats()["submissions_by_input"] == {f"cos://{BUCKET}/raw/{partition}/a.png": 1}
