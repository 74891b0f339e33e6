"""COS emulator backend: buckets and objects on disk, with an in-memory index for listing.

This is the *state* half of the COS emulator (the wire half is `cos/responses.py`). The MPS side of
the emulator uses it directly to read task inputs and write task outputs, so it speaks plain Python
(bytes, dataclasses, exceptions) and knows nothing about HTTP.

Layout under ``root_dir`` (the server passes ``<data_dir>/cos``)::

    <root_dir>/<bucket>/.bucket                 marker: the bucket exists
    <root_dir>/<bucket>/objects/<h>.json        metadata of one object (the commit point)
    <root_dir>/<bucket>/objects/<h>.<n>.data    its bytes (a new file per write)

``<h>`` is the SHA-256 hex digest of the UTF-8 key, so no key (``..``, absolute paths, NUL,
backslashes, very long names, unicode) ever becomes a path component: nothing written can escape
``root_dir``. A write stores the bytes in a fresh ``.data`` file, then atomically replaces the
``.json`` (temp file + ``os.replace``) that names it, then removes the previous data file. A crash
at any point leaves either the old object or the new one, never half of one; orphaned data and temp
files are swept when the bucket is loaded.

Listing never touches the disk: each bucket keeps its keys in a list sorted by UTF-8 byte order
(COS's order) plus a dict of metadata, loaded once per bucket (lazily) and updated on every write;
`cos/listing.py` computes a page from them.
All public methods are thread-safe (one re-entrant lock per backend; file I/O of object bodies
happens outside it).

Buckets exist only once created (``create_bucket``: PUT Bucket, or the ``seed`` command): a write
into a missing bucket is ``CosNoSuchBucket``, as real COS answers a PUT Object there (404
``NoSuchBucket``), unless the backend was made with ``auto_create_buckets=True`` (the emulator's
``lenient`` mode; docs/emulator-fidelity.md).

Public API (see docs/internals.md): ``CosBackend(root_dir)`` with ``create_bucket``,
``bucket_exists``, ``delete_bucket``, ``list_buckets``, ``put_object``, ``get_object``,
``head_object``, ``delete_object``, ``list_objects``; errors are the ``CosError`` subclasses of
`cos/errors.py`, carrying the COS error code and HTTP status (``CosNoSuchKey``, ``CosNoSuchBucket``, ...).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airflow_mps.emulator.cos.errors import (
    CosBucketAlreadyExists,
    CosBucketNotEmpty,
    CosError,
    CosInvalidArgument,
    CosInvalidBucketName,
    CosKeyTooLong,
    CosNoSuchBucket,
    CosNoSuchKey,
)
from airflow_mps.emulator.cos.listing import MAX_LIST_KEYS, CosListResult, list_page

__all__ = [
    "MAX_KEY_BYTES",
    "CosBackend",
    "CosObjectData",
    "CosObjectMeta",
    "crc64ecma",
    "validate_bucket_name",
    "validate_key",
]

#: Longest object key COS accepts, in UTF-8 bytes.
MAX_KEY_BYTES = 850

# <name>-<appid>: lowercase letters, digits and '-', not starting/ending with '-', appid suffix.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]*-[0-9]+$")
_MAX_BUCKET_LEN = 50
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# CRC-64/ECMA-182 as COS reports it (x-cos-hash-crc64ecma): the reflected "XZ" variant.


def _make_crc64_table() -> tuple[int, ...]:
    poly = 0xC96C5795D7870F42  # 0x42F0E1EBA9EA3693 bit-reversed
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC64_TABLE = _make_crc64_table()
_MASK64 = 0xFFFFFFFFFFFFFFFF


def crc64ecma(data: bytes, crc: int = 0) -> int:
    """CRC-64/XZ of ``data`` (COS's ``x-cos-hash-crc64ecma``); ``crc`` continues a previous value.

    Stdlib only, so the emulator does not need crcmod. ``crc64ecma(b"123456789") == 0x995DC9BBDF1939FA``.
    """
    table = _CRC64_TABLE
    value = crc ^ _MASK64
    for byte in data:
        value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ _MASK64


# --------------------------------------------------------------------------------------------
# value types


def _json_int(value: object) -> int:
    """``int()`` of a number read from JSON; ``TypeError`` for anything that is not one (as ``int()``)."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _json_float(value: object) -> float:
    """``float()`` of a number read from JSON; ``TypeError`` for anything that is not one."""
    if isinstance(value, (int, float, str)):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _json_str_map(value: object) -> dict[str, str]:
    """A ``{str: str}`` object read from JSON (stored metadata / headers); ``TypeError`` otherwise."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    raise TypeError(f"expected an object, got {type(value).__name__}")


@dataclass(frozen=True)
class CosObjectMeta:
    """What COS knows about one object besides its bytes."""

    key: str
    size: int
    etag: str  # md5 hex, unquoted; the wire layer adds the quotes
    last_modified: float  # epoch seconds
    content_type: str = "application/octet-stream"
    crc64: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)  # lower-case x-cos-meta-* -> value
    headers: Mapping[str, str] = field(default_factory=dict)  # stored standard headers (Cache-Control, ...)
    storage_class: str = "STANDARD"

    def to_json(self, data_file: str) -> dict[str, object]:
        return {
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "content_type": self.content_type,
            "crc64": self.crc64,
            "metadata": dict(self.metadata),
            "headers": dict(self.headers),
            "storage_class": self.storage_class,
            "data_file": data_file,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> CosObjectMeta:
        return cls(
            key=str(raw["key"]),
            size=_json_int(raw["size"]),
            etag=str(raw["etag"]),
            last_modified=_json_float(raw["last_modified"]),
            content_type=str(raw.get("content_type") or "application/octet-stream"),
            crc64=_json_int(raw.get("crc64") or 0),
            metadata=_json_str_map(raw.get("metadata") or {}),
            headers=_json_str_map(raw.get("headers") or {}),
            storage_class=str(raw.get("storage_class") or "STANDARD"),
        )


@dataclass(frozen=True)
class CosObjectData:
    """An object's metadata and its bytes (``get_object``)."""

    meta: CosObjectMeta
    data: bytes

    @property
    def key(self) -> str:
        return self.meta.key

    @property
    def etag(self) -> str:
        return self.meta.etag

    @property
    def content_type(self) -> str:
        return self.meta.content_type


# --------------------------------------------------------------------------------------------
# validation


def validate_bucket_name(bucket: str) -> None:
    """Raise ``CosInvalidBucketName`` unless ``bucket`` looks like ``<name>-<appid>``."""
    if not isinstance(bucket, str) or len(bucket) > _MAX_BUCKET_LEN or not _BUCKET_RE.match(bucket):
        raise CosInvalidBucketName(
            f"The specified bucket name {bucket!r} is not valid: expected <name>-<appid> of lowercase "
            f"letters, digits and '-', at most {_MAX_BUCKET_LEN} characters (e.g. examplebucket-1250000000)."
        )


def validate_key(key: str) -> None:
    """Raise unless ``key`` is a storable object key (non-empty, <= 850 UTF-8 bytes, no control chars)."""
    if not isinstance(key, str) or key == "":
        raise CosInvalidArgument("The object key must not be empty.")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise CosInvalidArgument("The object key is not valid UTF-8.") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise CosKeyTooLong(f"Your key is too long: {len(encoded)} bytes, the limit is {MAX_KEY_BYTES}.")
    if _CONTROL_RE.search(key):
        raise CosInvalidArgument("The object key must not contain control characters (NUL, CR, LF, ...).")


# --------------------------------------------------------------------------------------------
# backend


class _Bucket:
    """In-memory index of one bucket: keys sorted by UTF-8 bytes + metadata by key."""

    __slots__ = ("data_files", "dir", "keys", "metas")

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.keys: list[bytes] = []
        self.metas: dict[str, CosObjectMeta] = {}
        self.data_files: dict[str, str] = {}


class CosBackend:
    """Buckets and objects stored under ``root_dir``; see the module docstring for the layout.

    ``clock`` (default ``time.time``) stamps Last-Modified; tests may inject one.
    ``auto_create_buckets`` makes ``put_object`` create a missing bucket (default: ``CosNoSuchBucket``,
    as COS).
    ``disk_reads`` counts metadata/data file reads, so tests can assert that listing is served from
    the index (a count, not a timing).
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        auto_create_buckets: bool = False,
    ) -> None:
        self.root = Path(root_dir).resolve()
        self.auto_create_buckets = auto_create_buckets
        self.root.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        self._counter = itertools.count()
        self.disk_reads = 0

    # ---- paths -------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        validate_bucket_name(bucket)  # the name is a safe single path component after this
        path = (self.root / bucket).resolve()
        if path.parent != self.root:  # defence in depth; cannot happen with a valid name
            raise CosInvalidBucketName(f"The specified bucket name {bucket!r} is not valid.")
        return path

    @staticmethod
    def _key_hash(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    # ---- bucket loading ----------------------------------------------------------------------

    def _load(self, bucket: str) -> _Bucket | None:
        """The bucket's index, loading it from disk on first use; None if it does not exist."""
        loaded = self._buckets.get(bucket)
        if loaded is not None:
            return loaded
        directory = self._bucket_dir(bucket)
        if not (directory / ".bucket").is_file():
            return None
        state = _Bucket(directory)
        objects = directory / "objects"
        objects.mkdir(exist_ok=True)
        referenced: set[str] = set()
        for meta_path in objects.glob("*.json"):
            try:
                raw = json.loads(meta_path.read_text("utf-8"))
                self.disk_reads += 1
                meta = CosObjectMeta.from_json(raw)
                data_file = str(raw["data_file"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # unreadable metadata: treat the object as absent
            if not (objects / data_file).is_file():
                continue
            referenced.add(data_file)
            state.metas[meta.key] = meta
            state.data_files[meta.key] = data_file
        state.keys = sorted(k.encode("utf-8") for k in state.metas)
        # Sweep leftovers of interrupted writes: temp files and data files no metadata names.
        for leftover in objects.iterdir():
            name = leftover.name
            if name.endswith(".tmp") or (name.endswith(".data") and name not in referenced):
                leftover.unlink(missing_ok=True)
        self._buckets[bucket] = state
        return state

    def _require(self, bucket: str) -> _Bucket:
        state = self._load(bucket)
        if state is None:
            raise CosNoSuchBucket(f"The specified bucket {bucket!r} does not exist.")
        return state

    # ---- buckets -----------------------------------------------------------------------------

    def create_bucket(self, bucket: str, *, exist_ok: bool = True) -> None:
        """Create ``bucket`` (idempotent unless ``exist_ok=False``, then ``CosBucketAlreadyExists``)."""
        with self._lock:
            if self._load(bucket) is not None:
                if not exist_ok:
                    raise CosBucketAlreadyExists(f"The requested bucket {bucket!r} already exists.")
                return
            directory = self._bucket_dir(bucket)
            (directory / "objects").mkdir(parents=True, exist_ok=True)
            (directory / ".bucket").write_text("", "utf-8")
            self._buckets[bucket] = _Bucket(directory)

    def bucket_exists(self, bucket: str) -> bool:
        try:
            with self._lock:
                return self._load(bucket) is not None
        except CosInvalidBucketName:
            return False

    def delete_bucket(self, bucket: str) -> None:
        """Remove an empty bucket (``CosBucketNotEmpty`` otherwise)."""
        with self._lock:
            state = self._require(bucket)
            if state.keys:
                raise CosBucketNotEmpty("The bucket you tried to delete is not empty.")
            (state.dir / ".bucket").unlink(missing_ok=True)
            for leftover in (state.dir / "objects").iterdir():
                leftover.unlink(missing_ok=True)
            (state.dir / "objects").rmdir()
            state.dir.rmdir()
            del self._buckets[bucket]

    def list_buckets(self) -> list[str]:
        with self._lock:
            names = [p.name for p in self.root.iterdir() if (p / ".bucket").is_file()]
        return sorted(names)

    # ---- objects -----------------------------------------------------------------------------

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        create_bucket: bool | None = None,
    ) -> str:
        """Store ``data`` under ``key`` atomically; returns the ETag (md5 hex, unquoted).

        A missing bucket is ``CosNoSuchBucket`` (real COS: 404 ``NoSuchBucket``) unless
        ``create_bucket=True``, or ``create_bucket`` is left ``None`` and the backend was made with
        ``auto_create_buckets=True``: then the write creates it. ``metadata`` holds ``x-cos-meta-*`` pairs (names are lower-cased);
        ``headers`` standard headers to hand back on GET (Cache-Control, Content-Disposition, ...).
        """
        validate_key(key)
        data = bytes(data)
        meta = CosObjectMeta(
            key=key,
            size=len(data),
            etag=hashlib.md5(data).hexdigest(),
            last_modified=self._clock(),
            content_type=content_type or "application/octet-stream",
            crc64=crc64ecma(data),
            metadata={k.lower(): str(v) for k, v in (metadata or {}).items()},
            headers=dict(headers or {}),
        )
        with self._lock:
            state = self._load(bucket)
            if state is None:
                if not (self.auto_create_buckets if create_bucket is None else create_bucket):
                    raise CosNoSuchBucket(f"The specified bucket {bucket!r} does not exist.")
                self.create_bucket(bucket)
                state = self._require(bucket)
            seq = next(self._counter)
        objects = state.dir / "objects"
        h = self._key_hash(key)
        data_file = f"{h}.{uuid.uuid4().hex}{seq}.data"
        tmp = objects / f"{data_file}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, objects / data_file)
        with self._lock:
            meta_tmp = objects / f"{h}.{seq}.json.tmp"
            meta_tmp.write_text(json.dumps(meta.to_json(data_file)), "utf-8")
            os.replace(meta_tmp, objects / f"{h}.json")  # commit point
            old = state.data_files.get(key)
            if key not in state.metas:
                bisect.insort(state.keys, key.encode("utf-8"))
            state.metas[key] = meta
            state.data_files[key] = data_file
        if old and old != data_file:
            (objects / old).unlink(missing_ok=True)
        return meta.etag

    def head_object(self, bucket: str, key: str) -> CosObjectMeta:
        """Metadata of ``key`` (``CosNoSuchBucket`` / ``CosNoSuchKey``)."""
        with self._lock:
            state = self._require(bucket)
            meta = state.metas.get(key)
        if meta is None:
            raise CosNoSuchKey("The specified key does not exist.")
        return meta

    def get_object(self, bucket: str, key: str) -> CosObjectData:
        """Metadata and bytes of ``key`` (``CosNoSuchBucket`` / ``CosNoSuchKey``)."""
        for _ in range(3):
            with self._lock:
                state = self._require(bucket)
                meta = state.metas.get(key)
                data_file = state.data_files.get(key)
            if meta is None or data_file is None:
                raise CosNoSuchKey("The specified key does not exist.")
            try:
                data = (state.dir / "objects" / data_file).read_bytes()
            except FileNotFoundError:
                continue  # replaced by a concurrent write between lookup and read: look again
            self.disk_reads += 1
            return CosObjectData(meta=meta, data=data)
        raise CosError("The object changed too often while being read; retry.", code="InternalError")

    def delete_object(self, bucket: str, key: str) -> bool:
        """Delete ``key``; True if it existed. Deleting a missing key is not an error (like COS)."""
        with self._lock:
            state = self._require(bucket)
            if key not in state.metas:
                return False
            objects = state.dir / "objects"
            (objects / f"{self._key_hash(key)}.json").unlink(missing_ok=True)  # commit point
            data_file = state.data_files.pop(key)
            del state.metas[key]
            encoded = key.encode("utf-8")
            index = bisect.bisect_left(state.keys, encoded)
            if index < len(state.keys) and state.keys[index] == encoded:
                del state.keys[index]
        (objects / data_file).unlink(missing_ok=True)
        return True

    def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        marker: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> CosListResult:
        """One page of keys in UTF-8 byte order, COS semantics (docs/reference cos-api.md §3).

        Keys strictly after ``marker`` starting with ``prefix``; with ``delimiter`` a key holding the
        delimiter after the prefix rolls up into a common prefix (each counts once toward
        ``max_keys``; prefixes ``<= marker`` are skipped so paging never repeats one). ``max_keys`` is
        clamped to 0..1000. ``next_marker`` (last key or prefix returned) is set only when truncated.
        Served from the in-memory index: no disk access.
        """
        max_keys = max(0, min(int(max_keys), MAX_LIST_KEYS))
        with self._lock:
            state = self._require(bucket)
            return list_page(
                bucket,
                state.keys,
                state.metas,
                prefix=prefix or "",
                delimiter=delimiter or "",
                marker=marker or "",
                max_keys=max_keys,
            )
