"""The vocabulary of trigger events, shared by the triggers that yield them, the waits that decide them
and the operators/sensors that read them.

Single-task event payload (JSON-safe, built by :func:`task_event`)::

    {"status": "success" | "failed" | "error" | "timeout",
     "mps_task_id": str,
     "result": ImageTaskStatus.to_dict() | None,   # last status seen, compacted (below)
     "error": {"code", "message", "request_id", "retryable"} | None,
     "request_id": str | None}                     # the submission's RequestId, echoed for the operator

The ``result`` is compacted (:func:`compact_result`): an output's ``content`` (inline result text,
possibly a large base64 blob) is dropped and its ``signed_url`` (a bearer link, valid an hour) is kept
only when the waiting task opted in (``include_signed_urls``). Events are stored in the metadata DB
and logged by the triggerer ("Trigger fired event"), so they carry what the XCom needs and no more.

Also here: :func:`jittered`, the poll spacing every wait uses (so that many waits started together do
not poll in lockstep), with its floor :data:`MIN_POLL_INTERVAL`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_mps.errors import MpsError

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskStatus

__all__ = [
    "EVENT_ERROR",
    "EVENT_FAILED",
    "EVENT_SUCCESS",
    "EVENT_TIMEOUT",
    "MIN_POLL_INTERVAL",
    "brief",
    "compact_result",
    "error_payload",
    "jittered",
    "status_error",
    "task_event",
    "timeout_error",
]

#: Event statuses.
EVENT_SUCCESS = "success"
EVENT_FAILED = "failed"
EVENT_ERROR = "error"
EVENT_TIMEOUT = "timeout"

#: Polling never sleeps less than this, whatever ``poll_interval`` says (protects the 100/s limit).
MIN_POLL_INTERVAL = 0.05


def jittered(interval: float, spread: float = 0.1) -> float:
    """``interval`` ± ``spread`` (fraction) so that many waits started together do not poll in lockstep."""
    return max(MIN_POLL_INTERVAL, interval * random.uniform(1.0 - spread, 1.0 + spread))


#: Longest text a wait puts into one log line for a value it does not control (an exception's repr).
BRIEF_LIMIT = 300


def brief(value: Any, limit: int = BRIEF_LIMIT) -> str:
    """``repr(value)`` cut to ``limit`` characters: log lines stay readable whatever an error carries."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}… ({len(text)} chars)"


def error_payload(err: BaseException) -> dict[str, Any]:
    """The ``error`` part of an event for any exception (MPS errors keep their code and RequestId)."""
    if isinstance(err, MpsError):
        return {**err.to_dict(), "retryable": err.retryable}
    return {"code": type(err).__name__, "message": str(err), "request_id": None, "retryable": False}


def status_error(status: ImageTaskStatus) -> dict[str, Any]:
    """The ``error`` part of a ``failed`` event, from an ``ImageTaskStatus`` that FINISHed with a failure."""
    return {
        "code": status.error_code or "FailedOperation",
        "message": status.error_message or "the MPS task finished with a failure",
        "request_id": status.request_id,
        "retryable": False,
    }


def timeout_error(mps_task_id: str) -> dict[str, Any]:
    """The ``error`` part of a ``timeout`` event (retryable: a retry reconnects to the same task)."""
    return {
        "code": "Timeout",
        "message": f"MPS task {mps_task_id} did not finish before the deadline",
        "request_id": None,
        "retryable": True,
    }


def compact_result(result: Mapping[str, Any], *, include_signed_urls: bool = False) -> dict[str, Any]:
    """``ImageTaskStatus.to_dict()`` without what an event must not carry: each output's ``content``
    (``None``) and, unless ``include_signed_urls``, its ``signed_url`` (``None``). Same keys."""
    compact = dict(result)
    outputs = []
    for output in compact.get("outputs") or ():
        out = dict(output)
        out["content"] = None
        if not include_signed_urls:
            out["signed_url"] = None
        outputs.append(out)
    compact["outputs"] = outputs
    return compact


def task_event(
    status: str,
    mps_task_id: str,
    *,
    result: ImageTaskStatus | None,
    error: Mapping[str, Any] | None,
    request_id: str | None,
    include_signed_urls: bool = False,
) -> dict[str, Any]:
    """The payload of a single-task event (shape in the module docstring)."""
    return {
        "status": status,
        "mps_task_id": mps_task_id,
        "result": (
            compact_result(result.to_dict(), include_signed_urls=include_signed_urls)
            if result is not None
            else None
        ),
        "error": dict(error) if error is not None else None,
        "request_id": request_id,
    }
