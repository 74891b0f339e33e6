"""The deferred batch's durable state: two small objects next to the manifest, so that trigger kwargs
and the trigger's event stay a few hundred bytes at any batch size.

Why (issue 12): the trigger used to carry every task in its kwargs and every result in its event —
53 KB at 1,000 images, 909 KB of kwargs and a 1.14 MB event at 20,000. Airflow keeps trigger kwargs
in a TEXT column (64 KiB on MySQL) and events in the metadata DB, so a deferred batch above ~1,250
images broke a MySQL deployment and made every one slower. Where the state lives instead:

* **COS, next to the manifest** (chosen): works on every supported Airflow (the 3.0 floor has no
  ``task_state_store``), is in the bucket the batch already writes, costs one PUT per object per
  deferral (plus a checkpoint a minute while waiting), and the trigger reads it through the COS hook
  off the event loop. ``task_state_store`` (Airflow ≥ 3.3) would need a second path for older
  versions and is not readable from a trigger.

Two objects, both gzip-compressed JSON with the same random ``token`` (also in the trigger's kwargs
and event, so a stale object from another run is never mistaken for this one):

``<destination><manifest_name>.carry.gz`` — written once by the operator when it defers; read back by
    ``execute_complete``. ``{"v", "token", "carry"}``: what the manifest needs besides the results
    (every input, skipped, refused, history, counts). The trigger never reads it.
``<destination><manifest_name>.wait.gz`` — the wait: ``{"v", "token", "pending", "known", "results",
    "outcome"}``. Written by the operator (``pending`` tail + ``known`` results), rewritten by the
    trigger as a checkpoint while it waits (so a restarted triggerer does not describe everything
    again) and with the final ``results`` and ``outcome`` before its event (so a triggerer that dies
    after the write resumes straight to the event).

No I/O of its own: the operator's side (:func:`store_deferral`, :func:`load_results`) takes the sync
hook; the trigger reads and writes the wait document through the COS hook in ``asyncio.to_thread``.
"""

from __future__ import annotations

import gzip
import io
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_mps.errors import MpsError

#: Version of both documents.
STATE_VERSION = 1
#: Content type of both objects.
CONTENT_TYPE = "application/gzip"
#: The error code of a trigger event (and of ``execute_complete``) when the state cannot be read or
#: written; retryable: a retry adopts the tasks again (ledger, listing) and waits anew.
STATE_ERROR = "BatchStateUnavailable"


class StateError(Exception):
    """A state object is missing, unreadable, or belongs to another deferral (token mismatch)."""


@dataclass(frozen=True)
class StateObject:
    """Where one state object is: ``cos://bucket/key``."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"cos://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str) -> StateObject:
        if not isinstance(uri, str) or not uri.startswith("cos://") or "/" not in uri[len("cos://") :]:
            raise StateError(f"{uri!r} is not a cos://bucket/key location")
        bucket, _, key = uri[len("cos://") :].partition("/")
        return cls(bucket, key)


def state_objects(
    bucket: str, destination_prefix: str, manifest_name: str
) -> tuple[StateObject, StateObject]:
    """``(carry, wait)`` objects of a batch writing to ``destination_prefix`` (next to the manifest)."""
    base = f"{destination_prefix}{manifest_name}"
    return StateObject(bucket, base + ".carry.gz"), StateObject(bucket, base + ".wait.gz")


def new_token() -> str:
    """A random token tying a deferral's objects, kwargs and event together."""
    return secrets.token_hex(8)


#: Lists longer than this are encoded row by row (see :func:`encode`).
_STREAM_ROWS = 256
#: Encoded text is handed to the compressor in pieces of about this many characters.
_CHUNK = 1 << 16


def encode(doc: Mapping[str, Any]) -> bytes:
    """Compact JSON, gzip-compressed (deterministic: no timestamp in the gzip header).

    It decompresses to exactly ``json.dumps(doc, separators=(",", ":"), ensure_ascii=False)``, but long
    lists are encoded row by row into the compressor: the whole JSON text of a 20,000-row document
    (~6 MB) never exists at once, in the worker nor in the triggerer.
    """
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:
        pending: list[str] = []
        size = 0

        def write(text: str) -> None:
            nonlocal size
            pending.append(text)
            size += len(text)
            if size >= _CHUNK:
                gz.write("".join(pending).encode("utf-8"))
                pending.clear()
                size = 0

        _encode_value(doc, write)
        gz.write("".join(pending).encode("utf-8"))
    return out.getvalue()


