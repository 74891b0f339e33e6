"""Operator extra link: "MPS Console" for the MPS task an Airflow task instance submitted or waited on.

The task id is read from the task instance's own XCom (key ``mps_task_id``), addressed by the
``ti_key`` Airflow passes to ``get_link``: every try and every map index of a mapped task has its own
link (apache/airflow #38005 — never read state from the operator object, which mapped instances share).

**Where the link points** is decided from the task's ``tencentcloud`` connection, without any network
call (issue 14 item 5; :func:`task_url_template`), first match wins:

1. the ``console_url`` extra: a URL with ``{task_id}`` in it is used as it is (e.g. the international
   console, ``https://console.tencentcloud.com/mps/tasks?taskId={task_id}``); any other URL is the base
   of an emulator's web page as the *browser* reaches it, and the link is ``{console_url}/tasks/{TaskId}``
   (for an emulator in a container that the workers reach under another name, e.g.
   ``console_url=http://localhost:9100``);
2. an ``endpoint`` extra on a loopback host (``127.0.0.0/8``, ``::1``, ``localhost``): that is the local
   emulator (``airflow-mps-emulator``, which serves ``GET /tasks/<TaskId>``), and the link is
   ``{protocol}://{endpoint}/tasks/{TaskId}``;
3. otherwise the Tencent Cloud console's task list with the id in the query string
   (``https://console.cloud.tencent.com/mps/tasks?taskId=<id>``: the console has no documented deep link
   to one image task). Its base can be changed with ``[tencentcloud_mps] console_base_url``.

Airflow 3 computes extra links in the worker (the task runner calls ``get_link`` when a try ends and
stores the URL in XCom; the API server only reads that XCom), where the connection is at hand;
:func:`push_task_id` also stores the URL as soon as the task id is known, so the link works while the
task still waits.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

__all__ = [
    "BATCH_OUTPUTS_XCOM_KEY",
    "CONSOLE_URL_EXTRA",
    "DEFAULT_CONSOLE_BASE_URL",
    "MPS_TASK_ID_XCOM_KEY",
    "MpsBatchOutputsLink",
    "MpsTaskLink",
    "connection_task_url_template",
    "console_base_url",
    "mps_task_console_url",
    "outputs_url",
    "push_batch_outputs",
    "push_task_id",
    "task_url",
    "task_url_template",
]

log = logging.getLogger(__name__)

#: XCom key under which operators and the sensor record the MPS task id (pushed before any waiting).
MPS_TASK_ID_XCOM_KEY = "mps_task_id"

DEFAULT_CONSOLE_BASE_URL = "https://console.cloud.tencent.com/mps/tasks"

#: XCom key under which the batch operator records where its outputs and manifest are browsable.
BATCH_OUTPUTS_XCOM_KEY = "mps_batch_outputs_url"
#: The COS console's bucket browser (a folder is the ``path`` query parameter).
COS_CONSOLE_BUCKET_URL = "https://console.cloud.tencent.com/cos/bucket"

#: Connection extra naming where task links point (rule 1 of the module docstring).
CONSOLE_URL_EXTRA = "console_url"
#: Placeholder for the (URL-encoded) task id in a link template.
TASK_ID_PLACEHOLDER = "{task_id}"
#: The emulator's page of one task (airflow_mps.emulator.web: ``/tasks/<TaskId>``).
EMULATOR_TASK_PATH = "/tasks/" + TASK_ID_PLACEHOLDER

_LEGACY_EXTRA_PREFIX = "extra__tencentcloud__"
#: Attribute under which an operator caches its link template for the try (one connection lookup).
_CACHE_ATTR = "_mps_task_url_template"


def console_base_url() -> str:
    """The console page the links point at (configurable for the international console)."""
    from airflow.providers.common.compat.sdk import conf

    return str(conf.get("tencentcloud_mps", "console_base_url", fallback=DEFAULT_CONSOLE_BASE_URL))


def mps_task_console_url(task_id: str, base_url: str | None = None) -> str:
    """URL of the MPS console page for ``task_id`` (query-string encoded)."""
    base = base_url or console_base_url()
    return f"{base}?taskId={quote(str(task_id), safe='')}"


def _extra(extras: Mapping[str, Any], name: str) -> str | None:
    for key in (name, _LEGACY_EXTRA_PREFIX + name):
        value = extras.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def task_url_template(extras: Mapping[str, Any] | None) -> str:
    """The link for a connection with these extras, with :data:`TASK_ID_PLACEHOLDER` for the task id
    (rules in the module docstring). Pure: no lookup, no network call."""
    extras = extras or {}
    console_url = _extra(extras, CONSOLE_URL_EXTRA)
    if console_url:
        if TASK_ID_PLACEHOLDER in console_url:
            return console_url
        return console_url.rstrip("/") + EMULATOR_TASK_PATH
    endpoint = _extra(extras, "endpoint")
    if endpoint:
        protocol = (_extra(extras, "protocol") or "https").lower()
        if "://" in endpoint:  # tolerated here: "http://127.0.0.1:9100"
            parts = urlsplit(endpoint)
            protocol, endpoint = parts.scheme or protocol, parts.netloc
        endpoint = endpoint.rstrip("/")
        host = urlsplit(f"//{endpoint}").hostname or ""
        if protocol in ("http", "https") and _is_loopback(host):
            return f"{protocol}://{endpoint}{EMULATOR_TASK_PATH}"
    return f"{console_base_url()}?taskId={TASK_ID_PLACEHOLDER}"


def task_url(template: str, task_id: str) -> str:
    """``template`` with the URL-encoded ``task_id`` in place of :data:`TASK_ID_PLACEHOLDER`."""
    return template.replace(TASK_ID_PLACEHOLDER, quote(str(task_id), safe=""))


def connection_task_url_template(conn_id: str | None) -> str:
    """:func:`task_url_template` of connection ``conn_id``; the Tencent console when it cannot be read
    (a link is a convenience: it never fails a task)."""
    extras: Mapping[str, Any] = {}
    if conn_id:
        try:
            from airflow.providers.common.compat.sdk import BaseHook

            raw = BaseHook.get_connection(conn_id).extra
            # Parsed here, not by extra_dejson: that registers every extra value with the secrets
            # masker ("too short" warnings for protocol=http); the hook masks the secret ones.
            parsed = json.loads(raw) if isinstance(raw, str) and raw else (raw or {})
            extras = parsed if isinstance(parsed, Mapping) else {}
        except Exception:
            log.debug(
                "Connection %r unreadable for the MPS task link; using the console", conn_id, exc_info=True
            )
    return task_url_template(extras)


def _operator_template(operator: Any) -> str:
    """The link template of ``operator``'s connection, looked up once per operator object (one try)."""
    cached = getattr(operator, _CACHE_ATTR, None) if operator is not None else None
    if isinstance(cached, str):
        return cached
    template = connection_task_url_template(getattr(operator, "tencentcloud_conn_id", None))
    if operator is not None:
        with contextlib.suppress(Exception):  # a frozen or foreign operator object: just do not cache
            setattr(operator, _CACHE_ATTR, template)
    return template


