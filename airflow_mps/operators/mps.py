"""Operators that run Tencent Cloud MPS ``ProcessImage`` tasks.

``MpsProcessImageOperator`` turns one image into one MPS task and waits for it in one of three ways:

* **sync** (``deferrable=False``): polls ``DescribeImageTaskDetail`` in the worker every
  ``poll_interval`` seconds;
* **deferrable** (``deferrable=True``): hands the wait to ``MpsImageTaskTrigger`` on the triggerer and
  frees the worker slot;
* **fire-and-forget** (``wait_for_completion=False``): returns right after submission; pair it with
  ``MpsImageTaskSensor`` downstream.

Exactly-once across retries: the submitted TaskId is persisted *before* any waiting. On Airflow >= 3.3
that is ``context["task_state_store"]`` through Airflow's ``ResumableJobMixin`` — the sync, deferrable
and fire-and-forget paths all go through it (the deferrable path stores, then defers). A retry reads the
stored TaskId back and asks MPS about it: still running → reconnect (poll or defer again), finished
successfully → return its result without resubmitting, finished with a failure or unknown to MPS →
submit a fresh task. The mixin's own gap (a try dying after MPS accepted the task but before the store
write) is closed by a marker written before each submission; see ``adopt_unrecorded_submission``. On Airflow 3.0-3.2 there is no task state store: every try submits, and the hook's
submission reconciliation is the only protection (see docs/operators.md).

The pieces a second operator needs (connection + waiting arguments, deadline, error mapping, XCom
building, the trigger hand-off) live in ``MpsBaseOperator`` and module-level functions so the batch
operator can share them.

Nothing heavy is imported at module level: the hook (and with it the Tencent Cloud SDK) is imported the
first time an operator talks to MPS, never while a DAG file is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    BaseOperator,
    conf,
)

from airflow_mps.errors import (
    MpsAmbiguousSubmissionError,
    MpsError,
    MpsResourceNotFoundError,
    MpsValidationError,
)
from airflow_mps.links.mps import MPS_TASK_ID_XCOM_KEY, MpsTaskLink, mps_task_console_url

try:  # Airflow >= 3.3 (or common-compat's stand-in for older Airflow)
    from airflow.providers.common.compat.sdk import ResumableJobMixin
except ImportError:  # pragma: no cover - common-compat too old to know the mixin
    try:
        from airflow.sdk import ResumableJobMixin  # type: ignore[no-redef]
    except ImportError:

        class ResumableJobMixin:  # type: ignore[no-redef]
            """Last-resort stand-in: no task state store, so every try submits (as before 3.3)."""

            external_id_key: str = "remote_job_id"

            def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.durable = False

            def execute_resumable(self, context: Any) -> Any:
                external_id = self.submit_job(context)  # type: ignore[attr-defined]
                self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]
                return self.get_job_result(external_id, context)  # type: ignore[attr-defined]


if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_mps.models import ImageTaskStatus, ProcessImageRequest
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator  # re-exported lazily, see the end

__all__ = [
    "MpsBaseOperator",
    "MpsBatchProcessImageOperator",
    "MpsProcessImageOperator",
    "airflow_exception_for",
    "build_task_xcom",
    "default_deferrable",
    "execution_deadline",
    "lineage_datasets",
    "push_task_id",
    "result_from_event",
    "seconds_argument",
]

log = logging.getLogger(__name__)

#: How long a wait may last when neither ``timeout`` nor ``execution_timeout`` is set: MPS only answers
#: ``DescribeImageTaskDetail`` for tasks submitted in the last 7 days.
MAX_WAIT_SECONDS = 7 * 24 * 3600.0

#: Extra time the Airflow-level deferral timeout allows after the trigger's own deadline, so the
#: trigger's ``timeout`` event (which names the MPS task) normally arrives first.
DEFERRAL_GRACE_SECONDS = 60.0

#: How far before a submission marker a task's ``CreateTime`` may lie and still count as that
#: submission's (client/server clock skew and ``CreateTime``'s one-second resolution).
RECONCILE_SKEW_SECONDS = 10.0

#: Codes that mean "MPS does not know this task id" (unknown or older than 7 days).
_TASK_NOT_FOUND_CODES = frozenset(
    {"InvalidParameterValue.TaskId", "FailedOperation.TaskNotFound", "ResourceNotFound.TaskNotFound"}
)

# XCom "status" values (see docs/operators.md).
STATUS_SUCCESS = "SUCCESS"
STATUS_SUBMITTED = "SUBMITTED"


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` — the default of every ``deferrable`` argument in this package."""
    return conf.getboolean("operators", "default_deferrable", fallback=False)


