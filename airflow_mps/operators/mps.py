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
write) is closed by a marker written before each submission; see ``adopt_unrecorded_submission``.
On Airflow 3.0-3.2 there is no task state store: every try submits, and the hook's submission
reconciliation is the only protection (see docs/operators.md).

The pieces every MPS operator needs (connection + waiting arguments, the hook, the deadline, the
trigger hand-off, links) live in :class:`airflow_mps.operators.base.MpsBaseOperator`; XCom building
and error mapping in :mod:`airflow_mps.utils.results`, shared with the sensor.

Nothing heavy is imported at module level: the hook (and with it the Tencent Cloud SDK) is imported the
first time an operator talks to MPS, never while a DAG file is parsed.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_mps.errors import AMBIGUOUS_NOT_FOUND, MpsAmbiguousSubmissionError, MpsError, MpsValidationError
from airflow_mps.operators.base import MpsBaseOperator

# The batch operator lives in its own module; this is its public import path (design §2): a plain
# re-export (the batch module does not import this one, so there is no cycle).
from airflow_mps.operators.batch import MpsBatchProcessImageOperator
from airflow_mps.utils.events import EVENT_FAILED, status_error
from airflow_mps.utils.lineage import lineage_datasets, openlineage_from_pairs
from airflow_mps.utils.results import (
    STATUS_SUBMITTED,
    STATUS_SUCCESS,
    airflow_exception_for,
    build_task_xcom,
    failure_message,
    is_task_not_found,
)

try:  # Airflow >= 3.3 (or common-compat's stand-in for older Airflow)
    from airflow.providers.common.compat.sdk import ResumableJobMixin
