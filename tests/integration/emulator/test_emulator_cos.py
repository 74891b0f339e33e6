"""cos-python-sdk-v5 (IP/Port mode) against the real emulator server over HTTP.

Every test goes SDK -> HTTP -> emulator server -> COS wire handler -> disk backend, and asserts
what the SDK hands back to its user.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from qcloud_cos import CosConfig, CosS3Client, CosServiceError

from airflow_mps.emulator.config import EmulatorConfig
from airflow_mps.emulator.cos.auth import presign_url
from airflow_mps.emulator.cos.models import crc64ecma
from airflow_mps.emulator.server import RunningEmulator, start

BUCKET = "examplebucket-1250000000"
REGION = "ap-guangzhou"
SECRET_ID = "AKIDcostest"
SECRET_KEY = "cos-test-secret-key"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cos-emulator")


@pytest.fixture(scope="module")
def emulator(data_dir: Path) -> Iterator[RunningEmulator]:
    running = start(
        EmulatorConfig(
            host="127.0.0.1", port=0, data_dir=data_dir, secret_id=SECRET_ID, secret_key=SECRET_KEY
        )
    )
    try:
        _client(running).create_bucket(Bucket=BUCKET)  # PUT Bucket: a PUT Object never creates one
        yield running
    finally:
        running.stop()


def _client(emulator: RunningEmulator, secret_key: str = SECRET_KEY, **extra: object) -> CosS3Client:
    host, port = emulator.endpoint.rsplit(":", 1)
    conf = CosConfig(
        Region=REGION,
        SecretId=SECRET_ID,
        SecretKey=secret_key,
        Scheme="http",
        IP=host,
        Port=int(port),
        Timeout=10,
        **extra,
    )
    return CosS3Client(conf, retry=0)


@pytest.fixture(scope="module")
def cos(emulator: RunningEmulator) -> CosS3Client:
    return _client(emulator)


def _read(cos: CosS3Client, key: str, **kwargs: object) -> tuple[dict, bytes]:
    response = cos.get_object(Bucket=BUCKET, Key=key, **kwargs)
    return response, response["Body"].get_raw_stream().read()


def test_put_get_head_delete_roundtrip(cos: CosS3Client) -> None:
    body = b"hello world"
    put = cos.put_object(
        Bucket=BUCKET,
        Key="dir/hello.txt",
        Body=body,
        ContentType="text/plain",
        Metadata={"x-cos-meta-foo": "bar"},
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert put["x-cos-request-id"]
    assert put["x-cos-hash-crc64ecma"] == "5981764153023615706"  # value real COS reports

    head = cos.head_object(Bucket=BUCKET, Key="dir/hello.txt")
    assert head["Content-Length"] == "11"
    assert head["Content-Type"] == "text/plain"
    assert head["ETag"] == put["ETag"]
    assert head["x-cos-meta-foo"] == "bar"
    assert head["Last-Modified"].endswith("GMT")

    got, data = _read(cos, "dir/hello.txt")
    assert data == body
    assert got["Content-Length"] == "11"
    assert got["Accept-Ranges"] == "bytes"

    deleted = cos.delete_object(Bucket=BUCKET, Key="dir/hello.txt")
    assert "x-cos-request-id" in deleted
    assert cos.object_exists(Bucket=BUCKET, Key="dir/hello.txt") is False


def test_missing_key_is_nosuchkey_with_request_id(cos: CosS3Client) -> None:
    cos.put_object(Bucket=BUCKET, Key="exists.txt", Body=b"x")
    with pytest.raises(CosServiceError) as info:
        cos.get_object(Bucket=BUCKET, Key="does/not/exist.jpg")
    err = info.value
    assert err.get_status_code() == 404
    assert err.get_error_code() == "NoSuchKey"
    assert err.get_request_id()
    assert err.get_trace_id() != "Unknown"
    assert "does/not/exist.jpg" in err.get_resource_location()


def test_missing_bucket_is_nosuchbucket(cos: CosS3Client) -> None:
    with pytest.raises(CosServiceError) as info:
        cos.list_objects(Bucket="nobucket-1250000000")
    assert info.value.get_error_code() == "NoSuchBucket"
    with pytest.raises(CosServiceError) as info:
        cos.head_bucket(Bucket="nobucket-1250000000")
    assert info.value.get_status_code() == 404


def test_put_into_a_missing_bucket_is_nosuchbucket_and_creates_nothing(cos: CosS3Client) -> None:
    """Real COS answers a PUT Object into a bucket that does not exist with 404 NoSuchBucket; only
    PUT Bucket (the SDK's create_bucket) makes one."""
    bucket = "nevermade-1250000000"
    cos.put_object(Bucket=BUCKET, Key="copy/source.txt", Body=b"src")
    for put in (
        lambda: cos.put_object(Bucket=bucket, Key="a.txt", Body=b"x"),
        lambda: cos.copy_object(
            Bucket=bucket,
            Key="copy.txt",
            CopySource={"Bucket": BUCKET, "Key": "copy/source.txt", "Region": REGION},
        ),
    ):
        with pytest.raises(CosServiceError) as info:
            put()
        assert (info.value.get_status_code(), info.value.get_error_code()) == (404, "NoSuchBucket")
        assert info.value.get_request_id()
    assert cos.bucket_exists(Bucket=bucket) is False
    cos.create_bucket(Bucket=bucket)
    cos.put_object(Bucket=bucket, Key="a.txt", Body=b"x")
    assert _read_from(cos, bucket, "a.txt") == b"x"
    with pytest.raises(CosServiceError) as info:
        cos.create_bucket(Bucket=bucket)
    assert (info.value.get_status_code(), info.value.get_error_code()) == (409, "BucketAlreadyExists")


def _read_from(cos: CosS3Client, bucket: str, key: str) -> bytes:
    return bytes(cos.get_object(Bucket=bucket, Key=key)["Body"].get_raw_stream().read())


def test_range_get_returns_206_and_content_range(cos: CosS3Client) -> None:
    payload = bytes(range(256)) * 4
    cos.put_object(Bucket=BUCKET, Key="range.bin", Body=payload)
    response, data = _read(cos, "range.bin", Range="bytes=10-19")
    assert data == payload[10:20]
    assert response["Content-Range"] == f"bytes 10-19/{len(payload)}"
    assert response["Content-Length"] == "10"
    _, tail = _read(cos, "range.bin", Range="bytes=-5")
    assert tail == payload[-5:]
    with pytest.raises(CosServiceError) as info:
        cos.get_object(Bucket=BUCKET, Key="range.bin", Range="bytes=5000-6000")
    assert info.value.get_status_code() == 416


@pytest.mark.parametrize(
    "key",
    ["dir/a b+c.txt", "中文/文件 1%.txt", "plus+and=equals&amp;.txt", "trailing space ", "tilde~/x.y"],
)
def test_awkward_keys_roundtrip_and_list_back(cos: CosS3Client, key: str) -> None:
    body = key.encode("utf-8")
    cos.put_object(Bucket=BUCKET, Key=key, Body=body)
    assert _read(cos, key)[1] == body
    listed = cos.list_objects(Bucket=BUCKET, Prefix=key)
    assert [c["Key"] for c in listed.get("Contents", [])] == [key]


def test_chunked_put_from_generator(cos: CosS3Client) -> None:
    chunks = [b"a" * 1000, b"b" * 3000, b"c"]
    cos.put_object(Bucket=BUCKET, Key="gen/chunked.bin", Body=(c for c in chunks))
    head = cos.head_object(Bucket=BUCKET, Key="gen/chunked.bin")
    assert head["Content-Length"] == "4001"
    assert _read(cos, "gen/chunked.bin")[1] == b"".join(chunks)


def test_wrong_secret_key_is_signature_does_not_match(emulator: RunningEmulator) -> None:
    bad = _client(emulator, secret_key="not-the-key")
    with pytest.raises(CosServiceError) as info:
        bad.put_object(Bucket=BUCKET, Key="x.txt", Body=b"x")
    assert info.value.get_status_code() == 403
    assert info.value.get_error_code() == "SignatureDoesNotMatch"


def test_anonymous_request_is_access_denied(emulator: RunningEmulator) -> None:
    host, port = emulator.endpoint.rsplit(":", 1)
    anon = CosS3Client(
        CosConfig(Region=REGION, Anonymous=True, Scheme="http", IP=host, Port=int(port), Timeout=10), retry=0
    )
    with pytest.raises(CosServiceError) as info:
        anon.list_objects(Bucket=BUCKET)
    assert info.value.get_error_code() == "AccessDenied"


def test_list_2500_keys_pages_of_1000(cos: CosS3Client) -> None:
    bucket = "paging-1250000000"
    keys = [f"p/{i:05d}.jpg" for i in range(2500)]
    cos.create_bucket(Bucket=bucket)
    for key in keys:
        cos.put_object(Bucket=bucket, Key=key, Body=b"")
    seen: list[str] = []
    pages = 0
    marker = ""
    while True:
        resp = cos.list_objects(Bucket=bucket, Prefix="p/", Marker=marker, MaxKeys=1000)
        pages += 1
        seen.extend(c["Key"] for c in resp.get("Contents", []))
        if resp["IsTruncated"] == "false":
            assert "NextMarker" not in resp
            break
        assert resp["IsTruncated"] == "true"
        marker = resp["NextMarker"]
    assert pages == 3
    assert seen == keys
    # max-keys above 1000 is clamped to 1000
    assert len(cos.list_objects(Bucket=bucket, MaxKeys=5000)["Contents"]) == 1000


def test_list_with_delimiter_common_prefixes_and_paging(cos: CosS3Client) -> None:
    bucket = "delim-1250000000"
    cos.create_bucket(Bucket=bucket)
    for key in ["a/1.jpg", "a/b/2.jpg", "a/b/3.jpg", "a/c/4.jpg", "a/5.jpg", "z.jpg"]:
        cos.put_object(Bucket=bucket, Key=key, Body=b"1")
    seen_keys: list[str] = []
    seen_prefixes: list[str] = []
    marker = ""
    while True:
        resp = cos.list_objects(Bucket=bucket, Prefix="a/", Delimiter="/", Marker=marker, MaxKeys=1)
        seen_keys += [c["Key"] for c in resp.get("Contents", [])]
        seen_prefixes += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        if "NextMarker" not in resp:  # the demo/dir_download_demo.py loop style
            break
        marker = resp["NextMarker"]
    assert seen_keys == ["a/1.jpg", "a/5.jpg"]
    assert seen_prefixes == ["a/b/", "a/c/"]


def test_multi_delete(cos: CosS3Client) -> None:
    for key in ("md/1", "md/2"):
        cos.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    result = cos.delete_objects(
        Bucket=BUCKET, Delete={"Quiet": "false", "Object": [{"Key": "md/1"}, {"Key": "md/2"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["md/1", "md/2"]
    assert "Contents" not in cos.list_objects(Bucket=BUCKET, Prefix="md/")


def test_path_traversal_keys_stay_inside_the_data_dir(cos: CosS3Client, data_dir: Path) -> None:
    outside = data_dir.parent / "escaped.txt"
    evil = [
        "../../escaped.txt",
        "..\\..\\escaped.txt",
        "/etc/passwd-copy",
        "a/../../../escaped.txt",
        "./x/./y",
    ]
    for key in evil:
        cos.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    for key in evil:
        assert _read(cos, key)[1] == key.encode()
    assert not outside.exists()
    root = data_dir.resolve()
    for dirpath, _dirs, files in os.walk(data_dir):
        for name in files:
            assert (Path(dirpath) / name).resolve().is_relative_to(root)
    # NUL and other control characters are refused outright
    with pytest.raises(CosServiceError) as info:
        cos.put_object(Bucket=BUCKET, Key="bad\x01key", Body=b"x")
    assert info.value.get_error_code() == "InvalidArgument"


def test_key_too_long(cos: CosS3Client) -> None:
    with pytest.raises(CosServiceError) as info:
        cos.put_object(Bucket=BUCKET, Key="k" * 851, Body=b"x")
    assert info.value.get_error_code() == "KeyTooLongError"


def test_presigned_url_from_emulator_works_with_plain_requests(
    emulator: RunningEmulator, cos: CosS3Client
) -> None:
    cos.put_object(Bucket=BUCKET, Key="signed/a b.jpg", Body=b"signed-bytes")
    base = f"http://{emulator.endpoint}"
    url = presign_url(base, BUCKET, "signed/a b.jpg", SECRET_ID, SECRET_KEY, expires=600)
    assert url.startswith(f"{base}/{BUCKET}/signed/a%20b.jpg?q-sign-algorithm=sha1&")
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"signed-bytes"
    # tampering with the key invalidates the signature
    tampered = url.replace("a%20b.jpg", "other.jpg")
    assert requests.get(tampered, timeout=10).status_code == 403
    # an expired URL is refused
    old = presign_url(base, BUCKET, "signed/a b.jpg", SECRET_ID, SECRET_KEY, expires=10, now=1_000_000)
    refused = requests.get(old, timeout=10)
    assert refused.status_code == 403
    assert b"<Code>AccessDenied</Code>" in refused.content


def test_download_file_with_crc_check(cos: CosS3Client, tmp_path: Path) -> None:
    payload = os.urandom(50_000)
    cos.put_object(Bucket=BUCKET, Key="dl/blob.bin", Body=payload)
    target = tmp_path / "blob.bin"
    cos.download_file(Bucket=BUCKET, Key="dl/blob.bin", DestFilePath=str(target), EnableCRC=True)
    assert target.read_bytes() == payload
    assert cos.head_object(Bucket=BUCKET, Key="dl/blob.bin")["x-cos-hash-crc64ecma"] == str(
        crc64ecma(payload)
    )


def test_objects_survive_a_restart(data_dir: Path) -> None:
    first = start(
        EmulatorConfig(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir / "restart",
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
        )
    )
    try:
        _client(first).create_bucket(Bucket=BUCKET)
        _client(first).put_object(Bucket=BUCKET, Key="persist/me.txt", Body=b"still here")
    finally:
        first.stop()
    second = start(
        EmulatorConfig(
            host="127.0.0.1",
            port=0,
            data_dir=data_dir / "restart",
            secret_id=SECRET_ID,
            secret_key=SECRET_KEY,
        )
    )
    try:
        client = _client(second)
        assert _read(client, "persist/me.txt")[1] == b"still here"
        assert [c["Key"] for c in client.list_objects(Bucket=BUCKET)["Contents"]] == ["persist/me.txt"]
    finally:
        second.stop()


def test_multipart_upload_is_refused_clearly(cos: CosS3Client) -> None:
    with pytest.raises(CosServiceError) as info:
        cos.create_multipart_upload(Bucket=BUCKET, Key="big.bin")
    assert info.value.get_error_code() == "NotImplemented"
    assert "put_object" in info.value.get_error_msg()


# -- headers as COS sends them (issue 11 item 5; doc 436/7729 common response headers) ----------------
def test_standard_objects_carry_no_storage_class_header(cos: CosS3Client) -> None:
    cos.put_object(Bucket=BUCKET, Key="standard/a.txt", Body=b"abc")
    head = cos.head_object(Bucket=BUCKET, Key="standard/a.txt")
    got = cos.get_object(Bucket=BUCKET, Key="standard/a.txt")
    for headers in (head, got):
        assert "x-cos-storage-class" not in {k.lower() for k in headers}  # COS omits it for STANDARD
        assert headers["ETag"] and headers["x-cos-request-id"]
    listed = cos.list_objects(Bucket=BUCKET, Prefix="standard/")["Contents"]
    assert listed[0]["StorageClass"] == "STANDARD"  # the listing still names the class


def test_head_404_trace_id_comes_from_the_header(cos: CosS3Client) -> None:
    with pytest.raises(CosServiceError) as info:
        cos.head_object(Bucket=BUCKET, Key="no/such/object.png")
    err = info.value
    assert (err.get_status_code(), err.get_error_code()) == (404, "NoSuchResource")
    assert err.get_request_id()
    assert err.get_trace_id()  # KeyError before: the SDK reads x-cos-trace-id for a HEAD error
    assert cos.object_exists(Bucket=BUCKET, Key="no/such/object.png") is False


def test_every_error_has_a_trace_id_header_matching_the_body(emulator: RunningEmulator) -> None:
    url = presign_url(f"http://{emulator.endpoint}", BUCKET, "no/such.txt", SECRET_ID, SECRET_KEY)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 404
    assert f"<TraceId>{resp.headers['x-cos-trace-id']}</TraceId>" in resp.text
    unsigned = requests.get(f"http://{emulator.endpoint}/{BUCKET}/x.txt", timeout=10)
    assert unsigned.status_code == 403 and unsigned.headers["x-cos-trace-id"]
    _client(emulator).put_object(Bucket=BUCKET, Key="traced/ok.txt", Body=b"ok")
    ok = requests.get(
        presign_url(f"http://{emulator.endpoint}", BUCKET, "traced/ok.txt", SECRET_ID, SECRET_KEY), timeout=10
    )
    assert ok.status_code == 200 and "x-cos-trace-id" not in ok.headers  # COS sends it on errors