class MpsTaskLink(BaseOperatorLink):
    """Link from a task instance to its MPS task: the emulator's page or the Tencent Cloud console."""

    name = "MPS Console"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL for this task instance's MPS task, or ``""`` when it has none yet."""
        from airflow.providers.common.compat.sdk import XCom

        task_id: Any = XCom.get_value(ti_key=ti_key, key=MPS_TASK_ID_XCOM_KEY)
        if not task_id:
            return ""
        return task_url(_operator_template(operator), str(task_id))


def push_task_id(
    context: Context | Mapping[str, Any] | None, mps_task_id: str, *, operator: Any = None
) -> None:
    """Record the MPS task id in XCom (key ``mps_task_id``, what :class:`MpsTaskLink` reads) and the
    link at once, so both are visible while the task is still waiting (Airflow itself stores links
    only when a try ends). Used by every operator and sensor that learns an MPS task id; ``operator``
    (default: the context's ``task``) names the connection the link is decided from."""
    ti = (context or {}).get("ti")
    if ti is None:
        return
    ti.xcom_push(key=MPS_TASK_ID_XCOM_KEY, value=mps_task_id)
    try:
        template = _operator_template(operator if operator is not None else (context or {}).get("task"))
        ti.xcom_push(key=MpsTaskLink().xcom_key, value=task_url(template, mps_task_id))
    except Exception:  # the link is a convenience; never fail the task for it
        log.debug("Could not push the MPS task link", exc_info=True)


def outputs_url(template: str, bucket: str, prefix: str, region: str | None) -> str:
    """Where a batch's outputs and manifest (``cos://bucket/prefix``) can be browsed: the emulator's
    bucket page when the connection's links point at the emulator (``template`` from
    :func:`task_url_template`), else the COS console's bucket browser at that folder."""
    if template.endswith(EMULATOR_TASK_PATH):
        base = template[: -len(EMULATOR_TASK_PATH)]
        return f"{base}/buckets/{quote(bucket, safe='')}?prefix={quote(prefix, safe='')}"
    query = f"bucket={quote(bucket, safe='')}&path={quote('/' + prefix.lstrip('/'), safe='')}"
    if region:
        query += f"&region={quote(region, safe='')}"
    return f"{COS_CONSOLE_BUCKET_URL}?{query}"


class MpsBatchOutputsLink(BaseOperatorLink):
    """Link from a batch task instance to the folder holding its outputs and its manifest."""

    name = "MPS Batch Outputs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL the batch recorded for this task instance, or ``""`` before it knew its destination."""
        from airflow.providers.common.compat.sdk import XCom

        url: Any = XCom.get_value(ti_key=ti_key, key=BATCH_OUTPUTS_XCOM_KEY)
        return str(url) if url else ""


def push_batch_outputs(
    context: Context | Mapping[str, Any] | None,
    *,
    bucket: str,
    prefix: str,
    region: str | None,
    operator: Any = None,
) -> None:
    """Record (XCom) where the batch's outputs are browsable, and the link at once (as
    :func:`push_task_id` does for one task); never fails the task."""
    ti = (context or {}).get("ti")
    if ti is None:
        return
    try:
        template = _operator_template(operator if operator is not None else (context or {}).get("task"))
        url = outputs_url(template, bucket, prefix, region)
        ti.xcom_push(key=BATCH_OUTPUTS_XCOM_KEY, value=url)
        ti.xcom_push(key=MpsBatchOutputsLink().xcom_key, value=url)
    except Exception:
        log.debug("Could not push the batch outputs link", exc_info=True)
