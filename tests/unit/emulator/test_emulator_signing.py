"""TC3-HMAC-SHA256 verification (emulator side) against the official test vector and the SDK's signer."""

from __future__ import annotations

import json

import pytest
from tencentcloud.common.sign import Sign

from airflow_mps.emulator.signing import (
    SignatureError,
    canonical_request,
    sha256_hex,
    tc3_signature,
    verify_tc3,
)

# Official TC3 example (Tencent Cloud API 3.0 signature doc, CVM DescribeInstances).
VECTOR_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
VECTOR_TS = 1551113065
VECTOR_PAYLOAD = '{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'


def test_official_test_vector() -> None:
    payload_hash = sha256_hex(VECTOR_PAYLOAD.encode())
    assert payload_hash.startswith("35e9c5b0") and payload_hash.endswith("f064")
    canonical = canonical_request(
        "POST",
        "/",
        "",
        [("content-type", "application/json; charset=utf-8"), ("host", "cvm.tencentcloudapi.com")],
        payload_hash,
    )
    assert (
        sha256_hex(canonical.encode()) == "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    date, signature = tc3_signature(VECTOR_KEY, "cvm", VECTOR_TS, canonical)
    assert date == "2019-02-25"
    assert signature == "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"


def _signed(secret_id: str, key: str, ts: int, body: bytes, host: str = "127.0.0.1:9100") -> dict[str, str]:
    """Headers as the SDK builds them, signed with the SDK's own `Sign.sign_tc3`."""
    canonical = (
        f"POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{sha256_hex(body)}"
    )
    from datetime import datetime, timezone

    date = datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")
    string_to_sign = f"TC3-HMAC-SHA256\n{ts}\n{date}/mps/tc3_request\n{sha256_hex(canonical.encode())}"
    signature = Sign.sign_tc3(key, date, "mps", string_to_sign)
    return {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Timestamp": str(ts),
        "Authorization": (
            f"TC3-HMAC-SHA256 Credential={secret_id}/{date}/mps/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={signature}"
        ),
    }


def _verify(headers: dict[str, str], body: bytes, now: float, token: str | None = None):
    lookup = {k.lower(): v for k, v in headers.items()}
    return verify_tc3(
        method="POST",
        path="/",
        query="",
        header_lookup=lambda name: lookup.get(name.lower()),
        body=body,
        secret_lookup={"AKIDtest": "secret"}.get,
        now=now,
        expected_token=token,
    )


BODY = json.dumps({"TaskId": "x"}).encode()
NOW = 1_795_000_000


def test_sdk_signature_verifies() -> None:
    caller = _verify(_signed("AKIDtest", "secret", NOW, BODY), BODY, NOW + 10)
    assert caller.secret_id == "AKIDtest"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda h, b: (h | {"Authorization": "Bearer x"}, b), "AuthFailure.InvalidAuthorization"),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "Authorization"}, b),
            "AuthFailure.InvalidAuthorization",
        ),
        (lambda h, b: (h, b + b" "), "AuthFailure.SignatureFailure"),
        (lambda h, b: (h | {"Host": "evil:1"}, b), "AuthFailure.SignatureFailure"),
    ],
)
def test_tampering_is_rejected(mutate, code: str) -> None:
    headers, body = mutate(_signed("AKIDtest", "secret", NOW, BODY), BODY)
    with pytest.raises(SignatureError) as err:
        _verify(headers, body, NOW)
    assert err.value.code == code


def test_wrong_key_unknown_id_expired_and_token() -> None:
    with pytest.raises(SignatureError, match="credentials") as err:
        _verify(_signed("AKIDtest", "wrong", NOW, BODY), BODY, NOW)
    assert err.value.code == "AuthFailure.SignatureFailure"
    with pytest.raises(SignatureError) as err:
        _verify(_signed("AKIDother", "secret", NOW, BODY), BODY, NOW)
    assert err.value.code == "AuthFailure.SecretIdNotFound"
    with pytest.raises(SignatureError) as err:
        _verify(_signed("AKIDtest", "secret", NOW - 301, BODY), BODY, NOW)
    assert err.value.code == "AuthFailure.SignatureExpire"
    # 300 s is still accepted (the documented five minutes).
    _verify(_signed("AKIDtest", "secret", NOW - 300, BODY), BODY, NOW)
    headers = _signed("AKIDtest", "secret", NOW, BODY)
    with pytest.raises(SignatureError) as err:
        _verify(headers, BODY, NOW, token="tok")
    assert err.value.code == "AuthFailure.TokenFailure"
    with pytest.raises(SignatureError) as err:
        _verify(headers | {"X-TC-Token": "other"}, BODY, NOW, token="tok")
    assert err.value.code == "AuthFailure.TokenFailure"
    assert _verify(headers | {"X-TC-Token": "tok"}, BODY, NOW, token="tok").secret_id == "AKIDtest"


def test_credential_scope_must_match_timestamp_date() -> None:
    headers = _signed("AKIDtest", "secret", NOW, BODY)
    headers["Authorization"] = headers["Authorization"].replace("/mps/", "/cvm/")
    with pytest.raises(SignatureError) as err:
        _verify(headers, BODY, NOW)
    assert err.value.code == "AuthFailure.InvalidAuthorization"
