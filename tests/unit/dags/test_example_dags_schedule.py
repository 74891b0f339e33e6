"""Which partition each run of the example DAGs reads, computed from the DAGs' own timetables.

No scheduler and no database: the DAG files in ``dags/`` are parsed as shipped, the next runs come
from ``timetable.next_dagrun_info`` under the DAG's own start date and catch-up setting (what the
scheduler asks), and each run's templated ``source`` is rendered with the DAG's Jinja environment
for that run (``dag_run`` and ``params`` as the task runner provides them). Issue 14 item 1: a daily
run must read the day that has *completed*, never the day that has just begun.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from example_dags_support import parse_example_dags

UTC = timezone.utc
BUCKET = "photos-1250000000"
_ENV = {
    "MPS_DAGS_BUCKET": BUCKET,
    "MPS_DAGS_START_DATE": "2026-11-01",
    "MPS_DAGS_TIMEZONE": None,
}


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    return parse_example_dags(_ENV)


def _timetable(dag: Any) -> Any:
    """The timetable as the scheduler evaluates it (Airflow >= 3.2 DAGs hold an SDK definition)."""
    tt = dag.timetable
    if not hasattr(tt, "next_dagrun_info"):
        from airflow.serialization.encoders import coerce_to_core_timetable

        tt = coerce_to_core_timetable(tt)
    return tt


def _scheduled_runs(dag: Any, *, catchup: bool | None = None) -> Iterator[Any]:
    """The DAG's automated runs, in order, as the scheduler (or a backfill, with catchup) creates them."""
    from airflow.timetables.base import TimeRestriction

    restriction = TimeRestriction(dag.start_date, dag.end_date, dag.catchup if catchup is None else catchup)
    tt, last = _timetable(dag), None
    while (
        info := tt.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
    ) is not None:
        yield info
        last = info.data_interval


def _render(
    dag: Any, task_id: str, field: str, dag_run: Any, params: dict[str, Any] | None = None, **extra: Any
) -> str:
    """Render one templated field of a task for a run, the way the worker does (the DAG's macros included)."""
    task = dag.get_task(task_id)
    partial = getattr(task, "partial_kwargs", None)  # a mapped operator keeps its arguments there
    template = partial[field] if partial is not None else getattr(task, field)
    context = {"dag_run": dag_run, "params": {"partition": None, **(params or {})}, **extra}
    return dag.get_template_env().from_string(template).render(**context)


def _run(info: Any) -> SimpleNamespace:
    """A ``dag_run`` as the task runner sees it for a scheduled run."""
    return SimpleNamespace(
        logical_date=info.logical_date,
        data_interval_start=info.data_interval.start,
        data_interval_end=info.data_interval.end,
        run_after=info.run_after,
    )


def test_daily_runs_read_the_day_that_has_completed(dags: dict[str, Any]) -> None:
    dag = dags["mps_enhance_daily"]
    runs = []
    for info in _scheduled_runs(dag, catchup=True):
        runs.append(
            (
                info.run_after,
                _render(dag, "wait_for_partition", "bucket_key", _run(info)),
                _render(dag, "enhance", "source", _run(info)),
                _render(dag, "enhance", "destination", _run(info)),
            )
        )
        if len(runs) == 3:
            break
    assert runs == [
        (
            datetime(2026, 11, d + 1, tzinfo=UTC),
            f"cos://{BUCKET}/raw/dt=2026-11-0{d}/_SUCCESS",
            f"cos://{BUCKET}/raw/dt=2026-11-0{d}/",
            f"cos://{BUCKET}/enhanced/dt=2026-11-0{d}/",
        )
        for d in (1, 2, 3)
    ]
    # The run starts when its day is over (an interval timetable), not at the day's start.
    first = next(_scheduled_runs(dag, catchup=True))
    assert (first.data_interval.start, first.data_interval.end) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 11, 2, tzinfo=UTC),
    )


def test_unpausing_starts_one_run_for_the_latest_complete_day(dags: dict[str, Any]) -> None:
    """catchup=False: no run per day since start_date, one run for yesterday (UTC), starting now-ish."""
    for dag_id in ("mps_enhance_daily", "mps_enhance_mapped"):
        dag = dags[dag_id]
        assert dag.catchup is False
        now = datetime.now(UTC)
        info = next(_scheduled_runs(dag))
        yesterday = (now - timedelta(days=1)).date()
        assert info.data_interval.start.date() == yesterday, dag_id
        assert info.run_after <= now + timedelta(days=1)
        field = ("enhance", "source") if dag_id == "mps_enhance_daily" else ("enhance_one", "output_dir")
        assert f"dt={yesterday.isoformat()}/" in _render(dag, *field, _run(info))


def test_backfill_range_names_the_partition_days(dags: dict[str, Any]) -> None:
    """`airflow backfill create --from-date A --to-date B` takes runs whose logical date is in [A, B]."""
    dag = dags["mps_enhance_daily"]
    from_date, to_date = datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)
    days = []
    for info in _scheduled_runs(dag, catchup=True):
        if info.logical_date > to_date:
            break
        if info.logical_date >= from_date:
            days.append(_render(dag, "enhance", "source", _run(info)))
    assert days == [f"cos://{BUCKET}/raw/dt=2026-11-0{d}/" for d in (3, 4, 5)]


