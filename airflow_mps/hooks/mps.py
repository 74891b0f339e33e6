"""MpsHook: Tencent Cloud MPS image processing (sync + async) on a ``tencentcloud`` connection.

The MPS actions an operator, sensor or trigger needs — ``ProcessImage``, ``DescribeImageTaskDetail``,
``DescribeImageTasks`` — on top of :class:`~airflow_mps.hooks.base.TencentCloudBaseHook` (connection,
masking, pacing, the retry driver, SDK clients). Policy:

* **Requests go out exactly as validated**: ``ProcessImageRequest.to_api()`` is sent as JSON through
  the SDK's generic call (signed by the SDK, never by hand; no SDK model that could drop a member).
* **Retry is ours** (``_retry.py``): throttling is retried on any call; transient failures on reads;
  ``ProcessImage`` only when it provably never arrived. An *ambiguous* ``ProcessImage`` failure
  (read timeout, reset after sending, 5xx, answered InternalError) is **reconciled**: PROCESSING and
  FINISH tasks are listed and matched by the rules of :mod:`airflow_mps.ownership` until a settle
  deadline; nothing found is not proof (a WAITING task is not listable), so it ends in
  ``MpsAmbiguousSubmissionError``, never in a second task. The SDK's own retryer is never used (it
  re-sends successful calls and raises a stale error; see docs/reliability.md).
* **Pacing**: ``ProcessImage`` at the connection's ``process_image_rate`` (default 20/s, the API
  limit), ``Describe*`` at its ``describe_rate`` (default 20/s, the strictest documented limit), per
  account, process-wide.
* **One decision, two drivers**: submission-and-reconciliation and the finder are step machines
  (``_steps.py``); each public sync method and its ``a``-prefixed async twin are drivers of a few lines.

COS access (``list_objects``, ``object_exists``, ``read_object``, ``write_object``) lives in
:class:`~airflow_mps.hooks.cos.CosHook`; MpsHook keeps these methods, delegating to the CosHook of its
connection. Names that moved out of this module are re-exported here by plain imports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_mps.errors import (
    AMBIGUOUS_NOT_FOUND,
    MpsAmbiguousSubmissionError,
    MpsError,
    MpsTransientError,
    MpsValidationError,
)
from airflow_mps.hooks._clients import ASYNC_KEEPALIVE_SECONDS, ASYNC_MAX_CONNECTIONS, shared_async_clients
from airflow_mps.hooks._credentials import ClientSettings, get_extra
from airflow_mps.hooks._retry import Arrival, RetryPolicy
from airflow_mps.hooks._steps import Sleep, Step, Steps, adrive, drive, relay
from airflow_mps.hooks.base import (
    DESCRIBE_RATE,
    PACING_HEADROOM,
    NeedsReconcile,
    TencentCloudBaseHook,
    mask_request_secrets,
)
from airflow_mps.hooks.cos import CosHook, CosObject
from airflow_mps.hooks.failures import Failure, classify_failure
from airflow_mps.models.constants import (
    API_TIME_FORMAT,
    FINISH,
    LISTED_TASK_STATES,
    TASK_STATES,
    format_api_time,
)
from airflow_mps.ownership import MAX_DESCRIBES, DetailStep, ListStep, task_finder

if TYPE_CHECKING:
    from airflow_mps.models import ImageTaskInfo, ImageTaskStatus, ProcessImageRequest

__all__ = [
    "ASYNC_KEEPALIVE_SECONDS",
    "ASYNC_MAX_CONNECTIONS",
    "DESCRIBE_RATE",
    "LISTED_STATUSES",
    "PACING_HEADROOM",
    "RECONCILE_MAX_POLL_SECONDS",
    "TASK_STATUSES",
    "CosHook",
    "CosObject",
    "MpsHook",
    "Submission",
    "TencentCloudBaseHook",
    "classify_failure",
    "get_extra",
    "shared_async_clients",
]

log = logging.getLogger(__name__)

#: Former names of ``models.constants.TASK_STATES``/``LISTED_TASK_STATES``, kept for callers of this
#: module (they are in ``__all__``).
TASK_STATUSES = TASK_STATES
LISTED_STATUSES = LISTED_TASK_STATES
#: Longest wait between two reconciliation listings (the wait doubles from ``reconcile_settle_seconds``).
RECONCILE_MAX_POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Submission:
    """The result of one ``ProcessImage``: the MPS task id and the RequestId of the call that created it.

    ``reconciled`` is True when the id was found by listing after an ambiguous failure (then
    ``request_id`` is the RequestId of the failed call, if any).
    """

    task_id: str
    request_id: str | None
    reconciled: bool = False


# --------------------------------------------------------------------------------------------------
# I/O steps of the ownership rules, and pure helpers
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _ListAll:
    """Every task in ``status`` listed from ``start`` to ``end``, all pages (answers
    ``ownership.ListStep``)."""

    status: str
    start: str
    end: str | None = None

    def run(self, hook: MpsHook) -> list[ImageTaskInfo]:
        return list(hook.list_image_tasks(self.status, start_time=self.start, end_time=self.end))

    async def arun(self, hook: MpsHook) -> list[ImageTaskInfo]:
        rows = hook.alist_image_tasks(self.status, start_time=self.start, end_time=self.end)
        return [row async for row in rows]


@dataclass(frozen=True)
class _Detail:
    """The raw DescribeImageTaskDetail response of one task (answers ``ownership.DetailStep``)."""

    task_id: str

    def run(self, hook: MpsHook) -> dict[str, Any]:
        return hook._describe_response(self.task_id)

    async def arun(self, hook: MpsHook) -> dict[str, Any]:
        return await hook._adescribe_response(self.task_id)


def _hook_step(request: ListStep | DetailStep) -> Step:
    if isinstance(request, ListStep):
        return _ListAll(request.status, request.start, request.end)
    return _Detail(request.task_id)


def _finding(
    body: Mapping[str, Any],
    since: datetime,
    skew: float,
    *,
    until: datetime | None = None,
    max_describes: int = MAX_DESCRIBES,
    known: dict[str, bool] | None = None,
) -> Steps[list[str]]:
    """The ownership rules (:func:`airflow_mps.ownership.task_finder`) as hook steps."""
    finder = task_finder(body, since, skew, until=until, max_describes=max_describes, known=known)
    return relay(finder, _hook_step)


def _listing_failed(failure: Failure, exc: MpsError) -> MpsAmbiguousSubmissionError:
    if isinstance(exc, MpsAmbiguousSubmissionError):  # the finder's own refusal (too many candidates)
        return MpsAmbiguousSubmissionError(
            exc.code,
            f"ProcessImage failed ambiguously ({failure.error}): {exc.message}",
            failure.error.request_id,
        )
    return MpsAmbiguousSubmissionError(
        "AmbiguousSubmission.ListingFailed",
        f"ProcessImage failed ambiguously ({failure.error}) and listing recent tasks failed: {exc}",
        failure.error.request_id,
    )


def _no_task_id(response: Mapping[str, Any]) -> Failure:
    """A ProcessImage "success" without a TaskId: the request arrived, a task may exist → reconcile."""
    error = MpsTransientError(
        "InvalidResponse", "ProcessImage answered without a TaskId", response.get("RequestId")
    )
    return Failure(error, Arrival.AMBIGUOUS, False)


def _utc(value: Any, field: str) -> datetime | None:
    """``value`` (a datetime; naive = UTC) in UTC; None stays None."""
    if value is None and field != "since":
        return None
    if not isinstance(value, datetime):
        raise MpsValidationError(field=field, value=value, allowed="a datetime (naive = UTC)")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _format_time(value: datetime | str | None, field: str) -> str | None:
    """API time string ``YYYY-MM-DDThh:mm:ssZ`` (UTC) from a datetime or an already formatted string."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            datetime.strptime(value, API_TIME_FORMAT)
        except ValueError:
            raise MpsValidationError(field=field, value=value, allowed="YYYY-MM-DDThh:mm:ssZ (UTC)") from None
        return value
    if isinstance(value, datetime):
        return format_api_time(value)
    raise MpsValidationError(field=field, value=value, allowed="a datetime or a YYYY-MM-DDThh:mm:ssZ string")


