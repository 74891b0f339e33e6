"""The "MPS Console" link: URL shape, per-task-instance lookup through XCom, declared on mapped operators."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_mps.links import mps as links
from airflow_mps.links.mps import MpsTaskLink, mps_task_console_url
from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.sensors.mps import MpsImageTaskSensor


def test_console_url_encodes_the_task_id() -> None:
    assert mps_task_console_url("24000089-WorkflowTask-0723") == (
        "https://console.cloud.tencent.com/mps/tasks?taskId=24000089-WorkflowTask-0723"
    )
    assert mps_task_console_url("a/b c&d").endswith("?taskId=a%2Fb%20c%26d")


def test_console_base_url_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW__TENCENTCLOUD_MPS__CONSOLE_BASE_URL", "https://console.tencentcloud.com/mps/tasks"
    )
    assert mps_task_console_url("t1") == "https://console.tencentcloud.com/mps/tasks?taskId=t1"


def test_link_reads_the_task_instances_own_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, str]] = []
    values = {0: "task-a", 1: "task-b", 2: None}

    class FakeXCom:
        @staticmethod
        def get_value(*, ti_key: Any, key: str) -> Any:
            seen.append((ti_key, key))
            return values[ti_key.map_index]

    import airflow.providers.common.compat.sdk as compat

    monkeypatch.setattr(compat, "XCom", FakeXCom, raising=False)

    class Key:
        def __init__(self, map_index: int) -> None:
            self.map_index = map_index

    link = MpsTaskLink()
    assert link.name == "MPS Console"
    op = MpsProcessImageOperator(task_id="p", input="x")
    assert link.get_link(op, ti_key=Key(0)).endswith("taskId=task-a")
    assert link.get_link(op, ti_key=Key(1)).endswith("taskId=task-b")
    assert link.get_link(op, ti_key=Key(2)) == ""
    assert [k for _, k in seen] == [links.MPS_TASK_ID_XCOM_KEY] * 3


def test_links_are_class_attributes_and_survive_mapping() -> None:
    from airflow.sdk import DAG

    assert isinstance(MpsProcessImageOperator.operator_extra_links[0], MpsTaskLink)
    assert isinstance(MpsImageTaskSensor.operator_extra_links[0], MpsTaskLink)
    with DAG("links_mapped", schedule=None):
        mapped = MpsProcessImageOperator.partial(task_id="m", region="ap-guangzhou").expand(
            input=["cos://b-1/a.jpg", "cos://b-1/b.jpg"]
        )
    assert [type(x) for x in mapped.operator_extra_links] == [MpsTaskLink]
