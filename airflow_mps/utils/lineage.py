"""OpenLineage datasets of one ProcessImage: which object went in, which came out.

COS objects are named ``cosn://<bucket>`` + key, S3 objects ``s3://<bucket>`` + key, URL inputs
``<scheme>://<host>`` + path. The pairs need no OpenLineage; :func:`openlineage_from_pairs` imports the
OpenLineage provider only when called (apache/airflow providers/openlineage developer guide: lineage
methods keep their imports inside), and returns ``None`` without it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["lineage_datasets", "openlineage_from_pairs"]


def _uri_dataset(uri: str) -> tuple[str, str] | None:
    parts = urlsplit(uri)
    if not parts.scheme or not parts.netloc:
        return None
    if parts.scheme in ("cos", "cosn"):
        return f"cosn://{parts.netloc}", parts.path.lstrip("/")
    if parts.scheme == "s3":
        return f"s3://{parts.netloc}", parts.path.lstrip("/")
    return f"{parts.scheme}://{parts.netloc}", parts.path or "/"


def _input_dataset(input_info: Mapping[str, Any] | None) -> tuple[str, str] | None:
    info = dict(input_info or {})
    kind = str(info.get("Type") or "").upper()
    if kind == "COS" and info.get("CosInputInfo"):
        cos = info["CosInputInfo"]
        return f"cosn://{cos.get('Bucket')}", str(cos.get("Object") or "").lstrip("/")
    if kind == "URL" and info.get("UrlInputInfo"):
        return _uri_dataset(str(info["UrlInputInfo"].get("Url") or ""))
    if kind == "AWS-S3" and info.get("S3InputInfo"):
        s3 = info["S3InputInfo"]
        return f"s3://{s3.get('S3Bucket')}", str(s3.get("S3Object") or "").lstrip("/")
    return None


def _output_dataset(out: Mapping[str, Any]) -> tuple[str, str] | None:
    if out.get("bucket") and out.get("path"):
        return f"cosn://{out['bucket']}", str(out["path"]).lstrip("/")
    if out.get("uri"):
        return _uri_dataset(str(out["uri"]))
    return None


def lineage_datasets(
    input_info: Mapping[str, Any] | None, outputs: Sequence[Mapping[str, Any]] = ()
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """OpenLineage (namespace, name) pairs for one ProcessImage: inputs from the API-shaped
    ``InputInfo``, outputs from the XCom ``outputs``."""
    source = _input_dataset(input_info)
    inputs = [source] if source else []
    outs = [pair for pair in (_output_dataset(out) for out in outputs) if pair]
    return inputs, outs


def openlineage_from_pairs(inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> Any:
    """``OperatorLineage`` for the pairs, or ``None`` when the OpenLineage provider is not installed."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
    except ImportError:
        return None
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
    )
