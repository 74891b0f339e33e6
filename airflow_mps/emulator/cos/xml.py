"""The XML the COS emulator speaks: the documents it answers and the one it reads.

Written: the error body (doc 436/7730: Code, Message, Resource, RequestId, TraceId), GET Bucket's
``ListBucketResult``, PUT Object copy's ``CopyObjectResult`` and multi-delete's ``DeleteResult``, in
the shape cos-python-sdk-v5 reads (with ``xmltodict``). Read: the multi-delete request
(``<Delete><Quiet/><Object><Key/>…``), refused as ``MalformedXML`` when too large, carrying a DTD (no
entity expansion) or not well-formed. Also here: the request id every COS answer carries in
``x-cos-request-id``, since an error body repeats it.

The wire layer (`cos/responses.py`) decides *what* to answer; this module only writes it down.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import quote
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from airflow_mps.emulator.cos.errors import CosError
from airflow_mps.emulator.cos.listing import CosListResult
from airflow_mps.emulator.cos.models import CosObjectMeta
from airflow_mps.emulator.http import EmulatorResponse

__all__ = [
    "MAX_DELETE_BODY",
    "common_headers",
    "copy_object_result",
    "delete_result",
    "error_response",
    "iso_time",
    "list_bucket_result",
    "new_request_id",
    "parse_delete_request",
    "xml_response",
]

#: Largest multi-delete request body read (1000 keys of 850 bytes fit well within it).
MAX_DELETE_BODY = 2 * 1024 * 1024


def new_request_id() -> str:
    """A fresh ``x-cos-request-id`` (random, base64 like the real service's)."""
    return base64.b64encode(os.urandom(18)).decode("ascii")


def common_headers(request_id: str) -> list[tuple[str, str]]:
    """Headers every COS answer carries (Server and Date are left to the HTTP server)."""
    return [("x-cos-request-id", request_id)]


def error_response(
    status: int,
    code: str,
    message: str,
    resource: str,
    *,
    method: str = "GET",
    request_id: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> EmulatorResponse:
    """A COS error as COS sends it (doc 436/7730): an XML body with Code, Message, Resource, RequestId
    and TraceId (none empty, or the SDK cannot read it), ``x-cos-request-id`` and ``x-cos-trace-id``
    headers; no body for a HEAD. Every error the COS handler answers is built here."""
    request_id = request_id or new_request_id()
    trace_id = base64.b64encode(os.urandom(24)).decode("ascii")
    body = (
        "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n"
        f"\t<Code>{escape(code)}</Code>\n"
        f"\t<Message>{escape(message)}</Message>\n"
        f"\t<Resource>{escape(_xml_safe(resource or '/'))}</Resource>\n"
        f"\t<RequestId>{escape(request_id)}</RequestId>\n"
        f"\t<TraceId>{escape(trace_id)}</TraceId>\n"
        "</Error>\n"
    ).encode()
    if method.upper() == "HEAD":
        body = b""
    headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(body))),
        *common_headers(request_id),
        ("x-cos-trace-id", trace_id),
        *extra_headers,
    ]
    return EmulatorResponse(status=status, headers=headers, body=body)


