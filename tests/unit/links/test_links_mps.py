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


# ------------------------------------------------------------------ where the link points (issue 14 item 5)
TASK = "1250000000-WorkflowTask-0723542d0c164c958ba116874fa9b0c4"
CONSOLE = f"https://console.cloud.tencent.com/mps/tasks?taskId={TASK}"


@pytest.mark.parametrize(
    ("extras", "expected"),
    [
        ({}, CONSOLE),
        ({"endpoint": "127.0.0.1:9100", "protocol": "http"}, f"http://127.0.0.1:9100/tasks/{TASK}"),
        ({"endpoint": "127.0.0.2:9100", "protocol": "http"}, f"http://127.0.0.2:9100/tasks/{TASK}"),
        ({"endpoint": "localhost:9100", "protocol": "https"}, f"https://localhost:9100/tasks/{TASK}"),
        ({"endpoint": "[::1]:9100", "protocol": "http"}, f"http://[::1]:9100/tasks/{TASK}"),
        ({"endpoint": "http://127.0.0.1:9100/"}, f"http://127.0.0.1:9100/tasks/{TASK}"),
        (
            {"extra__tencentcloud__endpoint": "127.0.0.1:9100", "protocol": "http"},
            f"http://127.0.0.1:9100/tasks/{TASK}",
        ),
        (
            {"endpoint": "127.0.0.1"},
            f"https://127.0.0.1/tasks/{TASK}",
        ),  # protocol defaults to https, as the hook
        ({"endpoint": "mps.tencentcloudapi.com"}, CONSOLE),
        ({"endpoint": "mps.ap-guangzhou.tencentcloudapi.com", "protocol": "https"}, CONSOLE),
        ({"endpoint": "10.0.0.5:9100", "protocol": "http"}, CONSOLE),
        ({"endpoint": "emulator:9100", "protocol": "http"}, CONSOLE),
        (
            {"endpoint": "emulator:9100", "protocol": "http", "console_url": "http://localhost:9100/"},
            f"http://localhost:9100/tasks/{TASK}",
        ),
        (
            {"console_url": "https://console.tencentcloud.com/mps/tasks?taskId={task_id}"},
            f"https://console.tencentcloud.com/mps/tasks?taskId={TASK}",
        ),
        ({"endpoint": "127.0.0.1:9100", "console_url": ""}, f"https://127.0.0.1:9100/tasks/{TASK}"),
    ],
)
def test_link_target_is_decided_from_the_connection(extras: dict[str, Any], expected: str) -> None:
    assert links.task_url(links.task_url_template(extras), TASK) == expected


def test_task_id_is_encoded_in_every_target() -> None:
    emulator = links.task_url_template({"endpoint": "127.0.0.1:9100", "protocol": "http"})
    assert links.task_url(emulator, "a/b c?d") == "http://127.0.0.1:9100/tasks/a%2Fb%20c%3Fd"
    assert links.task_url(links.task_url_template({}), "a/b c&d").endswith("?taskId=a%2Fb%20c%26d")


def test_console_base_url_still_applies_to_the_console_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW__TENCENTCLOUD_MPS__CONSOLE_BASE_URL", "https://console.tencentcloud.com/mps/tasks"
    )
    assert (
        links.task_url(links.task_url_template({}), "t1")
        == "https://console.tencentcloud.com/mps/tasks?taskId=t1"
    )


class _Key:
    map_index = -1