def test_manual_runs_read_the_last_complete_day_or_the_param(dags: dict[str, Any]) -> None:
    dag = dags["mps_enhance_daily"]
    tt = _timetable(dag)
    # A manual run with a logical date: Airflow infers the last complete interval before it.
    logical = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    interval = tt.infer_manual_data_interval(run_after=logical)
    with_date = SimpleNamespace(
        logical_date=logical,
        data_interval_start=interval.start,
        data_interval_end=interval.end,
        run_after=logical,
    )
    assert _render(dag, "enhance", "source", with_date) == f"cos://{BUCKET}/raw/dt=2026-11-01/"
    # Airflow 3 also allows no logical date: no data interval, no `ds`; the day before run_after.
    no_date = SimpleNamespace(
        logical_date=None, data_interval_start=None, data_interval_end=None, run_after=logical
    )
    assert _render(dag, "enhance", "source", no_date) == f"cos://{BUCKET}/raw/dt=2026-11-01/"
    midnight = SimpleNamespace(
        logical_date=None,
        data_interval_start=None,
        data_interval_end=None,
        run_after=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert _render(dag, "enhance", "source", midnight) == f"cos://{BUCKET}/raw/dt=2026-11-01/"
    # The `partition` param reprocesses a chosen day, whatever the run's dates.
    for run in (with_date, no_date):
        assert (
            _render(dag, "enhance", "destination", run, {"partition": "2026-10-15"})
            == f"cos://{BUCKET}/enhanced/dt=2026-10-15/"
        )
        # ...and the marker sensor waits for that same day.
        assert (
            _render(dag, "wait_for_partition", "bucket_key", run, {"partition": "2026-10-15"})
            == f"cos://{BUCKET}/raw/dt=2026-10-15/_SUCCESS"
        )
    ti = SimpleNamespace(xcom_pull=lambda **_: {"succeeded": 3})
    notify = json.loads(_render(dag, "notify", "data", no_date, run_id="manual__1", ti=ti))
    assert notify == {"dag_run": "manual__1", "partition": "2026-11-01", "summary": {"succeeded": 3}}


def test_partition_days_follow_the_dag_timezone() -> None:
    """MPS_DAGS_TIMEZONE=Asia/Shanghai: runs at Shanghai midnight read that Shanghai day."""
    dag = parse_example_dags({**_ENV, "MPS_DAGS_TIMEZONE": "Asia/Shanghai"})["mps_enhance_daily"]
    info = next(_scheduled_runs(dag, catchup=True))
    # 00:00 on 2 Nov in Shanghai is 16:00 UTC on 1 Nov.
    assert info.run_after == datetime(2026, 11, 1, 16, tzinfo=UTC)
    assert _render(dag, "enhance", "source", _run(info)) == f"cos://{BUCKET}/raw/dt=2026-11-01/"
    no_date = SimpleNamespace(
        logical_date=None,
        data_interval_start=None,
        data_interval_end=None,
        run_after=datetime(2026, 11, 1, 17, tzinfo=UTC),  # 01:00 on 2 Nov in Shanghai
    )
    assert _render(dag, "enhance", "source", no_date) == f"cos://{BUCKET}/raw/dt=2026-11-01/"


def test_wait_external_has_a_day_without_a_logical_date(dags: dict[str, Any]) -> None:
    dag = dags["mps_wait_external"]
    after = datetime(2026, 11, 3, 8, tzinfo=UTC)
    no_date = SimpleNamespace(
        logical_date=None, data_interval_start=None, data_interval_end=None, run_after=after
    )
    assert _render(dag, "submit", "input", no_date) == f"cos://{BUCKET}/raw/dt=2026-11-03/landscape.jpg"
    with_date = SimpleNamespace(
        logical_date=datetime(2026, 11, 1, tzinfo=UTC),
        data_interval_start=None,
        data_interval_end=None,
        run_after=after,
    )
    assert _render(dag, "submit", "output_path", with_date) == "/converted/dt=2026-11-01/landscape.{format}"
    assert (
        _render(dag, "submit", "input", no_date, {"partition": "2026-10-31"})
        == f"cos://{BUCKET}/raw/dt=2026-10-31/landscape.jpg"
    )


def test_daily_waits_for_the_partition_marker_before_the_batch(dags: dict[str, Any]) -> None:
    """Issue 14 item 4: the batch starts only once the day's _SUCCESS marker exists, deferred."""
    from airflow_mps.sensors.cos import CosKeySensor

    dag = dags["mps_enhance_daily"]
    sensor = dag.get_task("wait_for_partition")
    assert isinstance(sensor, CosKeySensor)
    assert sensor.deferrable is True and sensor.wildcard_match is False
    assert sensor.timeout == 12 * 3600
    assert dag.get_task("enhance").upstream_task_ids == {"wait_for_partition"}
    # A marker that never comes fails the run (the watcher), not only the sensor.
    assert "wait_for_partition" in dag.get_task("watcher").upstream_task_ids
