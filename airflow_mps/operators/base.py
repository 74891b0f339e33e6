"""``MpsBaseOperator``: the base of the MPS operator family (single image and batch).

It holds what every MPS operator needs and nothing specific to one: the connection and waiting
arguments, the typed hook, the one deadline rule, the deferral with a timeout, the console link, and the
single-task wait (in the worker, or handed to ``MpsImageTaskTrigger``).

Contract for subclasses (``MpsProcessImageOperator`` in ``operators/mps.py``,
``MpsBatchProcessImageOperator`` in ``operators/batch.py``):

* **Arguments.** Keyword-only. The base takes ``tencentcloud_conn_id``, ``region``,
  ``wait_for_completion``, ``deferrable`` (default ``[operators] default_deferrable``),
  ``poll_interval`` and ``timeout`` (seconds or a ``timedelta``; validated when the DAG is parsed:
  ``poll_interval`` > 0, ``timeout`` >= 0 or ``None``), then hands the rest to ``BaseOperator``.
  A subclass stores its own arguments as given and renders/validates them in ``execute``, never in
  ``__init__`` (apache/airflow #33786).
* **Templated fields.** ``template_fields`` of a subclass extends :attr:`MpsBaseOperator.template_fields`
  (``tencentcloud_conn_id``, ``region``): ``(*MpsBaseOperator.template_fields, "input", ...)``. Secrets
  in rendered values (``S3SecretKey`` in a dict or in JSON text) are registered with the masker as soon
  as the fields are rendered, before Airflow stores them for the UI
  (:class:`~airflow_mps.utils.rendered.RenderedFieldsMixin`).
* **Links.** ``operator_extra_links = (MpsTaskLink(),)`` is inherited; call :meth:`push_task_id` as
  soon as an MPS task id is known so the link and the ``mps_task_id`` XCom work while the task waits.
  The link points at the emulator's own task page when the connection is the local emulator (or names
  a ``console_url``), else at the Tencent Cloud console (:mod:`airflow_mps.links.mps`).
* **The hook.** :attr:`hook` (``MpsHook``, created on first use after templates are rendered, once
  per operator instance; the hook module and the SDK are imported then, never at DAG parse). Every
  throttled attempt it retries is counted in :attr:`metrics`.
* **Metrics.** :attr:`metrics` (:class:`~airflow_mps.utils.metrics.MpsMetrics`, tagged with the DAG,
  task and operator class): call ``submitted``/``succeeded``/``failed``/``skipped`` and time each
  submission (``timing_submit``); names in :mod:`airflow_mps.utils.metrics`.
  :meth:`resolved_region` is the region argument, else the connection's.
* **Deadline.** :meth:`wait_deadline` is the absolute deadline of a wait starting now — the rule of
  :mod:`airflow_mps.utils.deadlines` (``timeout`` or MPS's 7-day retention from now, capped by
  ``execution_timeout`` from the try's start, which Airflow does not enforce while deferred).
* **Deferral.** :meth:`defer_until` defers to any trigger that stops by itself at ``end_time``, with
  an Airflow-level deferral timeout of that deadline plus a grace period (the trigger's own
  ``timeout`` event, which names the MPS task, normally arrives first). Import the trigger class
  inside the method that defers: operators never import triggers at module level.
* **One task.** :meth:`wait_in_worker` (poll in the worker) and :meth:`defer_to_trigger`
  (``MpsImageTaskTrigger``) wait for one MPS task with the rules of
  :func:`airflow_mps.waits.task.wait_for_task`; :meth:`result_from_event` turns that trigger's event
  into the XCom or the right exception.
* **Failures.** Map ``MpsError`` with :func:`airflow_mps.utils.results.airflow_exception_for`:
  terminal → ``AirflowFailException`` (no retry), transient/deadline → ``AirflowException``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, BaseOperator, BaseOperatorLink

from airflow_mps.errors import MpsError
from airflow_mps.links.mps import MpsTaskLink, push_task_id
from airflow_mps.steps import drive
from airflow_mps.utils.config import default_deferrable
from airflow_mps.utils.deadlines import deferral_timeout, seconds_argument, wait_deadline
from airflow_mps.utils.events import EVENT_ERROR, EVENT_TIMEOUT
from airflow_mps.utils.metrics import MpsMetrics
from airflow_mps.utils.rendered import RenderedFieldsMixin
from airflow_mps.utils.results import airflow_exception_for, result_from_event

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ImageTaskStatus
    from airflow_mps.waits.task import TaskStep

__all__ = ["MpsBaseOperator"]


class MpsBaseOperator(RenderedFieldsMixin, BaseOperator):
    """Connection and waiting arguments shared by the MPS operators (contract: module docstring).

    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud`` (templated).
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

    template_fields: Sequence[str] = ("tencentcloud_conn_id", "region")
    operator_extra_links: tuple[BaseOperatorLink, ...] = (MpsTaskLink(),)
    ui_color = "#e8f4ff"
    #: Keep MPS's signed output URLs (bearer links, valid an hour) in the XCom and trigger events.
    #: Off unless a subclass's ``include_signed_urls`` argument turns it on (issue 12 item 4).
    include_signed_urls: bool = False

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

    # ---------------------------------------------------------------- connection
    @cached_property
    def metrics(self) -> MpsMetrics:
        """This task's metrics (:mod:`airflow_mps.utils.metrics`), tagged with its DAG, task and class."""
        return MpsMetrics.for_operator(self)

    @cached_property
    def hook(self) -> MpsHook:
        """The ``MpsHook`` (imported on first use: DAG parsing never imports the SDK); the throttled
        attempts it retries are counted (``mps.calls.throttled``)."""
        from airflow_mps.hooks.mps import MpsHook

        hook = MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)
        self.metrics.watch_throttling(hook)
        return hook

    def resolved_region(self) -> str | None:
        """The region to validate ``cos://`` inputs with: the argument, else the connection's."""
        if self.region:
            return self.region
        return self.hook.get_settings().region or None

    # ---------------------------------------------------------------- deadline and deferral
    def wait_deadline(self, context: Context | Mapping[str, Any] | None) -> float:
        """Absolute deadline (epoch seconds) of a wait starting now: ``timeout`` (or the 7-day
        retention) from now, ``execution_timeout`` from the try's start, whichever is earlier."""
        return wait_deadline(self.timeout, context, getattr(self, "execution_timeout", None))

    def defer_until(
        self,
        trigger: BaseTrigger,
        *,
        end_time: float,
        method_name: str = "execute_complete",
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Defer to ``trigger`` (which stops by itself at ``end_time``); the Airflow-level deferral
        timeout is the same deadline plus a grace period. Raises ``TaskDeferred``."""
        self.defer(
            trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=deferral_timeout(end_time)
        )

    def push_task_id(self, context: Context | Mapping[str, Any] | None, mps_task_id: str) -> None:
        """See :func:`airflow_mps.links.mps.push_task_id` (the link follows this operator's connection)."""
        push_task_id(context, mps_task_id, operator=self)

    # ---------------------------------------------------------------- waiting for one task
    def defer_to_trigger(
        self,
        *,
        mps_task_id: str,
        end_time: float,
        request_id: str | None,
        method_name: str = "execute_complete",
        created_after: float | None = None,
    ) -> None:
        """Defer to ``MpsImageTaskTrigger`` until ``end_time`` (see :meth:`defer_until`).
        ``created_after`` (epoch seconds, no later than the task's creation) lets the trigger share
        the triggerer's one listing per round instead of polling its own detail."""
        # Imported here: the trigger module (and Airflow's trigger base) is not needed to parse a DAG.
        from airflow_mps.triggers.mps import MpsImageTaskTrigger

        trigger = MpsImageTaskTrigger(
            mps_task_id=mps_task_id,
            end_time=end_time,
            tencentcloud_conn_id=self.tencentcloud_conn_id,
            region=self.region,
            poll_interval=self.poll_interval,
            request_id=request_id,
            created_after=created_after,
            include_signed_urls=self.include_signed_urls,
        )
        self.defer_until(trigger, end_time=end_time, method_name=method_name)

    def wait_in_worker(self, mps_task_id: str, end_time: float) -> ImageTaskStatus:
        """Poll ``DescribeImageTaskDetail`` in the worker until the task is done or ``end_time``.

        Throttling/transient errors are logged and polled through; a terminal error fails the task.
        Returns the final status (the caller decides success vs failure). Raises ``AirflowException``
        (retryable) at the deadline.
        """
        from airflow_mps.waits.task import wait_for_task  # worker-time only: keeps it out of DAG parsing (P5)

        steps = wait_for_task(mps_task_id, end_time=end_time, poll_interval=self.poll_interval, log=self.log)
        outcome = drive(steps, self._perform)
        if outcome.event == EVENT_TIMEOUT:
            raise AirflowException(
                f"MPS task {mps_task_id} did not finish before the deadline ({outcome.polls} polls); "
                "a retry reconnects to the same task"
            )
        if outcome.event == EVENT_ERROR and outcome.exception is not None:
            raise airflow_exception_for(
                outcome.exception, f"Polling MPS task {mps_task_id}"
            ) from outcome.exception
        assert outcome.status is not None  # success and failed outcomes carry the FINISHed status
        return outcome.status

    def _perform(self, step: TaskStep) -> Any:
        """One step of an in-worker wait (the reply the step machine expects)."""
        from airflow_mps.waits.task import Describe, Sleep

        if isinstance(step, Describe):
            try:
                return self.hook.describe_image_task(step.task_id)
            except MpsError as err:  # judged by the wait: terminal or polled through
                return err
        if isinstance(step, Sleep):
            return time.sleep(step.seconds)
        raise TypeError(f"an in-worker wait has no shared poller: {step!r}")

    def result_from_event(self, event: Mapping[str, Any] | None, *, what: str) -> dict[str, Any]:
        """See :func:`airflow_mps.utils.results.result_from_event` (signed URLs per
        :attr:`include_signed_urls`)."""
        return result_from_event(event, what=what, include_signed_urls=self.include_signed_urls)
