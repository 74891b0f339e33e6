"""The batch operator's templated fields that rendered to nothing (issue 12 item 5) are refused by the
shared check (``airflow_mps.utils.rendered.reject_rendered_empty``) before any call, naming the field;
``region`` is checked before the first COS listing.

The hook is replaced by a recorder that fails the test on any call other than reading the connection's
settings: "before any call" is what is asserted. The same refusal through the emulator's counters is in
tests/integration/operators/test_operator_batch_rendered_emulator.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_mps.operators.batch import REQUIRED_FIELDS, MpsBatchProcessImageOperator
from tests.hook_contract import ReadsConnectionSettings

SOURCE = "cos://raw-1250000000/raw/dt=2026-11-01/"
DESTINATION = "cos://raw-1250000000/enhanced/dt=2026-11-01/"
EMPTY_TEXTS = ["None", "", "  ", "null", "NULL", "[]", "undefined"]


class NoCallsHook(ReadsConnectionSettings):
    """Stands in for ``MpsHook``: the connection's region can be read; any API call fails the test."""

    def __init__(self, region: str | None = "ap-guangzhou") -> None:
        self.region = region
        self.calls: list[str] = []

    def get_settings(self) -> Any:
        return SimpleNamespace(region=self.region)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"API call {name} made before the arguments were validated")

        return call


def _op(hook: NoCallsHook | None = None, **overrides: Any) -> MpsBatchProcessImageOperator:
    args: dict[str, Any] = {
        "task_id": "batch",
        "source": SOURCE,
        "destination": DESTINATION,
        "image_task": {"EncodeConfig": {"Format": "JPEG"}},
        "deferrable": False,
    }
    args.update(overrides)
    op = MpsBatchProcessImageOperator(**args)
    op.__dict__["hook"] = hook or NoCallsHook()
    return op


def _refused(op: MpsBatchProcessImageOperator) -> str:
    with pytest.raises(AirflowFailException) as info:
        op.execute({"ti": SimpleNamespace(try_number=1)})
    assert not op.hook.calls, op.hook.calls
    return str(info.value)


def test_every_templated_field_is_checked() -> None:
    """The check covers every templated field; the required ones are fields."""
    assert set(REQUIRED_FIELDS) <= set(MpsBatchProcessImageOperator.template_fields)
    assert set(MpsBatchProcessImageOperator.template_fields) == {
        "source",
        "destination",
        "image_task",
        "suffixes",
        "tencentcloud_conn_id",
        "region",
    }


@pytest.mark.parametrize("field", list(MpsBatchProcessImageOperator.template_fields))
@pytest.mark.parametrize("value", EMPTY_TEXTS)
def test_a_field_rendered_to_an_empty_text_is_refused_naming_it(field: str, value: str) -> None:
    message = _refused(_op(**{field: value}))
    assert message.startswith(f"{field}: "), message
    assert "rendered to nothing" in message


@pytest.mark.parametrize("field", ["source", "suffixes"])
def test_an_empty_list_is_refused(field: str) -> None:
    message = _refused(_op(**{field: []}))
    assert message.startswith(f"{field}: ") and "rendered to nothing" in message


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_a_required_field_that_is_none_is_refused(field: str) -> None:
    message = _refused(_op(**{field: None}))
    assert message.startswith(f"{field}: ") and "missing" in message


def test_optional_fields_left_unset_are_fine() -> None:
    """``image_task=None`` (no ImageTask) and ``region=None`` (the connection's) are not rendered empty."""
    op = _op(image_task=None, region=None)
    cfg = op._validate()
    assert cfg.image_task is None and op._resolve_region() == "ap-guangzhou"
    assert not op.hook.calls


def _native(**kwargs: Any) -> MpsBatchProcessImageOperator:
    """The operator in a DAG with ``render_template_as_native_obj=True`` (a missing value renders None)."""
    from airflow.sdk import DAG

    with DAG(f"native_{kwargs['task_id']}", schedule=None, render_template_as_native_obj=True):
        op = MpsBatchProcessImageOperator(source=SOURCE, destination=DESTINATION, deferrable=False, **kwargs)
    op.__dict__["hook"] = NoCallsHook()
    return op


@pytest.mark.parametrize("field", ["image_task", "region"])
def test_an_optional_field_whose_template_rendered_to_none_is_refused(field: str) -> None:
    op = _native(task_id=f"n_{field}", **{field: "{{ params.v }}"})
    op.render_template_fields({"params": {"v": None}})
    assert getattr(op, field) is None and op.rendered_to_none(field)
    message = _refused(op)
    assert message.startswith(f"{field}: ") and "missing" in message


def test_a_template_rendering_a_real_value_passes() -> None:
    op = _native(task_id="ok", region="{{ params.r }}", image_task="{{ params.t }}")
    op.render_template_fields({"params": {"r": "ap-shanghai", "t": {"EncodeConfig": {"Format": "PNG"}}}})
    cfg = op._validate()
    assert cfg.extension == "png" and op._resolve_region() == "ap-shanghai"


@pytest.mark.parametrize(
    ("region", "connection_region", "named"),
    [
        ("Guangzhou!", "ap-guangzhou", "the argument"),
        (None, "../eu", "the connection"),
        (None, None, "no region given"),
    ],
)
def test_region_is_checked_before_any_listing(
    region: str | None, connection_region: str | None, named: str
) -> None:
    hook = NoCallsHook(region=connection_region)
    message = _refused(_op(hook, region=region))
    assert message.startswith("region: ") and named in message, message


def test_a_region_rendered_empty_no_longer_falls_back_to_the_connection() -> None:
    """Before, ``region=""`` (an undefined param) silently used the connection's region."""
    message = _refused(_op(NoCallsHook(region="ap-guangzhou"), region=""))
    assert message.startswith("region: ") and "rendered to nothing" in message
