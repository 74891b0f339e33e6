"""The emulator's admin API: the JSON endpoints under ``/_emulator/`` that tests and tools drive.

Not part of MPS or COS: admin requests are never signed, counted in the stats, faulted or delayed
(the server routes them here before any of that). One function per endpoint, looked up by
``(name, method)`` in :data:`ENDPOINTS`; ``None`` as the method answers any method.

- ``health`` (any): status, endpoint, task count, uptime — ``testing.EmulatorServer`` polls it.
- ``config`` (any): the settings a client needs (never a secret key).
- ``stats`` (GET), ``reset-stats`` (POST): the request and task counters (``stats.py``).
- ``reset`` (POST): clear faults, counters and rate-limit windows; tasks and objects are kept.
- ``wait-idle?timeout=30`` (POST): wait until no task is queued or running.
- ``faults``: GET lists them, DELETE clears them, POST adds them (``faults.py`` specs: a string, a
  dict with ``kind``, a list, or ``{"faults": [...], "clear": true}``).

A ``ValueError``/``TypeError`` from an endpoint (a bad fault spec, a non-numeric timeout) is the
caller's error: 400 with its text. Anything else is 404 naming the endpoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from airflow_mps.emulator.faults import fault_from_dict, parse_fault_spec
from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse
from airflow_mps.emulator.safejson import loads_request_body

if TYPE_CHECKING:
    from airflow_mps.emulator.server import EmulatorApp

__all__ = ["ADMIN_PREFIX", "ENDPOINTS", "handle", "json_response"]

#: Path prefix of the admin API; the server routes every request under it here.
ADMIN_PREFIX = "/_emulator/"

#: An admin endpoint: the app it reports on or changes, and the request.
Endpoint = Callable[["EmulatorApp", EmulatorRequest], EmulatorResponse]


def json_response(data: Any, status: int = 200) -> EmulatorResponse:
    """A JSON answer (indented, keys sorted: the admin API is read by people too)."""
    body = json.dumps(data, indent=2, sort_keys=True).encode()
    return EmulatorResponse(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body
    )


def handle(app: EmulatorApp, name: str, request: EmulatorRequest) -> EmulatorResponse:
    """Answer ``/_emulator/<name>`` (``name`` without the prefix; surrounding slashes are ignored)."""
    method = request.method
    name = name.strip("/")
    endpoint = ENDPOINTS.get((name, method)) or ENDPOINTS.get((name, None))
    if endpoint is None:
        return json_response({"error": f"unknown admin endpoint {method} /_emulator/{name}"}, 404)
    try:
        return endpoint(app, request)
    except (ValueError, TypeError) as exc:
        return json_response({"error": str(exc)}, 400)


# -- endpoints ---------------------------------------------------------------------------------------
def _health(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    return json_response(
        {
            "status": "ok",
            "endpoint": app.endpoint,
            "tasks": app.mps.store.count(),
            "uptime": round(time.time() - app.started, 3),
        }
    )


def _config(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    c = app.config
    return json_response(
        {
            "endpoint": app.endpoint,
            "scheme": c.scheme,
            "secret_id": c.secret_id,
            "region": c.region,
            "appid": c.appid,
            "process_image_rate": c.process_image_rate,
            "describe_rate": c.describe_rate,
            "workers": c.workers,
            "data_dir": str(c.data_dir),
            "token_required": bool(c.token),
        }
    )


def _stats(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    return json_response(app.stats.snapshot())


def _reset_stats(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    app.stats.reset()
    return json_response({"ok": True})


def _reset(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    app.reset()
    return json_response({"ok": True})


def _wait_idle(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    timeout = float(dict(parse_qsl(request.query)).get("timeout", "30"))
    return json_response({"idle": app.mps.wait_idle(timeout)})


def _list_faults(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    return json_response({"faults": app.faults.list()})


def _clear_faults(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    app.faults.clear()
    return json_response({"faults": []})


def _add_faults(app: EmulatorApp, request: EmulatorRequest) -> EmulatorResponse:
    data = loads_request_body(request.body)
    if isinstance(data, dict) and data.get("clear"):
        app.faults.clear()
    specs = data.get("faults", []) if isinstance(data, dict) else data
    if isinstance(data, dict) and "kind" in data:
        specs = [data]
    added = [
        app.faults.add_fault(parse_fault_spec(s) if isinstance(s, str) else fault_from_dict(s)).to_dict()
        for s in specs
    ]
    return json_response({"added": added, "faults": app.faults.list()})


#: ``(name, method)`` → endpoint; method ``None`` answers any method.
ENDPOINTS: dict[tuple[str, str | None], Endpoint] = {
    ("health", None): _health,
    ("config", None): _config,
    ("stats", "GET"): _stats,
    ("reset-stats", "POST"): _reset_stats,
    ("reset", "POST"): _reset,
    ("wait-idle", "POST"): _wait_idle,
    ("faults", "GET"): _list_faults,
    ("faults", "DELETE"): _clear_faults,
    ("faults", "POST"): _add_faults,
}
