"""Operator extra link: "MPS Console" for the MPS task an Airflow task instance submitted or waited on.

The task id is read from the task instance's own XCom (key ``mps_task_id``), addressed by the
``ti_key`` Airflow passes to ``get_link``: every try and every map index of a mapped task has its own
link (apache/airflow #38005 — never read state from the operator object, which mapped instances share).

The MPS console has no documented deep link to one image task; the link opens the console's task list
(``https://console.cloud.tencent.com/mps/tasks``) with the task id in the query string
(``?taskId=<id>``) so it is visible and searchable there. The base URL can be overridden with
``[tencentcloud_mps] console_base_url`` (e.g. for the international console).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

log = logging.getLogger(__name__)

#: XCom key under which operators and the sensor record the MPS task id (pushed before any waiting).
MPS_TASK_ID_XCOM_KEY = "mps_task_id"

DEFAULT_CONSOLE_BASE_URL = "https://console.cloud.tencent.com/mps/tasks"


def console_base_url() -> str:
    """The console page the links point at (configurable for the international console)."""
    from airflow.providers.common.compat.sdk import conf

    return str(conf.get("tencentcloud_mps", "console_base_url", fallback=DEFAULT_CONSOLE_BASE_URL))


def mps_task_console_url(task_id: str, base_url: str | None = None) -> str:
    """URL of the MPS console page for ``task_id`` (query-string encoded)."""
    base = base_url or console_base_url()
    return f"{base}?taskId={quote(str(task_id), safe='')}"


class MpsTaskLink(BaseOperatorLink):
    """Link from a task instance to its MPS task in the Tencent Cloud console."""

    name = "MPS Console"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The console URL for this task instance's MPS task, or ``""`` when it has none yet."""
        from airflow.providers.common.compat.sdk import XCom

        task_id: Any = XCom.get_value(ti_key=ti_key, key=MPS_TASK_ID_XCOM_KEY)
        if not task_id:
            return ""
        return mps_task_console_url(str(task_id))


def push_task_id(context: Context | Mapping[str, Any] | None, mps_task_id: str) -> None:
    """Record the MPS task id in XCom (key ``mps_task_id``, what :class:`MpsTaskLink` reads) and the
    console link at once, so both are visible while the task is still waiting (Airflow itself stores
    links only when a try ends). Used by every operator and sensor that learns an MPS task id."""
    ti = (context or {}).get("ti")
    if ti is None:
        return
    ti.xcom_push(key=MPS_TASK_ID_XCOM_KEY, value=mps_task_id)
    try:
        ti.xcom_push(key=MpsTaskLink().xcom_key, value=mps_task_console_url(mps_task_id))
    except Exception:  # the link is a convenience; never fail the task for it
        log.debug("Could not push the MPS console link", exc_info=True)
