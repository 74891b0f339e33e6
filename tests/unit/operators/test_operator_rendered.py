"""Rendered-empty values and task-id shapes (issue 12 item 5): the shared helper
``airflow_mps.utils.rendered.reject_rendered_empty`` and how the operator and the sensor use it.

The end-to-end rows (real operators, emulator, zero requests) are in tests/reliability/test_bad_inputs.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_mps.errors import MpsValidationError
from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.sensors.mps import MpsImageTaskSensor
from airflow_mps.utils.rendered import (
    RENDERED_EMPTY_TEXTS,
    check_task_id,
    is_rendered_empty,
    reject_rendered_empty,
)

COS_INPUT = "cos://in-1250000000/raw/a.jpg"


@pytest.mark.parametrize(
    "value", [None, "", "  ", "None", "none", " NULL ", "null", "[]", "undefined", [], ()]
)
def test_rendered_empty_values(value: Any) -> None:
    assert is_rendered_empty(value)


@pytest.mark.parametrize("value", ["x", "0", "{}", "[1]", 0, False, {"a": 1}, [""], "NoneType", "nil"])
def test_values_that_are_something(value: Any) -> None:
    assert not is_rendered_empty(value)
    reject_rendered_empty("f", value, required=True)


def test_reject_names_the_field_and_lets_an_unset_optional_pass() -> None:
    reject_rendered_empty("output_dir", None)  # not given: the default applies
    with pytest.raises(MpsValidationError) as info:
        reject_rendered_empty("output_dir", "None")
    assert info.value.field == "output_dir" and "output_dir" in str(info.value)
    assert "rendered to nothing" in str(info.value) and info.value.code == "InvalidParameterValue"
    with pytest.raises(MpsValidationError) as required:
        reject_rendered_empty("input", None, required=True)
    assert required.value.code == "MissingParameter" and "input" in str(required.value)
    assert {"", "none", "null", "[]"} <= RENDERED_EMPTY_TEXTS


@pytest.mark.parametrize(
    "task_id",
    [
        "24000089-WorkflowTask-0723542d0c164c958ba116874fa9b0c4",  # mps-api.md example
        "3pg2p4jEfbFHYo2rgB0Kzl0esg4NeBItcZyllxO4HNJXdNeRUhk9GjDMjCj1auPv",  # the opaque 64-char form
        "2600011633-ImageTask-x",
        "task-1",
        "  1250000000-WorkflowTask-ab  ",  # blanks around a rendered value are dropped
    ],
)
def test_task_id_shapes_that_are_accepted(task_id: str) -> None:
    assert check_task_id("mps_task_id", task_id) == task_id.strip()


@pytest.mark.parametrize(
    "task_id", ["[]", "0", "1250000000", "../../x", "a b", "a/b", "a.b", "{{ x }}", "x" * 129, 5, ["a"]]
)
def test_task_ids_that_cannot_be_one(task_id: Any) -> None:
    with pytest.raises(MpsValidationError) as info:
        check_task_id("mps_task_id", task_id)
    assert "mps_task_id" in str(info.value)
    if isinstance(task_id, str) and task_id not in ("[]",):
        assert "WorkflowTask" in str(info.value)  # the allowed shape is named


def _native(**kwargs: Any) -> MpsProcessImageOperator:
    """The operator in a DAG with ``render_template_as_native_obj=True`` (None renders as None)."""
    from airflow.sdk import DAG

    with DAG(f"native_{kwargs['task_id']}", schedule=None, render_template_as_native_obj=True):
        return MpsProcessImageOperator(input=COS_INPUT, region="ap-guangzhou", **kwargs)


def test_a_template_that_renders_to_none_is_refused_even_in_an_optional_field() -> None:
    op = _native(task_id="p", output_dir="{{ params.d }}")
    op.render_template_fields({"params": {"d": None}})
    assert op.output_dir is None and op.rendered_to_none("output_dir")
    with pytest.raises(AirflowFailException, match="output_dir"):
        op.build_request()
    untouched = _native(task_id="q")
    untouched.render_template_fields({"params": {}})
    assert not untouched.rendered_to_none("output_dir")
    untouched.build_request()  # optional arguments left unset are fine


def test_operator_message_names_the_argument_without_any_call() -> None:
    op = MpsProcessImageOperator(task_id="p", input=COS_INPUT, region="ap-guangzhou", image_task="null")
    op.__dict__["hook"] = None  # any API use would fail loudly
    with pytest.raises(AirflowFailException) as info:
        op.execute({})
    assert "invalid argument 'image_task'" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"mps_task_id": "[]"}, "mps_task_id"),
        ({"mps_task_id": "None"}, "mps_task_id"),
        ({"mps_task_id": "../../x"}, "mps_task_id"),
        ({"mps_task_id": "t-1", "region": "None"}, "region"),
        ({"mps_task_id": "t-1", "region": "Guangzhou!"}, "region"),
        ({"mps_task_id": "t-1", "tencentcloud_conn_id": ""}, "tencentcloud_conn_id"),
    ],
)
def test_sensor_refuses_before_any_call(kwargs: dict[str, Any], field: str) -> None:
    sensor = MpsImageTaskSensor(task_id="s", **kwargs)
    sensor.__dict__["hook"] = None  # any API use would fail loudly
    with pytest.raises(AirflowFailException) as info:
        sensor.poke({})
    assert f"'{field}'" in str(info.value)


def test_mixin_method_is_what_the_batch_operator_calls() -> None:
    """``reject_rendered_empty_fields`` (inherited from MpsBaseOperator by every MPS operator)."""
    op = MpsProcessImageOperator(task_id="p", input=COS_INPUT, region="ap-guangzhou")
    op.reject_rendered_empty_fields(op.template_fields, required=("input",))
    op.input = " none"
    with pytest.raises(MpsValidationError, match="input"):
        op.reject_rendered_empty_fields(["input"], required=("input",))
