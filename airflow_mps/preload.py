"""Importing modules off the event loop — the one implementation, at the bottom of the package map.

The triggerer runs every trigger of a process on one event loop. The first import of the Tencent Cloud
SDK (the MPS ``models.py`` alone is 3.6 MB, and httpx comes with it), of ``qcloud_cos`` or of a hook
module takes long enough to stall every other trigger on that loop, so each async path awaits
:func:`preload_modules` first, which imports in a worker thread: the hooks' async clients
(``hooks/base.py``), the MPS triggers (``utils.sdk.preload_sdk``) and the COS triggers. Standard library
only and importing nothing of the package, so a trigger module may import it at module level without
loading a hook on the loop.
"""

from __future__ import annotations

import asyncio
import importlib
import sys

__all__ = ["preload_modules"]

#: Optional modules that failed to import: not tried again (their user reports the missing package).
_ABSENT: set[str] = set()


def _load_modules(names: tuple[str, ...], optional: tuple[str, ...]) -> None:
    for name in names:
        importlib.import_module(name)
    for name in optional:
        try:
            importlib.import_module(name)
        except ImportError:
            _ABSENT.add(name)


async def preload_modules(names: tuple[str, ...], *, optional: tuple[str, ...] = ()) -> None:
    """Import ``names`` and then ``optional`` in a worker thread, never on the event loop.

    Once all are loaded this is a dict lookup. An ImportError of ``names`` propagates; one of
    ``optional`` is swallowed and remembered (a missing SDK is reported, with a clear message, by the
    hook that needs it on first use).
    """
    if all(name in sys.modules or name in _ABSENT for name in (*names, *optional)):
        return
    await asyncio.to_thread(_load_modules, names, optional)