def _xml_safe(text: str) -> str:
    """Percent-encode characters XML 1.0 cannot carry (control characters), so the SDK can parse."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: f"%{ord(m.group()):02X}", text)


def xml_response(request_id: str, body: str, status: int = 200) -> EmulatorResponse:
    """A successful answer with an XML document ``body`` (the declaration is prepended)."""
    data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode("utf-8")
    headers = [
        ("Content-Type", "application/xml"),
        ("Content-Length", str(len(data))),
        *common_headers(request_id),
    ]
    return EmulatorResponse(status=status, headers=headers, body=data)


def iso_time(ts: float) -> str:
    """Epoch seconds as COS writes a time inside XML (``2024-01-02T03:04:05.000Z``)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def list_bucket_result(page: CosListResult, *, encoding: str | None) -> str:
    """The ``ListBucketResult`` of one listing page; ``encoding="url"`` percent-encodes keys and
    prefixes (``encoding-type=url``), which the SDK then decodes."""

    def text(value: str) -> str:
        return escape(quote(value.encode("utf-8"), safe="/") if encoding == "url" else value)

    bucket = page.bucket
    parts = [f"<ListBucketResult>\n\t<Name>{escape(bucket)}</Name>"]
    if encoding:
        parts.append(f"\t<EncodingType>{escape(encoding)}</EncodingType>")
    parts.append(f"\t<Prefix>{text(page.prefix)}</Prefix>")
    parts.append(f"\t<Marker>{text(page.marker)}</Marker>")
    parts.append(f"\t<MaxKeys>{page.max_keys}</MaxKeys>")
    if page.delimiter:
        parts.append(f"\t<Delimiter>{text(page.delimiter)}</Delimiter>")
    parts.append(f"\t<IsTruncated>{'true' if page.is_truncated else 'false'}</IsTruncated>")
    if page.is_truncated and page.next_marker is not None:
        parts.append(f"\t<NextMarker>{text(page.next_marker)}</NextMarker>")
    for common in page.common_prefixes:
        parts.append(f"\t<CommonPrefixes>\n\t\t<Prefix>{text(common)}</Prefix>\n\t</CommonPrefixes>")
    owner = bucket.rsplit("-", 1)[-1]
    for meta in page.contents:
        parts.append(
            "\t<Contents>\n"
            f"\t\t<Key>{text(meta.key)}</Key>\n"
            f"\t\t<LastModified>{iso_time(meta.last_modified)}</LastModified>\n"
            f"\t\t<ETag>&quot;{meta.etag}&quot;</ETag>\n"
            f"\t\t<Size>{meta.size}</Size>\n"
            f"\t\t<Owner>\n\t\t\t<ID>{escape(owner)}</ID>\n\t\t\t<DisplayName>{escape(owner)}</DisplayName>\n\t\t</Owner>\n"
            f"\t\t<StorageClass>{meta.storage_class}</StorageClass>\n"
            "\t</Contents>"
        )
    parts.append("</ListBucketResult>")
    return "\n".join(parts) + "\n"


def copy_object_result(etag: str, meta: CosObjectMeta) -> str:
    """The ``CopyObjectResult`` of a PUT Object copy (``meta``: the new object's)."""
    return (
        f'<CopyObjectResult><ETag>"{etag}"</ETag><LastModified>{iso_time(meta.last_modified)}</LastModified>'
        f"<CRC64>{meta.crc64}</CRC64></CopyObjectResult>"
    )


def parse_delete_request(body: bytes) -> tuple[bool, list[str]]:
    """(quiet, keys) of a multi-delete request; ``CosError`` ``MalformedXML`` for a body too large,
    with a DTD, not well-formed, or naming more than 1000 objects."""
    if len(body) > MAX_DELETE_BODY:
        raise CosError("The XML you provided was too large.", code="MalformedXML", status=400)
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise CosError("The XML you provided must not contain a DTD.", code="MalformedXML", status=400)
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise CosError("The XML you provided was not well-formed.", code="MalformedXML", status=400) from None
    quiet = (root.findtext("Quiet") or "false").strip().lower() == "true"
    keys = [obj.findtext("Key") or "" for obj in root.findall("Object")]
    if len(keys) > 1000:
        raise CosError(
            "You have attempted to delete more than 1000 objects.", code="MalformedXML", status=400
        )
    return quiet, keys


def delete_result(deleted: list[str], errors: list[tuple[str, str, str]], *, quiet: bool) -> str:
    """The ``DeleteResult`` of a multi-delete: the deleted keys (unless ``quiet``), then each
    ``(key, code, message)`` that failed."""
    parts = ["<DeleteResult>"]
    if not quiet:
        parts += [f"<Deleted><Key>{escape(k)}</Key></Deleted>" for k in deleted]
    parts += [
        f"<Error><Key>{escape(k)}</Key><Code>{escape(c)}</Code><Message>{escape(m)}</Message></Error>"
        for k, c, m in errors
    ]
    parts.append("</DeleteResult>")
    return "".join(parts)
