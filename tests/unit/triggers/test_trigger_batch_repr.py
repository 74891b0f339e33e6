"""The batch trigger's log line (issue 14 item 6): Airflow's ``BaseTrigger.__repr__`` prints every
serialized kwarg, the packed ``tasks`` blob and the ``state_token`` included; ours is one short line.
The single-image trigger's is tested in tests/unit/operators/test_operator_metrics.py."""

from __future__ import annotations

from airflow.triggers.base import BaseTrigger

from airflow_mps.batch.progress import pack
from airflow_mps.triggers.batch import MpsImageBatchTrigger

END = 1_900_000_000  # 2030-03-17T17:46:40Z
STATE = "cos://out-1250000000/enhanced/dt=2026-11-01/_mps_manifest.jsonl.wait.gz"
TOKEN = "0f1e2d3c4b5a6978"


def _rebuilt(trigger: MpsImageBatchTrigger) -> MpsImageBatchTrigger:
    """As a triggerer rebuilds it from the stored kwargs."""
    return type(trigger)(**trigger.serialize()[1])


def test_state_trigger_line_has_count_connection_deadline_and_state_not_the_token() -> None:
    trigger = MpsImageBatchTrigger(
        state=STATE,
        state_token=TOKEN,
        tencentcloud_conn_id="mps_prod",
        region="ap-guangzhou",
        poll_interval=15,
        end_time=END,
        window_start="2026-11-01T00:00:00Z",
        prior_calls=[3, 40],
        task_count=1234,
    )
    text = repr(_rebuilt(trigger))
    assert text == (
        "<MpsImageBatchTrigger 1234 tasks on mps_prod/ap-guangzhou until 2030-03-17T17:46:40Z, "
        f"polling every 15s, state {STATE}>"
    )
    assert TOKEN not in text and "=" not in text.split(" state ")[0]
    assert str(trigger) == text  # what TaskDeferred's message and f-strings show


def test_inline_tasks_are_counted_never_printed() -> None:
    tasks = [[f"1250000000-WorkflowTask-{i:032x}", f"cos://in-1250000000/raw/{i}.png"] for i in range(500)]
    carry = pack({"items": ["x" * 50] * 500})
    trigger = MpsImageBatchTrigger(
        tasks=tasks, carry=carry, known=pack([]), poll_interval=2.5, end_time=END, window_start="w"
    )
    blob = trigger.serialize()[1]["tasks"]
    text = repr(_rebuilt(trigger))
    assert text == (
        "<MpsImageBatchTrigger 500 tasks on tencentcloud_default/connection region until "
        "2030-03-17T17:46:40Z, polling every 2.5s, state inline>"
    )
    assert blob not in text and carry not in text and "WorkflowTask" not in text
    assert len(text) < 160
    assert blob in BaseTrigger.__repr__(trigger)  # what Airflow's default would have logged


def test_unknown_count_and_unreadable_blob_still_give_a_line() -> None:
    older = MpsImageBatchTrigger(
        state=STATE, state_token=TOKEN, end_time=END
    )  # deferred by an older operator
    assert repr(older).startswith("<MpsImageBatchTrigger a batch's tasks on tencentcloud_default/")
    broken = MpsImageBatchTrigger(tasks="not base64 at all!", end_time=END)
    assert repr(broken).startswith("<MpsImageBatchTrigger a batch's tasks on ")
    assert "not base64" not in repr(broken)


def test_task_count_round_trips_and_older_kwargs_still_build() -> None:
    trigger = MpsImageBatchTrigger(state=STATE, state_token=TOKEN, end_time=END, task_count=7)
    path, kwargs = trigger.serialize()
    assert kwargs["task_count"] == 7 and _rebuilt(trigger).serialize() == (path, kwargs)
    del kwargs["task_count"]  # kwargs stored by a provider version without it
    assert MpsImageBatchTrigger(**kwargs).task_count is None
