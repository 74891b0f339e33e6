"""Secrets: a full batch run with DEBUG logging everywhere leaks no SecretKey, token or S3SecretKey.

Captured: every stdlib log record (root at DEBUG, incl. the SDKs' and urllib3's), structlog / print
output (file descriptors 1 and 2), exception texts and reprs, the returned XCom, the rendered template
fields and the manifest written to COS.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

BUCKET = "secrets-1250000000"
SECRET_KEY = "SKEYsecret0123456789abcdefSECRET"
TOKEN = "TOKENsession9876543210zyxwvuTOKEN"
S3_SECRET = "S3SECRETshouldneverappear42"


class _All(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


@pytest.fixture
def debug_logs() -> Any:
    handler = _All()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # What `[logging] logging_level = DEBUG` does: everything at DEBUG unless a library's logger was
    # configured on its own. The hook quiets qcloud_cos (whose own DEBUG lines print the security token
    # in request headers) when nobody configured it; forcing that logger to DEBUG by hand is a user
    # opting into the SDK's raw output (see H-bugs.md #4 for a redacting filter as hardening).
    for name in ("airflow_mps", "tencentcloud", "urllib3", "httpx", "httpcore", "airflow"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def _assert_clean(what: str, text: str) -> None:
    for secret in (SECRET_KEY, TOKEN, S3_SECRET):
        assert secret not in text, f"{what} leaks a secret ({secret[:6]}…)"


def test_full_batch_run_with_debug_logging_leaks_nothing(
    tmp_path: Any, debug_logs: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred
    from PIL import Image

    from airflow_mps.emulator.testing import EmulatorServer
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    with EmulatorServer(data_dir=tmp_path / "emu", secret_key=SECRET_KEY, token=TOKEN) as server:
        monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", server.connection_uri())
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format="PNG")
        part = f"dt={uuid.uuid4().hex[:8]}"
        server.cos_backend.create_bucket(BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
        for i in range(5):
            server.cos_backend.put_object(BUCKET, f"raw/{part}/i{i}.png", buf.getvalue(), "image/png")
        server.faults.throttle("ProcessImage", count=2)  # exercise the retry paths' logging too
        server.faults.internal_error("Describe*", count=2)
        server.faults.fail_tasks(count=1)
        op = MpsBatchProcessImageOperator(
            task_id="batch",
            source="cos://{{ params.bucket }}/raw/" + part + "/",
            destination=f"cos://{BUCKET}/enhanced/{part}/",
            image_task='{"EncodeConfig": {"Format": "JPEG"}}',
            poll_interval=0.3,
            deferrable=True,
            max_failed_ratio=0.0,
        )
        ctx: dict[str, Any] = {
            "ti": SimpleNamespace(try_number=1),
            "params": {"bucket": BUCKET},
            "task_state_store": {},
        }
        store: dict[str, Any] = {}
        ctx["task_state_store"] = SimpleNamespace(
            get=lambda k, d=None: store.get(k, d), set=lambda k, v: store.__setitem__(k, v)
        )
        op.render_template_fields(ctx)
        rendered = {name: getattr(op, name) for name in op.template_fields}
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(ctx)
        serialized = json.dumps(deferred.value.trigger.serialize(), default=str)
        trigger = type(deferred.value.trigger)(**deferred.value.trigger.serialize()[1])

        async def first() -> Any:
            async for event in trigger.run():
                return event
            return None

        event = asyncio.run(first())
        failure: BaseException | None = None
        try:
            op.execute_complete(ctx, event.payload)
        except Exception as exc:  # the policy fails the task (1 of 5 failed)
            failure = exc
        assert failure is not None and "failed" in str(failure)
        manifest = server.cos_backend.get_object(BUCKET, f"enhanced/{part}/_mps_manifest.jsonl").data.decode()
        # Also: a hook error from a wrong secret must not echo the one it was given.
        from airflow_mps.errors import MpsError
        from airflow_mps.hooks.mps import MpsHook

        bad_uri = server.connection_uri().replace(SECRET_KEY, SECRET_KEY[::-1])
        monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_BAD", bad_uri)
        with pytest.raises(MpsError) as auth:
            list(MpsHook(tencentcloud_conn_id="tencentcloud_bad").list_image_tasks("FINISH"))
    out, err = capfd.readouterr()
    everything = "\n".join(debug_logs.lines) + out + err
    assert "Submitted" in everything and everything.count("\n") > 20, "logging did not capture the run"
    _assert_clean("log records", "\n".join(debug_logs.lines))
    _assert_clean("stdout/stderr", out + err)
    _assert_clean("exception", f"{failure!s} {failure!r} {auth.value!s} {auth.value!r}")
    _assert_clean("auth exception (reversed key)", str(auth.value).replace(SECRET_KEY[::-1], SECRET_KEY))
    _assert_clean("trigger serialization", serialized)
    _assert_clean("trigger event", json.dumps(event.payload, default=str))
    _assert_clean("rendered fields", json.dumps(rendered, default=str))
    _assert_clean("task_state_store", json.dumps(store, default=str))
    _assert_clean("manifest", manifest)


def test_s3_secret_key_in_a_request_never_surfaces(
    debug_logs: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``S3SecretKey`` travels in ``OutputStorage``: refused or sent, it never shows in a message."""
    from airflow_mps.errors import MpsError
    from airflow_mps.hooks.mps import MpsHook
    from airflow_mps.models import ProcessImageRequest
    from airflow_mps.operators.mps import MpsProcessImageOperator

    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    storage = {
        "Type": "AWS-S3",
        "S3OutputStorage": {
            "S3Bucket": "b",
            "S3Region": "us-east-1",
            "S3SecretId": "AKIAEXAMPLE",
            "S3SecretKey": S3_SECRET,
        },
    }
    texts: list[str] = []
    request = ProcessImageRequest.build(
        input="https://example.com/a.png",
        output_storage=storage,
        image_task={"EncodeConfig": {"Format": "JPEG"}},
        region="ap-guangzhou",
    )
    texts.append(repr(request))
    try:  # a refusal by the service (the emulator cannot write to S3) must not echo the body
        MpsHook().process_image(request)
    except MpsError as exc:
        texts += [str(exc), repr(exc), json.dumps(exc.to_dict(), default=str)]
    # A validation error elsewhere in the same request must not print the storage block either.
    op = MpsProcessImageOperator(
        task_id="s3",
        input="https://example.com/a.png",
        output_storage=storage,
        image_task={"EncodeConfig": {"Quality": 900}},
        deferrable=False,
    )
    with pytest.raises(Exception) as info:
        op.execute({"ti": SimpleNamespace(try_number=1)})
    texts += [str(info.value), repr(info.value)]
    for line in debug_logs.lines + texts:
        _assert_clean("S3 request", line)


