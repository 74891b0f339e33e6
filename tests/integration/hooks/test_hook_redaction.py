"""The SDKs' own DEBUG output never shows a credential, even when a user turns it on.

qcloud_cos prints its request headers (the STS token) and its signing key at DEBUG; the hook
quiets those loggers by default, so this test forces them to DEBUG as a user debugging a connection
would, and checks every record the full hook path produced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.errors import MpsResourceNotFoundError
from airflow_mps.hooks import _redact

SECRET_KEY = "redact-test-SECRET-KEY-0123456789"
TOKEN = "STSTOKEN-redact-0123456789abcdefSTSTOKEN"
BUCKET = "redact-1250000000"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def sdk_debug() -> Iterator[_Collect]:
    handler = _Collect()
    loggers = [
        logging.getLogger(name)
        for name in ("qcloud_cos", "qcloud_cos.cos_client", "qcloud_cos.cos_auth", "tencentcloud_sdk_common")
    ]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)  # what a user debugging a connection does; overrides the hook's quieting
        lg.addHandler(handler)  # a user's handler on the SDK logger sees what its filters let through
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_sdk_debug_logs_carry_no_token_or_signing_key(
    tmp_path: Path, sdk_debug: _Collect, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ProcessImageRequest

    with EmulatorServer(data_dir=tmp_path / "emu", secret_key=SECRET_KEY, token=TOKEN) as server:
        monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", server.connection_uri())
        server.cos_backend.create_bucket(BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
        server.cos_backend.put_object(BUCKET, "raw/a.txt", b"x")
        hook = MpsHook()
        assert [o.key for o in hook.list_objects(BUCKET, "raw/")] == ["raw/a.txt"]
        assert hook.read_object(BUCKET, "raw/a.txt") == b"x"
        with pytest.raises(MpsResourceNotFoundError):  # an MPS error path logs too
            hook.describe_image_task("1250000000-WorkflowTask-" + "0" * 32)
        hook.process_image(ProcessImageRequest.build(input=f"cos://{BUCKET}/raw/a.txt", region=server.region))

    text = "\n".join(sdk_debug.lines)
    assert "x-cos-security-token" in text, (
        "the SDK's DEBUG lines were not captured; the test would prove nothing"
    )
    assert TOKEN not in text
    assert SECRET_KEY not in text
    assert "sign_key" not in text or "sign_key: ***" in text or "sign_key***" in text


def test_redact_blanks_the_shapes_qcloud_cos_prints() -> None:
    _redact.register_secret("TOKENsession9876543210zyxwvuTOKEN")
    line = (
        "request headers: {'x-cos-security-token': b'TOKENsession9876543210zyxwvuTOKEN', 'Host': b'h'}\n"
        "host=h&x-cos-security-token=ANOTHERTOKENVALUE\nsign_key: 53728e71a521aba8c3aafb298a79cc43d9be7c14\n"
        "sign: 315e074e350b0758811eb1b43657206e4ced39f6\n"
        "q-ak=AKID&q-signature=315e074e350b0758811eb1b43657206e4ced39f6"
    )
    cleaned = _redact.redact(line)
    for leaked in (
        "TOKENsession9876543210zyxwvuTOKEN",
        "ANOTHERTOKENVALUE",
        "53728e71a521aba8c3aaf",
        "315e074e350b0758811eb",
    ):
        assert leaked not in cleaned
    assert "q-ak=AKID" in cleaned  # the SecretId is not a secret and stays readable for debugging
