"""Bad inputs: a table of malformed operator arguments and rendered templates, each refused before any
API call.

Every row builds the real operator (single-image, batch or sensor) against the session emulator, renders
its templated fields with Airflow's own renderer when the row is a template, and executes it. The row
passes only if
- the task fails with an exception whose message names the argument (snake_case name, or the API field
  it maps to, e.g. ``image_task`` / ``ImageTask``),
- the emulator received no request at all (MPS and COS: its own counters), and
- no partial state is left: ``task_state_store`` untouched, nothing written to COS.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

BUCKET = "badinput-1250000000"
SRC = f"cos://{BUCKET}/raw/a.png"
JPEG = {"EncodeConfig": {"Format": "JPEG", "Quality": 80}}


class RecordingStore:
    """``task_state_store`` stand-in that records every write (the rows must leave it untouched)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def _single(**overrides: Any) -> Any:
    from airflow_mps.operators.mps import MpsProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "single",
        "input": SRC,
        "image_task": JPEG,
        "deferrable": False,
        "poll_interval": 0.2,
    }
    args.update(overrides)
    return MpsProcessImageOperator(**args)


def _batch(**overrides: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "batch",
        "source": f"cos://{BUCKET}/raw/",
        "destination": f"cos://{BUCKET}/enhanced/",
        "image_task": JPEG,
        "deferrable": False,
        "poll_interval": 0.2,
    }
    args.update(overrides)
    return MpsBatchProcessImageOperator(**args)


def _sensor(**overrides: Any) -> Any:
    from airflow_mps.sensors.mps import MpsImageTaskSensor

    args: dict[str, Any] = {
        "task_id": "sensor",
        "mps_task_id": "2600011633-ImageTask-x",
        "poke_interval": 0.2,
        "timeout": 5,
        "deferrable": False,
    }
    args.update(overrides)
    return MpsImageTaskSensor(**args)


