"""CosHook: COS (Cloud Object Storage) access on a ``tencentcloud`` connection — list, exists, read, write.

What the operators need from COS around MPS: list a partition's images, skip outputs that exist, read
and write the batch manifest and progress. Through ``qcloud_cos`` (cos-python-sdk-v5) with the
connection's credentials (a refreshing default-chain provider is handed to the SDK as is) and, when the
connection sets an ``endpoint``, the SDK's ``IP=``/``Port=`` mode (the emulator, a private gateway).
The connection's ``ca_bundle`` becomes ``CosConfig(VerifySSL=<path>)`` (requests' ``verify``: a CA
bundle path; cos-python-sdk-v5 >= 1.9.33 — 1.9.31/1.9.32 only accept ``False``, and before 1.9.33 the
IP mode turned verification off over https) and its ``proxy`` ``CosConfig(Proxies=…)``.

Retries are ours, as for MPS (the SDK's are off): COS throttling (503 ``SlowDown``) and transient
failures are retried with the base hook's backoff policy; a 404 on HEAD is an answer, not an error;
every other failure maps to the provider's typed errors (:func:`~airflow_mps.hooks.failures.classify_cos_failure`).
``qcloud_cos`` is imported when the first client is built, never at module import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from airflow_mps.hooks._retry import RetryClock
from airflow_mps.hooks.base import TencentCloudBaseHook, quiet_sdk_loggers
from airflow_mps.hooks.failures import classify_cos_failure

__all__ = ["CosHook", "CosObject"]

log = logging.getLogger(__name__)

#: Keys per ListObjects page (the COS maximum).
LIST_PAGE_SIZE = 1000


@dataclass(frozen=True)
class CosObject:
    """One object of a COS listing (``key`` is unquoted, without a leading slash)."""

    key: str
    size: int
    etag: str
    last_modified: str


def _cos_object(item: dict[str, Any]) -> CosObject:
    key = item["Key"]
    return CosObject(
        key=key.lstrip("/") if key.startswith("/") else key,
        size=int(item.get("Size") or 0),
        etag=str(item.get("ETag") or "").strip('"'),
        last_modified=str(item.get("LastModified") or ""),
    )


def _next_marker(response: dict[str, Any]) -> str:
    """Where the next ListObjects page starts; empty when this page was the last."""
    if str(response.get("IsTruncated", "false")).lower() != "true":
        return ""
    return str(response.get("NextMarker") or (response.get("Contents") or [{}])[-1].get("Key", ""))


class CosHook(TencentCloudBaseHook):
    """COS access for one ``tencentcloud`` connection (the bucket's region defaults to the connection's).

    Arguments as :class:`~airflow_mps.hooks.base.TencentCloudBaseHook` (connection id, region, retry
    bounds). ``MpsHook`` reaches the CosHook of its own connection as ``MpsHook.cos`` (settings shared).
    """

    hook_name = "Tencent Cloud COS"

    def get_conn(self) -> Any:
        """The ``CosS3Client`` of the calling thread for the hook's region (BaseHook API)."""
        return self._cos_client(None)

    def _cos_client(self, region: str | None) -> Any:
        """A ``CosS3Client`` for ``region`` (IP/Port mode when the connection sets an endpoint)."""
        settings = self.get_settings()
        region = region or settings.region
        # One client per region and thread: a CosS3Client's requests session is not shared by threads.
        clients: dict[str, Any] | None = getattr(self._local, "cos_clients", None)
        if clients is None:
            clients = self._local.cos_clients = {}
        client = clients.get(region)
        if client is None:
            from qcloud_cos import CosConfig, CosS3Client

            quiet_sdk_loggers()
            kwargs: dict[str, Any] = {
                "Region": region,
                "Scheme": settings.protocol,
                "Timeout": settings.request_timeout,
            }
            if settings.provider is not None:
                kwargs["CredentialInstance"] = settings.provider
            else:
                secret_id, secret_key, token = settings.credential_triplet()
                kwargs.update(SecretId=secret_id, SecretKey=secret_key, Token=token)
            if settings.endpoint:
                kwargs["IP"] = settings.host
                kwargs["Port"] = settings.port or (443 if settings.protocol == "https" else 80)
            if settings.ca_bundle:
                kwargs["VerifySSL"] = settings.ca_bundle
            if settings.proxy:
                kwargs["Proxies"] = {"http": settings.proxy, "https": settings.proxy}
            client = clients[region] = CosS3Client(CosConfig(**kwargs), retry=0)  # retries are ours
        return client

    def _cos_call(
        self, what: str, func: Callable[[], Any], *, treat_404: Callable[[], Any] | None = None
    ) -> Any:
        """Run one COS request under the retry policy; ``treat_404`` answers a 404 instead of raising."""
        clock = RetryClock(self.retry_policy)
        while True:
            try:
                return func()
            except Exception as exc:
                name = type(exc).__name__
                if name not in ("CosServiceError", "CosClientError"):
                    raise
                error: Any = exc  # duck-typed: qcloud_cos is imported lazily
                if treat_404 is not None and name == "CosServiceError" and error.get_status_code() == 404:
                    return treat_404()
                failure = classify_cos_failure(exc)
                if not (failure.throttled or failure.error.retryable):
                    raise failure.error from None
                delay = clock.next_delay()
                if delay is None:
                    raise failure.error from None
                log.warning("COS %s failed (%s); retrying in %.2fs", what, failure.error, delay)
            time.sleep(delay)

    def list_objects(self, bucket: str, prefix: str = "", region: str | None = None) -> Iterator[CosObject]:
        """Every object under ``prefix`` (paged with Marker; keys come back unquoted)."""
        client = self._cos_client(region)
        marker = ""
        while True:
            response = self._cos_call(
                f"ListObjects {bucket}/{prefix}",
                partial(
                    client.list_objects, Bucket=bucket, Prefix=prefix, Marker=marker, MaxKeys=LIST_PAGE_SIZE
                ),
            )
            yield from map(_cos_object, response.get("Contents") or [])
            marker = _next_marker(response)
            if not marker:
                return

    def object_exists(self, bucket: str, key: str, region: str | None = None) -> bool:
        """True when ``key`` exists in ``bucket`` (HEAD)."""
        client = self._cos_client(region)
        return bool(
            self._cos_call(
                f"HeadObject {bucket}/{key}",
                lambda: client.head_object(Bucket=bucket, Key=key) is not None,
                treat_404=lambda: False,
            )
        )

    def read_object(self, bucket: str, key: str, region: str | None = None) -> bytes:
        """The whole object body."""
        client = self._cos_client(region)

        def _get() -> bytes:
            response = client.get_object(Bucket=bucket, Key=key)
            body: bytes = response["Body"].get_raw_stream().read()
            return body

        body: bytes = self._cos_call(f"GetObject {bucket}/{key}", _get)
        return body

    def write_object(
        self,
        bucket: str,
        key: str,
        data: bytes | str,
        content_type: str | None = None,
        region: str | None = None,
    ) -> str:
        """Write (overwrite) ``key``; returns the ETag. A PUT of the same bytes is idempotent, so retried."""
        client = self._cos_client(region)
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        extra = {"ContentType": content_type} if content_type else {}
        response = self._cos_call(
            f"PutObject {bucket}/{key}",
            lambda: client.put_object(Bucket=bucket, Key=key, Body=payload, **extra),
        )
        return str((response or {}).get("ETag", "")).strip('"')
