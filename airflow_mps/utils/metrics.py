"""Airflow metrics of the MPS operators (issue 14 item 6): what a dashboard needs to see MPS work.

Emitted through Airflow's ``Stats`` (StatsD, Datadog or OpenTelemetry, as ``[metrics]`` configures;
nothing is sent when metrics are off). Names and tags:

============================  =======  =====================================================================
name                          kind     meaning (extra tags)
============================  =======  =====================================================================
``mps.images.submitted``      counter  ``ProcessImage`` accepted: one MPS task created
``mps.images.succeeded``      counter  an MPS task finished successfully and its result was taken
``mps.images.failed``         counter  an image did not process: its task FINISHed with a failure, or
                                       MPS refused the submission (``code``: the MPS error code)
``mps.images.skipped``        counter  an image not (re)processed because its result exists (``reason``:
                                       ``already_succeeded`` — a retry found its task done;
                                       ``output_exists`` — the batch's skip-existing)
``mps.calls.throttled``       counter  an API attempt refused by rate limiting (``RequestLimitExceeded``),
                                       retried by the hook (``action`` when known)
``mps.submit.latency``        timer    one ``ProcessImage`` call that created a task, pacing and retries
                                       included (the batch: every image's call, from its submitter)
============================  =======  =====================================================================

Every metric carries ``dag_id``, ``task_id`` and ``operator`` (the operator's class name) tags; StatsD
without tag support aggregates them under the name alone.

The API (the batch operator uses the same): ``metrics = MpsMetrics.for_operator(self)`` once per try,
then ``metrics.submitted(n)``, ``.succeeded(n)``, ``.failed(n, code=...)``,
``.skipped(n, reason=...)``, ``.throttled(n, action=...)``, ``.submit_latency(seconds)`` or
``with metrics.timing_submit(): ...``, and ``metrics.watch_throttling(hook)`` to count the throttled
attempts a hook retries internally. No call ever raises: metrics never fail a task. The batch operator
hands ``metrics.submit_latency`` to its submitter (:mod:`airflow_mps.batch.submit`), which times each
call in its thread and reports it from the collecting thread: latency samples reach ``Stats`` one at a
time.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from airflow_mps.hooks._retry import RetryPolicy

__all__ = [
    "CALLS_THROTTLED",
    "IMAGES_FAILED",
    "IMAGES_SKIPPED",
    "IMAGES_SUBMITTED",
    "IMAGES_SUCCEEDED",
    "SUBMIT_LATENCY",
    "MpsMetrics",
]

log = logging.getLogger(__name__)

IMAGES_SUBMITTED = "mps.images.submitted"
IMAGES_SUCCEEDED = "mps.images.succeeded"
IMAGES_FAILED = "mps.images.failed"
IMAGES_SKIPPED = "mps.images.skipped"
CALLS_THROTTLED = "mps.calls.throttled"
SUBMIT_LATENCY = "mps.submit.latency"

#: Where Airflow's ``Stats`` lives: common-compat (every supported Airflow, recent compat), the task SDK
#: (3.2+), core (3.1) and the 3.0 location.
_STATS_MODULES = (
    "airflow.providers.common.compat.sdk",
    "airflow.sdk.observability.stats",
    "airflow.observability.stats",
    "airflow.stats",
)


def _airflow_stats() -> Any:
    """Airflow's ``Stats`` (``None`` when this Airflow has none): imported on first emission only."""
    for name in _STATS_MODULES:
        try:
            return importlib.import_module(name).Stats
        except (ImportError, AttributeError):
            continue
    return None