except ImportError:  # pragma: no cover - common-compat too old to know the mixin
    try:
        from airflow.sdk import ResumableJobMixin  # type: ignore[no-redef,unused-ignore]  # same class as compat on 3.3
    except ImportError:

        class ResumableJobMixin:  # type: ignore[no-redef]  # stand-in for the SDK class on old Airflow
            """Last-resort stand-in: no task state store, so every try submits (as before 3.3)."""

            external_id_key: str = "remote_job_id"

            def __init__(self, *, durable: bool = True, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.durable = False

            def execute_resumable(self, context: Any) -> Any:
                external_id = self.submit_job(context)  # type: ignore[attr-defined]  # the operator defines it
                self.poll_until_complete(external_id, context)  # type: ignore[attr-defined]  # the operator defines it
                return self.get_job_result(external_id, context)  # type: ignore[attr-defined]  # the operator defines it


if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_mps.models import ProcessImageRequest

__all__ = ["MpsBatchProcessImageOperator", "MpsProcessImageOperator"]

#: How far before a submission marker a task's ``CreateTime`` may lie and still count as that
#: submission's (client/server clock skew and ``CreateTime``'s one-second resolution).
RECONCILE_SKEW_SECONDS = 10.0


class MpsProcessImageOperator(ResumableJobMixin, MpsBaseOperator):
    """Process one image with MPS ``ProcessImage`` and (optionally) wait for the result.

    Arguments mirror the API's fields in snake_case; every one of them is templated, as are
    ``tencentcloud_conn_id`` and ``region`` (the waiting arguments are not: they are checked when the DAG
    is parsed). They are rendered and validated in ``execute`` (never in ``__init__``), before any API
    call; an invalid value fails the task without retry, naming the argument. A value a template
    rendered to nothing (``None``, ``"None"``, ``""``, ``"null"``, ``"[]"``) is invalid in every argument;
    leave an optional argument unset (``None``) to get its default.

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
    :param include_signed_urls: keep MPS's signed download URLs in the XCom (``outputs[].signed_url``)
        and the trigger event. Off by default: a signed URL is a bearer link (whoever holds it reads the
        object for an hour) and XCom, events and logs are readable by every UI user; the key stays,
        ``None``. Read outputs by ``bucket``/``path`` with the hook instead, or opt in.
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
        *MpsBaseOperator.template_fields,
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
    )
    template_fields_renderers = {"image_task": "json", "add_on_parameter": "json"}
    #: task_state_store key; renaming it breaks in-flight retries of deployed DAGs.
    external_id_key = "mps_process_image"
    #: ``input`` / ``output_storage`` may carry an ``S3SecretKey``: after rendering their attributes hold
    #: a ``***`` copy, the request is built from the originals (``RenderedFieldsMixin.unredacted``).
    redact_rendered_secrets = True

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
        include_signed_urls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.include_signed_urls = bool(include_signed_urls)
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
        """Validate the rendered arguments into a ``ProcessImageRequest`` (no API call).

        First every templated argument is checked for a template that rendered to nothing (``None``,
        ``"None"``, ``""``, ``"null"``, ``"[]"``: :func:`airflow_mps.utils.rendered.reject_rendered_empty`),
        which would otherwise reach MPS as ``None/a.jpg`` outputs or a task without ``ImageTask``.
        """
        from airflow_mps.models import ProcessImageRequest

        try:
            self.reject_rendered_empty_fields(self.template_fields, required=("input",))
            return ProcessImageRequest.build(
                # Attributes hold ***-copies of values with secrets (what Airflow stores and shows): originals here.
                input=self.unredacted("input"),
                output_storage=self.unredacted("output_storage"),
                output_dir=self.unredacted("output_dir"),
                output_path=self.unredacted("output_path"),
                image_task=self.unredacted("image_task"),
                definition=self.unredacted("definition"),
                resource_id=self.unredacted("resource_id"),
                schedule_id=self.unredacted("schedule_id"),
                add_on_parameter=self.unredacted("add_on_parameter"),
                std_ext_info=self.unredacted("std_ext_info"),
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
        result: dict[str, Any] = self.execute_resumable(context)
        return result

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
        task instance's, and the mixin reconnects to it; several → the task fails without retry, naming
        them (never a guess, never a blind duplicate); none → the mixin submits, but only once the
        marker is ``reconcile_deadline_seconds`` old (:meth:`_find_unrecorded`): a task still WAITING
        is not listable, and a retry that comes soon after the death (a short ``retry_delay``) would
        otherwise submit the image a second time (found by tests/reliability/test_sigkill_trials.py).
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
        since = float(pending.get("since") or time.time())
        try:
            matches = self._find_unrecorded(since)
        except MpsError as err:
            raise airflow_exception_for(err, f"{self.task_id}: looking for an unrecorded submission") from err
        if not matches:
            self.log.info(
                "No MPS task was listable %.0f s after the unrecorded submission of an earlier try: "
                "taking it that none was created, submitting",
                time.time() - since,
            )
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

    def _find_unrecorded(self, since: float) -> list[str]:
        """The tasks an unrecorded submission made at ``since`` created: ``MpsHook.find_tasks_for`` (the
        hook's rules: input, request, marker second), listed again with doubling waits while nothing is
        found and the marker is younger than the hook's ``reconcile_deadline_seconds`` — the patience
        the hook itself has after an ambiguous ProcessImage (docs/reliability.md), for the same reason:
        a WAITING task is not listable, so an empty listing soon after ``since`` proves nothing."""
        from airflow_mps.hooks.mps import RECONCILE_MAX_POLL_SECONDS

        assert self._request is not None
        marker = datetime.fromtimestamp(since, tz=timezone.utc)
        delay = max(float(self.hook.reconcile_settle_seconds), 0.1)
        while True:
            matches = self.hook.find_tasks_for(
                self._request, marker, clock_skew_seconds=RECONCILE_SKEW_SECONDS
            )
            left = since + float(self.hook.reconcile_deadline_seconds) - time.time()
            if matches or left <= 0:
                return matches
            wait = min(delay, left)
            self.log.info(
                "No listable MPS task yet for an earlier try's unrecorded submission (%.0f s ago); a task "
                "still WAITING cannot be listed: looking again in %.1f s (for %.0f s more at most)",
                time.time() - since,
                wait,
                left,
            )
            time.sleep(wait)  # looked up per call, never bound at import (tests/unit/conftest.py)
            delay = min(delay * 2, RECONCILE_MAX_POLL_SECONDS)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: the XCom on success, ``AirflowFailException`` on an MPS failure."""
        if event and event.get("status") == EVENT_FAILED:
            self.metrics.failed(code=(event.get("error") or {}).get("code"))
        result = self.result_from_event(event, what=self.task_id)
        self.metrics.succeeded()
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
            with self.metrics.timing_submit():
                submission = self.hook.process_image(self._request)
        except MpsError as err:
            if isinstance(err, MpsAmbiguousSubmissionError) and err.code == AMBIGUOUS_NOT_FOUND and store:
                # Nothing found yet, but a WAITING task is invisible to the listing: the hook never
                # resubmits on that. With the marker stored, the next try looks again (minutes later,
                # when a queued task is listable) and adopts it, or submits once when it finds none.
                raise AirflowException(
                    f"{self.task_id}: ProcessImage: {err}; the next try looks for the task again before "
                    "submitting (docs/reliability.md, retry classification)"
                ) from err
            if not err.retryable and not isinstance(err, MpsAmbiguousSubmissionError):
                self.metrics.failed(code=err.code)  # refused for good: this image will not process
            raise airflow_exception_for(err, f"{self.task_id}: ProcessImage") from err
        self.metrics.submitted()
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
                self.log.warning(
                    "Stored MPS task %s is unknown to MPS (%s); submitting anew", mps_task_id, err
                )
                return "NOT_FOUND"
            raise airflow_exception_for(
                err, f"{self.task_id}: checking stored MPS task {mps_task_id}"
            ) from err
        self._known_status = status
        if status.done:
            return STATUS_SUCCESS if status.succeeded else "FAILED"
        return str(status.state)

    def is_job_active(self, status: str) -> bool:
        return status in ("WAITING", "PROCESSING")

    def is_job_succeeded(self, status: str) -> bool:
        return status == STATUS_SUCCESS

    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:  # type: ignore[override]  # the mixin returns this value on reconnect (resumablejobmixin.py) but types it None
        """Wait for the (new or reconnected) task as configured; returns the XCom (the mixin returns
        this value directly when it reconnects)."""
        mps_task_id = str(external_id["mps_task_id"])
        request_id = external_id.get("request_id")
        self.push_task_id(context, mps_task_id)
        if not self.wait_for_completion:
            known = self._known_status
            state = str(known.state) if known is not None else STATUS_SUBMITTED
            self._result = build_task_xcom(
                mps_task_id, request_id=request_id, state=state, include_signed_urls=self.include_signed_urls
            )
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
            self.metrics.failed(code=status.error_code)
            raise AirflowFailException(failure_message(mps_task_id, status_error(status), request_id))
        self.metrics.succeeded()
        self._result = build_task_xcom(
            mps_task_id, request_id=request_id, status=status, include_signed_urls=self.include_signed_urls
        )
        return self._result

    def _created_after(self, external_id: Mapping[str, Any]) -> float | None:
        """The earliest time the task can have been created, for the trigger's shared listing: the
        CreateTime MPS reported (a reconnecting retry has read it), else the recorded submission time
        of a task this operator submitted (an adopted task's is the adoption time: unknown → None)."""
        known = self._known_status
        if known is not None and getattr(known, "create_time", None):
            from airflow_mps.models.constants import parse_api_time

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
        self.metrics.skipped(reason="already_succeeded")
        self._result = build_task_xcom(
            mps_task_id,
            request_id=external_id.get("request_id"),
            status=status,
            include_signed_urls=self.include_signed_urls,
        )
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
