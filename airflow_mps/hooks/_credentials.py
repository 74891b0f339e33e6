"""Turn a ``tencentcloud`` Airflow connection into client settings and credentials.

Pure parsing (no SDK import at module level) so it can be unit tested and reused by the sync and the
async path of the hook. Credential precedence:

1. the connection: login = SecretId, password = SecretKey, extra ``token``;
2. environment: ``TENCENTCLOUD_SECRET_ID`` / ``TENCENTCLOUD_SECRET_KEY`` (+ ``TENCENTCLOUD_TOKEN`` or
   ``TENCENTCLOUD_SESSION_TOKEN``);
3. the SDK's ``DefaultCredentialProvider`` chain: profile file ``~/.tencentcloud/credentials`` (or
   ``/etc/tencentcloud/credentials``), the CVM instance role, the TKE OIDC role.

Transport extras (issue 11 item 9): ``endpoint`` as ``host[:port]`` or ``http(s)://host[:port]`` (the
scheme then sets the protocol), ``ca_bundle`` (a PEM file of CAs to trust instead of certifi's) and
``proxy`` (an ``http(s)://[user:password@]host[:port]`` URL). How each SDK is given them is the
hook's business (``base.py``, ``cos.py``); here they are only parsed and checked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_mps.errors import MpsAuthError, MpsValidationError

DEFAULT_REGION = "ap-guangzhou"
DEFAULT_PROCESS_IMAGE_RATE = 20.0
#: Describe* (DescribeImageTaskDetail, DescribeImageTasks) requests/second: the docs disagree (20/s on
#: doc 862/134161 and 1041/82054, 100/s on pages updated 2026-05; mps-api.md §0.12), so the strictest
#: documented value is the default. The ``describe_rate`` extra raises it for an account that has more.
DEFAULT_DESCRIBE_RATE = 20.0
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
    #: Client-side pacing of the Describe* quota, requests/second (``describe_rate`` extra).
    describe_rate: float = DEFAULT_DESCRIBE_RATE
    #: Path of a PEM file of CA certificates to verify TLS with instead of certifi's (``ca_bundle``).
    ca_bundle: str | None = None
    #: Proxy URL for every MPS and COS request (``proxy``); may carry a password, so never in ``repr``.
    proxy: str | None = field(default=None, repr=False)

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


def _parse_endpoint(value: Any) -> tuple[str | None, str | None]:
    """``(protocol, host[:port])`` of the ``endpoint`` extra; protocol is None unless a scheme was given.

    ``127.0.0.1:9100`` and ``http://127.0.0.1:9100`` (or ``https://…``, a trailing ``/`` allowed) are
    accepted: the SDKs want the bare ``host[:port]`` (the MPS SDK copies it into the Host header and
    signs it), so the scheme is split off here and becomes the protocol.
    """
    if value in (None, ""):
        return None, None
    text = str(value).strip()
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("https", "http"):
            raise MpsValidationError(
                field="endpoint", value=value, allowed="host[:port] or http(s)://host[:port]"
            )
    text = text.rstrip("/")
    if "/" in text or "?" in text or "#" in text or "@" in text or not text:
        raise MpsValidationError(
            field="endpoint", value=value, allowed="host[:port] or http(s)://host[:port], no path"
        )
    if ":" in text:
        port = text.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise MpsValidationError(field="endpoint", value=value, allowed="host[:port] with a port 1-65535")
    return scheme, text


def _parse_ca_bundle(value: Any) -> str | None:
    """The ``ca_bundle`` extra: an existing file (``~`` expanded), returned as an absolute path."""
    if value in (None, ""):
        return None
    path = os.path.abspath(os.path.expanduser(str(value).strip()))
    if not os.path.isfile(path):
        raise MpsValidationError(
            field="ca_bundle", value=value, allowed="the path of an existing PEM file of CA certificates"
        )
    return path


def _parse_proxy(value: Any) -> str | None:
    """The ``proxy`` extra: ``http(s)://[user:password@]host[:port]`` (what requests and httpx accept)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise MpsValidationError(
            field="proxy", value=_hide_password(text), allowed="http(s)://[user:password@]host[:port]"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or port == 0:
        raise MpsValidationError(
            field="proxy",
            value=_hide_password(text),
            allowed="http(s)://[user:password@]host[:port], no path",
        )
    return text.rstrip("/")


def _hide_password(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (for error messages)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


def proxy_password(proxy: str | None) -> str | None:
    """The (percent-decoded) password in a proxy URL, for the secrets masker; None when there is none."""
    if not proxy:
        return None
    from urllib.parse import unquote

    password = urlsplit(proxy).password
    return unquote(password) if password else None


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
    given_protocol = get_extra(extras, "protocol")
    protocol = str(given_protocol or "https").lower()
    if protocol not in ("https", "http"):
        raise MpsValidationError(field="protocol", value=protocol, allowed="https, http")
    scheme, endpoint = _parse_endpoint(get_extra(extras, "endpoint"))
    if scheme is not None:
        if given_protocol and protocol != scheme:
            raise MpsValidationError(
                field="protocol",
                value=protocol,
                allowed=f"{scheme} (the scheme of the endpoint extra) or empty",
            )
        protocol = scheme
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
    describe_rate = _parse_number(
        "describe_rate", get_extra(extras, "describe_rate"), DEFAULT_DESCRIBE_RATE, integer=False
    )
    final_region = str(region or get_extra(extras, "region") or DEFAULT_REGION)
    ca_bundle = _parse_ca_bundle(get_extra(extras, "ca_bundle"))
    proxy = _parse_proxy(get_extra(extras, "proxy"))

    def settings(
        secret_id: str | None, secret_key: str | None, token: str | None, source: str, provider: Any = None
    ) -> ClientSettings:
        return ClientSettings(
            secret_id,
            secret_key,
            token,
            region=final_region,
            endpoint=endpoint,
            protocol=protocol,
            request_timeout=timeout,
            process_image_rate=rate,
            credential_source=source,
            provider=provider,
            describe_rate=describe_rate,
            ca_bundle=ca_bundle,
            proxy=proxy,
        )

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
        return settings(login, password, token, "connection")

    env_id, env_key = env.get(ENV_SECRET_ID), env.get(ENV_SECRET_KEY)
    if env_id and env_key:
        env_token = next((env[name] for name in ENV_TOKENS if env.get(name)), None)
        return settings(env_id, env_key, env_token, "environment")

    if use_default_chain:
        provider = _default_chain_credential()
        if provider is not None:
            secret_id, _key, _token = provider.get_credential_info()
            return settings(secret_id, None, None, "sdk-default-chain", provider)

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


def connection_extras(conn: Any) -> dict[str, Any]:
    """The connection's extras as a dict, parsed here instead of by ``extra_dejson``.

    Airflow's ``extra_dejson`` registers EVERY extra value with the secrets masker, so a connection
    with ``protocol=http`` logs "Skipping masking for a secret as it's too short" in every task (issue
    14). Only the secret extras are masked, by the hook (``token``, a proxy's password); the raw
    ``extra`` text as a whole is masked by Airflow when it fetches the connection.
    """
    raw = getattr(conn, "extra", None)
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        extras = json.loads(raw)
    except ValueError:
        extras = None
    if not isinstance(extras, dict):
        raise MpsValidationError(
            field="extra", value="(not shown: it may hold a token)", allowed="a JSON object of extras"
        )
    return extras