# --------------------------------------------------------------------------------------------------
# Shared helpers (also used by the batch operator)
# --------------------------------------------------------------------------------------------------


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


def _output_dict(output: Any) -> dict[str, Any]:
    keys = ("bucket", "region", "path", "uri", "signed_url")
    if isinstance(output, Mapping):
        return {k: output.get(k) for k in keys}
    return {k: getattr(output, k, None) for k in keys}


def _result_dict(status: ImageTaskStatus | Mapping[str, Any] | None) -> dict[str, Any] | None:
    if status is None:
        return None
    if isinstance(status, Mapping):
        return dict(status)
    return status.to_dict()


def build_task_xcom(
    mps_task_id: str,
    *,
    request_id: str | None,
    status: ImageTaskStatus | Mapping[str, Any] | None = None,
    state: str | None = None,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The operator's XCom (design §2), from an ``ImageTaskStatus`` or its ``to_dict()`` form.

    ``{"mps_task_id", "status", "request_id", "outputs": [{"bucket", "region", "path", "uri",
    "signed_url"}], "error": {"code", "message"} | None}``. ``status`` is ``SUCCESS`` for a task that
    finished successfully, ``SUBMITTED`` right after a fire-and-forget submission, or the MPS state
    (``WAITING``/``PROCESSING``) when a fire-and-forget retry found the task still running.
    """
    result = _result_dict(status)
    outputs = [_output_dict(o) for o in (result or {}).get("outputs") or ()]
    if state is None:
        if result is None:
            state = STATUS_SUBMITTED
        elif result.get("succeeded"):
            state = STATUS_SUCCESS
        elif result.get("failed"):
            state = "FAILED"
        else:
            state = result.get("state") or STATUS_SUBMITTED
    err = None
    if error:
        err = {"code": error.get("code"), "message": error.get("message")}
    return {
        "mps_task_id": mps_task_id,
        "status": state,
        "request_id": request_id,
        "outputs": outputs,
        "error": err,
    }


def status_error(status: ImageTaskStatus) -> dict[str, Any]:
    """The ``{"code", "message", "request_id", "retryable"}`` of a task that FINISHed with a failure
    (the same dict the trigger puts in its ``failed`` event)."""
    from airflow_mps.triggers.mps import status_error as from_status

    return from_status(status)


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


def _uri_dataset(uri: str) -> tuple[str, str] | None:
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return None
    if parts.scheme in ("cos", "cosn"):
        return f"cosn://{parts.netloc}", parts.path.lstrip("/")
    if parts.scheme == "s3":
        return f"s3://{parts.netloc}", parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def lineage_datasets(
    input_info: Mapping[str, Any] | None, outputs: Sequence[Mapping[str, Any]] = ()
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """OpenLineage (namespace, name) pairs for one ProcessImage: inputs from the API-shaped
    ``InputInfo``, outputs from the XCom ``outputs``. COS objects are ``cosn://<bucket>`` + key, S3
    objects ``s3://<bucket>`` + key, URL inputs ``<scheme>://<host>`` + path. Needs no OpenLineage."""
    inputs: list[tuple[str, str]] = []
    info = dict(input_info or {})
    kind = str(info.get("Type") or "").upper()
    if kind == "COS" and info.get("CosInputInfo"):
        cos = info["CosInputInfo"]
        inputs.append((f"cosn://{cos.get('Bucket')}", str(cos.get("Object") or "").lstrip("/")))
    elif kind == "URL" and info.get("UrlInputInfo"):
        pair = _uri_dataset(str(info["UrlInputInfo"].get("Url") or ""))
        if pair:
            inputs.append(pair)
    elif kind == "AWS-S3" and info.get("S3InputInfo"):
        s3 = info["S3InputInfo"]
        inputs.append((f"s3://{s3.get('S3Bucket')}", str(s3.get("S3Object") or "").lstrip("/")))
    outs: list[tuple[str, str]] = []
    for out in outputs:
        if out.get("bucket") and out.get("path"):
            outs.append((f"cosn://{out['bucket']}", str(out["path"]).lstrip("/")))
        elif out.get("uri"):
            pair = _uri_dataset(str(out["uri"]))
            if pair:
                outs.append(pair)
    return inputs, outs


def openlineage_from_pairs(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> Any:
    """``OperatorLineage`` for the pairs, or ``None`` when the OpenLineage provider is not installed."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
    except ImportError:
        return None
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
    )


def execution_deadline(
    context: Context | Mapping[str, Any] | None, execution_timeout: timedelta | None
) -> float | None:
    """Epoch seconds at which this try's ``execution_timeout`` runs out (``None`` without one).

    Counted from the try's ``start_date``, which Airflow keeps across a deferral. Airflow itself does not
    enforce ``execution_timeout`` while a task is deferred (apache/airflow #32580; the task runner says
    "TODO: handle timeout in case of deferral"), so every wait here carries it into its deadline.
    """
    if not execution_timeout:
        return None
    start = getattr((context or {}).get("ti"), "start_date", None)
    base = start.timestamp() if start is not None else time.time()
    return base + execution_timeout.total_seconds()


def push_task_id(context: Context | Mapping[str, Any] | None, mps_task_id: str) -> None:
    """Record the MPS task id in XCom (key ``mps_task_id``) and the console link at once, so both are
    visible while the task is still waiting (Airflow itself stores links only when a try ends)."""
    ti = (context or {}).get("ti")
    if ti is None:
        return
    ti.xcom_push(key=MPS_TASK_ID_XCOM_KEY, value=mps_task_id)
    try:
        ti.xcom_push(key=MpsTaskLink().xcom_key, value=mps_task_console_url(mps_task_id))
    except Exception:  # the link is a convenience; never fail the task for it
        log.debug("Could not push the MPS console link", exc_info=True)


def result_from_event(event: Mapping[str, Any] | None, *, what: str) -> dict[str, Any]:
    """Turn an ``MpsImageTaskTrigger`` event into the XCom, or raise the right exception: failed →
    ``AirflowFailException`` at once (never a hang, apache/airflow #34017), terminal error →
    ``AirflowFailException``, transient error or deadline → ``AirflowException`` (retryable)."""
    from airflow_mps.triggers.mps import EVENT_ERROR, EVENT_FAILED, EVENT_SUCCESS, EVENT_TIMEOUT

    if not event or "status" not in event:
        raise AirflowException(f"{what}: the trigger returned no event: {event!r}")
    mps_task_id = str(event.get("mps_task_id"))
    status = event["status"]
    request_id = event.get("request_id")
    if status == EVENT_SUCCESS:
        return build_task_xcom(mps_task_id, request_id=request_id, status=event.get("result"))
    error = event.get("error") or {}
    if status == EVENT_FAILED:
        raise AirflowFailException(failure_message(mps_task_id, error, request_id))
    if status == EVENT_TIMEOUT:
        raise AirflowException(
            f"{what}: MPS task {mps_task_id} did not finish before the deadline; a retry reconnects to it"
        )
    if status == EVENT_ERROR:
        text = (
            f"{what}: error while waiting for MPS task {mps_task_id}: "
            f"[{error.get('code')}] {error.get('message')}"
        )
        if error.get("request_id"):
            text += f" (RequestId: {error['request_id']})"
        if error.get("retryable"):
            raise AirflowException(text)
        raise AirflowFailException(text)
    raise AirflowException(f"{what}: unexpected trigger event status {status!r}")


def seconds_argument(name: str, value: Any, *, positive: bool) -> float:
    """``value`` as a finite number of seconds, or a ValueError naming the argument and what is allowed.

    Strings that hold a number are accepted (a templated or env-sourced value arrives as text);
    anything else — ``"fast"``, ``True``, NaN, infinity, a negative or (for ``positive``) zero value —
    is refused when the DAG is parsed, before any API call.
    """
    allowed = "a positive number of seconds" if positive else "a non-negative number of seconds or None"
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {allowed}, got {value!r}") from None
    if math.isnan(number) or math.isinf(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return number


class MpsBaseOperator(BaseOperator):
    """Connection and waiting arguments shared by the MPS operators.

    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS/COS region (templated); ``None`` uses the connection's ``region`` extra.
    :param wait_for_completion: wait for the MPS task(s) to finish (``False``: return after submission).
    :param deferrable: wait on the triggerer instead of in the worker. Default:
        ``[operators] default_deferrable``.
    :param poll_interval: seconds between two status polls (±10% jitter), sync and deferrable.
    :param timeout: longest wait for MPS, in seconds (or a ``timedelta``), counted from the first
        submission/deferral of this try; the deadline is absolute and carried into the trigger, so a
        restarted triggerer keeps it. ``execution_timeout`` is respected as well (the earlier wins),
        also while deferred. ``None``: no limit beyond MPS's 7-day task retention.
    """

    def __init__(
        self,
        *,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 10,
        timeout: float | timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(timeout, timedelta):
            timeout = timeout.total_seconds()
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.wait_for_completion = wait_for_completion
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)
        self.poll_interval = seconds_argument("poll_interval", poll_interval, positive=True)
        self.timeout = None if timeout is None else seconds_argument("timeout", timeout, positive=False)

    @cached_property
    def hook(self) -> Any:
        """The ``MpsHook`` (imported on first use: DAG parsing never imports the SDK)."""
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def resolved_region(self) -> str | None:
        """The region to validate ``cos://`` inputs with: the argument, else the connection's."""
        if self.region:
            return self.region
        return self.hook.get_settings().region or None

    def wait_deadline(self, context: Context | None) -> float:
        """Absolute deadline (epoch seconds) of a wait starting now: ``timeout`` from now,
        ``execution_timeout`` from the try's start, whichever is earlier (capped at 7 days)."""
        deadline = time.time() + (self.timeout if self.timeout is not None else MAX_WAIT_SECONDS)
        limit = execution_deadline(context, getattr(self, "execution_timeout", None))
        return deadline if limit is None else min(deadline, limit)

    def push_task_id(self, context: Context | None, mps_task_id: str) -> None:
        """See :func:`push_task_id`."""
        push_task_id(context, mps_task_id)

    def defer_to_trigger(
        self,
        *,
        mps_task_id: str,
        end_time: float,
        request_id: str | None,
        method_name: str = "execute_complete",
        created_after: float | None = None,
    ) -> None:
        """Defer to ``MpsImageTaskTrigger`` until ``end_time``; the Airflow-level deferral timeout is
        the same deadline plus a grace period (the trigger's own ``timeout`` event normally wins).
        ``created_after`` (epoch seconds, no later than the task's creation) lets the trigger share
        the triggerer's one listing per round instead of polling its own detail."""
        # Imported here: the trigger module (and Airflow's trigger base) is not needed to parse a DAG.
        from airflow_mps.triggers.mps import MpsImageTaskTrigger

        remaining = max(0.0, end_time - time.time())
        self.defer(
            trigger=MpsImageTaskTrigger(
                mps_task_id=mps_task_id,
                end_time=end_time,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self.region,
                poll_interval=self.poll_interval,
                request_id=request_id,
                created_after=created_after,
            ),
            method_name=method_name,
            timeout=timedelta(seconds=remaining + DEFERRAL_GRACE_SECONDS),
        )

    def wait_in_worker(self, mps_task_id: str, end_time: float) -> ImageTaskStatus:
        """Poll ``DescribeImageTaskDetail`` in the worker until the task is done or ``end_time``.

        Throttling/transient errors are logged and polled through; a terminal error fails the task.
        Returns the final status (the caller decides success vs failure). Raises ``AirflowException``
        (retryable) at the deadline.
        """
        from airflow_mps.triggers.mps import jittered

        polls = 0
        while True:
            if time.time() >= end_time:
                raise AirflowException(
                    f"MPS task {mps_task_id} did not finish before the deadline ({polls} polls); "
                    "a retry reconnects to the same task"
                )
            polls += 1
            try:
                status = self.hook.describe_image_task(mps_task_id)
            except MpsError as err:
                if not err.retryable:
                    raise airflow_exception_for(err, f"Polling MPS task {mps_task_id}") from err
                self.log.warning(
                    "MPS task %s: transient error while polling, retrying: code=%s RequestId=%s",
                    mps_task_id,
                    err.code,
                    err.request_id,
                )
            else:
                if status.done:
                    return status
                self.log.info("MPS task %s is %s", mps_task_id, status.state)
            time.sleep(max(0.0, min(jittered(self.poll_interval), end_time - time.time())))

    def result_from_event(self, event: Mapping[str, Any] | None, *, what: str) -> dict[str, Any]:
        """See :func:`result_from_event`."""
        return result_from_event(event, what=what)


class MpsProcessImageOperator(ResumableJobMixin, MpsBaseOperator):
    """Process one image with MPS ``ProcessImage`` and (optionally) wait for the result.

    Arguments mirror the API's fields in snake_case; every one of them is templated except the
    connection/waiting ones. They are rendered and validated in ``execute`` (never in ``__init__``),
    before any API call; an invalid value fails the task without retry, naming the argument.

    :param input: ``cos://bucket/key``, an ``https://`` URL, ``s3://bucket/key``, or an API-shaped
        ``InputInfo`` dict.
    :param output_storage: API-shaped ``OutputStorage`` dict, or ``cos://bucket`` (default: the input's).
    :param output_dir: output directory (``/enhanced/dt=2026-11-01/``); default the input's directory.
    :param output_path: output path ending in ``.{format}``; default ``{inputName}.{format}``.
    :param image_task: API-shaped ``ImageTask`` dict (or its JSON string), e.g.
        ``{"EncodeConfig": {"Format": "webp", "Quality": 80}}``.
    :param definition: image processing template id.
    :param resource_id: resource id (``ResourceId``).
    :param schedule_id: orchestration id (``ScheduleId``, e.g. 30000).
    :param add_on_parameter: API-shaped ``AddOnParameter`` dict.
    :param std_ext_info: extension string (``StdExtInfo``).
    :param durable: persist the TaskId in ``task_state_store`` so a retry reconnects (Airflow >= 3.3;
        ignored before).
    :param tencentcloud_conn_id, region, wait_for_completion, deferrable, poll_interval, timeout: see
        ``MpsBaseOperator``.

    XCom: ``{"mps_task_id", "status", "request_id", "outputs": [{"bucket", "region", "path", "uri",
    "signed_url"}], "error"}``; the task id is also pushed under key ``mps_task_id`` as soon as it is
    known. An MPS task that FINISHes with a failure fails the Airflow task without retry, naming the MPS
    code, message, task id and RequestId.
    """

    template_fields: Sequence[str] = (
        "input",
        "output_storage",
        "output_dir",
        "output_path",
        "image_task",
        "definition",
        "resource_id",
        "schedule_id",
        "add_on_parameter",
        "std_ext_info",
        "region",
    )
    template_fields_renderers = {"image_task": "json", "add_on_parameter": "json"}
    operator_extra_links = (MpsTaskLink(),)
    ui_color = "#e8f4ff"

    #: task_state_store key; renaming it breaks in-flight retries of deployed DAGs.
    external_id_key = "mps_process_image"

    def __init__(
        self,
        *,
        input: str | Mapping[str, Any],
        output_storage: str | Mapping[str, Any] | None = None,
        output_dir: str | None = None,
        output_path: str | None = None,
        image_task: Mapping[str, Any] | str | None = None,
        definition: int | str | None = None,
        resource_id: str | None = None,
        schedule_id: int | str | None = None,
        add_on_parameter: Mapping[str, Any] | str | None = None,
        std_ext_info: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Stored as given: rendering and validation happen in execute() (apache/airflow #33786).
        self.input = input
        self.output_storage = output_storage
        self.output_dir = output_dir
        self.output_path = output_path
        self.image_task = image_task
        self.definition = definition
        self.resource_id = resource_id
        self.schedule_id = schedule_id
        self.add_on_parameter = add_on_parameter
        self.std_ext_info = std_ext_info
        self._request: ProcessImageRequest | None = None
        self._end_time: float | None = None
        self._result: dict[str, Any] | None = None
        self._known_status: Any = None

    # ---------------------------------------------------------------- request
    def build_request(self) -> ProcessImageRequest:
        """Validate the rendered arguments into a ``ProcessImageRequest`` (no API call)."""
        from airflow_mps.models import ProcessImageRequest

        try:
            return ProcessImageRequest.build(
                input=self.input,
                output_storage=self.output_storage,
                output_dir=self.output_dir,
                output_path=self.output_path,
                image_task=self.image_task,
                definition=self.definition,
                resource_id=self.resource_id,
                schedule_id=self.schedule_id,
                add_on_parameter=self.add_on_parameter,
                std_ext_info=self.std_ext_info,
                region=self.resolved_region(),
            )
        except MpsValidationError as err:
            raise airflow_exception_for(err, f"{self.task_id}: invalid ProcessImage request") from err

    @staticmethod
    def request_fingerprint(request: ProcessImageRequest) -> str:
        """Stable hash of the API body: a stored TaskId is reused only for the same request (so clearing
        a task after changing its arguments submits a new task). Secrets only enter the hash."""
        body = json.dumps(request.to_api(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()

    # ---------------------------------------------------------------- execute
    def execute(self, context: Context) -> dict[str, Any]:
        """Validate, then submit-or-reconnect through ``ResumableJobMixin`` and wait as configured."""
        self._request = self.build_request()
        self._result = None
        self._known_status = None
        self._end_time = None
        self.adopt_unrecorded_submission(context)
        return self.execute_resumable(context)

    # ---------------------------------------------------------------- the submit → store window
    @property
    def pending_key(self) -> str:
        """task_state_store key of the marker written just before each ``ProcessImage``."""
        return f"{self.external_id_key}_pending"

    def _state_store(self, context: Context | Mapping[str, Any]) -> Any:
        return context.get("task_state_store") if getattr(self, "durable", False) else None

    def adopt_unrecorded_submission(self, context: Context) -> None:
        """Close ``ResumableJobMixin``'s crash window between ``ProcessImage`` and the store write.

        ``submit_job`` writes a marker (a fresh nonce + the time) before it calls MPS and puts the same
        nonce into the TaskId record the mixin stores after it. A marker whose nonce is not in the stored
        record means an earlier try reached MPS but died (or failed to write the store) before the
        TaskId was recorded; the hook's reconciliation cannot help there — it only spans one call. So
        the tasks created since the marker are found by ``MpsHook.find_tasks_for`` (the hook's own
        reconciliation rules: input, request, marker second): exactly one → it is recorded as this
        task instance's, and the mixin reconnects to it; none → nothing reached MPS, the mixin submits;
        several → the task fails without retry, naming them (never a guess, never a blind duplicate).
        """
        store = self._state_store(context)
        if store is None:
            return
        pending = store.get(self.pending_key)
        assert self._request is not None
        fingerprint = self.request_fingerprint(self._request)
        if not isinstance(pending, Mapping) or pending.get("fingerprint") != fingerprint:
            return
        stored = store.get(self.external_id_key)
        if isinstance(stored, Mapping) and stored.get("nonce") == pending.get("nonce"):
            return  # the last submission was recorded
        marker = datetime.fromtimestamp(float(pending.get("since") or time.time()), tz=timezone.utc)
        try:
            # The hook's rules, shared with its own reconciliation (input, request, marker second).
            matches = self.hook.find_tasks_for(
                self._request, marker, clock_skew_seconds=RECONCILE_SKEW_SECONDS
            )
        except MpsError as err:
            raise airflow_exception_for(err, f"{self.task_id}: looking for an unrecorded submission") from err
        if not matches:
            self.log.info("No MPS task was created by the unrecorded submission of an earlier try")
            return
        if len(matches) > 1:
            raise AirflowFailException(
                f"{self.task_id}: an earlier try submitted ProcessImage but died before recording the TaskId, "
                f"and {len(matches)} tasks with this input and request exist since then "
                f"({', '.join(sorted(matches))}); not guessing, not resubmitting"
            )
        self.log.warning(
            "Adopting MPS task %s: created by an earlier try that died before recording it", matches[0]
        )
        store.set(
            self.external_id_key,
            {
                "mps_task_id": matches[0],
                "request_id": None,
                "fingerprint": fingerprint,
                "nonce": pending.get("nonce"),
                "submitted_at": time.time(),
                "adopted": True,
            },
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the XCom on success, ``AirflowFailException`` on an MPS failure."""
        result = self.result_from_event(event, what=self.task_id)
        self._result = result
        return result

    # ---------------------------------------------------------------- ResumableJobMixin hooks
    def submit_job(self, context: Context) -> dict[str, Any]:
        """Submit ProcessImage; the returned dict is what the mixin stores in ``task_state_store``."""
        assert self._request is not None
        fingerprint = self.request_fingerprint(self._request)
        nonce = uuid.uuid4().hex
        store = self._state_store(context)
        if store is not None:
            # Before MPS is asked: a try that dies between ProcessImage and the mixin's store write
            # leaves this marker, and the next try looks for the task (adopt_unrecorded_submission).
            store.set(self.pending_key, {"fingerprint": fingerprint, "nonce": nonce, "since": time.time()})
        try:
            submission = self.hook.process_image(self._request)
        except MpsError as err:
            raise airflow_exception_for(err, f"{self.task_id}: ProcessImage") from err
        self.log.info("Submitted MPS task %s (RequestId %s)", submission.task_id, submission.request_id)
        self.push_task_id(context, submission.task_id)
        return {
            "mps_task_id": submission.task_id,
            "request_id": submission.request_id,
            "fingerprint": fingerprint,
            "nonce": nonce,
            "submitted_at": time.time(),
        }

    def get_job_status(self, external_id: Any, context: Context) -> str:
        """Status of a stored task for the retry decision: ``WAITING``/``PROCESSING`` (reconnect),
        ``SUCCESS`` (return it), ``FAILED``/``NOT_FOUND``/``STALE`` (submit a fresh task). A transient
        error is raised (retry later) — never a reason to resubmit, the task may well be running."""
        if not isinstance(external_id, Mapping) or not external_id.get("mps_task_id"):
            return "STALE"
        assert self._request is not None
        if external_id.get("fingerprint") != self.request_fingerprint(self._request):
            self.log.info(
                "Stored MPS task %s was submitted for different arguments; submitting anew",
                external_id.get("mps_task_id"),
            )
            return "STALE"
        mps_task_id = str(external_id["mps_task_id"])
        try:
            status = self.hook.describe_image_task(mps_task_id)
        except MpsError as err:
            if is_task_not_found(err):
                self.log.warning("Stored MPS task %s is unknown to MPS (%s); submitting anew", mps_task_id, err)
                return "NOT_FOUND"
            raise airflow_exception_for(err, f"{self.task_id}: checking stored MPS task {mps_task_id}") from err
        self._known_status = status
        if status.done:
            return STATUS_SUCCESS if status.succeeded else "FAILED"
        return str(status.state)

    def is_job_active(self, status: str) -> bool:
        return status in ("WAITING", "PROCESSING")

    def is_job_succeeded(self, status: str) -> bool:
        return status == STATUS_SUCCESS

    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:
        """Wait for the (new or reconnected) task as configured; returns the XCom (the mixin returns
        this value directly when it reconnects)."""
        mps_task_id = str(external_id["mps_task_id"])
        request_id = external_id.get("request_id")
        self.push_task_id(context, mps_task_id)
        if not self.wait_for_completion:
            known = self._known_status
            state = str(known.state) if known is not None else STATUS_SUBMITTED
            self._result = build_task_xcom(mps_task_id, request_id=request_id, state=state)
            return self._result
        self._end_time = self.wait_deadline(context)
        if self.deferrable:
            self.log.info("Deferring until MPS task %s finishes", mps_task_id)
            self.defer_to_trigger(
                mps_task_id=mps_task_id,
                end_time=self._end_time,
                request_id=request_id,
                created_after=self._created_after(external_id),
            )
        status = self.wait_in_worker(mps_task_id, self._end_time)
        if not status.succeeded:
            raise AirflowFailException(
                failure_message(
                    mps_task_id,
                    status_error(status),
                    request_id,
                )
            )
        self._result = build_task_xcom(mps_task_id, request_id=request_id, status=status)
        return self._result

    def _created_after(self, external_id: Mapping[str, Any]) -> float | None:
        """The earliest time the task can have been created, for the trigger's shared listing: the
        CreateTime MPS reported (a reconnecting retry has read it), else the recorded submission time
        of a task this operator submitted (an adopted task's is the adoption time: unknown → None)."""
        from airflow_mps.triggers.mps import parse_api_time

        known = self._known_status
        if known is not None and getattr(known, "create_time", None):
            return parse_api_time(known.create_time)
        if external_id.get("adopted"):
            return None
        submitted = external_id.get("submitted_at")
        return float(submitted) if isinstance(submitted, (int, float)) else None

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        """The XCom: from the wait just done, or (already-succeeded retry) from the status just read."""
        if self._result is not None:
            return self._result
        mps_task_id = str(external_id["mps_task_id"])
        self.push_task_id(context, mps_task_id)
        status = self._known_status
        if status is None:
            status = self.hook.describe_image_task(mps_task_id)
        self.log.info("MPS task %s already finished successfully; not resubmitting", mps_task_id)
        self._result = build_task_xcom(mps_task_id, request_id=external_id.get("request_id"), status=status)
        return self._result

    # ---------------------------------------------------------------- lineage
    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage datasets: the input image and the output object(s). ``None`` without the
        OpenLineage provider (imports stay inside this method)."""
        request = self._request
        if request is None:
            try:
                request = self.build_request()
            except Exception:
                request = None
        input_info = request.to_api().get("InputInfo") if request is not None else None
        inputs, outputs = lineage_datasets(input_info, (self._result or {}).get("outputs") or ())
        return openlineage_from_pairs(inputs, outputs)


# The batch operator lives in its own module (it is large); this is its public import path (design §2).
# Resolved on first access (PEP 562) so that DAG files using only the single-image operator or the
# sensor do not pay for importing the batch machinery while they are parsed.
def __getattr__(name: str) -> Any:
    if name == "MpsBatchProcessImageOperator":
        from airflow_mps.operators.batch import MpsBatchProcessImageOperator

        globals()[name] = MpsBatchProcessImageOperator
        return MpsBatchProcessImageOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
