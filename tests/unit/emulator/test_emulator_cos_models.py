"""CosBackend: listing semantics, containment, atomicity, persistence, index (no disk per list)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from airflow_mps.emulator.cos.errors import (
    CosInvalidBucketName,
    CosKeyTooLong,
    CosNoSuchBucket,
    CosNoSuchKey,
)
from airflow_mps.emulator.cos.models import CosBackend, crc64ecma

B = "photos-1250000000"


def test_crc64_matches_cos_reference_values() -> None:
    assert crc64ecma(b"123456789") == 0x995DC9BBDF1939FA
    assert crc64ecma(b"hello world") == 5981764153023615706
    assert crc64ecma(b"world", crc64ecma(b"hello ")) == crc64ecma(b"hello world")


def test_missing_bucket_and_key(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    with pytest.raises(CosNoSuchBucket):
        backend.get_object(B, "k")
    backend.create_bucket(B)
    with pytest.raises(CosNoSuchKey):
        backend.head_object(B, "k")
    with pytest.raises(CosInvalidBucketName):
        backend.put_object("../evil", "k", b"")
    with pytest.raises(CosInvalidBucketName):
        backend.put_object("NoAppid", "k", b"")
    with pytest.raises(CosKeyTooLong):
        backend.put_object(B, "é" * 426, b"")  # 852 UTF-8 bytes


def test_a_write_never_creates_a_bucket_unless_asked(tmp_path: Path) -> None:
    """COS answers a PUT Object into a missing bucket with NoSuchBucket (404): so does the backend,
    unless the write (or the whole backend, the emulator's lenient mode) asks for the old behaviour."""
    backend = CosBackend(tmp_path)
    with pytest.raises(CosNoSuchBucket) as caught:
        backend.put_object(B, "k", b"1")
    assert (caught.value.code, caught.value.status) == ("NoSuchBucket", 404)
    assert not backend.bucket_exists(B) and backend.list_buckets() == []
    backend.put_object(B, "k", b"1", create_bucket=True)
    assert backend.get_object(B, "k").data == b"1"
    lenient = CosBackend(tmp_path / "lenient", auto_create_buckets=True)
    lenient.put_object(B, "k", b"2")
    assert lenient.list_buckets() == [B]
    with pytest.raises(CosNoSuchBucket):
        lenient.put_object("other-1250000000", "k", b"2", create_bucket=False)


def test_listing_order_is_utf8_bytes_and_marker_exclusive(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    backend.create_bucket(B)
    keys = ["b", "a", "é", "Z", "a/b", "a0", "\uffff", "\U0001f600"]
    for k in keys:
        backend.put_object(B, k, b"1")
    listed = [m.key for m in backend.list_objects(B).contents]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
    after = [m.key for m in backend.list_objects(B, marker="a").contents]
    assert after == listed[listed.index("a") + 1 :]


def test_delimiter_rollup_counts_toward_max_keys(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    backend.create_bucket(B)
    for k in ["p/1", "p/d/1", "p/d/2", "p/e/1", "p/2", "q"]:
        backend.put_object(B, k, b"")
    page = backend.list_objects(B, prefix="p/", delimiter="/", max_keys=3)
    assert [m.key for m in page.contents] == ["p/1", "p/2"]  # '2' sorts before 'd'
    assert page.common_prefixes == ("p/d/",)
    assert page.is_truncated and page.next_marker == "p/d/"
    page2 = backend.list_objects(B, prefix="p/", delimiter="/", marker="p/d/", max_keys=3)
    assert page2.contents == () and page2.common_prefixes == ("p/e/",)  # p/d/* not repeated
    assert not page2.is_truncated and page2.next_marker is None


def test_ten_thousand_keys_list_from_the_index(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    backend.create_bucket(B)
    for i in range(10_000):
        backend.put_object(B, f"k/{i:05d}", b"")
    reads_before = backend.disk_reads
    seen = 0
    pages = 0
    marker = ""
    while True:
        page = backend.list_objects(B, prefix="k/", marker=marker, max_keys=1000)
        seen += len(page.contents)
        pages += 1
        if not page.is_truncated:
            break
        marker = page.next_marker or ""
    assert (seen, pages) == (10_000, 10)
    assert backend.disk_reads == reads_before  # listing touched no file


def test_persistence_and_crash_leftovers(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    backend.create_bucket(B)
    backend.put_object(B, "a.jpg", b"old", "image/jpeg", metadata={"x-cos-meta-A": "1"})
    backend.put_object(B, "a.jpg", b"new", "image/jpeg")
    objects = tmp_path / B / "objects"
    # simulate a crash mid-write: a temp file and an orphan data file nobody references
    (objects / "deadbeef.json.tmp").write_text("{half", "utf-8")
    (objects / "cafebabe.0.data").write_bytes(b"orphan")
    reopened = CosBackend(tmp_path)
    obj = reopened.get_object(B, "a.jpg")
    assert obj.data == b"new" and obj.meta.content_type == "image/jpeg"
    assert sorted(p.suffix for p in objects.iterdir()) == [".data", ".json"]  # one object, no leftovers


def test_keys_never_become_paths(tmp_path: Path) -> None:
    root = tmp_path / "cos"
    backend = CosBackend(root)
    backend.create_bucket(B)
    for key in ["../../x", "/abs/path", "a\\b\\..\\..\\c", "..", ".", "~", "con", "a" * 800]:
        backend.put_object(B, key, key.encode())
        assert backend.get_object(B, key).data == key.encode()
    assert sorted(os.listdir(tmp_path)) == ["cos"]
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            assert (Path(dirpath) / name).resolve().is_relative_to(root.resolve())


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    backend = CosBackend(tmp_path)
    backend.create_bucket(B)
    backend.put_object(B, "shared", b"0" * 1000)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                backend.put_object(B, "shared", bytes([48 + n]) * 1000)
                backend.put_object(B, f"w{n}/{i}", b"x")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(60):
                data = backend.get_object(B, "shared").data
                assert len(data) == 1000 and len(set(data)) == 1  # never a torn object
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)] + [
        threading.Thread(target=reader) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(backend.list_objects(B, prefix="w").contents) == 120
    assert len(list((tmp_path / B / "objects").glob("*.data"))) == 121