# ------------------------------------------------------------------------------ rendered fields (issue 12 item 4)
def _s3(secret: str) -> dict[str, Any]:
    return {
        "Type": "AWS-S3",
        "S3OutputStorage": {
            "S3Bucket": "b",
            "S3Region": "us-east-1",
            "S3SecretId": "AKIAEXAMPLE",
            "S3SecretKey": secret,
        },
    }


def _s3_input(secret: str) -> dict[str, Any]:
    return {
        "Type": "AWS-S3",
        "S3InputInfo": {
            "S3Bucket": "b",
            "S3Region": "us-east-1",
            "S3Object": "/a.png",
            "S3SecretId": "AKIAEXAMPLE",
            "S3SecretKey": secret,
        },
    }


def _context() -> dict[str, Any]:
    """A task-runner-like context: a TI that takes XComs and a task_state_store of its own."""
    store: dict[str, Any] = {}
    return {
        "ti": SimpleNamespace(try_number=1, xcom_push=lambda *a, **k: None, start_date=None, stats_tags={}),
        "task_state_store": SimpleNamespace(
            get=lambda k, d=None: store.get(k, d), set=lambda k, v, **_: store.__setitem__(k, v)
        ),
    }


#: Every way a user can hand the operator an S3SecretKey: (id, secret -> (operator kwargs, template params)).
RENDER_FORMS: list[tuple[str, Any]] = [
    ("storage-dict", lambda k: ({"output_storage": _s3(k)}, {})),
    ("storage-json", lambda k: ({"output_storage": json.dumps(_s3(k))}, {})),
    ("storage-json-pretty", lambda k: ({"output_storage": json.dumps(_s3(k), indent=4)}, {})),
    ("storage-template-tojson", lambda k: ({"output_storage": "{{ params.s | tojson }}"}, {"s": _s3(k)})),
    (
        "storage-template-secret-in-json",
        lambda k: ({"output_storage": json.dumps(_s3("{{ params.k }}"))}, {"k": k}),
    ),
    ("storage-template-secret-in-dict", lambda k: ({"output_storage": _s3("{{ params.k }}")}, {"k": k})),
    (
        "storage-template-whole-json-param",
        lambda k: ({"output_storage": "{{ params.j }}"}, {"j": json.dumps(_s3(k))}),
    ),
    ("input-dict", lambda k: ({"input": _s3_input(k)}, {})),
    ("input-json", lambda k: ({"input": json.dumps(_s3_input(k))}, {})),
    ("input-template-tojson", lambda k: ({"input": "{{ params.i | tojson }}"}, {"i": _s3_input(k)})),
]


