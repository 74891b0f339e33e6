"""Only the secret extras are masked: the hook parses a connection's extras itself (issue 14)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from airflow_mps.errors import MpsValidationError
from airflow_mps.hooks import base
from airflow_mps.hooks._credentials import connection_extras
from airflow_mps.hooks.mps import MpsHook


def test_extras_parse_from_text_or_mapping() -> None:
    assert connection_extras(SimpleNamespace(extra=None)) == {}
    assert connection_extras(SimpleNamespace(extra='{"region": "ap-guangzhou"}')) == {
        "region": "ap-guangzhou"
    }
    assert connection_extras(SimpleNamespace(extra={"protocol": "http"})) == {"protocol": "http"}


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"'])
def test_extras_that_are_not_a_json_object_name_the_field_without_showing_it(raw: str) -> None:
    with pytest.raises(MpsValidationError) as info:
        connection_extras(SimpleNamespace(extra=raw))
    assert info.value.field == "extra" and raw not in str(info.value)


def test_settings_mask_the_token_and_never_the_plain_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    masked: list[Any] = []
    monkeypatch.setattr(base, "mask_secret_value", masked.append)
    conn = SimpleNamespace(
        login="AKIDEXAMPLE0000000000000000000000000",
        password="example-secret-key-0000000000000000",
        extra='{"region": "ap-guangzhou", "protocol": "http", "endpoint": "127.0.0.1:9100", '
        '"token": "sts-token-123456789"}',
    )
    hook = MpsHook(tencentcloud_conn_id="x")
    hook._settings_from(conn, connection_extras(conn))
    assert "sts-token-123456789" in masked and "example-secret-key-0000000000000000" in masked
    assert not {"http", "ap-guangzhou", "127.0.0.1:9100"} & set(masked)