def _encode_value(value: Any, write: Callable[[str], None]) -> None:
    if isinstance(value, Mapping):
        write("{")
        for n, (key, item) in enumerate(value.items()):
            write(("," if n else "") + json.dumps(str(key), ensure_ascii=False) + ":")
            _encode_value(item, write)
        write("}")
    elif isinstance(value, (list, tuple)) and len(value) > _STREAM_ROWS:
        write("[")
        for n, item in enumerate(value):
            if n:
                write(",")
            _encode_value(item, write)
        write("]")
    else:
        write(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def decode(data: bytes, token: str | None, what: str) -> dict[str, Any]:
    """The document in ``data``; :class:`StateError` when it is not one of ours or not this deferral's."""
    try:
        doc = json.loads(gzip.decompress(data).decode("utf-8"))
    except (OSError, EOFError, ValueError) as err:
        raise StateError(f"the {what} state object is not readable: {err}") from err
    if not isinstance(doc, dict) or doc.get("v") != STATE_VERSION:
        raise StateError(f"the {what} state object has an unknown format")
    if token is not None and doc.get("token") != token:
        raise StateError(
            f"the {what} state object belongs to another deferral (token {doc.get('token')!r}, expected "
            f"{token!r}): another run writing to the same destination overwrote it"
        )
    return doc


def carry_doc(token: str, carry: Mapping[str, Any]) -> dict[str, Any]:
    return {"v": STATE_VERSION, "token": token, "carry": dict(carry)}


def wait_doc(
    token: str,
    pending: list[list[Any]],
    known: list[list[Any]],
    *,
    results: list[list[Any]] | None = None,
    outcome: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The wait document: pending rows and known results, or (once the wait ended) the final rows."""
    return {
        "v": STATE_VERSION,
        "token": token,
        "pending": pending,
        "known": known,
        "results": results,
        "outcome": dict(outcome) if outcome is not None else None,
    }


def store_deferral(
    hook: Any,
    bucket: str,
    destination_prefix: str,
    manifest_name: str,
    *,
    carry: Mapping[str, Any],
    pending: list[list[Any]],
    known: list[list[Any]],
) -> tuple[StateObject, str]:
    """Write both objects of a new deferral (``hook.write_object``); returns the wait object and the
    token the trigger must find in it."""
    token = new_token()
    carry_at, wait_at = state_objects(bucket, destination_prefix, manifest_name)
    writes = ((carry_at, encode(carry_doc(token, carry))), (wait_at, encode(wait_doc(token, pending, known))))
    # Both at once: each is a COS round trip the worker slot waits for (bench P3).
    _both(
        hook,
        lambda item: hook.write_object(item[0].bucket, item[0].key, item[1], content_type=CONTENT_TYPE),
        writes,
    )
    return wait_at, token


def _both(hook: Any, call: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """``call`` on each item on its own thread; the results in order, or the first error raised.

    The hook's connection is resolved first, in the calling thread: two threads resolving it at once
    would look it up twice, and on Airflow 3.0's ``dag.test`` the in-process supervisor channel is not
    thread-safe (``InProcessSupervisorComms.send`` removes ``SUPERVISOR_COMMS`` while it handles a
    request; two concurrent lookups left it removed, and the task's next XCom push failed)."""
    resolve = getattr(hook, "get_settings", None)
    if callable(resolve):
        resolve()
    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(call, items))


def load_results(
    hook: Any, bucket: str, destination_prefix: str, manifest_name: str, event: Mapping[str, Any]
) -> tuple[dict[str, Any], list[list[Any]]]:
    """The carry and the result rows of a finished deferral (``hook.read_object``), checked against
    the event's token. :class:`StateError` when the trigger lost its state, the objects cannot be read,
    another run overwrote them, or the wait document holds no results."""
    error = event.get("error") or {}
    if error.get("code") == STATE_ERROR:
        raise StateError(f"the batch trigger lost its state: {error.get('message')}")
    token = event.get("state_token")
    carry_at, _ = state_objects(bucket, destination_prefix, manifest_name)
    wait_at = StateObject.parse(str(event.get("state")))
    try:
        carry_data, wait_data = _both(
            hook, lambda at: hook.read_object(at.bucket, at.key), (carry_at, wait_at)
        )
        carry = decode(carry_data, token, "carry")
        wait = decode(wait_data, token, "wait")
    except MpsError as err:
        raise StateError(f"reading the batch state failed: {err}") from err
    rows = wait.get("results")
    if rows is None:
        raise StateError(f"{wait_at.uri} holds no results (the trigger did not finish)")
    return carry["carry"], rows
