"""The module-wide registry of shared async SDK clients (one per event loop and connection identity).

A triggerer runs hundreds of triggers on one event loop, each with its own hook. Giving each hook its
own async client would open (and TLS-handshake) a connection pool per trigger; instead hooks of the
same *connection identity* (endpoint, region, service, credentials) on the same loop share one client,
reference-counted: the last hook to ``aclose()`` closes it. Clients are never shared across loops
(an httpx client belongs to the loop it was first used on).

Loading the async SDK off the event loop (its first import — the MPS ``models.py`` alone is 3.6 MB, and
httpx comes with it — would stall every trigger sharing the loop) is :mod:`airflow_mps.preload`,
re-exported here as ``preload_modules``.

Nothing heavy is imported at module level: httpx is imported when the first client is built.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_mps.preload import preload_modules

if TYPE_CHECKING:
    from airflow_mps.hooks._credentials import ClientSettings

__all__ = [
    "ASYNC_KEEPALIVE_SECONDS",
    "ASYNC_MAX_CONNECTIONS",
    "SharedAsyncClient",
    "acquire_async_client",
    "client_identity",
    "keepalive_http_client",
    "preload_modules",
    "release_async_client",
    "shared_async_clients",
]

#: httpx keep-alive of the shared async clients. httpx's default (5 s) is shorter than a trigger's poll
#: interval, so every poll opened (and TLS-handshook) a new connection; idle connections are checked
#: before reuse, so one the server closed meanwhile is replaced, not failed.
ASYNC_KEEPALIVE_SECONDS = 120.0
#: Connections one shared client may open (and keep idle) towards the API: bounded in practice by the
#: Describe pacing (20/s by default) times the round trip, far below this.
ASYNC_MAX_CONNECTIONS = 100


class SharedAsyncClient:
    """One async SDK client shared by the hooks of one event loop and connection identity."""

    __slots__ = ("client", "closed", "key", "refs")

    def __init__(self, key: tuple[str, ...], client: Any) -> None:
        self.key = key
        self.client = client
        self.refs = 0
        self.closed = False


#: event loop → connection identity → shared client. Weak on the loop: a loop that is gone takes its
#: clients with it; closed loops are also purged whenever a client is created.
_SHARED_ASYNC: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, ...], SharedAsyncClient]
] = weakref.WeakKeyDictionary()
_SHARED_ASYNC_LOCK = threading.Lock()  # loops of different threads share the mapping


def client_identity(settings: ClientSettings, service: str) -> tuple[str, ...]:
    """What makes two hooks' async clients interchangeable: which service, where, and as whom.

    Secrets only enter a SHA-256 digest (the proxy URL too: it may carry a password). For the SDK
    default chain (a provider that refreshes itself, e.g. a CVM role's STS token) the provider class and
    the SecretId seen at resolution count; the shared client keeps asking its provider per request, so
    rotation keeps working. The CA bundle and the proxy are part of the identity: they live in the
    shared httpx client.
    """
    secret = "\0".join(
        (settings.secret_id or "", settings.secret_key or "", settings.token or "", settings.proxy or "")
    )
    provider = type(settings.provider).__qualname__ if settings.provider is not None else ""
    return (
        service,
        settings.protocol,
        settings.endpoint or "",
        settings.region,
        str(settings.request_timeout),
        settings.ca_bundle or "",
        settings.credential_source,
        provider,
        hashlib.sha256(secret.encode("utf-8")).hexdigest(),
    )


def keepalive_http_client(timeout: float, *, ca_bundle: str | None = None, proxy: str | None = None) -> Any:
    """An ``httpx.AsyncClient`` with the SDK's timeout, a keep-alive longer than a poll interval, and the
    connection's CA bundle and proxy.

    The SDK builds its ``httpx.AsyncClient`` itself with httpx's default limits and exposes it as
    ``http_client`` (every request goes through ``self.http_client.send``, the timeout is read from it
    too); the hook replaces it with this one. The SDK's own is dropped unopened (httpx holds no socket
    or finalizer until a send).

    TLS and proxy are set here because the SDK cannot: its ``HttpProfile.certification`` becomes httpx's
    ``cert=`` (a *client* certificate) and its ``HttpProfile.proxy`` becomes ``proxies=``, which httpx
    0.28 removed (mps-api.md §0.6, §0.13). ``ca_bundle`` → ``verify=`` an SSL context trusting exactly
    that file; without it httpx's default applies (certifi, or ``SSL_CERT_FILE``). ``proxy`` → httpx's
    ``proxy=`` (httpx >= 0.26; Airflow 3 requires >= 0.27); without it httpx reads ``HTTP(S)_PROXY``.
    """
    import httpx

    options: dict[str, Any] = {}
    if ca_bundle:
        import ssl

        options["verify"] = ssl.create_default_context(cafile=ca_bundle)
    if proxy:
        options["proxy"] = proxy
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=ASYNC_MAX_CONNECTIONS,
            max_keepalive_connections=ASYNC_MAX_CONNECTIONS,
            keepalive_expiry=ASYNC_KEEPALIVE_SECONDS,
        ),
        **options,
    )


def acquire_async_client(
    loop: asyncio.AbstractEventLoop, key: tuple[str, ...], build: Callable[[], Any]
) -> SharedAsyncClient:
    """Take one reference on the loop's client for ``key`` (built by ``build()`` on first use).

    Runs without awaiting between the lookup and the insert, so hooks starting together on one loop
    (a triggerer picking up 1,000 triggers) all find the same client.
    """
    with _SHARED_ASYNC_LOCK:
        for other in [other for other in _SHARED_ASYNC if other.is_closed()]:
            _SHARED_ASYNC.pop(other, None)
        clients = _SHARED_ASYNC.setdefault(loop, {})
        entry = clients.get(key)
        if entry is None:
            entry = SharedAsyncClient(key, build())
            clients[key] = entry
        entry.refs += 1
        return entry


async def release_async_client(loop: asyncio.AbstractEventLoop, entry: SharedAsyncClient) -> None:
    """Drop one reference; the last one out closes the client (and forgets it, so a later hook on this
    loop gets a fresh one)."""
    with _SHARED_ASYNC_LOCK:
        entry.refs -= 1
        if entry.refs > 0 or entry.closed:
            return
        entry.closed = True
        clients = _SHARED_ASYNC.get(loop) or {}
        if clients.get(entry.key) is entry:
            del clients[entry.key]
        if not clients:
            _SHARED_ASYNC.pop(loop, None)
    await entry.client.close()


def shared_async_clients(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """How many shared async clients are open (on ``loop``, or on every live loop): for tests and
    diagnostics."""
    with _SHARED_ASYNC_LOCK:
        if loop is not None:
            return len(_SHARED_ASYNC.get(loop) or {})
        return sum(len(clients) for other, clients in _SHARED_ASYNC.items() if not other.is_closed())
