"""The COS emulator's XML (`emulator/cos/xml.py`): what it writes, and the multi-delete body it reads."""

from __future__ import annotations

import dataclasses
from xml.etree import ElementTree

import pytest

from airflow_mps.emulator.cos.errors import CosError
from airflow_mps.emulator.cos.listing import CosListResult
from airflow_mps.emulator.cos.models import CosObjectMeta
from airflow_mps.emulator.cos.xml import (
    MAX_DELETE_BODY,
    copy_object_result,
    delete_result,
    error_response,
    iso_time,
    list_bucket_result,
    parse_delete_request,
    xml_response,
)

B = "photos-1250000000"


def _page(**overrides: object) -> CosListResult:
    page = CosListResult(
        bucket=B,
        prefix="in/",
        marker="",
        max_keys=2,
        delimiter="/",
        is_truncated=True,
        next_marker="in/b c.jpg",
        contents=(CosObjectMeta(key="in/b c.jpg", size=3, etag="abc", last_modified=0.0),),
        common_prefixes=("in/sub/",),
    )
    return dataclasses.replace(page, **overrides)


def test_error_body_carries_every_field_and_a_head_carries_none() -> None:
    response = error_response(404, "NoSuchKey", "gone <now>", "host/k\x01", request_id="rid")
    root = ElementTree.fromstring(response.body)
    assert [child.tag for child in root] == ["Code", "Message", "Resource", "RequestId", "TraceId"]
    assert root.findtext("Message") == "gone <now>"
    assert root.findtext("Resource") == "host/k%01"  # XML 1.0 cannot carry a control character
    headers = dict(response.headers)
    assert headers["x-cos-request-id"] == "rid" and headers["x-cos-trace-id"] == root.findtext("TraceId")
    head = error_response(404, "NoSuchKey", "gone", "r", method="head")
    assert head.body == b"" and dict(head.headers)["Content-Length"] == "0"


def test_list_bucket_result() -> None:
    root = ElementTree.fromstring(xml_response("rid", list_bucket_result(_page(), encoding=None)).body)
    assert root.findtext("Name") == B and root.findtext("IsTruncated") == "true"
    assert root.findtext("NextMarker") == "in/b c.jpg" and root.findtext("Delimiter") == "/"
    assert root.findtext("CommonPrefixes/Prefix") == "in/sub/"
    assert root.findtext("Contents/ETag") == '"abc"'
    assert root.findtext("Contents/LastModified") == "1970-01-01T00:00:00.000Z"
    assert root.findtext("Contents/Owner/ID") == "1250000000"
    assert root.find("EncodingType") is None


def test_list_bucket_result_url_encoded_and_untruncated() -> None:
    text = list_bucket_result(_page(is_truncated=False, delimiter=""), encoding="url")
    root = ElementTree.fromstring(text)
    assert root.findtext("EncodingType") == "url" and root.findtext("Contents/Key") == "in/b%20c.jpg"
    assert root.find("NextMarker") is None and root.find("Delimiter") is None


def test_copy_and_delete_results() -> None:
    meta = CosObjectMeta(key="k", size=1, etag="e", last_modified=86400.0, crc64=7)
    root = ElementTree.fromstring(copy_object_result("e", meta))
    assert (root.findtext("ETag"), root.findtext("CRC64")) == ('"e"', "7")
    assert root.findtext("LastModified") == iso_time(86400.0) == "1970-01-02T00:00:00.000Z"
    loud = delete_result(["a&b"], [("c", "AccessDenied", "no")], quiet=False)
    assert loud == (
        "<DeleteResult><Deleted><Key>a&amp;b</Key></Deleted>"
        "<Error><Key>c</Key><Code>AccessDenied</Code><Message>no</Message></Error></DeleteResult>"
    )
    assert delete_result(["a"], [], quiet=True) == "<DeleteResult></DeleteResult>"


def test_parse_delete_request() -> None:
    body = b"<Delete><Quiet> True </Quiet><Object><Key>a</Key></Object><Object><Key/></Object></Delete>"
    assert parse_delete_request(body) == (True, ["a", ""])
    assert parse_delete_request(b"<Delete><Object><Key>a</Key></Object></Delete>") == (False, ["a"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b" " * (MAX_DELETE_BODY + 1), "too large"),
        (b'<!DOCTYPE d [<!ENTITY e "x">]><Delete/>', "DTD"),
        (b"<Delete>", "not well-formed"),
        (b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>", "more than 1000"),
    ],
)
def test_a_bad_delete_request_is_malformed_xml(body: bytes, message: str) -> None:
    with pytest.raises(CosError) as caught:
        parse_delete_request(body)
    assert (caught.value.code, caught.value.status) == ("MalformedXML", 400)
    assert message in caught.value.message
