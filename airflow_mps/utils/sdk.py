"""Loading the MPS hook and the async Tencent Cloud SDK off the triggerer's event loop.

Both MPS triggers (single task and batch) import the hook lazily so that parsing a DAG never pays for
the SDK. Done on the triggerer's event loop that first import would stall every other trigger for as
long as it takes (~0.1 s here, much more on a cold disk), so the first ``run()`` awaits
:func:`preload_sdk`, which performs it in a worker thread. The loading itself is written once, in
:func:`airflow_mps.preload.preload_modules` (the hooks' own async path uses it too); this module names
what an MPS trigger needs.
"""

from __future__ import annotations

from airflow_mps.preload import preload_modules

__all__ = ["preload_sdk"]

#: The hook module, imported first (an error in it propagates).
HOOK_MODULE = "airflow_mps.hooks.mps"
#: The SDK's async client (it pulls in the SDK's models and httpx); a missing SDK is reported by the
#: hook itself, with a clear message, on first use.
SDK_MODULES = ("tencentcloud.mps.v20190612.mps_client_async",)


async def preload_sdk() -> None:
    """Import the MPS hook and the async Tencent Cloud SDK in a worker thread (afterwards: a lookup)."""
    await preload_modules((HOOK_MODULE,), optional=SDK_MODULES)
