"""Turn a ``tencentcloud`` Airflow connection into client settings and credentials.

Pure parsing (no SDK import at module level) so it can be unit tested and reused by the sync and the
async path of the hook. Credential precedence:

1. the connection: login = SecretId, password = SecretKey, extra ``token``;
2. environment: ``TENCENTCLOUD_SECRET_ID`` / ``TENCENTCLOUD_SECRET_KEY`` (+ ``TENCENTCLOUD_TOKEN`` or
   ``TENCENTCLOUD_SESSION_TOKEN``);
3. the SDK's ``DefaultCredentialProvider`` chain: profile file ``~/.tencentcloud/credentials`` (or
   ``/etc/tencentcloud/credentials``), the CVM instance role, the TKE OIDC role.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_mps.errors import MpsAuthError, MpsValidationError

DEFAULT_REGION = "ap-guangzhou"
DEFAULT_PROCESS_IMAGE_RATE = 20.0
DEFAULT_REQUEST_TIMEOUT = 60
EXTRA_PREFIX = "extra__tencentcloud__"
ENV_SECRET_ID = "TENCENTCLOUD_SECRET_ID"
ENV_SECRET_KEY = "TENCENTCLOUD_SECRET_KEY"
ENV_TOKENS = ("TENCENTCLOUD_TOKEN", "TENCENTCLOUD_SESSION_TOKEN")


def get_extra(extras: Mapping[str, Any], name: str) -> Any:
    """Read one extra under its plain name or the legacy ``extra__tencentcloud__<name>`` form.

    Empty strings count as unset (the UI stores untouched fields as ``""``).
    """
    for key in (name, f"{EXTRA_PREFIX}{name}"):
        value = extras.get(key)
        if value not in (None, ""):
            return value
    return None


@dataclass(frozen=True)
class ClientSettings:
    """Everything the hook needs to build SDK clients. ``repr`` never shows a secret."""

    secret_id: str | None
    secret_key: str | None = field(repr=False)
    token: str | None = field(repr=False)
    region: str
    endpoint: str | None
    protocol: str
    request_timeout: int
    process_image_rate: float
    credential_source: str  # "connection", "environment" or "sdk-default-chain"
    #: The SDK credential provider object when credentials came from the default chain (CVM role
    #: credentials refresh themselves); ``None`` otherwise.
    provider: Any = field(default=None, repr=False, compare=False)

    @property
    def host(self) -> str | None:
        """Host part of ``endpoint`` (None when unset)."""
        if not self.endpoint:
            return None
        return self.endpoint.rsplit(":", 1)[0] if ":" in self.endpoint else self.endpoint

    @property
    def port(self) -> int | None:
        """Port part of ``endpoint`` (None when absent)."""
        if not self.endpoint or ":" not in self.endpoint:
            return None
        return int(self.endpoint.rsplit(":", 1)[1])

    @property
    def pacing_key(self) -> str:
        """Identity of the rate-limited account + service for the process-wide pacer."""
        return f"{self.secret_id or '?'}@{self.endpoint or 'mps.tencentcloudapi.com'}"

    def credential_triplet(self) -> tuple[str, str, str | None]:
        """Current (SecretId, SecretKey, token), asking the SDK provider again for refreshable roles."""
        if self.provider is not None:
            return self.provider.get_credential_info()
        assert self.secret_id is not None and self.secret_key is not None
        return self.secret_id, self.secret_key, self.token


def _parse_endpoint(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value).strip()
    for scheme in ("https://", "http://"):
        if text.startswith(scheme):
            raise MpsValidationError(
                field="endpoint",
                value=text,
                allowed="host[:port] without a scheme (set the protocol extra to http or https)",
            )
    text = text.rstrip("/")
    if "/" in text or not text:
        raise MpsValidationError(field="endpoint", value=text, allowed="host[:port]")
    if ":" in text:
        port = text.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise MpsValidationError(field="endpoint", value=text, allowed="host[:port] with a port 1-65535")
    return text


def _parse_number(name: str, value: Any, default: float, *, integer: bool) -> float:
    if value in (None, ""):
        return default
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise MpsValidationError(
            field=name, value=value, allowed="a positive integer" if integer else "a positive number"
        ) from None
    if number <= 0:
        raise MpsValidationError(field=name, value=value, allowed="a positive number")
    return number


def resolve_settings(
    *,
    login: str | None,
    password: str | None,
    extras: Mapping[str, Any],
    region: str | None = None,
    environ: Mapping[str, str] | None = None,
    use_default_chain: bool = True,
) -> ClientSettings:
    """Build ``ClientSettings`` from connection fields, the environment and the SDK default chain.

    ``region`` (the hook's argument) overrides the connection's ``region`` extra. Raises
    ``MpsValidationError`` for malformed extras and ``MpsAuthError`` naming all three credential
    sources when none provides credentials.
    """
    env = os.environ if environ is None else environ
    protocol = str(get_extra(extras, "protocol") or "https").lower()
    if protocol not in ("https", "http"):
        raise MpsValidationError(field="protocol", value=protocol, allowed="https, http")
    endpoint = _parse_endpoint(get_extra(extras, "endpoint"))
    timeout = int(
        _parse_number(
            "request_timeout", get_extra(extras, "request_timeout"), DEFAULT_REQUEST_TIMEOUT, integer=True
        )
    )
    rate = _parse_number(
        "process_image_rate",
        get_extra(extras, "process_image_rate"),
        DEFAULT_PROCESS_IMAGE_RATE,
        integer=False,
    )
    final_region = str(region or get_extra(extras, "region") or DEFAULT_REGION)
    common = {
        "region": final_region,
        "endpoint": endpoint,
        "protocol": protocol,
        "request_timeout": timeout,
        "process_image_rate": rate,
    }

    login = (login or "").strip() or None
    password = password or None
    if login or password:
        if not (login and password):
            missing = "password (SecretKey)" if login else "login (SecretId)"
            raise MpsAuthError(
                "InvalidCredential",
                f"the tencentcloud connection sets only one of SecretId/SecretKey: {missing} is empty",
            )
        token = get_extra(extras, "token")
        return ClientSettings(login, password, token, credential_source="connection", **common)

    env_id, env_key = env.get(ENV_SECRET_ID), env.get(ENV_SECRET_KEY)
    if env_id and env_key:
        env_token = next((env[name] for name in ENV_TOKENS if env.get(name)), None)
        return ClientSettings(env_id, env_key, env_token, credential_source="environment", **common)

    if use_default_chain:
        provider = _default_chain_credential()
        if provider is not None:
            secret_id, _key, _token = provider.get_credential_info()
            return ClientSettings(
                secret_id, None, None, credential_source="sdk-default-chain", provider=provider, **common
            )

    raise MpsAuthError(
        "InvalidCredential",
        "no Tencent Cloud credentials found. Looked in: (1) the connection's login/password "
        "(SecretId/SecretKey); (2) environment variables TENCENTCLOUD_SECRET_ID and "
        "TENCENTCLOUD_SECRET_KEY; (3) the SDK default chain (profile file ~/.tencentcloud/credentials "
        "or /etc/tencentcloud/credentials, CVM instance role, TKE OIDC role).",
    )


def _default_chain_credential() -> Any | None:
    """The SDK's ``DefaultCredentialProvider`` result, or None when the chain finds nothing."""
    from tencentcloud.common.credential import DefaultCredentialProvider
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    try:
        return DefaultCredentialProvider().get_credentials()
    except TencentCloudSDKException:
        return None
    except Exception:  # the CVM/TKE probes raise plain errors off-cloud; treat as "not found"
        return None
