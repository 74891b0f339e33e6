"""The emulator's web page over HTTP: real ProcessImage tasks through the official SDK, then the pages.

Also proves the page does not change what the port answers to the SDKs: COS routing, MPS, stats and
faults are exactly as before for every request that is not an unsigned page view.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from PIL import Image
from qcloud_cos.cos_exception import CosServiceError
from tencentcloud.mps.v20190612 import models

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.emulator.web import task_path

BUCKET = "webui-1250000000"
KEY = 'in/<b>"猫" & 🐱.jpg'


def _jpeg(size: tuple[int, int]) -> bytes:
    img = Image.new("RGB", size)
    img.putdata([(x % 256, (y * 3) % 256, 120) for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _submit(emu: EmulatorServer, key: str, image_task: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": BUCKET, "Region": emu.region, "Object": "/" + key},
        },
        "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": emu.region}},
        "OutputDir": "/out/",
    }
    if image_task:
        body["ImageTask"] = image_task
    req = models.ProcessImageRequest()
    req.from_json_string(json.dumps(body))
    return emu.mps_client().ProcessImage(req).TaskId


@pytest.fixture(scope="module")
def web() -> Iterator[dict[str, Any]]:
    """An emulator with a succeeded, a failed (missing input) and a failed (not an image) task."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="emu-web-") as tmp, EmulatorServer(data_dir=tmp) as emu:
        cos = emu.cos_client()
        cos.create_bucket(Bucket=BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
        cos.put_object(Bucket=BUCKET, Key=KEY, Body=_jpeg((640, 480)), ContentType="image/jpeg")
        cos.put_object(Bucket=BUCKET, Key="in/readme.txt", Body=b"not an image", ContentType="text/plain")
        ok = _submit(emu, KEY, {"EncodeConfig": {"Format": "PNG"}})
        missing = _submit(emu, "in/missing.jpg")
        not_image = _submit(emu, "in/readme.txt")
        assert emu.wait_idle(30)
        yield {
            "emu": emu,
            "ok": ok,
            "missing": missing,
            "not_image": not_image,
            "base": f"http://{emu.endpoint}",
        }


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_task_list_shows_every_task_with_status_error_and_thumbnails(web: dict[str, Any]) -> None:
    status, headers, body = _get(web["base"] + "/")
    page = body.decode()
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert (
        "script-src" not in headers["Content-Security-Policy"]
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )
    assert "3 in total" in page
    positions = [page.index(task_path(web[name])) for name in ("not_image", "missing", "ok")]
    assert positions == sorted(positions)  # newest first
    assert page.count(">SUCCESS<") == 1 and page.count(">FAIL<") == 2
    # the documented task error codes (docs/emulator-fidelity.md): a missing or undecodable input
    assert page.count("SourceFileError.ContentMalformed") >= 2
    assert "cos://webui-1250000000/in/&lt;b&gt;&quot;猫&quot; &amp; 🐱.jpg" in page  # escaped, literally
    assert "cos://webui-1250000000/out/&lt;b&gt;&quot;猫&quot; &amp; 🐱.png" in page
    thumbs = re.findall(r'src="(/buckets/[^"]+)"', page)
    assert f"/buckets/{BUCKET}/thumbnail?key={quote(KEY, safe='/')}&amp;size=160" in thumbs
    failed_only = _get(web["base"] + "/?status=failed")[2].decode()
    assert "2 matching" in failed_only and task_path(web["ok"]) not in failed_only
    assert _get(web["base"] + "/tasks")[2] == body  # the same page under /tasks


def test_task_page_has_the_image_task_outputs_and_errors(web: dict[str, Any]) -> None:
    status, _, body = _get(web["base"] + task_path(web["ok"]))
    page = body.decode()
    assert status == 200 and web["ok"] in page
    assert "input · 640×480" in page and "output · 640×480" in page and "image/png" in page
    assert "&quot;Format&quot;: &quot;PNG&quot;" in page  # the ImageTask as submitted
    failed = _get(web["base"] + task_path(web["missing"]))[2].decode()
    assert "SourceFileError.ContentMalformed" in failed and "60000" in failed and "does not exist" in failed
    gone = _get(web["base"] + "/tasks/1250000000-WorkflowTask-" + "0" * 32)
    assert gone[0] == 404 and b"No task with TaskId" in gone[2]


def test_thumbnails_and_object_bytes_are_served_by_the_emulator(web: dict[str, Any]) -> None:
    emu = web["emu"]
    status, headers, body = _get(f"{web['base']}/buckets/{BUCKET}/thumbnail?key={quote(KEY)}&size=160")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(body)).size == (160, 120)
    status, headers, body = _get(f"{web['base']}/buckets/{BUCKET}/object?key={quote(KEY)}")
    original = emu.cos_client().get_object(Bucket=BUCKET, Key=KEY)["Body"].get_raw_stream().read()
    assert status == 200 and body == original and headers["Content-Type"] == "image/jpeg"
    assert (
        headers["Content-Security-Policy"].startswith("sandbox")
        and headers["X-Content-Type-Options"] == "nosniff"
    )
    text = _get(f"{web['base']}/buckets/{BUCKET}/thumbnail?key=in/readme.txt")
    assert text[0] == 200 and text[1]["Content-Type"] == "image/svg+xml" and b"no preview" in text[2]
    missing = _get(f"{web['base']}/buckets/{BUCKET}/thumbnail?key=in/nope.jpg")
    assert missing[0] == 404 and b"not found" in missing[2]
    head = _get(web["base"] + "/", method="HEAD")
    assert head[0] == 200 and head[2] == b"" and int(head[1]["Content-Length"]) > 1000


