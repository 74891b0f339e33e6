"""The async SDK client is shared per (event loop, connection identity) and keeps connections alive.

A triggerer runs every trigger of a process on one event loop; each trigger builds its own MpsHook.
One async ``MpsClient`` (one httpx client, one SSL context, one connection pool) per hook cost
~0.9 MB and a TCP connection per poll at 1,000 triggers (benchmark P6). These tests drive the real
path (async SDK → HTTP → emulator) and count clients and TCP connections, never seconds.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import types
import weakref
from typing import Any

import pytest

from airflow_mps.hooks import _clients
from airflow_mps.hooks._buckets import reset_shared_buckets
from airflow_mps.hooks._retry import RetryPolicy
from airflow_mps.hooks.mps import MpsHook, shared_async_clients
from airflow_mps.models import ProcessImageRequest

BUCKET = "sharedclient-1250000000"
REGION = "ap-guangzhou"
FAST = RetryPolicy(max_retry_seconds=10, base_delay=0.05, max_delay=0.2)


@pytest.fixture
def task_id(emulator, monkeypatch) -> str:
    """One MPS task on the session emulator (sync path), with the default connection pointing there."""
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    reset_shared_buckets()
    emulator.cos_backend.create_bucket(BUCKET)
    emulator.cos_backend.put_object(BUCKET, "raw/shared.jpg", _jpeg())
    request = ProcessImageRequest.build(
        input=f"cos://{BUCKET}/raw/shared.jpg", region=REGION, image_task={"EncodeConfig": {"Format": "PNG"}}
    )
    yield MpsHook(retry_policy=FAST).process_image(request).task_id
    reset_shared_buckets()


def _jpeg() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def constructions(monkeypatch) -> list[Any]:
    """Every async ``MpsClient`` the SDK constructs in this test."""
    from tencentcloud.mps.v20190612 import mps_client_async

    made: list[Any] = []
    original = mps_client_async.MpsClient.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(mps_client_async.MpsClient, "__init__", counting)
    return made


def _count_connections(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Record every TCP connection the loop opens (anyio → ``loop.create_connection``)."""
    opened: list[Any] = []
    original = loop.create_connection

    async def create_connection(*args: Any, **kwargs: Any) -> Any:
        opened.append(args[1:3])
        return await original(*args, **kwargs)

    loop.create_connection = create_connection  # type: ignore[method-assign]
    return opened


def test_200_hooks_on_one_loop_share_one_client(task_id: str, constructions: list[Any]) -> None:
    async def main() -> tuple[set[int], int, int, Any]:
        loop = asyncio.get_running_loop()
        hooks = [MpsHook(retry_policy=FAST) for _ in range(200)]
        statuses = await asyncio.gather(*(hook.adescribe_image_task(task_id) for hook in hooks))
        assert {status.task_id for status in statuses} == {task_id}
        clients = {id(await hook._async_client()) for hook in hooks}
        client = await hooks[0]._async_client()
        open_while_polling = shared_async_clients(loop)
        for hook in hooks[:-1]:
            await hook.aclose()
        # Released by 199 hooks: the last one still polls through the same, open client.
        assert not client.http_client.is_closed
        assert (await hooks[-1].adescribe_image_task(task_id)).task_id == task_id
        await hooks[-1].aclose()
        await hooks[-1].aclose()  # a second close of the same hook releases nothing more
        return clients, open_while_polling, shared_async_clients(loop), client

    clients, open_while_polling, open_after, client = asyncio.run(main())
    assert len(clients) == 1
    assert len(constructions) == 1
    assert open_while_polling == 1
    assert open_after == 0 and client.http_client.is_closed


def test_a_hook_after_the_last_release_gets_a_fresh_client(task_id: str, constructions: list[Any]) -> None:
    async def main() -> None:
        first = MpsHook(retry_policy=FAST)
        await first.adescribe_image_task(task_id)
        await first.aclose()
        second = MpsHook(retry_policy=FAST)
        assert (await second.adescribe_image_task(task_id)).task_id == task_id
        await second.aclose()

    asyncio.run(main())
    assert len(constructions) == 2