# (operator factory, argument named in the message, kwargs, template params or None)
# With params, the kwargs hold Jinja templates that Airflow renders from ``params`` before execute().
CASES: list[Any] = [
    # ---- single-image operator: input
    ("single", "input", {"input": ""}, None),
    ("single", "input", {"input": None}, None),
    ("single", "input", {"input": 42}, None),
    ("single", "input", {"input": "ftp://host/a.png"}, None),
    ("single", "input", {"input": "cos://"}, None),
    ("single", "input", {"input": f"cos://{BUCKET}/"}, None),
    ("single", "input", {"input": "/local/path/a.png"}, None),
    (
        "single",
        "input",
        {"input": {"Type": "COS", "CosInputInfo": {"Bucket": BUCKET, "Region": "ap-guangzhou"}}},
        None,
    ),
    ("single", "input", {"input": {"Type": "FTP"}}, None),
    ("single", "input", {"input": {"Type": "COS"}}, None),
    ("single", "input", {"input": {"Type": "URL", "UrlInputInfo": {"Url": "not a url"}}}, None),
    ("single", "input", {"input": ["cos://a-1250000000/b.png"]}, None),
    ("single", "input", {"input": "{{ params.key }}"}, {"key": ""}),
    ("single", "input", {"input": "{{ params.key }}"}, {"key": "None"}),
    ("single", "input", {"input": "cos://{{ params.bucket }}/raw/a.png"}, {"bucket": ""}),
    # ---- single-image operator: image_task and friends
    ("single", "image_task", {"image_task": "not json"}, None),
    ("single", "image_task", {"image_task": "[1, 2]"}, None),
    ("single", "image_task", {"image_task": 3.14}, None),
    ("single", "image_task", {"image_task": {"EncodeConfig": {"Format": "GIFF"}}}, None),
    ("single", "image_task", {"image_task": {"EncodeConfig": {"Quality": 101}}}, None),
    ("single", "image_task", {"image_task": {"EncodeConfig": {"Quality": -1}}}, None),
    ("single", "image_task", {"image_task": {"EncodeConfig": {"Quality": "high"}}}, None),
    ("single", "image_task", {"image_task": {"Bogus": 1}}, None),
    (
        "single",
        "image_task",
        {"image_task": {"EnhanceConfig": {"SuperResolution": {"Switch": "MAYBE"}}}},
        None,
    ),
    (
        "single",
        "image_task",
        {"image_task": {"EnhanceConfig": {"SuperResolution": {"Switch": "ON", "Size": 7}}}},
        None,
    ),
    (
        "single",
        "image_task",
        {"image_task": "{{ params.task }}"},
        {"task": json.dumps({"EncodeConfig": {"Format": "JPEG", "Quality": 500}})},
    ),
    ("single", "image_task", {"image_task": "{{ params.task }}"}, {"task": "{'EncodeConfig': 1}"}),
    ("single", "output_storage", {"output_storage": "ftp://x"}, None),
    ("single", "output_storage", {"output_storage": {"Type": "AWS-S3"}}, None),
    ("single", "output_storage", {"output_storage": 17}, None),
    ("single", "output_dir", {"output_dir": 5}, None),
    ("single", "output_path", {"output_path": ["/a.jpg"]}, None),
    ("single", "definition", {"definition": "abc"}, None),
    ("single", "definition", {"definition": -3}, None),
    ("single", "schedule_id", {"schedule_id": "x"}, None),
    ("single", "add_on_parameter", {"add_on_parameter": "not json"}, None),
    ("single", "add_on_parameter", {"add_on_parameter": [1]}, None),
    ("single", "std_ext_info", {"std_ext_info": {"a": 1}}, None),
    ("single", "resource_id", {"resource_id": 7}, None),
    ("single", "poll_interval", {"poll_interval": 0}, None),
    ("single", "poll_interval", {"poll_interval": -5}, None),
    ("single", "poll_interval", {"poll_interval": "fast"}, None),
    ("single", "poll_interval", {"poll_interval": True}, None),
    ("single", "poll_interval", {"poll_interval": float("nan")}, None),
    ("single", "timeout", {"timeout": "soon"}, None),
    ("single", "timeout", {"timeout": float("inf")}, None),
    ("single", "timeout", {"timeout": -1}, None),
    # ---- single-image operator: templates that rendered to nothing (issue 12 item 5)
    ("single", "output_dir", {"output_dir": "{{ params.d }}"}, {"d": "None"}),
    ("single", "output_dir", {"output_dir": "None"}, None),
    ("single", "output_dir", {"output_dir": "{{ params.d }}"}, {"d": ""}),
    ("single", "output_path", {"output_path": "{{ params.p }}"}, {"p": "null"}),
    ("single", "image_task", {"image_task": "{{ params.t }}"}, {"t": ""}),
    ("single", "image_task", {"image_task": "{{ params.t }}"}, {"t": "null"}),
    ("single", "image_task", {"image_task": "{{ params.t | tojson }}"}, {"t": None}),
    ("single", "image_task", {"image_task": "[]"}, None),
    ("single", "resource_id", {"resource_id": "{{ params.r }}"}, {"r": "None"}),
    ("single", "std_ext_info", {"std_ext_info": "{{ params.x }}"}, {"x": "None"}),
    ("single", "std_ext_info", {"std_ext_info": ""}, None),
    ("single", "output_storage", {"output_storage": "{{ params.o }}"}, {"o": "None"}),
    ("single", "add_on_parameter", {"add_on_parameter": "{{ params.a }}"}, {"a": "null"}),
    ("single", "definition", {"definition": "{{ params.d }}"}, {"d": "None"}),
    ("single", "schedule_id", {"schedule_id": "{{ params.s }}"}, {"s": ""}),
    ("single", "region", {"region": "{{ params.r }}"}, {"r": "None"}),
    ("single", "input", {"input": "{{ params.i }}"}, {"i": "[]"}),
    ("single", "input", {"input": "  NULL "}, None),
    # ---- batch operator
    ("batch", "source", {"source": ""}, None),
    ("batch", "source", {"source": 42}, None),
    ("batch", "source", {"source": "https://example.com/raw/"}, None),
    ("batch", "source", {"source": ["not-a-uri"]}, None),
    ("batch", "source", {"source": "cos://{{ params.bucket }}/raw/"}, {"bucket": ""}),
    ("batch", "source", {"source": "{{ params.src }}"}, {"src": "None"}),
    ("batch", "destination", {"destination": ""}, None),
    ("batch", "destination", {"destination": "https://example.com/out/"}, None),
    ("batch", "destination", {"destination": f"cos://{BUCKET}/raw/"}, None),  # output == input
    ("batch", "destination", {"destination": f"cos://{BUCKET}/raw/sub/"}, None),  # inside the input
    ("batch", "destination", {"destination": None}, None),
    ("batch", "destination", {"destination": "cos://{{ params.b }}/enhanced/"}, {"b": ""}),
    ("batch", "image_task", {"image_task": {"EncodeConfig": {"Format": "TIFF"}}}, None),
    ("batch", "image_task", {"image_task": "{bad json"}, None),
    ("batch", "image_task", {"image_task": {"EncodeConfig": {"Quality": 0}}}, None),
    ("batch", "image_task", {"image_task": "{{ params.t }}"}, {"t": '{"EncodeConfig": {"Format": "bmpx"}}'}),
    ("batch", "suffixes", {"suffixes": []}, None),
    ("batch", "suffixes", {"suffixes": 5}, None),
    ("batch", "suffixes", {"suffixes": [""]}, None),
    ("batch", "max_images", {"max_images": 0}, None),
    ("batch", "max_images", {"max_images": -1}, None),
    ("batch", "max_failed_ratio", {"max_failed_ratio": 1.5}, None),
    ("batch", "max_failed_ratio", {"max_failed_ratio": -0.1}, None),
    ("batch", "max_failed_ratio", {"max_failed_ratio": "lots"}, None),
    ("batch", "submit_concurrency", {"submit_concurrency": 0}, None),
    ("batch", "submit_concurrency", {"submit_concurrency": 10_000}, None),
    ("batch", "submit_concurrency", {"submit_concurrency": True}, None),
    ("batch", "poll_interval", {"poll_interval": 0}, None),
    ("batch", "timeout", {"timeout": -5}, None),
    ("batch", "manifest_name", {"manifest_name": "a/b"}, None),
    ("batch", "manifest_name", {"manifest_name": ""}, None),
    ("batch", "max_failed_in_xcom", {"max_failed_in_xcom": -1}, None),
    # ---- sensor
    ("sensor", "mps_task_id", {"mps_task_id": ""}, None),
    ("sensor", "mps_task_id", {"mps_task_id": "   "}, None),
    ("sensor", "mps_task_id", {"mps_task_id": None}, None),
    ("sensor", "mps_task_id", {"mps_task_id": "{{ params.id }}"}, {"id": ""}),
    ("sensor", "mps_task_id", {"mps_task_id": "{{ params.id }}"}, {"id": "None"}),
    ("sensor", "mps_task_id", {"mps_task_id": "{{ params.id }}"}, {"id": "null"}),
    ("sensor", "mps_task_id", {"mps_task_id": "{{ params.id }}"}, {"id": "[]"}),
    ("sensor", "mps_task_id", {"mps_task_id": "0"}, None),
    ("sensor", "mps_task_id", {"mps_task_id": "../../x"}, None),
    ("sensor", "mps_task_id", {"mps_task_id": "{{ params.id }}"}, {"id": "a b"}),
    ("sensor", "mps_task_id", {"mps_task_id": 1250000000}, None),
    ("sensor", "mps_task_id", {"mps_task_id": "x" * 200}, None),
    ("sensor", "region", {"region": "{{ params.r }}"}, {"r": "None"}),
    ("sensor", "region", {"region": ""}, None),
    ("sensor", "region", {"region": "../eu"}, None),
    ("sensor", "region", {"region": "{{ params.r }}"}, {"r": "null"}),
    ("sensor", "tencentcloud_conn_id", {"tencentcloud_conn_id": "{{ params.c }}"}, {"c": ""}),
    ("sensor", "poke_interval", {"poke_interval": -1}, None),
    ("sensor", "timeout", {"timeout": -1}, None),
    ("sensor", "mode", {"mode": "sometimes"}, None),
]