def test_bucket_pages_list_folders_and_objects(web: dict[str, Any]) -> None:
    buckets = _get(web["base"] + "/buckets")[2].decode()
    assert f'href="/buckets/{BUCKET}"' in buckets and ">3<" in buckets  # 2 inputs + 1 output
    root = _get(f"{web['base']}/buckets/{BUCKET}")[2].decode()
    assert "in/</a>" in root and "out/</a>" in root  # folders
    inside = _get(f"{web['base']}/buckets/{BUCKET}?prefix=in/")[2].decode()
    assert (
        "&lt;b&gt;&quot;猫&quot; &amp; 🐱.jpg" in inside and "readme.txt" in inside and "text/plain" in inside
    )
    assert _get(f"{web['base']}/buckets/nosuch-1250000000")[0] == 404


def _raw(endpoint: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    status, body = resp.status, resp.read()
    conn.close()
    return status, body


def test_cos_routing_stats_and_faults_are_unchanged(web: dict[str, Any]) -> None:
    emu = web["emu"]
    emu.reset()
    endpoint = emu.endpoint
    # Virtual-host style GET / is ListObjects (unsigned: AccessDenied, as before), never the page.
    status, body = _raw(endpoint, "GET", "/", {"Host": f"{BUCKET}.cos.ap-guangzhou.myqcloud.com"})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    status, body = _raw(endpoint, "GET", "/tasks/x", {"Host": f"{BUCKET}.cos.ap-guangzhou.myqcloud.com"})
    assert status == 403 and b"<Code>AccessDenied</Code>" in body  # key "tasks/x", not a page
    # A signed GET of the service root is still COS's MethodNotAllowed (GET Service is not emulated).
    client = emu.cos_client(ServiceDomain=endpoint)
    with pytest.raises(CosServiceError) as info:
        client.list_buckets()
    assert info.value.get_error_code() == "MethodNotAllowed"
    # The SDK lists and reads keys that look like page paths.
    client.put_object(Bucket=BUCKET, Key="tasks/x", Body=b"a key, not a page")
    assert (
        client.get_object(Bucket=BUCKET, Key="tasks/x")["Body"].get_raw_stream().read()
        == b"a key, not a page"
    )
    # Page views are not API calls: no stats, no injected faults.
    before = emu.stats()["actions"]
    emu.faults.throttle("*", probability=1.0)
    try:
        assert _get(web["base"] + "/")[0] == 200
        assert _get(f"{web['base']}/buckets/{BUCKET}/object?key=tasks/x")[2] == b"a key, not a page"
        assert emu.stats()["actions"] == before
        with pytest.raises(CosServiceError) as throttled:  # while the API itself is throttled
            client.head_object(Bucket=BUCKET, Key="tasks/x")
        assert throttled.value.get_status_code() == 503
    finally:
        emu.faults.clear()