def _fake_xcom(monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    class FakeXCom:
        @staticmethod
        def get_value(*, ti_key: Any, key: str) -> Any:
            return value

    import airflow.providers.common.compat.sdk as compat

    monkeypatch.setattr(compat, "XCom", FakeXCom, raising=False)


def test_link_follows_the_operators_connection_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a link must not make a network call")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv(
        "AIRFLOW_CONN_MPS_EMU", "tencentcloud://AKID:key@/?endpoint=127.0.0.1%3A9100&protocol=http"
    )
    monkeypatch.setenv("AIRFLOW_CONN_MPS_REAL", "tencentcloud://AKID:key@/?region=ap-guangzhou")
    _fake_xcom(monkeypatch, TASK)
    emu = MpsProcessImageOperator(task_id="e", input="x", tencentcloud_conn_id="mps_emu")
    real = MpsImageTaskSensor(task_id="r", mps_task_id="x-1", tencentcloud_conn_id="mps_real")
    missing = MpsProcessImageOperator(task_id="m", input="x", tencentcloud_conn_id="no_such_connection")
    assert MpsTaskLink().get_link(emu, ti_key=_Key()) == f"http://127.0.0.1:9100/tasks/{TASK}"
    assert MpsTaskLink().get_link(real, ti_key=_Key()) == CONSOLE
    assert MpsTaskLink().get_link(missing, ti_key=_Key()) == CONSOLE  # unreadable: never an error


def test_one_connection_lookup_per_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import BaseHook

    calls: list[str] = []
    real_get = BaseHook.get_connection

    def counting(conn_id: str) -> Any:
        calls.append(conn_id)
        return real_get(conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", staticmethod(counting))
    monkeypatch.setenv(
        "AIRFLOW_CONN_MPS_EMU", "tencentcloud://AKID:key@/?endpoint=localhost%3A9100&protocol=http"
    )
    op = MpsProcessImageOperator(task_id="e", input="x", tencentcloud_conn_id="mps_emu")

    class TI:
        def __init__(self) -> None:
            self.xcoms: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcoms[key] = value

    ti = TI()
    op.push_task_id({"ti": ti}, TASK)
    op.push_task_id({"ti": ti}, TASK)
    _fake_xcom(monkeypatch, TASK)
    assert MpsTaskLink().get_link(op, ti_key=_Key()) == f"http://localhost:9100/tasks/{TASK}"
    assert ti.xcoms[MpsTaskLink().xcom_key] == f"http://localhost:9100/tasks/{TASK}"
    assert ti.xcoms["mps_task_id"] == TASK
    assert calls == ["mps_emu"]


# ------------------------------------------------------------------------ the batch's outputs link
def test_batch_outputs_link_points_at_the_emulators_bucket_page_or_the_cos_console() -> None:
    from airflow_mps.links.mps import outputs_url, task_url_template

    emulator = task_url_template({"endpoint": "127.0.0.1:9100", "protocol": "http"})
    assert (
        outputs_url(emulator, "photos-1250000000", "enhanced/dt=2026-11-01/", "ap-guangzhou")
        == "http://127.0.0.1:9100/buckets/photos-1250000000?prefix=enhanced%2Fdt%3D2026-11-01%2F"
    )
    console = task_url_template({"region": "ap-guangzhou"})
    assert outputs_url(console, "photos-1250000000", "enhanced/dt=2026-11-01/", "ap-guangzhou") == (
        "https://console.cloud.tencent.com/cos/bucket?bucket=photos-1250000000"
        "&path=%2Fenhanced%2Fdt%3D2026-11-01%2F&region=ap-guangzhou"
    )


def test_push_batch_outputs_records_the_url_and_the_link() -> None:
    from airflow_mps.links.mps import BATCH_OUTPUTS_XCOM_KEY, MpsBatchOutputsLink, push_batch_outputs

    pushed: dict[str, object] = {}
    ti = type("TI", (), {"xcom_push": lambda self, key, value: pushed.__setitem__(key, value)})()
    op = type("Op", (), {"tencentcloud_conn_id": None})()
    push_batch_outputs({"ti": ti}, bucket="b-1250000000", prefix="out/", region="ap-guangzhou", operator=op)
    assert pushed[BATCH_OUTPUTS_XCOM_KEY] == pushed[MpsBatchOutputsLink().xcom_key]
    assert str(pushed[BATCH_OUTPUTS_XCOM_KEY]).startswith("https://console.cloud.tencent.com/cos/bucket?")