@pytest.mark.parametrize(("form", "factory"), RENDER_FORMS, ids=[f[0] for f in RENDER_FORMS])
def test_rendered_fields_hide_the_s3_secret_in_every_form(
    form: str,
    factory: Any,
    debug_logs: Any,
    capfd: pytest.CaptureFixture[str],
    emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What Airflow stores for the Rendered Template view (``_serialize_rendered_fields``, the very function
    the task runner sends to the API server) and everything the run logs, for every input form — then the
    run itself (refused by the emulator, which has no S3) and its exception. Each form has its own secret:
    the masker is process-wide, a secret registered by an earlier test would hide a regression."""
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    from airflow_mps.operators.mps import MpsProcessImageOperator

    secret = f"S3FORM{uuid.uuid4().hex}"
    kwargs, params = factory(secret)
    monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", emulator.connection_uri())
    args: dict[str, Any] = {
        "task_id": f"s3-{form}",
        "input": "cos://in-1250000000/raw/a.jpg",
        "region": "ap-guangzhou",
        "image_task": {"EncodeConfig": {"Format": "JPEG"}},
        "deferrable": False,
        **kwargs,
    }
    op = MpsProcessImageOperator(**args)
    op.render_template_fields({"params": params})
    stored = json.dumps(_serialize_rendered_fields(op), default=str)
    assert "***" in stored
    # Airflow 3.0.x's worker sends the fields without redacting them (its API server redacts with a
    # masker that never saw this secret): the attribute values themselves must be clean.
    from airflow.serialization.helpers import serialize_template_field

    stored_30 = json.dumps(
        {f: serialize_template_field(getattr(op, f), f) for f in op.template_fields}, default=str
    )
    with pytest.raises(Exception) as info:
        op.execute(_context())
    assert "AWS-S3" in str(info.value), f"not the emulator's refusal: {info.value!r}"
    out, err = capfd.readouterr()
    for what, text in (
        ("stored rendered fields", stored),
        ("rendered fields as Airflow 3.0 sends them", stored_30),
        ("log records", "\n".join(debug_logs.lines)),
        ("stdout/stderr", out + err),
        ("exception", f"{info.value!s} {info.value!r}"),
    ):
        assert secret not in text, f"{what} leaks the S3SecretKey ({form})"


def test_signed_urls_stay_out_of_xcom_and_logs_and_never_carry_the_token(
    tmp_path: Any, debug_logs: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Default: no signed URL in the XCom, the trigger event or any log line. Opt-in: the URL is there,
    works, and carries no STS token although the connection has one."""
    import urllib.request

    from airflow.providers.common.compat.sdk import TaskDeferred
    from PIL import Image

    from airflow_mps.emulator.testing import EmulatorServer
    from airflow_mps.operators.mps import MpsProcessImageOperator

    with EmulatorServer(data_dir=tmp_path / "emu", secret_key=SECRET_KEY, token=TOKEN) as server:
        monkeypatch.setenv("AIRFLOW_CONN_TENCENTCLOUD_DEFAULT", server.connection_uri())
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format="PNG")
        server.cos_backend.put_object(
            BUCKET, "raw/signed.png", buf.getvalue(), "image/png", create_bucket=True
        )
        common: dict[str, Any] = {
            "input": f"cos://{BUCKET}/raw/signed.png",
            "region": "ap-guangzhou",
            "image_task": {"EncodeConfig": {"Format": "JPEG"}},
            "poll_interval": 0.1,
        }

        default = MpsProcessImageOperator(task_id="default", deferrable=False, **common).execute(_context())
        deferring = MpsProcessImageOperator(task_id="deferred", deferrable=True, **common)
        with pytest.raises(TaskDeferred) as deferred:
            deferring.execute(_context())
        trigger = type(deferred.value.trigger)(**deferred.value.trigger.serialize()[1])

        async def first() -> Any:
            async for event in trigger.run():
                return event
            return None

        event = asyncio.run(first())
        resumed = deferring.execute_complete(_context(), event.payload)
        opted = MpsProcessImageOperator(
            task_id="opted", deferrable=False, include_signed_urls=True, **common
        ).execute(_context())
        url = opted["outputs"][0]["signed_url"]
        with urllib.request.urlopen(url, timeout=10) as resp:  # works although no token travels with it
            assert resp.status == 200 and resp.read()[:2] == b"\xff\xd8"
    out, err = capfd.readouterr()
    for result in (default, resumed):
        assert [o["signed_url"] for o in result["outputs"]] == [None]
    assert event.payload["result"]["outputs"][0]["signed_url"] is None
    assert url and TOKEN not in url and "security-token" not in url
    logs = "\n".join(debug_logs.lines) + out + err
    assert "q-signature" not in logs, "a signed URL was logged"
    _assert_clean("log records", logs)
    _assert_clean("XCom", json.dumps([default, resumed], default=str))
