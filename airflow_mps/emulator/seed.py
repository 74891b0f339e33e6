"""`airflow-mps-emulator seed`: copy a local folder of images into a bucket prefix of a data dir.

Why a command: the emulator stores objects content-addressed (`cos/models.py`), so files cannot simply
be dropped into the data dir. This walks a folder (recursively, skipping hidden files and folders),
keeps each file's path relative to the folder under the prefix, and sets Content-Type from the suffix.

Where the bytes go depends on who owns the data dir (`datadir`):

- a server is running on it → through that server's COS API, signed by cos-python-sdk-v5 with the
  credentials given (flags / ``MPS_EMULATOR_SECRET_*`` env, like the server's), because the server keeps
  an in-memory index that bytes written behind its back would never enter;
- nobody → straight into the data dir through `CosBackend` (atomic writes), holding the data dir lock
  so that a server starting meanwhile waits until every object is on disk.
"""

from __future__ import annotations

import mimetypes
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_mps.emulator.cos.errors import CosError
from airflow_mps.emulator.cos.models import validate_bucket_name, validate_key
from airflow_mps.emulator.datadir import DataDirLock, read_holder

#: Content types by suffix, checked before `mimetypes` (whose table depends on the machine: .webp is
#: missing on some), so the same folder seeds the same way everywhere.
CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".gif": "image/gif",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".avif": "image/avif",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".jsonl": "application/x-ndjson",
    ".txt": "text/plain",
    ".csv": "text/csv",
}


class SeedError(Exception):
    """The seed cannot be done as asked (bad destination, empty folder, refused upload, ...)."""


def content_type_for(name: str) -> str:
    """Content-Type of a file by its suffix (case-insensitive); ``application/octet-stream`` if unknown."""
    suffix = os.path.splitext(name)[1].lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def parse_destination(uri: str) -> tuple[str, str]:
    """``cos://bucket/prefix`` → (bucket, prefix). A non-empty prefix always ends with ``/``: it is a folder."""
    if not uri.startswith("cos://"):
        raise SeedError(f"the destination must look like cos://<bucket>-<appid>/<prefix>/, got {uri!r}")
    bucket, _, prefix = uri[len("cos://") :].partition("/")
    try:
        validate_bucket_name(bucket)
    except CosError as exc:
        raise SeedError(exc.message) from None
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return bucket, prefix


@dataclass(frozen=True)
class SeedFile:
    """One local file and the key it is stored under."""

    path: Path
    key: str
    content_type: str


def collect(source: Path, prefix: str) -> list[SeedFile]:
    """Every regular file under ``source`` (or ``source`` itself), sorted by key; hidden entries skipped."""
    if source.is_file():
        found: Iterator[tuple[Path, str]] = iter([(source, source.name)])
    elif source.is_dir():
        found = _walk(source)
    else:
        raise SeedError(f"{source} is neither a file nor a folder")
    files = []
    for path, rel in found:
        key = prefix + rel
        try:
            validate_key(key)
        except CosError as exc:
            raise SeedError(f"{path}: cannot be stored as {key!r}: {exc.message}") from None
        files.append(SeedFile(path, key, content_type_for(path.name)))
    if not files:
        raise SeedError(f"no files to seed under {source} (hidden files and folders are skipped)")
    return sorted(files, key=lambda f: f.key.encode("utf-8"))


