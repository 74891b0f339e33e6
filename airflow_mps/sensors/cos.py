"""Sensors that wait for COS: ``CosKeySensor`` (an object such as a ``_SUCCESS`` marker, or a wildcard
match) and ``CosKeysUnchangedSensor`` (a prefix that has stopped changing) — the COS counterparts of
Amazon's ``S3KeySensor`` and ``S3KeysUnchangedSensor``.

Semantics (common to both):

* ``poke`` returns ``True`` once the condition holds; its XCom is what was found (the matched object's
  URI; for a quiet prefix ``{"uri", "objects"}``). Every rule — what counts as found, which errors are
  "not yet", the quiet-period clock — is :mod:`airflow_mps.waits.cos`'s, shared with the triggers.
* The URI is checked before any call, every poke (it is templated): a value a template rendered as
  nothing (``None``, ``"None"``, ``""``, ``"null"``, ``"[]"``, or a ``dt=None`` segment), another scheme
  than ``cos://``, or a bucket that is not ``<name>-<appid>`` fails the task (``AirflowFailException``
  naming the argument, no retry).
* Throttling and transient COS errors count as "not yet" (logged); terminal ones (credentials, a bucket
  that does not exist for a listing) fail at once.
* ``mode="poke"`` and ``mode="reschedule"`` work as for every sensor. ``deferrable=True`` (default
  ``[operators] default_deferrable``) pokes once in the worker, then waits on the triggerer
  (:mod:`airflow_mps.triggers.cos`). The trigger's deadline is the sensor's ``timeout`` counted from
  the deferral and capped by ``execution_timeout``, an absolute time; reaching it raises
  ``AirflowSensorTimeout`` (a skip with ``soft_fail``), or ``AirflowTaskTimeout`` when
  ``execution_timeout`` ran out — as a poking sensor would.

Nothing heavy at import: the hook (and cos-python-sdk-v5) is imported on the first poke; the triggers
module when deferring. Sensors never import from operators.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowTaskTimeout,
    BaseSensorOperator,
    PokeReturnValue,
)

from airflow_mps.errors import MpsError
from airflow_mps.steps import drive_until
from airflow_mps.utils.config import default_deferrable
from airflow_mps.utils.deadlines import deferral_timeout, execution_deadline, seconds_argument, wait_deadline
from airflow_mps.utils.events import EVENT_ERROR, EVENT_SUCCESS, EVENT_TIMEOUT
from airflow_mps.utils.results import airflow_exception_for
from airflow_mps.waits.cos import (
    RENDERED_NOTHING,
    CosArgumentError,
    CosStep,
    CosTarget,
    CosWaitOutcome,
    QuietMemory,
    Remember,
    Sleep,
    parse_key_target,
    parse_prefix_target,
    perform_check,
    wait_for_key,
    wait_for_quiet,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_mps.hooks.cos import CosHook

__all__ = ["CosKeySensor", "CosKeysUnchangedSensor"]


class _CosSensor(BaseSensorOperator):
    """What both COS sensors share: the hook, one poke round of a wait, deferral and its resumption."""

    ui_color = "#eef7ee"

    def __init__(
        self,
        *,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tencentcloud_conn_id = tencentcloud_conn_id
        self.region = region
        self.deferrable = default_deferrable() if deferrable is None else bool(deferrable)

    @cached_property
    def hook(self) -> CosHook:
        """The ``CosHook`` (imported on first use: parsing a DAG never imports the COS SDK)."""
        from airflow_mps.hooks.cos import CosHook

        conn_id, region = self._connection()
        return CosHook(tencentcloud_conn_id=conn_id, region=region)

    def _connection(self) -> tuple[str, str | None]:
        """The rendered connection id and region, refused when a template rendered them as nothing."""
        conn_id = self.tencentcloud_conn_id
        if not isinstance(conn_id, str) or conn_id.strip().lower() in RENDERED_NOTHING:
            raise AirflowFailException(
                f"{self.task_id}: tencentcloud_conn_id is {conn_id!r}; expected a connection id such as "
                "'tencentcloud_default'"
            )
        region = self.region
        if isinstance(region, str) and region.strip().lower() in RENDERED_NOTHING:
            if region.strip():
                raise AirflowFailException(
                    f"{self.task_id}: region is {region!r} (did a template render nothing?); expected a "
                    "region such as 'ap-guangzhou', or None for the connection's region"
                )
            region = None
        return conn_id.strip(), region

    # ---- subclasses ------------------------------------------------------------------------------
    def _target(self) -> CosTarget:
        raise NotImplementedError

    def _steps(self, target: CosTarget, context: Context) -> Generator[CosStep, Any, CosWaitOutcome]:
        raise NotImplementedError

    def _trigger(self, target: CosTarget, end_time: float) -> BaseTrigger:
        raise NotImplementedError

    def _remember(self, memory: QuietMemory, context: Context) -> None:
        """Keep a quiet-prefix wait's memory for the next poke (only that sensor has one)."""

    def _xcom(self, outcome: CosWaitOutcome) -> Any:
        raise NotImplementedError

    # ---- poking ------------------------------------------------------------------------------------
    def _checked_target(self) -> CosTarget:
        try:
            target = self._target()
        except CosArgumentError as err:
            raise AirflowFailException(f"{self.task_id}: {err}") from err
        self._connection()
        return target

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One round of the shared wait: one check; done → ``True`` with the XCom; not yet or a transient
        error → ``False`` (Airflow's poke loop sleeps, or reschedules, and keeps the sensor's deadline)."""
        target = self._checked_target()
        outcome = drive_until(
            self._steps(target, context),
            lambda step: self._perform(step, context),
            lambda step: isinstance(step, Sleep),  # the wait asks to sleep: that is the next poke
        )
        return False if outcome is None else self._poke_result(outcome)

    def _perform(self, step: CosStep, context: Context) -> Any:
        """One step of a poke, in the worker (the reply the step machine expects)."""
        if isinstance(step, Remember):
            return self._remember(step.memory, context)
        assert not isinstance(step, Sleep)  # a poke stops at the wait's first sleep
        try:
            return perform_check(self.hook, step)
        except (MpsError, OSError) as err:  # judged by the wait: terminal or "not yet"
            return err

    def _poke_result(self, outcome: CosWaitOutcome) -> PokeReturnValue:
        if outcome.event == EVENT_SUCCESS:
            return PokeReturnValue(is_done=True, xcom_value=self._xcom(outcome))
        err = outcome.exception
        if isinstance(err, MpsError):
            raise airflow_exception_for(err, f"{self.task_id}: checking {outcome.uri}") from err
        message = (outcome.error or {}).get("message") or str(err)
        raise AirflowFailException(f"{self.task_id}: checking {outcome.uri}: {message}") from err

    # ---- deferring ---------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        """Poke as usual; in deferrable mode poke once, then defer with an absolute deadline."""
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first:
            return first.xcom_value if isinstance(first, PokeReturnValue) else None
        end_time = wait_deadline(float(self.timeout), context, self.execution_timeout)
        self.defer(
            trigger=self._trigger(self._checked_target(), end_time),
            method_name="execute_complete",
            timeout=deferral_timeout(end_time),
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """The trigger's event → the XCom; a deadline → ``AirflowTaskTimeout`` when the try's
        ``execution_timeout`` ran out (retried, as for a poking sensor), else ``AirflowSensorTimeout``;
        an error → ``AirflowFailException`` when terminal, ``AirflowException`` (retried) otherwise."""
        if not event:
            raise AirflowException(f"{self.task_id}: the trigger ended without an event")
        uri = event.get("uri")
        status = event.get("status")
        if status == EVENT_SUCCESS:
            outcome = CosWaitOutcome(
                EVENT_SUCCESS, str(uri), matched=event.get("matched"), objects=event.get("objects")
            )
            return self._xcom(outcome)
        error = event.get("error") or {}
        if status == EVENT_TIMEOUT:
            limit = execution_deadline(context, self.execution_timeout)
            if limit is not None and time.time() >= limit:
                raise AirflowTaskTimeout(
                    f"{self.task_id}: execution_timeout of {self.execution_timeout} reached while waiting "
                    f"for {uri}"
                )
            raise AirflowSensorTimeout(
                f"{self.task_id}: {error.get('message') or uri} (sensor timeout {self.timeout}s)"
            )
        text = f"{self.task_id}: checking {uri}: [{error.get('code')}] {error.get('message')}"
        if error.get("request_id"):
            text += f" (RequestId: {error['request_id']})"
        if status == EVENT_ERROR and error.get("retryable"):
            raise AirflowException(text)
        raise AirflowFailException(text)


class CosKeySensor(_CosSensor):
    """Wait until an object exists in COS — typically the ``_SUCCESS`` marker an upstream writer puts
    after a partition's last file — or, with ``wildcard_match``, until any key matches a pattern.

    :param bucket_key: ``cos://<bucket>-<appid>/<key>`` (templated), e.g.
        ``"cos://photos-1250000000/raw/dt={{ ds }}/_SUCCESS"``.
    :param wildcard_match: treat ``*``, ``?`` and ``[...]`` in the key as a Unix shell pattern
        (``fnmatch``, case-sensitive; ``*`` also matches ``/``), matched against a listing of the
        pattern's longest literal prefix, e.g. ``"cos://photos-1250000000/raw/dt=2026-11-01/*.jpg"``.
        Without it the key is one object, checked with ``HEAD``.
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud`` (templated).
    :param region: the bucket's region (templated); ``None`` uses the connection's ``region`` extra.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param kwargs: the usual sensor arguments: ``poke_interval`` (also the trigger's poll interval),
        ``timeout``, ``mode``, ``soft_fail``, ``exponential_backoff``, ``max_wait``...

    XCom: the URI of the object found (for a pattern, the first key that matched).
    """

    template_fields: Sequence[str] = ("bucket_key", "tencentcloud_conn_id", "region")

    def __init__(
        self,
        *,
        bucket_key: str,
        wildcard_match: bool = False,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            tencentcloud_conn_id=tencentcloud_conn_id, region=region, deferrable=deferrable, **kwargs
        )
        # No logic on templated fields here (apache/airflow #33786): bucket_key is checked every poke.
        self.bucket_key = bucket_key
        self.wildcard_match = bool(wildcard_match)

    def _target(self) -> CosTarget:
        return parse_key_target(self.bucket_key, wildcard=self.wildcard_match)

    def _steps(self, target: CosTarget, context: Context) -> Generator[CosStep, Any, CosWaitOutcome]:
        return wait_for_key(target, end_time=math.inf, poll_interval=float(self.poke_interval), log=self.log)

    def _trigger(self, target: CosTarget, end_time: float) -> BaseTrigger:
        from airflow_mps.triggers.cos import CosKeyTrigger  # not needed to parse a DAG

        conn_id, region = self._connection()
        return CosKeyTrigger(
            bucket_key=target.uri,
            wildcard_match=target.wildcard,
            end_time=end_time,
            tencentcloud_conn_id=conn_id,
            region=region,
            poll_interval=float(self.poke_interval),
        )

    def _xcom(self, outcome: CosWaitOutcome) -> Any:
        return outcome.matched or outcome.uri


class CosKeysUnchangedSensor(_CosSensor):
    """Wait until a COS prefix has stopped changing: its listing (keys, ETags, sizes, LastModified) stayed
    the same for ``inactivity_period`` seconds and holds at least ``min_objects`` objects — for writers
    that leave no marker.

    The quiet period is counted conservatively (:mod:`airflow_mps.waits.cos`): it starts at the first
    look, and again at the first look that sees a change; a lost memory can only make the wait longer.
    Between pokes the memory (a fingerprint, a count, a time) is kept by the sensor in ``poke`` mode, in
    Airflow's ``task_state_store`` in ``reschedule`` mode (Airflow >= 3.3; older versions have nowhere to
    keep it, so ``reschedule`` is refused there), and in the trigger's kwargs when deferred.

    :param prefix: ``cos://<bucket>-<appid>/<prefix>`` (templated), e.g.
        ``"cos://photos-1250000000/raw/dt={{ ds }}/"``; ``cos://<bucket>/`` is the whole bucket.
    :param inactivity_period: seconds the listing must stay unchanged (default 1 hour).
    :param min_objects: the listing must hold at least this many objects (default 1); quiet with fewer,
        the sensor keeps waiting (and says so in its log).
    :param tencentcloud_conn_id: Airflow connection of type ``tencentcloud`` (templated).
    :param region: the bucket's region (templated); ``None`` uses the connection's ``region`` extra.
    :param deferrable: wait on the triggerer (default ``[operators] default_deferrable``).
    :param kwargs: the usual sensor arguments.

    XCom: ``{"uri": <prefix>, "objects": <count>}``.
    """

    template_fields: Sequence[str] = ("prefix", "tencentcloud_conn_id", "region")
    #: ``task_state_store`` key of the memory in reschedule mode; renaming it drops in-flight memories.
    STATE_KEY = "airflow_mps.cos_keys_unchanged"

    def __init__(
        self,
        *,
        prefix: str,
        inactivity_period: float = 60 * 60,
        min_objects: int = 1,
        tencentcloud_conn_id: str = "tencentcloud_default",
        region: str | None = None,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            tencentcloud_conn_id=tencentcloud_conn_id, region=region, deferrable=deferrable, **kwargs
        )
        self.prefix = prefix
        # Not templated, so refused when the DAG is parsed.
        self.inactivity_period = seconds_argument("inactivity_period", inactivity_period, positive=False)
        if isinstance(min_objects, bool) or not isinstance(min_objects, int) or min_objects < 0:
            raise ValueError(f"min_objects must be a non-negative integer, got {min_objects!r}")
        self.min_objects = min_objects
        self._memory: QuietMemory | None = None

    def _target(self) -> CosTarget:
        return parse_prefix_target(self.prefix)

    def _store(self, context: Context) -> Any:
        try:
            return context.get("task_state_store")
        except Exception:  # pragma: no cover - a context without it (Airflow < 3.3)
            return None

    def _rescheduling(self) -> bool:
        """True when each poke runs in a fresh process (reschedule mode without deferral)."""
        return self.mode == "reschedule" and not self.deferrable

    def _recall(self, target: CosTarget, context: Context) -> QuietMemory | None:
        """The memory of this wait: the instance's (poke mode, and the poke before a deferral), else in
        reschedule mode the one in ``task_state_store`` — if it was about this same prefix."""
        if self._memory is not None or not self._rescheduling():
            return self._memory
        store = self._store(context)
        if store is None:
            raise AirflowFailException(
                f"{self.task_id}: mode='reschedule' needs Airflow's task_state_store (Airflow >= 3.3) to "
                "remember the listing between pokes; use mode='poke' or deferrable=True"
            )
        stored = store.get(self.STATE_KEY)
        if isinstance(stored, Mapping) and stored.get("uri") == target.uri:
            return QuietMemory.from_dict(stored)
        return None

    def _remember(self, memory: QuietMemory, context: Context) -> None:
        self._memory = memory
        if self._rescheduling():
            store = self._store(context)
            if store is not None:
                store.set(self.STATE_KEY, {"uri": self._target().uri, **memory.to_dict()})

    def _steps(self, target: CosTarget, context: Context) -> Generator[CosStep, Any, CosWaitOutcome]:
        return wait_for_quiet(
            target,
            inactivity_period=self.inactivity_period,
            min_objects=self.min_objects,
            end_time=math.inf,
            poll_interval=float(self.poke_interval),
            log=self.log,
            memory=self._recall(target, context),
        )

    def _trigger(self, target: CosTarget, end_time: float) -> BaseTrigger:
        from airflow_mps.triggers.cos import CosKeysUnchangedTrigger  # not needed to parse a DAG

        conn_id, region = self._connection()
        return CosKeysUnchangedTrigger(
            prefix=target.uri,
            inactivity_period=self.inactivity_period,
            min_objects=self.min_objects,
            memory=self._memory.to_dict() if self._memory is not None else None,
            end_time=end_time,
            tencentcloud_conn_id=conn_id,
            region=region,
            poll_interval=float(self.poke_interval),
        )

    def _xcom(self, outcome: CosWaitOutcome) -> Any:
        return {"uri": outcome.uri, "objects": outcome.objects}