FACTORIES = {"single": _single, "batch": _batch, "sensor": _sensor}


def _names(arg: str) -> set[str]:
    """Ways a message may name the argument: ``image_task``, ``ImageTask``, ``image task``."""
    pascal = "".join(part.capitalize() for part in arg.split("_"))
    return {arg, pascal, arg.replace("_", " ")}


def _received(emulator: Any) -> int:
    return sum(counts.get("received", 0) for counts in emulator.stats()["actions"].values())


def _values(case: Any) -> tuple[str, str, dict[str, Any], dict[str, Any] | None]:
    return tuple(case.values) if hasattr(case, "values") else case  # type: ignore[return-value]


def _case_id(case: Any) -> str:
    kind, arg, kwargs, params = _values(case)
    value = next(iter(kwargs.values()))
    text = re.sub(r"[^A-Za-z0-9]+", "_", str(params if params else value))[:30]
    return f"{kind}-{arg}-{text}"


def test_table_is_big_enough() -> None:
    rows = [_values(c) for c in CASES]
    assert len(rows) >= 60
    assert {kind for kind, *_ in rows} == set(FACTORIES)
    assert sum(1 for *_, params in rows if params) >= 10  # rendered templates, not only literals


@pytest.mark.parametrize(("kind", "arg", "kwargs", "params"), CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_is_refused_before_any_api_call(
    kind: str,
    arg: str,
    kwargs: dict[str, Any],
    params: dict[str, Any] | None,
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    emulator.cos_backend.create_bucket(BUCKET)
    store = RecordingStore()
    context: dict[str, Any] = {
        "ti": SimpleNamespace(try_number=1, xcom_push=lambda *a, **k: None, start_date=None),
        "task_state_store": store,
        "params": params or {},
    }
    before = _received(emulator)
    objects_before = emulator.cos_backend.list_objects(BUCKET).contents

    with pytest.raises(Exception) as info:
        op = FACTORIES[kind](**kwargs)
        if params is not None:
            op.render_template_fields(context)
        op.execute(context)

    message = str(info.value)
    assert any(name.lower() in message.lower() for name in _names(arg)), (
        f"{type(info.value).__name__}: {message!r} does not name {arg!r}"
    )
    from airflow.providers.common.compat.sdk import TaskDeferred

    assert not isinstance(info.value, TaskDeferred)
    assert _received(emulator) == before, f"{arg}: the emulator saw requests: {emulator.stats()['actions']}"
    assert store.data == {}, f"partial state left in task_state_store: {store.data}"
    assert emulator.cos_backend.list_objects(BUCKET).contents == objects_before
