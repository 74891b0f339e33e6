"""Loading the hook and the async Tencent Cloud SDK off the triggerer's event loop — written once.

Both triggers (single task and batch) import the hook lazily so that parsing a DAG never pays for the
SDK. Done on the triggerer's event loop that first import would stall every other trigger for as long as
it takes (~0.1 s here, much more on a cold disk), so the first ``run()`` awaits :func:`preload_sdk`,
which performs it in a worker thread once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib

__all__ = ["preload_sdk"]

#: What a trigger needs before its first poll: the hook module and the SDK's async client (which pulls
#: in the SDK's models and httpx).
_SDK_MODULES = ("airflow_mps.hooks.mps", "tencentcloud.mps.v20190612.mps_client_async")
_sdk_loaded = False


def _import_sdk() -> None:
    for name in _SDK_MODULES:
        # A missing SDK is reported by the hook itself, with a clear message, on first use.
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


async def preload_sdk() -> None:
    """Import the hook and the async Tencent Cloud SDK in a worker thread, once per process."""
    global _sdk_loaded
    if not _sdk_loaded:
        await asyncio.to_thread(_import_sdk)
        _sdk_loaded = True
