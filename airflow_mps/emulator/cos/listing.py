"""GET Bucket (list objects) semantics: one page of a bucket's keys, computed from its in-memory index.

COS lists keys in UTF-8 byte order, strictly after ``marker`` and starting with ``prefix``; with a
``delimiter``, every key holding it after the prefix rolls up into one common prefix (docs/reference
cos-api.md §3). :func:`list_page` walks the sorted index the backend keeps per bucket (`cos/models.py`)
with :mod:`bisect`, so a page costs the keys it returns, never the bucket's size, and never the disk.
Pure: no lock, no I/O — the backend calls it under its lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_mps.emulator.cos.models import CosObjectMeta

__all__ = ["MAX_LIST_KEYS", "CosListResult", "list_page"]

#: Largest page a list request may ask for (larger max-keys are clamped to this).
MAX_LIST_KEYS = 1000


@dataclass(frozen=True)
class CosListResult:
    """One page of a GET Bucket listing, with COS semantics already applied."""

    bucket: str
    prefix: str
    marker: str
    max_keys: int
    delimiter: str
    is_truncated: bool
    next_marker: str | None  # set only when is_truncated
    contents: tuple[CosObjectMeta, ...]
    common_prefixes: tuple[str, ...]


def list_page(
    bucket: str,
    keys: Sequence[bytes],
    metas: Mapping[str, CosObjectMeta],
    *,
    prefix: str,
    delimiter: str,
    marker: str,
    max_keys: int,
) -> CosListResult:
    """One page of ``keys`` (sorted UTF-8 bytes; ``metas`` by key), as ``CosBackend.list_objects``
    describes it; ``max_keys`` is already clamped to 0..1000."""
    bprefix = prefix.encode("utf-8")
    bmarker = marker.encode("utf-8")
    bdelim = delimiter.encode("utf-8")
    contents: list[CosObjectMeta] = []
    prefixes: list[str] = []
    truncated = False
    last: bytes | None = None
    i = max(bisect.bisect_right(keys, bmarker), bisect.bisect_left(keys, bprefix))
    n = len(keys)
    while i < n:
        k = keys[i]
        if not k.startswith(bprefix):
            break
        rolled = _rolled_up(k, bprefix, bdelim)
        if rolled is not None and rolled <= bmarker:
            # skip every key under a prefix already returned on an earlier page
            i = bisect.bisect_left(keys, rolled + b"\xff", i)
            continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if rolled is not None:
            prefixes.append(rolled.decode("utf-8"))
            last = rolled
            # jump past every key sharing this rolled-up prefix
            i = bisect.bisect_left(keys, rolled + b"\xff", i)
            # a key could sort above rolled+\xff only if it has 0xff bytes, impossible in UTF-8
        else:
            contents.append(metas[k.decode("utf-8")])
            last = k
            i += 1
    if last is None:  # max_keys == 0: nothing returned, so nothing to page on (no endless loop)
        truncated = False
    next_marker = last.decode("utf-8") if truncated and last is not None else None
    return CosListResult(
        bucket=bucket,
        prefix=prefix,
        marker=marker,
        max_keys=max_keys,
        delimiter=delimiter,
        is_truncated=truncated,
        next_marker=next_marker,
        contents=tuple(contents),
        common_prefixes=tuple(prefixes),
    )


def _rolled_up(key: bytes, prefix: bytes, delimiter: bytes) -> bytes | None:
    """The common prefix ``key`` rolls up into (up to and including the first ``delimiter`` after
    ``prefix``), or None when it is listed as itself."""
    if delimiter:
        pos = key.find(delimiter, len(prefix))
        if pos >= 0:
            return key[: pos + len(delimiter)]
    return None