def _walk(root: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file():
                continue
            yield path, path.relative_to(root).as_posix()


@dataclass
class SeedResult:
    """What was seeded, and how: ``via`` is ``"server"`` (HTTP, signed) or ``"direct"`` (data dir)."""

    bucket: str
    prefix: str
    via: str
    where: str
    objects: list[tuple[str, int, str]] = field(default_factory=list)  # (key, size, content type)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.objects)


def seed(
    source: str | os.PathLike[str],
    destination: str,
    *,
    data_dir: str | os.PathLike[str],
    secret_id: str | None = None,
    secret_key: str,
    token: str | None = None,
    wait: float = 30.0,
    progress: Callable[[str, int, str], None] | None = None,
) -> SeedResult:
    """Seed ``source`` into ``destination`` (``cos://bucket/prefix/``) of the emulator data dir ``data_dir``.

    Through the running server when one holds the data dir, else directly (module docstring).
    ``secret_id`` None means the running server's own SecretId. ``progress(key, size, content_type)`` is
    called after each object; ``wait`` bounds how long a server that is starting up (or another seed) may
    keep the data dir before this gives up.
    """
    bucket, prefix = parse_destination(destination)
    files = collect(Path(source), prefix)
    data_dir = Path(data_dir).resolve()
    lock = DataDirLock(data_dir)
    deadline = time.monotonic() + wait
    while True:
        if lock.try_acquire({"role": "seed"}):
            try:
                return _seed_direct(files, bucket, prefix, data_dir, progress)
            finally:
                lock.release()
        holder = read_holder(data_dir)
        if holder and holder.get("role") == "server" and holder.get("endpoint"):
            return _seed_via_server(files, bucket, prefix, holder, secret_id, secret_key, token, progress)
        if time.monotonic() > deadline:
            raise SeedError(
                f"the data dir {data_dir} stayed locked by {holder or 'another process'} for {wait:g} s"
            )
        time.sleep(0.05)


def _seed_direct(
    files: list[SeedFile],
    bucket: str,
    prefix: str,
    data_dir: Path,
    progress: Callable[[str, int, str], None] | None,
) -> SeedResult:
    from airflow_mps.emulator.cos.models import CosBackend

    backend = CosBackend(data_dir / "cos")
    result = SeedResult(bucket, prefix, "direct", str(data_dir))
    for item in files:
        data = item.path.read_bytes()
        backend.put_object(bucket, item.key, data, item.content_type, create_bucket=True)
        result.objects.append((item.key, len(data), item.content_type))
        if progress is not None:
            progress(item.key, len(data), item.content_type)
    return result


def _seed_via_server(
    files: list[SeedFile],
    bucket: str,
    prefix: str,
    holder: dict[str, Any],
    secret_id: str | None,
    secret_key: str,
    token: str | None,
    progress: Callable[[str, int, str], None] | None,
) -> SeedResult:
    from qcloud_cos import CosConfig, CosS3Client
    from qcloud_cos.cos_exception import CosClientError, CosServiceError

    endpoint = str(holder["endpoint"])
    host, _, port = endpoint.rpartition(":")
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    scheme = str(holder.get("scheme") or "http")
    options: dict[str, Any] = {
        "Region": str(holder.get("region") or "ap-guangzhou"),
        "SecretId": secret_id or str(holder.get("secret_id") or ""),
        "SecretKey": secret_key,
        "Scheme": scheme,
        "IP": host,
        "Port": int(port),
        "Timeout": 30,
    }
    if token:
        options["Token"] = token
    if holder.get("tls_cert"):
        options["VerifySSL"] = str(holder["tls_cert"])
    client = CosS3Client(CosConfig(**options), retry=1)
    where = f"{scheme}://{endpoint}"
    result = SeedResult(bucket, prefix, "server", where)
    for item in files:
        data = item.path.read_bytes()
        try:
            if not result.objects:
                _create_bucket(client, bucket)
            client.put_object(Bucket=bucket, Key=item.key, Body=data, ContentType=item.content_type)
        except CosServiceError as exc:
            hint = ""
            if exc.get_error_code() in (
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AccessDenied",
                "InvalidToken",
                "MissingSecurityHeader",
            ):
                hint = (
                    " — pass the server's credentials: --secret-id/--secret-key/--token or "
                    "MPS_EMULATOR_SECRET_ID/_SECRET_KEY/_TOKEN"
                )
            raise SeedError(
                f"the emulator at {where} refused {item.key!r}: {exc.get_error_code()} {exc.get_error_msg()}{hint}"
            ) from None
        except CosClientError as exc:
            raise SeedError(
                f"could not reach the emulator at {where} while seeding {item.key!r}: {exc}"
            ) from None
        result.objects.append((item.key, len(data), item.content_type))
        if progress is not None:
            progress(item.key, len(data), item.content_type)
    return result


def _create_bucket(client: Any, bucket: str) -> None:
    """PUT Bucket unless it exists: a PUT Object never creates one (COS, and the emulator: NoSuchBucket).

    Not ``bucket_exists``: a HEAD error has no body, so a refused signature would lose its code.
    """
    from qcloud_cos.cos_exception import CosServiceError

    try:
        client.create_bucket(Bucket=bucket)
    except CosServiceError as exc:
        if exc.get_error_code() not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise


__all__ = [
    "CONTENT_TYPES",
    "SeedError",
    "SeedFile",
    "SeedResult",
    "collect",
    "content_type_for",
    "parse_destination",
    "seed",
]