def test_two_loops_get_two_clients(task_id: str, constructions: list[Any]) -> None:
    """Triggerer threads (or tests) with their own loops never share an httpx client across loops."""
    barrier = threading.Barrier(2, timeout=60)
    seen: dict[int, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        async def main() -> None:
            hooks = [MpsHook(retry_policy=FAST) for _ in range(3)]
            for hook in hooks:
                await hook.adescribe_image_task(task_id)
            client = await hooks[0]._async_client()
            await asyncio.to_thread(barrier.wait)  # both loops hold their client here
            seen[index] = (id(client), shared_async_clients())
            await asyncio.to_thread(barrier.wait)
            for hook in hooks:
                await hook.aclose()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert seen[0][0] != seen[1][0]
    assert seen[0][1] == 2 and seen[1][1] == 2
    assert len(constructions) == 2
    assert shared_async_clients() == 0


def test_another_region_or_connection_is_another_client(task_id: str, emulator, monkeypatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_OTHER_ACCOUNT", emulator.connection_uri().replace("ap-guangzhou", "ap-shanghai")
    )

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        hooks = [
            MpsHook(retry_policy=FAST),
            MpsHook(retry_policy=FAST),
            MpsHook(region="ap-beijing", retry_policy=FAST),
            MpsHook("other_account", retry_policy=FAST),
        ]
        clients = [await hook._async_client() for hook in hooks]
        distinct = len({id(client) for client in clients})
        count = shared_async_clients(loop)
        for hook in hooks:
            await hook.aclose()
        return distinct, count

    assert asyncio.run(main()) == (3, 3)


def test_no_client_outlives_its_loop(task_id: str) -> None:
    """Hooks that never call aclose() (a coroutine that died) leave nothing behind once their loop is
    closed: the closed loop's clients stop counting at once and are dropped when the next client is made
    (the loop object itself may live on: asgiref's SyncToAsync, used by Airflow's async connection
    lookup, remembers the last loop in a thread-local)."""
    refs: list[weakref.ref[Any]] = []

    async def leave_open() -> None:
        hooks = [MpsHook(retry_policy=FAST) for _ in range(5)]
        for hook in hooks:
            await hook.adescribe_image_task(task_id)
        refs.append(weakref.ref(await hooks[0]._async_client()))
        assert shared_async_clients(asyncio.get_running_loop()) == 1

    async def next_user() -> None:
        hook = MpsHook(retry_policy=FAST)
        await hook.adescribe_image_task(task_id)
        await hook.aclose()

    asyncio.run(leave_open())
    assert shared_async_clients() == 0  # the closed loop does not count, even before collection
    asyncio.run(next_user())
    gc.collect()
    assert refs[0]() is None
    assert shared_async_clients() == 0
    assert all(not loop.is_closed() for loop in _clients._SHARED_ASYNC)


def test_polls_a_poll_interval_apart_reuse_one_connection(task_id: str, monkeypatch) -> None:
    """httpx's default keep-alive (5 s) is shorter than a trigger's poll interval (10 s): every poll
    opened a new TCP connection. The idle connection must survive the interval: httpcore's clock is
    moved forward 30 s between polls instead of sleeping."""
    import httpcore._async.http11 as http11

    offset = [0.0]
    real = http11.time.monotonic
    monkeypatch.setattr(
        http11, "time", types.SimpleNamespace(monotonic=lambda: real() + offset[0]), raising=True
    )
    loop = asyncio.new_event_loop()
    opened = _count_connections(loop)

    async def main() -> None:
        hooks = [MpsHook(retry_policy=FAST) for _ in range(3)]
        for _ in range(3):
            for hook in hooks:
                await hook.adescribe_image_task(task_id)
            offset[0] += 30.0
        for hook in hooks:
            await hook.aclose()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert len(opened) == 1, opened


def test_rotating_credentials_are_read_per_request(task_id: str, emulator, constructions: list[Any]) -> None:
    """Default-chain credentials (a CVM role's STS token) refresh inside their provider object; the shared
    client must ask the provider on every request, not once when it was built."""
    from airflow_mps.hooks._credentials import ClientSettings

    class RotatingProvider:
        def __init__(self) -> None:
            self.asked = 0

        def get_credential_info(self) -> tuple[str, str, None]:
            self.asked += 1
            return emulator.secret_id, emulator.secret_key, None

    provider = RotatingProvider()

    def hook() -> MpsHook:
        made = MpsHook(retry_policy=FAST)
        base = MpsHook(retry_policy=FAST).get_settings()
        made._settings = ClientSettings(
            base.secret_id,
            None,
            None,
            region=base.region,
            endpoint=base.endpoint,
            protocol=base.protocol,
            request_timeout=base.request_timeout,
            process_image_rate=base.process_image_rate,
            credential_source="sdk-default-chain",
            provider=provider,
        )
        return made

    hooks = [hook() for _ in range(4)]

    async def main() -> None:
        for _ in range(2):
            for each in hooks:
                await each.adescribe_image_task(task_id)
        for each in hooks:
            await each.aclose()

    asyncio.run(main())
    assert len(constructions) == 1
    assert provider.asked >= 8  # once per signed request
