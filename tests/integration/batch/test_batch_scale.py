"""A few thousand images through a real deferral against the emulator with its limits lifted: the
trigger's kwargs and event stay under 32 KiB, every image is processed once (issue 12, item 3).

Slow (tens of seconds on two shared cores): ``pytest -m slow``. The 20,000-image proof without the
emulator is ``tests/unit/test_batch_state.py``; the measured numbers are P9 (``benchmarks/p9.py``).
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.emulator.testing import EmulatorServer, MemoryTaskStateStore

pytestmark = pytest.mark.slow

N = 3000
LIMIT = 32 * 1024
BUCKET = "scale-1250000000"


@pytest.fixture(scope="module")
def unlimited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorServer]:
    """Its own emulator: no ProcessImage or Describe* limit, enough workers to keep up."""
    with EmulatorServer(
        data_dir=tmp_path_factory.mktemp("scale"), process_image_rate=0, describe_rate=0, workers=8
    ) as server:
        yield server


def test_a_few_thousand_images_defer_with_small_kwargs_and_event(
    unlimited: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred
    from PIL import Image

    import airflow_mps.hooks.base as hook_base
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    monkeypatch.setattr(hook_base, "DESCRIBE_RATE", 100_000.0)  # the client's pacing, lifted too
    monkeypatch.setenv(
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", unlimited.connection_uri() + "&process_image_rate=100000"
    )
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, format="PNG")
    png = buf.getvalue()
    unlimited.cos_backend.create_bucket(BUCKET)
    part = f"dt={uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: unlimited.cos_backend.put_object(
                    BUCKET, f"raw/{part}/c{i % 9}/i{i:05d}.png", png, "image/png"
                ),
                range(N),
            )
        )
    op = MpsBatchProcessImageOperator(
        task_id="scale",
        source=f"cos://{BUCKET}/raw/{part}/",
        destination=f"cos://{BUCKET}/enhanced/{part}/",
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        submit_concurrency=16,
        poll_interval=1,
        deferrable=True,
    )
    ctx: dict[str, Any] = {"ti": SimpleNamespace(try_number=1), "task_state_store": MemoryTaskStateStore()}
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    kwargs = deferred.value.trigger.serialize()[1]
    assert len(json.dumps(kwargs)) <= LIMIT, len(json.dumps(kwargs))
    trigger = type(deferred.value.trigger)(**kwargs)

    async def first() -> Any:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first())
    assert len(json.dumps(event)) <= LIMIT, len(json.dumps(event))
    summary = op.execute_complete(ctx, event)
    assert summary["succeeded"] == N and summary["failed"] == 0
    stats = unlimited.stats()
    assert stats["tasks_created"] == N and not stats["duplicate_submissions"]
    assert stats["actions"]["DescribeImageTaskDetail"]["received"] == N  # once per task
