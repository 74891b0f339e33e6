"""Which input a listed task carries, and whether an echoed ``ImageTask`` contradicts ours.

``DescribeImageTasks`` rows name their input in a free-form ``Input`` string, and a task's detail
echoes its ``ImageTask``. Reconciliation (the hook's ProcessImage retry after an ambiguous failure,
the batch operator's retry adoption) uses these pure functions to tell our task from another
pipeline's task on the same image. They stay in the models, as the one parser of a listing's
``Input`` and of an echoed ``ImageTask`` (``ImageTaskStatus.conflicts_with`` uses the latter too);
:mod:`airflow_mps.ownership` holds the rules that use them to decide "which MPS task is ours"
(issue 10 item 3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["image_task_conflicts", "listed_input_matches", "parse_listed_input", "request_input"]


def _sub(info: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The ``name`` sub-object of ``info``; empty when absent or not an object (null tolerance)."""
    sub = info.get(name)
    return sub if isinstance(sub, Mapping) else {}


def _info_location(info: Mapping[str, Any]) -> tuple[str | None, str | None, str] | None:
    """(kind, bucket, key-or-url) of an ``InputInfo`` object; None when it names nothing."""
    kind = str(info.get("Type") or "").upper() or None
    cos = _sub(info, "CosInputInfo")
    if kind in (None, "COS") and cos.get("Object"):
        return "COS", cos.get("Bucket") or None, str(cos["Object"]).lstrip("/")
    if kind == "URL":
        url = _sub(info, "UrlInputInfo").get("Url")
        return ("URL", None, str(url)) if url else None
    if kind == "AWS-S3":
        s3 = _sub(info, "S3InputInfo")
        if s3.get("S3Object"):
            return "AWS-S3", s3.get("S3Bucket") or None, str(s3["S3Object"]).lstrip("/")
        return None
    if kind == "VOD":
        vod = _sub(info, "VODInputInfo")
        name = vod.get("Object") or vod.get("FileId")
        return ("VOD", vod.get("Bucket") or None, str(name).lstrip("/")) if name else None
    return None


def parse_listed_input(listed: Any) -> tuple[str | None, str | None, str] | None:
    """``(kind, bucket, key)`` named by a DescribeImageTasks ``Input`` value; ``None`` if it names nothing.

    The SDK types ``Input`` as a free-form string. Forms understood (the one place both the hook's
    ProcessImage reconciliation and the batch operator's retry adoption read it):

    * the ``InputInfo`` object, or that object as JSON (what the emulator sends): exact fields;
    * ``cos://bucket/key`` / ``cosn://bucket/key`` / ``s3://bucket/key``: the key verbatim (``#``,
      ``?`` and ``%`` are part of COS keys, not URL syntax);
    * an ``http(s)://`` URL: percent-decoded path; the bucket from a ``<bucket>.cos.…`` host, kind
      ``COS`` then, else kind ``URL`` with the URL as given;
    * a bare ``/key``: kind and bucket unknown (``None``).

    ``kind`` is ``COS``, ``URL``, ``AWS-S3``, ``VOD`` or ``None`` (unknown).
    """
    if listed in (None, ""):
        return None
    if isinstance(listed, Mapping):
        return _info_location(listed)
    text = str(listed).strip()
    if text.startswith("{"):
        try:
            info = json.loads(text)
        except ValueError:
            return None
        return _info_location(info) if isinstance(info, Mapping) else None
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme in ("cos", "cosn", "s3"):
        bucket, _, key = rest.partition("/")
        return ("AWS-S3" if scheme == "s3" else "COS"), bucket or None, key.lstrip("/")
    if scheme in ("http", "https"):
        parts = urlsplit(text)
        host = parts.hostname or ""
        if ".cos." in host:
            return "COS", host.split(".", 1)[0], unquote(parts.path).lstrip("/")
        return "URL", None, text
    if sep:
        return None
    return None, None, text.lstrip("/")


def listed_input_matches(listed: Any, kind: str | None, bucket: str | None, key: str) -> bool | None:
    """Whether a listed ``Input`` names the input ``(kind, bucket, key)``; None when it names nothing.

    Unknown parts (a bare path has no bucket or kind) do not contradict. A ``cos://`` key is compared
    verbatim and, failing that, percent-decoded (a service might encode it); URLs are compared
    percent-decoded.
    """
    parsed = parse_listed_input(listed)
    if parsed is None:
        return None
    listed_kind, listed_bucket, listed_key = parsed
    if kind == "URL" or listed_kind == "URL":
        return kind == listed_kind and unquote(listed_key) == unquote(key)
    if listed_kind is not None and kind is not None and listed_kind != kind:
        return False
    if listed_key != key and unquote(listed_key) != key:
        return False
    return listed_bucket is None or bucket is None or listed_bucket == bucket


def request_input(body: Mapping[str, Any]) -> tuple[str | None, str | None, str] | None:
    """``(kind, bucket, key-or-url)`` of a ProcessImage body's ``InputInfo`` (the API-shaped dict)."""
    info = body.get("InputInfo")
    return _info_location(info) if isinstance(info, Mapping) else None


def _blank(value: Any) -> bool:
    """A value that asks for nothing: null, empty, zero, False, ``"OFF"`` (or containers of those)."""
    if value is None or value is False or value == "" or (isinstance(value, (int, float)) and value == 0):
        return True
    if isinstance(value, str):
        return value.strip().upper() == "OFF"
    if isinstance(value, Mapping):
        return all(_blank(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_blank(v) for v in value)
    return False


def image_task_conflicts(ours: Any, echoed: Any) -> bool:
    """True when an echoed ``ImageTask`` definitely contradicts ours.

    Tolerant of what a service adds or normalises: a field present on one side only conflicts only
    when it asks for something (not null/empty/0/``"OFF"``); strings compare case-insensitively
    (``jpeg`` = ``JPEG``), numbers by value (``80`` = ``80.0``).
    """
    if isinstance(ours, Mapping) or isinstance(echoed, Mapping):
        if not isinstance(ours, Mapping) or not isinstance(echoed, Mapping):
            return not (_blank(ours) and _blank(echoed))
        return any(image_task_conflicts(ours.get(k), echoed.get(k)) for k in set(ours) | set(echoed))
    if ours is None or echoed is None:
        return not _blank(echoed if ours is None else ours)
    if isinstance(ours, (list, tuple)) or isinstance(echoed, (list, tuple)):
        if not isinstance(ours, (list, tuple)) or not isinstance(echoed, (list, tuple)):
            return True
        if len(ours) != len(echoed):
            return not (_blank(ours) and _blank(echoed))
        return any(image_task_conflicts(a, b) for a, b in zip(ours, echoed, strict=True))
    if isinstance(ours, str) and isinstance(echoed, str):
        return ours.strip().lower() != echoed.strip().lower()
    if isinstance(ours, bool) or isinstance(echoed, bool):
        return bool(ours != echoed)
    if isinstance(ours, (int, float)) and isinstance(echoed, (int, float)):
        return float(ours) != float(echoed)
    return str(ours) != str(echoed)
