"""Transport-neutral request/response types shared by the emulator's MPS, COS and admin handlers.

Handlers are plain functions of an `EmulatorRequest` returning an `EmulatorResponse`, so each
service's wire layer can be tested without a socket and the server stays a thin dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class Headers:
    """Case-insensitive header lookup that keeps the received order and casing."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        lname = name.lower()
        for key, value in self._items:
            if key.lower() == lname:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [value for key, value in self._items if key.lower() == lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class EmulatorRequest:
    """One HTTP request as received: raw path and query (still percent-encoded), raw body bytes."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes = b""
    client: tuple[str, int] = ("127.0.0.1", 0)
    #: ``time.monotonic()`` when the request reached the service: its receipt plus the injected
    #: network delay (None when it did not come through the HTTP server).
    arrived: float | None = None


@dataclass
class EmulatorResponse:
    """One HTTP response; header names are sent with exactly the casing given here."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
