"""Secrets and bearer links (issue 12 item 4), unit level.

* ``S3SecretKey`` never reaches the rendered fields Airflow stores for the UI, whatever form ``input`` /
  ``output_storage`` take: registered at render time (``RenderedFieldsMixin``), checked on exactly what
  the task runner sends (``_serialize_rendered_fields``).
* Signed output URLs stay out of XCom and trigger events unless ``include_signed_urls=True``.
* The emulator's presigned URL never embeds the STS token, and still verifies.

Every test uses a fresh secret: Airflow's masker is process-wide, so a value registered by an earlier
test would hide a regression.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from airflow_mps.models import ImageTaskStatus
from airflow_mps.operators.mps import MpsProcessImageOperator
from airflow_mps.utils.results import build_task_xcom, result_from_event
from airflow_mps.utils.secrets import find_secrets
from airflow_mps.waits.task import TaskWaitOutcome

REGION = "ap-guangzhou"
COS_INPUT = "cos://in-1250000000/raw/a.jpg"


def _secret() -> str:
    return f"S3SECRET{uuid.uuid4().hex}"


def _s3_storage(secret: str) -> dict[str, Any]:
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
            "S3Object": "/raw/a.png",
            "S3SecretId": "AKIAEXAMPLE",
            "S3SecretKey": secret,
        },
    }


def _serialized_rendered_fields(op: Any) -> str:
    """What the task runner sends to the API server for the Rendered Template view."""
    from airflow.sdk.execution_time.task_runner import _serialize_rendered_fields

    return json.dumps(_serialize_rendered_fields(op), default=str)


# (name, field, factory(secret) -> (operator kwargs, template params))
FORMS: list[tuple[str, str, Any]] = [
    ("output_storage-literal-dict", "output_storage", lambda s: ({"output_storage": _s3_storage(s)}, {})),
    (
        "output_storage-json-text",
        "output_storage",
        lambda s: ({"output_storage": json.dumps(_s3_storage(s))}, {}),
    ),
    (
        "output_storage-templated-json",
        "output_storage",
        lambda s: ({"output_storage": "{{ params.storage | tojson }}"}, {"storage": _s3_storage(s)}),
    ),
    (
        "output_storage-templated-secret-in-dict",
        "output_storage",
        lambda s: (
            {"output_storage": _s3_storage("{{ params.key }}")},
            {"key": s},
        ),
    ),
    (
        "output_storage-templated-secret-in-json-text",
        "output_storage",
        lambda s: ({"output_storage": json.dumps(_s3_storage("{{ params.key }}"))}, {"key": s}),
    ),
    ("input-literal-dict", "input", lambda s: ({"input": _s3_input(s)}, {})),
    ("input-json-text", "input", lambda s: ({"input": json.dumps(_s3_input(s))}, {})),
    (
        "input-templated-json",
        "input",
        lambda s: ({"input": "{{ params.info | tojson }}"}, {"info": _s3_input(s)}),
    ),
    (
        "input-json-text-with-spaces-and-quotes",
        "input",
        lambda s: ({"input": "  " + json.dumps(_s3_input(s + '"\\q'), indent=2)}, {}),
    ),
]


def _unredacted_serialized_fields(op: Any) -> str:
    """What Airflow 3.0.x's worker sends: the rendered fields serialised WITHOUT redaction (the API
    server redacts them with its own masker, which never saw a secret registered in the worker)."""
    from airflow.serialization.helpers import serialize_template_field

    return json.dumps(
        {f: serialize_template_field(getattr(op, f), f) for f in op.template_fields}, default=str
    )


@pytest.mark.parametrize(("name", "field", "factory"), FORMS, ids=[f[0] for f in FORMS])
def test_rendered_fields_never_show_the_s3_secret(name: str, field: str, factory: Any) -> None:
    secret = _secret()
    kwargs, params = factory(secret)
    args: dict[str, Any] = {"task_id": "s3", "input": COS_INPUT, "region": REGION, **kwargs}
    op = MpsProcessImageOperator(**args)
    op.render_template_fields({"params": params})
    # The attribute (what any Airflow stores and shows) holds a ***-copy; the original is kept aside...
    assert secret not in json.dumps(getattr(op, field), default=str)
    assert secret in json.dumps(op.unredacted(field), default=str).replace('\\"', '"')
    # ...and the request sent to MPS carries the real secret.
    body = json.dumps(op.build_request().to_api())
    assert secret in body.replace('\\"', '"') or secret.replace('"', '\\"') in body
    for sent in (_serialized_rendered_fields(op), _unredacted_serialized_fields(op)):  # 3.3 and 3.0 paths
        assert secret not in sent and secret.replace('"', '\\"') not in sent, sent
        assert "***" in sent


def test_json_text_keeps_its_exact_formatting_when_redacted() -> None:
    secret = _secret()
    text = "  " + json.dumps(_s3_storage(secret), indent=3) + "\n"
    op = MpsProcessImageOperator(task_id="f", input=COS_INPUT, region=REGION, output_storage=text)
    op.render_template_fields({"params": {}})
    rendered = op.unredacted("output_storage")  # Jinja drops the trailing newline; nothing else changes
    assert rendered == text.rstrip("\n")
    assert op.output_storage == rendered.replace(secret, "***")


def test_nothing_is_copied_without_a_secret() -> None:
    storage = {"Type": "COS", "CosOutputStorage": {"Bucket": "out-1250000000", "Region": REGION}}
    op = MpsProcessImageOperator(task_id="c", input=COS_INPUT, region=REGION, output_storage=storage)
    op.render_template_fields({"params": {}})
    assert op.unredacted("output_storage") is op.output_storage
    assert op._unredacted_values == {}


def test_mapped_rendering_path_masks_too() -> None:
    """A mapped task renders through ``_do_render_template_fields`` on the unmapped task directly."""
    import jinja2

    secret = _secret()
    op = MpsProcessImageOperator(
        task_id="m", input=COS_INPUT, region=REGION, output_storage=json.dumps(_s3_storage(secret))
    )
    op._do_render_template_fields(op, op.template_fields, {"params": {}}, jinja2.Environment(), set())
    assert secret not in _serialized_rendered_fields(op)


def test_nested_templated_objects_are_left_alone() -> None:
    """A nested templated object renders through the same method with another parent: no masking pass,
    no record of fields rendered to None on the operator."""
    import jinja2

    class Nested:
        template_fields = ("value",)

        def __init__(self) -> None:
            self.value = "{{ params.v }}"

    nested = Nested()
    op = MpsProcessImageOperator(task_id="n", input=COS_INPUT, region=REGION)
    op._do_render_template_fields(nested, ["value"], {"params": {"v": "x"}}, jinja2.Environment(), set())
    assert nested.value == "x"
    assert op._rendered_to_none == frozenset()


def test_find_secrets_reads_every_form() -> None:
    secret = _secret()
    from airflow_mps.models.storage import OutputStorage

    storage = OutputStorage.from_api(_s3_storage(secret), "output_storage")
    assert find_secrets(_s3_storage(secret)) == [secret]
    assert find_secrets(json.dumps([_s3_storage(secret)])) == [secret]
    assert find_secrets(storage) == [secret]
    assert find_secrets("{not json S3SecretKey") == []
    assert find_secrets("cos://b/a.jpg") == []
    deep: Any = {"S3SecretKey": secret}
    for _ in range(100):
        deep = {"x": deep}
    assert find_secrets(deep) == []  # bounded walk, no recursion error


# ------------------------------------------------------------------------------------ signed URLs
def _finished() -> ImageTaskStatus:
    return ImageTaskStatus.from_api(
        {
            "Status": "FINISH",
            "ImageProcessTaskResultSet": [
                {
                    "Status": "SUCCESS",
                    "Output": {
                        "Path": "/enhanced/a.webp",
                        "OutputStorage": {
                            "Type": "COS",
                            "CosOutputStorage": {"Bucket": "out-1250000000", "Region": REGION},
                        },
                        "SignedUrl": "https://out.example/enhanced/a.webp?q-signature=abc",
                        "Content": "iVBORw0KGgo" * 1000,
                    },
                }
            ],
        },
        task_id="t-1",
    )


def test_xcom_keeps_the_signed_url_key_with_none_unless_opted_in() -> None:
    status = _finished()
    [out] = build_task_xcom("t-1", request_id=None, status=status)["outputs"]
    assert set(out) == {"bucket", "region", "path", "uri", "signed_url"} and out["signed_url"] is None
    [out] = build_task_xcom("t-1", request_id=None, status=status, include_signed_urls=True)["outputs"]
    assert out["signed_url"].startswith("https://out.example/")


def test_trigger_event_drops_content_and_signed_url_by_default() -> None:
    outcome = TaskWaitOutcome("success", "t-1", _finished(), None, 1)
    payload = outcome.payload("r-1")
    [out] = payload["result"]["outputs"]
    assert out["signed_url"] is None and out["content"] is None
    assert len(json.dumps(payload)) < 1000
    kept = outcome.payload("r-1", include_signed_urls=True)
    assert kept["result"]["outputs"][0]["signed_url"].startswith("https://")
    assert kept["result"]["outputs"][0]["content"] is None
    # Resuming from an event (even an old one that carried the URL) honours the operator's choice.
    old = {**kept, "status": "success"}
    assert result_from_event(old, what="t")["outputs"][0]["signed_url"] is None
    assert result_from_event(old, what="t", include_signed_urls=True)["outputs"][0]["signed_url"]


def test_operator_and_sensor_pass_the_choice_to_the_trigger() -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_mps.sensors.mps import MpsImageTaskSensor

    op = MpsProcessImageOperator(task_id="p", input=COS_INPUT, include_signed_urls=True, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.defer_to_trigger(mps_task_id="t-1", end_time=2e9, request_id=None)
    assert deferred.value.trigger.serialize()[1]["include_signed_urls"] is True
    assert MpsProcessImageOperator(task_id="q", input=COS_INPUT).include_signed_urls is False
    assert MpsImageTaskSensor(task_id="s", mps_task_id="x-1").include_signed_urls is False


# ------------------------------------------------------------------------------------ emulator URLs
def test_emulator_presigned_url_never_embeds_the_token_and_still_verifies() -> None:
    from airflow_mps.emulator.cos.auth import CosAuthConfig, CosAuthError, presign_url, verify_request
    from airflow_mps.emulator.http import EmulatorRequest, Headers

    token = "TOKENsession" + uuid.uuid4().hex
    url = presign_url(
        "http://127.0.0.1:9100",
        "b-1250000000",
        "x/y.jpg",
        "AKIDEXAMPLE",
        "sk",
        now=1_700_000_000,
        token=token,
    )
    assert token not in url and "security-token" not in url
    path, query = url.split("9100", 1)[1].split("?", 1)
    request = EmulatorRequest("GET", path, query, Headers([("Host", "127.0.0.1:9100")]))
    config = CosAuthConfig(credentials={"AKIDEXAMPLE": "sk"}, token=token, clock=lambda: 1_700_000_100)
    assert verify_request(request, config, sign_path="/x/y.jpg") == "AKIDEXAMPLE"
    # Bound to the token: another token (a refreshed or revoked session) no longer accepts it...
    other = CosAuthConfig(credentials={"AKIDEXAMPLE": "sk"}, token=token + "x", clock=lambda: 1_700_000_100)
    with pytest.raises(CosAuthError):
        verify_request(request, other, sign_path="/x/y.jpg")
    # ...and a token-less URL signed with the plain key is still refused when a token is required.
    plain = presign_url(
        "http://127.0.0.1:9100", "b-1250000000", "x/y.jpg", "AKIDEXAMPLE", "sk", now=1_700_000_000
    )
    path, query = plain.split("9100", 1)[1].split("?", 1)
    with pytest.raises(CosAuthError):
        verify_request(
            EmulatorRequest("GET", path, query, Headers([("Host", "127.0.0.1:9100")])),
            config,
            sign_path="/x/y.jpg",
        )
