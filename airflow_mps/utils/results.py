"""What an MPS outcome becomes in Airflow: the XCom, the failure message, the exception class.

Shared by the operators (sync and resumed after a deferral) and the sensor, so a task that fails says
the same thing, and fails the same way, whichever path waited for it:

* terminal MPS errors, invalid arguments, ambiguous submissions and FINISHed-with-failure tasks →
  ``AirflowFailException`` (no Airflow retry);
* throttling, transient errors and deadlines → ``AirflowException`` (Airflow may retry; a retry
  reconnects to the same MPS task).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_mps.errors import (
    MpsAmbiguousSubmissionError,
    MpsError,
    MpsResourceNotFoundError,
    MpsValidationError,
)
from airflow_mps.utils.events import EVENT_ERROR, EVENT_FAILED, EVENT_SUCCESS, EVENT_TIMEOUT

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskStatus

__all__ = [
    "STATUS_SUBMITTED",
    "STATUS_SUCCESS",
    "airflow_exception_for",
    "build_task_xcom",
    "failure_message",
    "is_task_not_found",
    "result_from_event",
]

# XCom "status" values (see docs/operators.md).
STATUS_SUCCESS = "SUCCESS"
STATUS_SUBMITTED = "SUBMITTED"

#: Codes that mean "MPS does not know this task id" (unknown or older than 7 days).
_TASK_NOT_FOUND_CODES = frozenset(
    {"InvalidParameterValue.TaskId", "FailedOperation.TaskNotFound", "ResourceNotFound.TaskNotFound"}
)


def airflow_exception_for(err: MpsError, action: str) -> AirflowException:
    """The Airflow exception for an MPS error: terminal → ``AirflowFailException`` (no retry),
    throttled/transient → ``AirflowException`` (Airflow may retry). The message carries the code,
    the service's message and the RequestId."""
    if isinstance(err, MpsValidationError):
        return AirflowFailException(f"{action}: invalid argument {err.field!r}: {err}")
    if isinstance(err, MpsAmbiguousSubmissionError):
        return AirflowFailException(
            f"{action}: the submission may or may not have created an MPS task and reconciliation could "
            f"not decide; not resubmitting to avoid processing the image twice: {err}"
        )
    if err.retryable:
        return AirflowException(f"{action}: transient MPS error: {err}")
    return AirflowFailException(f"{action}: {err}")


def is_task_not_found(err: MpsError) -> bool:
    """True when an error from ``DescribeImageTaskDetail`` means the task id is unknown to MPS."""
    return isinstance(err, MpsResourceNotFoundError) or err.code in _TASK_NOT_FOUND_CODES


_OUTPUT_KEYS = ("bucket", "region", "path", "uri", "signed_url")


def _output_dict(output: Any, include_signed_urls: bool) -> dict[str, Any]:
    if isinstance(output, Mapping):
        out = {k: output.get(k) for k in _OUTPUT_KEYS}
    else:
        out = {k: getattr(output, k, None) for k in _OUTPUT_KEYS}
    if not include_signed_urls:
        # A signed URL is a bearer link (anyone holding it reads the object for an hour): kept out of
        # XCom unless the user opts in; the key stays so the XCom keeps its shape (issue 12 item 4).
        out["signed_url"] = None
    return out


def _result_dict(status: ImageTaskStatus | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if status is None:
        return None
    if isinstance(status, Mapping):
        return dict(status)
    return status.to_dict()


def _xcom_state(result: Mapping[str, Any] | None) -> str:
    if result is None:
        return STATUS_SUBMITTED
    if result.get("succeeded"):
        return STATUS_SUCCESS
    if result.get("failed"):
        return "FAILED"
    return str(result.get("state") or STATUS_SUBMITTED)


def build_task_xcom(
    mps_task_id: str,
    *,
    request_id: str | None,
    status: ImageTaskStatus | Mapping[str, Any] | None = None,
    state: str | None = None,
    error: Mapping[str, Any] | None = None,
    include_signed_urls: bool = False,
) -> dict[str, Any]:
    """The single-image XCom (design §2), from an ``ImageTaskStatus`` or its ``to_dict()`` form.

    ``{"mps_task_id", "status", "request_id", "outputs": [{"bucket", "region", "path", "uri",
    "signed_url"}], "error": {"code", "message"} | None}``. ``status`` is ``SUCCESS`` for a task that
    finished successfully, ``SUBMITTED`` right after a fire-and-forget submission, or the MPS state
    (``WAITING``/``PROCESSING``) when a fire-and-forget retry found the task still running.
    ``signed_url`` is ``None`` unless ``include_signed_urls`` (MPS's signed URLs are bearer links).
    """
    result = _result_dict(status)
    outputs = [_output_dict(o, include_signed_urls) for o in (result or {}).get("outputs") or ()]
    err = {"code": error.get("code"), "message": error.get("message")} if error else None
    return {
        "mps_task_id": mps_task_id,
        "status": state if state is not None else _xcom_state(result),
        "request_id": request_id,
        "outputs": outputs,
        "error": err,
    }


def failure_message(mps_task_id: str, error: Mapping[str, Any] | None, submit_request_id: str | None) -> str:
    """Message of the exception raised for an MPS task that finished with a failure."""
    error = error or {}
    text = (
        f"MPS task {mps_task_id} failed: [{error.get('code') or 'FailedOperation'}] "
        f"{error.get('message') or ''}".rstrip()
    )
    ids = []
    if error.get("request_id"):
        ids.append(f"RequestId: {error['request_id']}")
    if submit_request_id and submit_request_id != error.get("request_id"):
        ids.append(f"ProcessImage RequestId: {submit_request_id}")
    if ids:
        text += f" ({'; '.join(ids)})"
    return text


def _error_event_exception(what: str, mps_task_id: str, error: Mapping[str, Any]) -> AirflowException:
    text = f"{what}: error while waiting for MPS task {mps_task_id}: [{error.get('code')}] {error.get('message')}"
    if error.get("request_id"):
        text += f" (RequestId: {error['request_id']})"
    return AirflowException(text) if error.get("retryable") else AirflowFailException(text)


def result_from_event(
    event: Mapping[str, Any] | None, *, what: str, include_signed_urls: bool = False
) -> dict[str, Any]:
    """Turn a single-task trigger event into the XCom, or raise the right exception: failed →
    ``AirflowFailException`` at once (never a hang, apache/airflow #34017), terminal error →
    ``AirflowFailException``, transient error or deadline → ``AirflowException`` (retryable).
    ``include_signed_urls``: keep the outputs' signed URLs (see :func:`build_task_xcom`)."""
    if not event or "status" not in event:
        raise AirflowException(f"{what}: the trigger returned no event: {event!r}")
    mps_task_id = str(event.get("mps_task_id"))
    status = event["status"]
    request_id = event.get("request_id")
    error = event.get("error") or {}
    if status == EVENT_SUCCESS:
        return build_task_xcom(
            mps_task_id,
            request_id=request_id,
            status=event.get("result"),
            include_signed_urls=include_signed_urls,
        )
    if status == EVENT_FAILED:
        raise AirflowFailException(failure_message(mps_task_id, error, request_id))
    if status == EVENT_TIMEOUT:
        raise AirflowException(
            f"{what}: MPS task {mps_task_id} did not finish before the deadline; a retry reconnects to it"
        )
    if status == EVENT_ERROR:
        raise _error_event_exception(what, mps_task_id, error)
    raise AirflowException(f"{what}: unexpected trigger event status {status!r}")
