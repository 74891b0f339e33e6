"""Time rules of every wait: the one deadline rule, the deferral timeout, seconds arguments. (The API's
time strings are domain facts: :mod:`airflow_mps.models.constants`.)

**The deadline rule** (:func:`wait_deadline`), used by the operators, the sensor and (through the
absolute ``end_time`` they hand over) the triggers: a wait that starts now ends at the EARLIER of

* ``now + timeout`` — the operator's ``timeout`` (the sensor's own ``timeout``); without one, MPS's
  7-day task retention (``DescribeImageTaskDetail`` only answers for tasks of the last 7 days);
* ``try start + execution_timeout`` — Airflow does not enforce ``execution_timeout`` while a task is
  deferred (apache/airflow #32580; the task runner says "TODO: handle timeout in case of deferral"), so
  every wait carries it into its own deadline.

The result is absolute (epoch seconds) and is what a trigger serialises, so a restarted triggerer keeps
the original deadline. The Airflow-level deferral timeout is that deadline plus
:data:`DEFERRAL_GRACE_SECONDS` (:func:`deferral_timeout`), so the trigger's own ``timeout`` event, which
names the MPS task, normally arrives first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = [
    "DEFERRAL_GRACE_SECONDS",
    "deferral_timeout",
    "execution_deadline",
    "seconds_argument",
    "wait_deadline",
]

#: Extra time the Airflow-level deferral timeout allows after the trigger's own deadline, so the
#: trigger's ``timeout`` event (which names the MPS task) normally arrives first.
DEFERRAL_GRACE_SECONDS = 60.0


def execution_deadline(
    context: Context | Mapping[str, Any] | None, execution_timeout: timedelta | None
) -> float | None:
    """Epoch seconds at which this try's ``execution_timeout`` runs out (``None`` without one).

    Counted from the try's ``start_date``, which Airflow keeps across a deferral.
    """
    if not execution_timeout:
        return None
    start = getattr((context or {}).get("ti"), "start_date", None)
    base = start.timestamp() if start is not None else time.time()
    return base + execution_timeout.total_seconds()


def wait_deadline(
    timeout: float | None,
    context: Context | Mapping[str, Any] | None,
    execution_timeout: timedelta | None,
) -> float:
    """Absolute deadline (epoch seconds) of a wait starting now — the rule in the module docstring:
    ``timeout`` (``None``: the 7-day retention) from now, or ``execution_timeout`` from the try's start,
    whichever is earlier."""
    # Lazy: the models package is not needed to parse a DAG (P5).
    from airflow_mps.models.constants import TASK_RETENTION_SECONDS

    deadline = time.time() + (TASK_RETENTION_SECONDS if timeout is None else float(timeout))
    limit = execution_deadline(context, execution_timeout)
    return deadline if limit is None else min(deadline, limit)


def deferral_timeout(end_time: float) -> timedelta:
    """The ``timeout`` of a deferral whose trigger stops at ``end_time``: the time left plus a grace."""
    return timedelta(seconds=max(0.0, end_time - time.time()) + DEFERRAL_GRACE_SECONDS)


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
