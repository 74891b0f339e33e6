"""The admin API's routing (`emulator/admin.py`), driven without a socket against a stand-in app."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.emulator import admin
from airflow_mps.emulator.config import EmulatorConfig
from airflow_mps.emulator.faults import FaultPlan
from airflow_mps.emulator.http import EmulatorRequest, Headers
from airflow_mps.emulator.stats import Stats


class _Mps:
    def __init__(self) -> None:
        self.store = SimpleNamespace(count=lambda: 3)
        self.waited: list[float] = []

    def wait_idle(self, timeout: float) -> bool:
        self.waited.append(timeout)
        return True


@pytest.fixture
def app(tmp_path: Path) -> Any:
    app = SimpleNamespace(
        config=EmulatorConfig(data_dir=tmp_path, token="t"),
        endpoint="127.0.0.1:1",
        started=0.0,
        stats=Stats(),
        faults=FaultPlan(seed=1),
        mps=_Mps(),
        resets=0,
    )

    def reset() -> None:
        app.resets += 1

    app.reset = reset
    return app


def _call(app: Any, method: str, name: str, body: bytes = b"", query: str = "") -> tuple[int, Any]:
    request = EmulatorRequest(method, admin.ADMIN_PREFIX + name, query, Headers(), body)
    response = admin.handle(app, name, request)
    assert ("Content-Type", "application/json") in response.headers
    return response.status, json.loads(response.body)


def test_health_and_config_answer_any_method(app: Any) -> None:
    for method in ("GET", "POST"):
        status, health = _call(app, method, "health")
        assert status == 200 and health["status"] == "ok" and health["tasks"] == 3
        status, config = _call(app, method, "/config/")  # surrounding slashes are ignored
        assert status == 200 and config["token_required"] is True and "secret_key" not in config


def test_an_endpoint_answers_its_method_only(app: Any) -> None:
    status, body = _call(app, "GET", "reset")
    assert status == 404
    assert body == {"error": "unknown admin endpoint GET /_emulator/reset"}
    assert app.resets == 0
    assert _call(app, "POST", "reset") == (200, {"ok": True})
    assert app.resets == 1
    assert _call(app, "PUT", "faults")[0] == 404
    assert _call(app, "GET", "nope")[1] == {"error": "unknown admin endpoint GET /_emulator/nope"}


def test_stats_and_reset_stats(app: Any) -> None:
    app.stats.count("ProcessImage", "received")
    assert _call(app, "GET", "stats")[1] == app.stats.snapshot()
    assert _call(app, "POST", "reset-stats") == (200, {"ok": True})
    assert _call(app, "GET", "stats")[1] == Stats().snapshot()


def test_wait_idle_reads_its_timeout_and_refuses_a_bad_one(app: Any) -> None:
    assert _call(app, "POST", "wait-idle", query="timeout=2.5") == (200, {"idle": True})
    assert _call(app, "POST", "wait-idle") == (200, {"idle": True})
    assert app.mps.waited == [2.5, 30.0]
    status, body = _call(app, "POST", "wait-idle", query="timeout=soon")
    assert status == 400 and "soon" in body["error"]


def test_faults_add_list_clear(app: Any) -> None:
    status, body = _call(
        app, "POST", "faults", json.dumps({"kind": "throttle", "action": "ProcessImage"}).encode()
    )
    assert status == 200 and len(body["added"]) == 1 and body["faults"] == body["added"]
    body = _call(app, "POST", "faults", json.dumps(["internal_error@DescribeImageTaskDetail"]).encode())[1]
    assert len(body["faults"]) == 2
    body = _call(app, "POST", "faults", json.dumps({"clear": True, "faults": []}).encode())[1]
    assert body == {"added": [], "faults": []}
    _call(app, "POST", "faults", json.dumps({"faults": [{"kind": "throttle"}]}).encode())
    assert len(_call(app, "GET", "faults")[1]["faults"]) == 1
    assert _call(app, "DELETE", "faults") == (200, {"faults": []})
    assert _call(app, "GET", "faults") == (200, {"faults": []})


def test_a_bad_fault_spec_is_a_400(app: Any) -> None:
    status, body = _call(app, "POST", "faults", json.dumps({"kind": "no-such-kind"}).encode())
    assert status == 400 and body["error"]