def _next_page(
    params: dict[str, Any], response: Mapping[str, Any]
) -> tuple[list[ImageTaskInfo], dict[str, Any] | None]:
    """One DescribeImageTasks page → (its rows, the next page's params or None after the last)."""
    from airflow_mps.models import ImageTaskInfo

    rows = [ImageTaskInfo.from_api(item) for item in response.get("TaskSet") or []]
    token = response.get("ScrollToken")
    return rows, ({**params, "ScrollToken": token} if token else None)


# --------------------------------------------------------------------------------------------------
# the hook
# --------------------------------------------------------------------------------------------------
class MpsHook(TencentCloudBaseHook):
    """Tencent Cloud MPS image processing + COS access for one ``tencentcloud`` connection.

    :param tencentcloud_conn_id: Airflow connection id (type ``tencentcloud``).
    :param region: overrides the connection's ``region`` extra.
    :param max_retry_seconds: bound on the time one logical call spends retrying (default 120 s).
    :param reconcile_settle_seconds: wait before the first listing after an ambiguous ProcessImage
        failure, so a request still in flight on the service side has created its task (default 1 s);
        the wait between later listings doubles up to 10 s.
    :param reconcile_deadline_seconds: how long reconciliation keeps looking (sum of the waits) before
        it gives up with ``MpsAmbiguousSubmissionError`` (default 60 s: far longer than a task
        normally stays WAITING, the only state DescribeImageTasks cannot show).
    :param reconcile_clock_skew_seconds: how far outside our send/failure times a task's
        ``CreateTime`` may be and still count as ours (clock skew and second truncation; default 5 s).
    :param reconcile_max_describes: most listed tasks without an ``Input`` one search describes
        (default 200: 10 s of the 20/s Describe quota); more → ``MpsAmbiguousSubmissionError``.
    """

    sdk_service = "mps"
    sdk_version = "v20190612"

    def __init__(
        self,
        tencentcloud_conn_id: str = TencentCloudBaseHook.default_conn_name,
        region: str | None = None,
        *,
        max_retry_seconds: float = 120.0,
        retry_policy: RetryPolicy | None = None,
        reconcile_settle_seconds: float = 1.0,
        reconcile_clock_skew_seconds: float = 5.0,
        reconcile_deadline_seconds: float = 60.0,
        reconcile_max_describes: int = MAX_DESCRIBES,
    ) -> None:
        super().__init__(
            tencentcloud_conn_id, region, max_retry_seconds=max_retry_seconds, retry_policy=retry_policy
        )
        self.reconcile_settle_seconds = reconcile_settle_seconds
        self.reconcile_clock_skew_seconds = reconcile_clock_skew_seconds
        self.reconcile_deadline_seconds = reconcile_deadline_seconds
        self.reconcile_max_describes = reconcile_max_describes

    def _pacing(self, settings: ClientSettings, action: str) -> tuple[str, float]:
        """ProcessImage has its own quota, at the connection's ``process_image_rate``."""
        if action == "ProcessImage":
            return "ProcessImage", settings.process_image_rate
        return super()._pacing(settings, action)

    # ---- ProcessImage ---------------------------------------------------------------------------
    def process_image(self, request: ProcessImageRequest) -> Submission:
        """Submit one ProcessImage; never creates a second task for one call.

        Throttled / never-arrived attempts are retried. After an ambiguous failure the hook looks for
        the task the request may have created (:meth:`find_tasks_for`'s rules, window = first attempt
        to failure): it lists PROCESSING and FINISH tasks after ``reconcile_settle_seconds``, then
        again with doubling waits until ``reconcile_deadline_seconds``. Exactly one task with our input
        and request → that task is returned (``Submission.reconciled``). Several, a listing that fails,
        or none by the deadline → ``MpsAmbiguousSubmissionError`` (codes
        ``AmbiguousSubmission.SeveralTasks`` / ``.ListingFailed`` / ``.TooManyCandidates`` /
        ``.NotFound``): a task still WAITING is not listable, so "none found" never proves that
        nothing was created, and the request is never resubmitted (docs/reliability.md).
        """
        return drive(self._submission(request), self)

    async def aprocess_image(self, request: ProcessImageRequest) -> Submission:
        """Async twin of ``process_image`` (same reconciliation)."""
        return await adrive(self._submission(request), self)

    def _submission(self, request: ProcessImageRequest) -> Steps[Submission]:
        """The submit-and-reconcile sequence of :meth:`process_image`, as a step machine."""
        body = request.to_api()
        mask_request_secrets(body)
        first_sent = datetime.now(timezone.utc)
        try:
            response = yield from self._call_steps("ProcessImage", body, idempotent=False)
            task_id = response.get("TaskId")
            if isinstance(task_id, str) and task_id:
                return Submission(task_id=task_id, request_id=response.get("RequestId"))
            failure = _no_task_id(response)
        except NeedsReconcile as pending:
            failure = pending.failure
        failed_at = datetime.now(timezone.utc)
        log.warning(
            "MPS ProcessImage outcome unknown (%s); reconciling by listing recent tasks", failure.error
        )
        matches, waited = yield from self._reconciling(body, first_sent, failed_at, failure)
        return self._reconcile_outcome(matches, failure, waited)

    def _reconciling(
        self, body: Mapping[str, Any], first_sent: datetime, failed_at: datetime, failure: Failure
    ) -> Steps[tuple[list[str], float]]:
        """Poll the finder (window: first attempt → failure) until it finds something or the waits add
        up to ``reconcile_deadline_seconds``; returns (matches, seconds waited). Each task is described
        at most once over all polls (the finder's ``known``). A failed listing is an ambiguous
        submission."""
        known: dict[str, bool] = {}
        waited = 0.0
        delay = max(0.0, self.reconcile_settle_seconds)
        while True:
            yield Sleep(delay)
            waited += delay
            started = time.monotonic()
            try:
                matches: list[str] = yield from _finding(
                    *self._finder_args(body, first_sent, None),
                    until=failed_at,
                    max_describes=self.reconcile_max_describes,
                    known=known,
                )
            except MpsError as exc:
                raise _listing_failed(failure, exc) from exc
            waited += time.monotonic() - started
            left = self.reconcile_deadline_seconds - waited
            if matches or left <= 0:
                return matches, waited
            delay = min(max(delay * 2, 0.1), RECONCILE_MAX_POLL_SECONDS, left)

    def _reconcile_outcome(self, matches: list[str], failure: Failure, waited: float) -> Submission:
        """Submission for exactly one match; ``MpsAmbiguousSubmissionError`` otherwise."""
        if len(matches) == 1:
            log.warning("MPS ProcessImage reconciled: the failed attempt created task %s", matches[0])
            return Submission(task_id=matches[0], request_id=failure.error.request_id, reconciled=True)
        if len(matches) > 1:
            raise MpsAmbiguousSubmissionError(
                "AmbiguousSubmission.SeveralTasks",
                f"ProcessImage failed ambiguously ({failure.error}) and {len(matches)} tasks with the "
                f"same input and request were created since: {', '.join(sorted(matches))}",
                failure.error.request_id,
            )
        raise MpsAmbiguousSubmissionError(
            AMBIGUOUS_NOT_FOUND,
            f"ProcessImage failed ambiguously ({failure.error}) and no PROCESSING or FINISH task with this "
            f"input and request appeared within {waited:.0f} s; a task still WAITING cannot be listed, so "
            "this does not prove that none was created. Not resubmitting: look for the task (MpsHook."
            "find_tasks_for) before submitting again",
            failure.error.request_id,
        )

    # ---- which tasks did a ProcessImage create? (reconciliation, retry adoption) ----------------
    def find_tasks_for(
        self,
        request: ProcessImageRequest | Mapping[str, Any],
        since: datetime,
        *,
        clock_skew_seconds: float | None = None,
        until: datetime | None = None,
        max_describes: int = MAX_DESCRIBES,
    ) -> list[str]:
        """Ids of the tasks a ``ProcessImage`` of ``request`` sent at ``since`` can have created.

        The one implementation of "find the task this request created", used by the hook's own
        reconciliation after an ambiguous failure and by the operators when a try died before it
        recorded the TaskId. The rules are :func:`airflow_mps.ownership.task_finder`'s: PROCESSING
        and FINISH tasks created from ``since`` (minus ``clock_skew_seconds``, default the hook's
        ``reconcile_clock_skew_seconds``) to ``until`` (plus the skew; default now), matched by the
        listed ``Input`` or, where the listing names none, by describing the task (at most
        ``max_describes``, newest first; more → ``MpsAmbiguousSubmissionError``).

        Empty: no *listable* task is ours. A task still WAITING is not listable, so an empty answer
        soon after ``since`` does not prove that nothing was created; several: ambiguous. The caller
        decides. Listing/describe failures raise the hook's ``MpsError`` classes.

        :param request: a ``ProcessImageRequest`` or its API body (``to_api()``).
        :param since: when the request was (first) sent; a naive datetime is taken as UTC.
        :param until: when the last attempt ended (no task of ours can be younger); naive = UTC.
        :param max_describes: most listed tasks without an ``Input`` this search describes.
        """
        body, start, skew = self._finder_args(request, since, clock_skew_seconds)
        finding = _finding(body, start, skew, until=_utc(until, "until"), max_describes=max_describes)
        return drive(finding, self)

    async def afind_tasks_for(
        self,
        request: ProcessImageRequest | Mapping[str, Any],
        since: datetime,
        *,
        clock_skew_seconds: float | None = None,
        until: datetime | None = None,
        max_describes: int = MAX_DESCRIBES,
    ) -> list[str]:
        """Async twin of :meth:`find_tasks_for` (same rules, async SDK client)."""
        body, start, skew = self._finder_args(request, since, clock_skew_seconds)
        finding = _finding(body, start, skew, until=_utc(until, "until"), max_describes=max_describes)
        return await adrive(finding, self)

    def _finder_args(
        self, request: Any, since: Any, clock_skew_seconds: float | None
    ) -> tuple[Mapping[str, Any], datetime, float]:
        body = request.to_api() if hasattr(request, "to_api") else request
        if not isinstance(body, Mapping):
            raise MpsValidationError(
                field="request", value=type(request).__name__, allowed="a ProcessImageRequest or its API body"
            )
        skew = self.reconcile_clock_skew_seconds if clock_skew_seconds is None else clock_skew_seconds
        if isinstance(skew, bool) or not isinstance(skew, (int, float)) or skew < 0:
            raise MpsValidationError(field="clock_skew_seconds", value=skew, allowed="a number >= 0")
        start = _utc(since, "since")
        assert start is not None
        return body, start, float(skew)

    # ---- DescribeImageTaskDetail ----------------------------------------------------------------
    @staticmethod
    def _check_task_id(task_id: Any) -> str:
        if not isinstance(task_id, str) or not task_id.strip():
            raise MpsValidationError(
                field="mps_task_id",
                value=task_id,
                allowed="a non-empty MPS TaskId string",
                code="MissingParameter",
            )
        return task_id.strip()

    def _describe_response(self, task_id: str) -> dict[str, Any]:
        """The raw DescribeImageTaskDetail ``Response`` (the finder needs ``InputInfo``, which
        ``ImageTaskStatus`` does not keep)."""
        return self._call("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)

    async def _adescribe_response(self, task_id: str) -> dict[str, Any]:
        return await self._acall("DescribeImageTaskDetail", {"TaskId": task_id}, idempotent=True)

    def describe_image_task(self, task_id: str) -> ImageTaskStatus:
        """Status and outputs of one task (DescribeImageTaskDetail)."""
        from airflow_mps.models import ImageTaskStatus

        task_id = self._check_task_id(task_id)
        return ImageTaskStatus.from_api(self._describe_response(task_id), task_id=task_id)

    async def adescribe_image_task(self, task_id: str) -> ImageTaskStatus:
        """Async twin of ``describe_image_task`` (for triggers)."""
        from airflow_mps.models import ImageTaskStatus

        task_id = self._check_task_id(task_id)
        return ImageTaskStatus.from_api(await self._adescribe_response(task_id), task_id=task_id)

    # ---- DescribeImageTasks ---------------------------------------------------------------------
    @staticmethod
    def _list_params(
        status: str,
        start_time: datetime | str | None,
        end_time: datetime | str | None,
        sub_task_has_failed: bool | None,
        page_size: int,
    ) -> dict[str, Any]:
        if status not in TASK_STATES:
            raise MpsValidationError(field="status", value=status, allowed=", ".join(TASK_STATES))
        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 100:
            raise MpsValidationError(field="page_size", value=page_size, allowed="an integer 1-100")
        if sub_task_has_failed is not None and not isinstance(sub_task_has_failed, bool):
            raise MpsValidationError(
                field="sub_task_has_failed", value=sub_task_has_failed, allowed="True, False, None"
            )
        params: dict[str, Any] = {"Status": status, "Limit": page_size}
        start = _format_time(start_time, "start_time")
        end = _format_time(end_time, "end_time")
        if start:
            params["StartTime"] = start
        if end:
            params["EndTime"] = end
        if sub_task_has_failed is not None:
            params["SubTaskHasFailed"] = sub_task_has_failed
        return params

    def list_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> Iterator[ImageTaskInfo]:
        """Every task in ``status`` in the time window, page by page.

        The documented service lists ``PROCESSING`` and ``FINISH`` only (api.json); ``WAITING`` is
        passed through for services that list it (the emulator's lenient mode) and is answered
        ``InvalidParameterValue`` by the real one. The arguments are checked now; pages are fetched as
        the iterator is consumed."""
        return self._pages(self._list_params(status, start_time, end_time, sub_task_has_failed, page_size))

    def _pages(self, params: dict[str, Any] | None) -> Iterator[ImageTaskInfo]:
        while params is not None:
            rows, params = _next_page(params, self._call("DescribeImageTasks", params, idempotent=True))
            yield from rows

    async def alist_image_tasks(
        self,
        status: str,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        sub_task_has_failed: bool | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[ImageTaskInfo]:
        """Async twin of ``list_image_tasks`` (an async generator)."""
        params: dict[str, Any] | None = self._list_params(
            status, start_time, end_time, sub_task_has_failed, page_size
        )
        while params is not None:
            rows, params = _next_page(
                params, await self._acall("DescribeImageTasks", params, idempotent=True)
            )
            for row in rows:
                yield row

    # ---- connection test ------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated read (DescribeImageTasks, Limit 1) — what the UI's Test button runs."""
        try:
            settings = self.get_settings()
            saved, self.retry_policy = self.retry_policy, RetryPolicy(max_retry_seconds=10)
            try:
                response = self._call("DescribeImageTasks", {"Status": FINISH, "Limit": 1}, idempotent=True)
            finally:
                self.retry_policy = saved
        except MpsError as exc:
            request_id = f" (RequestId {exc.request_id})" if exc.request_id else ""
            return False, f"{exc.code}: {exc.message}{request_id}"
        return True, (
            f"Connected to MPS at {settings.endpoint or 'mps.tencentcloudapi.com'} as {settings.secret_id} "
            f"(credentials from {settings.credential_source}; RequestId {response.get('RequestId')})"
        )

    # ---- COS (delegated to the CosHook of this connection) -------------------------------------
    @property
    def cos(self) -> CosHook:
        """The :class:`~airflow_mps.hooks.cos.CosHook` of this hook's connection, region and retry
        policy (created once, sharing the settings resolved here)."""
        self.get_settings()  # one connection lookup, shared with the CosHook
        return self._hook_for(CosHook)

    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[CosObject]:
        """Every object under ``prefix`` (see :meth:`CosHook.list_objects`)."""
        yield from self.cos.list_objects(bucket, prefix, region)

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool:
        """True when ``key`` exists in ``bucket`` (see :meth:`CosHook.object_exists`)."""
        return self.cos.object_exists(bucket, key, region)

    def read_object(self, bucket: str, key: str, region: str | None = None) -> bytes:
        """The whole object body (see :meth:`CosHook.read_object`)."""
        return self.cos.read_object(bucket, key, region)

    def write_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        content_type: str | None = None,
        region: str | None = None,
    ) -> str:
        """Write (overwrite) ``key``; returns the ETag (see :meth:`CosHook.write_object`)."""
        return self.cos.write_object(bucket, key, data, content_type, region)
