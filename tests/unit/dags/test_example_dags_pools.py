"""The example DAGs' pool wiring (issue 13, Build item 2), checked on the DAG files as shipped.

With ``MPS_DAGS_POOL`` set (opt-in: unset, everything runs in Airflow's ``default_pool``, so a copied
DAG needs no pool — issue 14 item 3), every task that calls ``ProcessImage`` takes a slot of that pool;
no other task does, so a sensor waiting for a partition or a report never holds the account's
submitter slot. The submitters are deferrable: Airflow counts a pool's queued and running tasks only
(unless the pool includes deferred ones), so a batch holds the slot while it submits, not while MPS
works — the assumption is pinned here on Airflow's own ``Pool``. A pool that does not exist leaves a
task ``scheduled`` forever, so every example DAG has a ``dagrun_timeout`` and ``mps_enhance_daily``
reports a timed-out run to its webhook. The real scheduler's behaviour (one submitter at a time,
deferred batches holding nothing, a missing pool failing the run) is proven in
tests/reliability/stack/test_celery_stack.py.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from example_dags_support import parse_example_dags

DAG_IDS = ("mps_enhance_daily", "mps_enhance_mapped", "mps_wait_external")
#: The tasks that call ProcessImage, per DAG.
SUBMITTERS = {
    "mps_enhance_daily": {"enhance"},
    "mps_enhance_mapped": {"enhance_one"},
    "mps_wait_external": {"submit"},
}
_SETTINGS = ("MPS_DAGS_POOL", "MPS_DAGS_RUN_TIMEOUT", "MPS_DAGS_WEBHOOK_CONN_ID")


def _parse(**env: str) -> dict[str, Any]:
    """Parse ``dags/`` with the pool settings unset except ``env`` (read at parse time)."""
    return parse_example_dags({**dict.fromkeys(_SETTINGS), **env})


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    """The DAGs as parsed with the documented pool setting (``MPS_DAGS_POOL=mps``)."""
    return _parse(MPS_DAGS_POOL="mps")


def test_unset_the_examples_need_no_pool() -> None:
    """A copied DAG runs with only the tencentcloud connection: no task names a pool that may not exist."""
    assert set(_pools(_parse()).values()) == {"default_pool"}


def _pools(dags: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(dag_id, t.task_id): t.pool for dag_id in DAG_IDS for t in dags[dag_id].tasks}


def _operator_class(task: Any) -> type:
    return getattr(task, "operator_class", type(task))  # a mapped task names its class


def test_every_submitter_and_only_the_submitters_take_the_pool(dags: dict[str, Any]) -> None:
    from airflow_mps.operators.mps import MpsBatchProcessImageOperator, MpsProcessImageOperator

    for dag_id in DAG_IDS:
        submitting = {
            t.task_id
            for t in dags[dag_id].tasks
            if issubclass(_operator_class(t), (MpsBatchProcessImageOperator, MpsProcessImageOperator))
        }
        assert submitting == SUBMITTERS[dag_id], dag_id  # a new submitting task must be listed (and pooled)
    for (dag_id, task_id), pool in _pools(dags).items():
        expected = "mps" if task_id in SUBMITTERS[dag_id] else "default_pool"
        assert pool == expected, f"{dag_id}.{task_id} uses pool {pool!r}"
    for dag_id, task_ids in SUBMITTERS.items():
        for task_id in task_ids:
            task = dags[dag_id].get_task(task_id)
            assert task.pool_slots == 1
    # The mapped variant still bounds what one run has in flight (deferred instances included).
    assert dags["mps_enhance_mapped"].get_task("enhance_one").max_active_tis_per_dagrun == 8


def test_the_submitters_defer_so_they_hold_the_slot_only_while_submitting(dags: dict[str, Any]) -> None:
    """Deferrable batch and mapped instances; ``submit`` does not wait at all (its sensor defers)."""

    def kwarg(task: Any, name: str) -> Any:
        partial = getattr(task, "partial_kwargs", None)  # a mapped operator keeps its arguments there
        return partial[name] if partial is not None else getattr(task, name)

    assert kwarg(dags["mps_enhance_daily"].get_task("enhance"), "deferrable") is True
    assert kwarg(dags["mps_enhance_mapped"].get_task("enhance_one"), "deferrable") is True
    submit = dags["mps_wait_external"].get_task("submit")
    assert submit.wait_for_completion is False
    assert dags["mps_wait_external"].get_task("wait").deferrable is True


def test_a_pool_counts_deferred_tasks_only_when_created_with_include_deferred() -> None:
    """Airflow's rule the design rests on (``airflow pools set`` without ``--include-deferred``): a
    deferred task occupies no slot, a queued or running one does. Pinned on the installed Airflow."""
    from airflow.models.pool import Pool
    from airflow.utils.state import TaskInstanceState as S

    plain = Pool(pool="mps", slots=1, description="", include_deferred=False)
    assert set(plain.get_occupied_states()) == {S.QUEUED, S.RUNNING}
    counting = Pool(pool="mps", slots=1, description="", include_deferred=True)
    assert set(counting.get_occupied_states()) == {S.QUEUED, S.RUNNING, S.DEFERRED}


def test_the_pool_name_is_configurable_and_empty_means_none() -> None:
    named = _pools(_parse(MPS_DAGS_POOL="mps_account_b"))
    assert {pool for (dag_id, task_id), pool in named.items() if task_id in SUBMITTERS[dag_id]} == {
        "mps_account_b"
    }
    assert set(_pools(_parse(MPS_DAGS_POOL="")).values()) == {"default_pool"}


def test_every_example_dag_ends_a_run_that_never_finishes(dags: dict[str, Any]) -> None:
    """A task of a missing pool stays scheduled forever; the scheduler fails the run at dagrun_timeout."""
    for dag_id in DAG_IDS:
        assert dags[dag_id].dagrun_timeout == timedelta(hours=24), dag_id
    daily = dags["mps_enhance_daily"]
    # Longer than a legitimate run: the marker wait plus the batch's own wait for MPS.
    legit = timedelta(seconds=daily.get_task("wait_for_partition").timeout) + timedelta(
        seconds=daily.get_task("enhance").timeout
    )
    assert daily.dagrun_timeout > legit
    short = _parse(MPS_DAGS_RUN_TIMEOUT="90")
    assert {short[dag_id].dagrun_timeout for dag_id in DAG_IDS} == {timedelta(seconds=90)}


def _callback(dags: dict[str, Any]) -> Any:
    callbacks = dags["mps_enhance_daily"].on_failure_callback
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    assert len(callbacks) == 1
    return callbacks[0]


def test_only_a_timed_out_run_is_reported_by_the_failure_callback(
    dags: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Other failures already reached the webhook through ``notify``: nothing is looked up, logged or
    sent (a socket would trip this directory's guard). The POST of a timed-out run is tested against a
    receiver in tests/integration/dags, and end to end in the Celery stack test."""
    report = _callback(dags)
    with caplog.at_level(logging.DEBUG):
        for reason in ("task_failure", "success", None):
            assert report({"reason": reason, "run_id": "manual__1"}) is None
    assert caplog.records == []


def _connections_resolve_outside_a_task() -> bool:
    """Airflow 3.0's Task SDK looks a connection up through the task supervisor only (none here)."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException
    from airflow.sdk import Connection

    try:
        Connection.get("airflow_mps_no_such_connection")
    except AirflowNotFoundException:
        return True
    except ImportError:
        return False
    return True


def test_a_timed_out_run_without_a_webhook_is_logged_naming_the_pool(
    dags: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not _connections_resolve_outside_a_task():
        pytest.skip("this Airflow (3.0) resolves connections only inside a supervised task or DAG processor")
    monkeypatch.delenv("AIRFLOW_CONN_MPS_WEBHOOK", raising=False)
    with caplog.at_level(logging.WARNING):
        _callback(dags)({"reason": "timed_out", "run_id": "manual__1"})
    [record] = [r for r in caplog.records if "MPS_DAGS_RUN_TIMEOUT" in r.getMessage()]
    assert "the pool 'mps'" in record.getMessage()
    assert "No connection 'mps_webhook'" in record.getMessage()
