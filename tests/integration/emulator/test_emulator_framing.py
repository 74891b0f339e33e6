"""Malformed body framing is the client's error, answered in each service's own error format.

A real front end answers a bad Content-Length or chunk size with a 4xx before the service sees the
request; the emulator must do the same (and close the connection, whose framing is now unknown)
rather than fail inside its handler.
"""

from __future__ import annotations

import http.client
import json
import xml.etree.ElementTree as ET

import pytest

from airflow_mps.emulator.cos.errors import CosNoSuchKey
from airflow_mps.emulator.testing import EmulatorServer

BUCKET = "framing-1250000000"


def _raw(
    server: EmulatorServer, method: str, path: str, headers: list[tuple[str, str]], body: bytes
) -> tuple[int, dict[str, str], bytes]:
    host, port = server.endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers:
        conn.putheader(name, value)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def _mps_headers() -> list[tuple[str, str]]:
    # Framing is checked before authentication, so no signature is needed to reach it.
    return [
        ("Content-Type", "application/json"),
        ("X-TC-Action", "DescribeImageTasks"),
        ("X-TC-Version", "2019-06-12"),
    ]


@pytest.mark.parametrize(
    ("content_length", "code"),
    [
        ("abc", "InvalidParameter"),
        ("1e3", "InvalidParameter"),
        ("-1", "InvalidParameter"),
        ("99999999999999999999999", "InvalidParameter"),
        (str(11 * 1024 * 1024), "RequestSizeLimitExceeded"),
    ],
)
def test_mps_bad_content_length_is_an_api_error(
    emulator: EmulatorServer, content_length: str, code: str
) -> None:
    status, headers, body = _raw(
        emulator, "POST", "/", [*_mps_headers(), ("Content-Length", content_length)], b""
    )
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body)["Response"]["Error"]["Code"] == code
    assert headers.get("connection", "").lower() == "close"


@pytest.mark.parametrize(
    ("content_length", "status_code", "code"),
    [
        ("abc", 400, "InvalidArgument"),
        ("99999999999999999999999", 400, "InvalidArgument"),
        (str(600 * 1024 * 1024), 400, "EntityTooLarge"),
    ],
)
def test_cos_bad_content_length_is_an_xml_error(
    emulator: EmulatorServer, content_length: str, status_code: int, code: str
) -> None:
    status, _, body = _raw(
        emulator,
        "PUT",
        f"/{BUCKET}/k.bin",
        [("Host", emulator.endpoint), ("Content-Length", content_length)],
        b"",
    )
    assert status == status_code
    assert ET.fromstring(body).findtext("Code") == code


def test_malformed_chunk_size_is_a_client_error(emulator: EmulatorServer) -> None:
    emulator.cos_backend.create_bucket(BUCKET)
    status, _, body = _raw(
        emulator,
        "PUT",
        f"/{BUCKET}/chunked.bin",
        [("Host", emulator.endpoint), ("Transfer-Encoding", "chunked")],
        b"zz\r\nhello\r\n0\r\n\r\n",
    )
    assert status == 400
    assert ET.fromstring(body).findtext("Code") == "InvalidArgument"
    assert emulator.admin("health") is not None
    with pytest.raises(CosNoSuchKey):  # nothing half-written from the refused body
        emulator.cos_backend.head_object(BUCKET, "chunked.bin")
