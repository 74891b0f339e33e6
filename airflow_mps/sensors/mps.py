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

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_mps.errors import MpsError
from airflow_mps.links.mps import MpsTaskLink
from airflow_mps.operators.mps import (
    DEFERRAL_GRACE_SECONDS,
    airflow_exception_for,
    build_task_xcom,
    default_deferrable,
    execution_deadline,
    failure_message,
    push_task_id,
    result_from_event,
    status_error,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context


#: What a template renders when the value it pulled was missing; never a real MPS task id.
_RENDERED_NOTHING = frozenset({"none", "null", "undefined"})


class MpsImageTaskSensor(BaseSensorOperator):
    """Wait until an MPS image task finishes successfully.

    :param mps_task_id: the MPS ``TaskId`` (templated), e.g.
        ``"{{ ti.xcom_pull(task_ids='submit', key='mps_task_id') }}"``.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud``.
    :param region: MPS region (templated); ``None`` uses the connection's ``region`` extra.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param kwargs: the usual sensor arguments: ``poke_interval`` (also the trigger's poll interval),
        ``timeout``, ``mode``, ``soft_fail``, ``exponential_backoff``, ``max_wait``...
    """

    template_fields: Sequence[str] = ("mps_task_id", "region")
    operator_extra_links = (MpsTaskLink(),)
    ui_color = "#e8f4ff"

    def __init__(
        self,
        *,
        mps_task_id: str,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mps_task_id = mps_task_id
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    @cached_property
    def hook(self) -> Any:
        """The ``MpsHook`` (imported on first use: DAG parsing never imports the SDK)."""
        from airflow_mps.hooks.mps import MpsHook

        return MpsHook(tencentcloud_conn_id=self.tencentcloud_conn_id, region=self.region)

    def _task_id(self) -> str:
        task_id = str(self.mps_task_id or "").strip()
        if not task_id:
            raise AirflowFailException(f"{self.task_id}: mps_task_id is empty (check the template)")
        if task_id.lower() in _RENDERED_NOTHING:
            # A template such as "{{ ti.xcom_pull(...) }}" renders a missing XCom as the text "None".
            raise AirflowFailException(
                f"{self.task_id}: mps_task_id is {task_id!r}: check the template; the upstream XCom it "
                "pulls was probably empty (an MPS task id looks like '1250000000-WorkflowTask-<32 hex>')"
            )
        return task_id

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One ``DescribeImageTaskDetail``: done+success → True with the result as XCom."""
        mps_task_id = self._task_id()
        push_task_id(context, mps_task_id)
        try:
            status = self.hook.describe_image_task(mps_task_id)
        except MpsError as err:
            if err.retryable:
                self.log.warning(
                    "MPS task %s: transient error, will poke again: code=%s RequestId=%s",
                    mps_task_id,
                    err.code,
                    err.request_id,
                )
                return False
            raise airflow_exception_for(err, f"{self.task_id}: describing MPS task {mps_task_id}") from err
        if status.create_time and getattr(self, "_created_after", None) is None:
            from airflow_mps.triggers.mps import parse_api_time  # not needed to parse a DAG

            # Remembered for a deferral: the trigger then shares the triggerer's one listing per round.
            self._created_after = parse_api_time(status.create_time)
        if not status.done:
            self.log.info("MPS task %s is %s", mps_task_id, status.state)
            return False
        if not status.succeeded:
            raise AirflowFailException(
                failure_message(
                    mps_task_id,
                    status_error(status),
                    None,
                )
            )
        return PokeReturnValue(is_done=True, xcom_value=build_task_xcom(mps_task_id, request_id=None, status=status))

    def execute(self, context: Context) -> Any:
        """Poke as usual; in deferrable mode poke once, then defer with an absolute deadline."""
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first:
            return first.xcom_value if isinstance(first, PokeReturnValue) else None
        from airflow_mps.triggers.mps import MpsImageTaskTrigger  # not needed to parse a DAG

        end_time = time.time() + float(self.timeout)
        limit = execution_deadline(context, self.execution_timeout)
        if limit is not None:
            end_time = min(end_time, limit)
        self.defer(
            trigger=MpsImageTaskTrigger(
                mps_task_id=self._task_id(),
                end_time=end_time,
                tencentcloud_conn_id=self.tencentcloud_conn_id,
                region=self.region,
                poll_interval=float(self.poke_interval),
                created_after=getattr(self, "_created_after", None),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(0.0, end_time - time.time()) + DEFERRAL_GRACE_SECONDS),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Trigger event → the result XCom; at the deadline ``AirflowTaskTimeout`` when the try's
        ``execution_timeout`` has run out (retried, as for a poking sensor), else ``AirflowSensorTimeout``;
        ``AirflowFailException`` for a failed task (``resume_execution`` applies ``soft_fail``)."""
        from airflow_mps.triggers.mps import EVENT_TIMEOUT

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
        return result_from_event(event, what=self.task_id)
