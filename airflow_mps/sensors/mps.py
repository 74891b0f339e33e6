"""Sensor that waits for an existing MPS image task (e.g. one submitted fire-and-forget upstream).

Semantics (matching Airflow's sensors):

* ``poke`` is True only when the task FINISHed **successfully**; its result is returned as the XCom
  (same shape as ``MpsProcessImageOperator``'s). A task that FINISHed with a failure raises
  ``AirflowFailException`` naming the MPS code — it is never counted as done — which Airflow turns into
  a skip when ``soft_fail=True``.
* Throttling and transient API errors count as "not yet" (logged with code and RequestId); terminal
  API errors (unknown task id, bad credentials) fail at once.
* ``mode="reschedule"`` works as for every sensor. ``deferrable=True`` waits on the triggerer with the
  same ``MpsImageTaskTrigger`` as the operator; its deadline is the sensor's ``timeout`` counted from
  the deferral, carried into the trigger as an absolute time; reaching it raises
  ``AirflowSensorTimeout`` (a skip with ``soft_fail``), as a poking sensor would. ``execution_timeout``
  is carried into that deadline too (Airflow does not enforce it while a task is deferred); reaching it
  raises ``AirflowTaskTimeout`` (retried), as for a poking sensor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_mps.errors import MpsError, MpsValidationError
from airflow_mps.links.mps import MpsTaskLink, push_task_id
from airflow_mps.steps import drive_until
from airflow_mps.utils.config import default_deferrable
from airflow_mps.utils.deadlines import deferral_timeout, execution_deadline, wait_deadline
from airflow_mps.utils.events import EVENT_ERROR, EVENT_FAILED, EVENT_TIMEOUT
from airflow_mps.utils.rendered import RenderedFieldsMixin, check_task_id
from airflow_mps.utils.results import (
    airflow_exception_for,
    build_task_xcom,
    failure_message,
    result_from_event,
)
from airflow_mps.waits.task import Describe, TaskStep, TaskWaitOutcome, wait_for_task

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ImageTaskStatus

__all__ = ["MpsImageTaskSensor"]


class MpsImageTaskSensor(RenderedFieldsMixin, BaseSensorOperator):
    """Wait until an MPS image task finishes successfully.

    :param mps_task_id: the MPS ``TaskId`` (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='submit', key='mps_task_id') }}"``.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud`` (templated).
    :param region: MPS region (templated); ``None`` uses the connection's ``region`` extra.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param include_signed_urls: keep MPS's signed download URLs in the XCom and the trigger event;
        off by default (bearer links: ``outputs[].signed_url`` is ``None``), as for the operator.
    :param kwargs: the usual sensor arguments: ``poke_interval`` (also the trigger's poll interval),
        ``timeout``, ``mode``, ``soft_fail``, ``exponential_backoff``, ``max_wait``...
    """

    template_fields: Sequence[str] = ("mps_task_id", "tencentcloud_conn_id", "region")
    operator_extra_links = (MpsTaskLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        mps_task_id: str,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        deferrable: bool | None = None,
        include_signed_urls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.include_signed_urls = bool(include_signed_urls)
        self.mps_task_id = mps_task_id
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    @cached_property
    def hook(self) -> MpsHook:
        """The ``MpsHook`` (imported on first use: DAG parsing never imports the SDK)."""
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _task_id(self) -> str:
        """The rendered arguments, checked before any API call (``AirflowFailException`` naming the
        argument): ``mps_task_id`` must look like an MPS TaskId — a template such as
        ``"{{ ti.xcom_pull(...) }}"`` renders a missing XCom as ``"None"``, and ``"[]"``, ``"0"`` or
        ``"../../x"`` are no task ids either; ``region`` and ``tencentcloud_conn_id`` must not have
        rendered to nothing, and a given ``region`` must be a region id. Returns the task id."""
        from airflow_mps.models.validation import check_region  # not needed to parse a DAG

        try:
            self.reject_rendered_empty_fields(
                ("tencentcloud_conn_id", "region"), required=("tencentcloud_conn_id",)
            )
            if self.region is not None:
                check_region(self.region, "region")
            return check_task_id("mps_task_id", self.mps_task_id)
        except MpsValidationError as err:
            raise airflow_exception_for(err, f"{self.task_id}") from err

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One round of the shared single-task wait (:func:`airflow_mps.waits.task.wait_for_task`):
        ``DescribeImageTaskDetail``; done+success → True with the result as XCom; still running or a
        transient error → False (Airflow's poke loop sleeps and keeps the sensor's deadline)."""
        mps_task_id = self._task_id()
        push_task_id(context, mps_task_id, operator=self)
        steps = wait_for_task(mps_task_id, end_time=math.inf, poll_interval=self.poke_interval, log=self.log)
        # Up to the wait's first sleep: that sleep is the next poke.
        outcome = drive_until(steps, self._describe, lambda step: not isinstance(step, Describe))
        return False if outcome is None else self._poke_result(outcome)

    def _describe(self, step: TaskStep) -> ImageTaskStatus | MpsError:
        """A ``Describe`` step of a poke (the only step it performs), the failure as a value."""
        assert isinstance(step, Describe)  # the poke stops at any other step
        try:
            status = self.hook.describe_image_task(step.task_id)
        except MpsError as err:  # judged by the wait: terminal or "not yet"
            return err
        if status.create_time and getattr(self, "_created_after", None) is None:
            # Remembered for a deferral: the trigger then shares the triggerer's one listing per round.
            from airflow_mps.models.constants import parse_api_time

            self._created_after = parse_api_time(status.create_time)
        return status

    def _poke_result(self, outcome: TaskWaitOutcome) -> PokeReturnValue:
        mps_task_id = outcome.mps_task_id
        if outcome.event == EVENT_ERROR and outcome.exception is not None:
            raise airflow_exception_for(
                outcome.exception, f"{self.task_id}: describing MPS task {mps_task_id}"
            ) from outcome.exception
        if outcome.event == EVENT_FAILED:
            raise AirflowFailException(failure_message(mps_task_id, outcome.error, None))
        return PokeReturnValue(
            is_done=True,
            xcom_value=build_task_xcom(
                mps_task_id,
                request_id=None,
                status=outcome.status,
                include_signed_urls=self.include_signed_urls,
            ),
        )

    def execute(self, context: Context) -> Any:
        """Poke as usual; in deferrable mode poke once, then defer with an absolute deadline."""
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first:
            return first.xcom_value if isinstance(first, PokeReturnValue) else None
        from airflow_mps.triggers.mps import MpsImageTaskTrigger  # not needed to parse a DAG

        # The one deadline rule (utils.deadlines), with the sensor's own timeout counted from now.
        end_time = wait_deadline(float(self.timeout), context, self.execution_timeout)
        self.defer(
            trigger=MpsImageTaskTrigger(
                mps_task_id=self._task_id(),
                end_time=end_time,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self.region,
                poll_interval=float(self.poke_interval),
                created_after=getattr(self, "_created_after", None),
                include_signed_urls=self.include_signed_urls,
            ),
            method_name="execute_complete",
            timeout=deferral_timeout(end_time),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Trigger event → the result XCom; at the deadline ``AirflowTaskTimeout`` when the try's
        ``execution_timeout`` has run out (retried, as for a poking sensor), else ``AirflowSensorTimeout``;
        ``AirflowFailException`` for a failed task (``resume_execution`` applies ``soft_fail``)."""
        if event and event.get("status") == EVENT_TIMEOUT:
            limit = execution_deadline(context, self.execution_timeout)
            if limit is not None and time.time() >= limit:
                raise AirflowTaskTimeout(
                    f"{self.task_id}: execution_timeout of {self.execution_timeout} reached while waiting "
                    f"for MPS task {event.get('mps_task_id')}"
                )
            raise AirflowSensorTimeout(
                f"{self.task_id}: MPS task {event.get('mps_task_id')} did not finish within "
                f"the sensor timeout of {self.timeout} seconds"
            )
        return result_from_event(event, what=self.task_id, include_signed_urls=self.include_signed_urls)