class MpsMetrics:
    """The metrics of one operator's work, with its tags (``dag_id``, ``task_id``, ``operator``).

    :param stats: the ``Stats`` object to emit through (tests pass a stub); default Airflow's.
    """

    def __init__(
        self,
        *,
        operator: str,
        dag_id: str | None = None,
        task_id: str | None = None,
        stats: Any = None,
    ) -> None:
        self.tags: dict[str, str] = {"operator": operator}
        if dag_id:
            self.tags["dag_id"] = dag_id
        if task_id:
            self.tags["task_id"] = task_id
        self._stats = stats

    @classmethod
    def for_operator(cls, operator: Any, *, stats: Any = None) -> MpsMetrics:
        """Metrics tagged with ``operator``'s DAG, task id and class name."""
        dag_id: str | None
        try:
            dag_id = operator.dag_id if getattr(operator, "has_dag", lambda: True)() else None
        except Exception:  # an operator outside a DAG
            dag_id = None
        return cls(
            operator=type(operator).__name__,
            dag_id=dag_id,
            task_id=getattr(operator, "task_id", None),
            stats=stats,
        )

    # -- emission --------------------------------------------------------------------------------
    def _emit(self, kind: str, name: str, value: Any, extra: dict[str, str] | None) -> None:
        try:
            stats = self._stats if self._stats is not None else _airflow_stats()
            if stats is None:
                return
            tags = {**self.tags, **extra} if extra else dict(self.tags)
            getattr(stats, kind)(name, value, tags=tags)
        except Exception:  # metrics never fail a task
            log.debug("Could not emit metric %s", name, exc_info=True)

    def _count(self, name: str, count: int, extra: dict[str, str] | None = None) -> None:
        if count > 0:
            self._emit("incr", name, int(count), extra)

    # -- counters --------------------------------------------------------------------------------
    def submitted(self, count: int = 1) -> None:
        """``count`` MPS tasks were created."""
        self._count(IMAGES_SUBMITTED, count)

    def succeeded(self, count: int = 1) -> None:
        """``count`` images finished successfully."""
        self._count(IMAGES_SUCCEEDED, count)

    def failed(self, count: int = 1, *, code: str | None = None) -> None:
        """``count`` images failed (``code``: the MPS error code, when there is one)."""
        self._count(IMAGES_FAILED, count, {"code": code} if code else None)

    def skipped(self, count: int = 1, *, reason: str) -> None:
        """``count`` images were not (re)processed (``reason``: ``already_succeeded``, ``output_exists``)."""
        self._count(IMAGES_SKIPPED, count, {"reason": reason})

    def throttled(self, count: int = 1, *, action: str | None = None) -> None:
        """``count`` API attempts were refused by rate limiting."""
        self._count(CALLS_THROTTLED, count, {"action": action} if action else None)

    # -- latency ---------------------------------------------------------------------------------
    def submit_latency(self, seconds: float) -> None:
        """One ``ProcessImage`` call took ``seconds`` (pacing and retries included). A few microseconds
        when metrics are off: the batch calls it once per image."""
        self._emit("timing", SUBMIT_LATENCY, timedelta(seconds=max(0.0, seconds)), None)

    @contextlib.contextmanager
    def timing_submit(self) -> Iterator[None]:
        """Time the block as one submission; recorded only when it completes without an exception."""
        started = time.monotonic()
        yield
        self.submit_latency(time.monotonic() - started)

    # -- throttling inside a hook -----------------------------------------------------------------
    def watch_throttling(self, hook: Any) -> Any:
        """Count every throttled attempt ``hook`` retries (its ``retry_policy`` is told of each one).
        Idempotent; returns ``hook``. A hook without a retry policy is returned as it is."""
        policy = getattr(hook, "retry_policy", None)
        if policy is None or isinstance(policy, _ThrottleCountingPolicy):
            return hook
        hook.retry_policy = cast("RetryPolicy", _ThrottleCountingPolicy(policy, self.throttled))
        return hook


class _ThrottleCountingPolicy:
    """A hook's retry policy that reports each throttled attempt, then decides exactly as before.

    The hook's retry driver asks ``retry_policy.decide(..., throttled=...)`` once per failed attempt;
    everything else (backoff, budget) is the wrapped policy's, through attribute delegation.
    """

    def __init__(self, policy: Any, on_throttle: Callable[[], None]) -> None:
        self._policy = policy
        self._on_throttle = on_throttle

    def decide(self, *, throttled: bool, **kwargs: Any) -> Any:
        if throttled:
            self._on_throttle()
        return self._policy.decide(throttled=throttled, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._policy, name)
