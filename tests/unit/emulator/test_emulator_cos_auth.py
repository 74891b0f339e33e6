"""COS sha1 signature: the SDK's own test vectors (reference cos-api.md §2) and server-side checks."""

from __future__ import annotations

import pytest

from airflow_mps.emulator.cos.auth import CosAuthConfig, CosAuthError, presign_url, sign, verify_request
from airflow_mps.emulator.http import EmulatorRequest, Headers

SECRET = "SECRETKEYEXAMPLE"
KEY_TIME = "1700000000;1700003660"
HOST = "examplebucket-1250000000.cos.ap-guangzhou.myqcloud.com"


def _signature(auth: str) -> str:
    return dict(part.split("=", 1) for part in auth.split("&"))["q-signature"]


def test_vector_put_object_with_headers() -> None:
    auth = sign(
        "PUT",
        "/dir/a b+c.txt",
        secret_id="AKIDEXAMPLE",
        secret_key=SECRET,
        key_time=KEY_TIME,
        headers={"Content-Length": "11", "Content-Type": "text/plain", "Host": HOST},
    )
    assert _signature(auth) == "d093fbc27cd770a8a9e3e08568311e9a930664c8"
    assert "q-header-list=content-length;content-type;host&" in auth


def test_vector_list_objects_with_params() -> None:
    params = {"prefix": "dir/", "delimiter": "/", "marker": "", "max-keys": "1000", "encoding-type": "url"}
    auth = sign(
        "GET",
        "/",
        secret_id="AKIDEXAMPLE",
        secret_key=SECRET,
        key_time=KEY_TIME,
        params=params,
        headers={"host": HOST},
    )
    assert _signature(auth) == "83783fe11e10b88c036c4a3a7eb5c5feadda64b5"
    assert "q-url-param-list=delimiter;encoding-type;marker;max-keys;prefix&" in auth


def _request(auth: str, query: str = "", headers: list[tuple[str, str]] | None = None) -> EmulatorRequest:
    base = [("Host", HOST), ("Content-Length", "11"), ("Content-Type", "text/plain")]
    if auth:
        base.append(("Authorization", auth))
    return EmulatorRequest(
        "PUT", "/dir/a%20b%2Bc.txt", query, Headers(base + (headers or [])), b"hello world"
    )


def _config(now: float = 1700000100, token: str | None = None) -> CosAuthConfig:
    return CosAuthConfig(credentials={"AKIDEXAMPLE": SECRET}, token=token, clock=lambda: now)


def _put_auth() -> str:
    return sign(
        "PUT",
        "/dir/a b+c.txt",
        secret_id="AKIDEXAMPLE",
        secret_key=SECRET,
        key_time=KEY_TIME,
        headers={"Content-Length": "11", "Content-Type": "text/plain", "Host": HOST},
    )


def test_verify_accepts_the_vector_request() -> None:
    assert verify_request(_request(_put_auth()), _config(), sign_path="/dir/a b+c.txt") == "AKIDEXAMPLE"


@pytest.mark.parametrize(
    ("config", "auth", "sign_path", "code"),
    [
        (_config(), "", "/dir/a b+c.txt", "AccessDenied"),  # anonymous
        (_config(now=1700009999), None, "/dir/a b+c.txt", "AccessDenied"),  # expired
        (_config(now=1699990000), None, "/dir/a b+c.txt", "AccessDenied"),  # not yet valid
        (
            CosAuthConfig(credentials={"OTHER": SECRET}, clock=lambda: 1700000100),
            None,
            "/dir/a b+c.txt",
            "InvalidAccessKeyId",
        ),
        (_config(), None, "/dir/other.txt", "SignatureDoesNotMatch"),  # different key
        (_config(token="tok"), None, "/dir/a b+c.txt", "AccessDenied"),  # token required, absent
        (_config(), "q-sign-algorithm=md5&q-ak=AKIDEXAMPLE", "/dir/a b+c.txt", "AccessDenied"),
    ],
)
def test_verify_refusals(config: CosAuthConfig, auth: str | None, sign_path: str, code: str) -> None:
    with pytest.raises(CosAuthError) as info:
        verify_request(_request(_put_auth() if auth is None else auth), config, sign_path=sign_path)
    assert info.value.code == code
    assert info.value.status == 403
    assert SECRET not in info.value.message


def test_token_is_checked_when_configured() -> None:
    auth = sign(
        "PUT",
        "/dir/a b+c.txt",
        secret_id="AKIDEXAMPLE",
        secret_key=SECRET,
        key_time=KEY_TIME,
        headers={
            "Content-Length": "11",
            "Content-Type": "text/plain",
            "Host": HOST,
            "x-cos-security-token": "tok",
        },
    )
    good = _request(auth, headers=[("x-cos-security-token", "tok")])
    assert verify_request(good, _config(token="tok"), sign_path="/dir/a b+c.txt") == "AKIDEXAMPLE"
    with pytest.raises(CosAuthError):
        verify_request(
            _request(auth, headers=[("x-cos-security-token", "bad")]),
            _config(token="tok"),
            sign_path="/dir/a b+c.txt",
        )


def test_tampered_signed_header_is_rejected() -> None:
    request = _request(_put_auth())
    request.headers = Headers(
        [
            ("Host", HOST),
            ("Content-Length", "11"),
            ("Content-Type", "text/html"),
            ("Authorization", _put_auth()),
        ]
    )
    with pytest.raises(CosAuthError) as info:
        verify_request(request, _config(), sign_path="/dir/a b+c.txt")
    assert info.value.code == "SignatureDoesNotMatch"


def test_presigned_query_verifies_with_port_in_host() -> None:
    url = presign_url(
        "http://127.0.0.1:9100",
        "b-1250000000",
        "x/y z.jpg",
        "AKIDEXAMPLE",
        SECRET,
        expires=300,
        now=1700000000,
    )
    path_query = url.split("9100", 1)[1]
    path, query = path_query.split("?", 1)
    assert path == "/b-1250000000/x/y%20z.jpg"
    request = EmulatorRequest("GET", path, query, Headers([("Host", "127.0.0.1:9100")]))
    assert verify_request(request, _config(now=1700000100), sign_path="/x/y z.jpg") == "AKIDEXAMPLE"
    with pytest.raises(CosAuthError):
        verify_request(request, _config(now=1700000400), sign_path="/x/y z.jpg")
