"""The emulator as strict as the documented MPS (issue 11), observed through the official SDK over HTTP.

One test (or a few) per behaviour of docs/emulator-fidelity.md: DescribeImageTasks as api.json
documents it (and the flags that relax it), the 20/s Describe* limit, the documented task failure
codes and how the provider's error table classifies them, the OutputPath rule shared with
``expected_output_key``, the region check, and the request-model decisions (ScheduleId without
InputInfo, ResourceId, AdvancedSuperResolution sides of 0).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.mps.v20190612 import models
from tencentcloud.mps.v20190612 import mps_client as sync_client

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.errors import classify_code, error_from_code
from airflow_mps.models import ProcessImageRequest, expected_output_key

BUCKET = "strict-1250000000"
REGION = "ap-guangzhou"


def png_bytes(size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (24, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 200, 30)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def huge_png_header(width: int = 9000, height: int = 9000) -> bytes:
    """A valid PNG whose IHDR declares width x height (81 Mpx, over the emulator's 64 Mpx limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def upload(emu: Any, key: str, data: bytes | None = None) -> str:
    emu.ensure_bucket(BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
    emu.cos_client().put_object(Bucket=BUCKET, Key=key, Body=png_bytes() if data is None else data)
    return key


def body_for(key: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/" + key},
        }
    }
    body.update(extra)
    return body


def submit(client: Any, body: dict[str, Any]) -> str:
    req = models.ProcessImageRequest()
    req.from_json_string(json.dumps(body))
    return str(client.ProcessImage(req).TaskId)


def detail(client: Any, task_id: str) -> Any:
    req = models.DescribeImageTaskDetailRequest()
    req.TaskId = task_id
    return client.DescribeImageTaskDetail(req)


def listing(client: Any, status: str, limit: int = 10, token: str | None = None, **extra: Any) -> Any:
    req = models.DescribeImageTasksRequest()
    req.Status, req.Limit, req.ScrollToken = status, limit, token
    for name, value in extra.items():
        setattr(req, name, value)
    return client.DescribeImageTasks(req)


def sdk_error(call: Any) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as err:
        call()
    return err.value


def unique(suffix: str = "png") -> str:
    return f"strict/{uuid.uuid4().hex}.{suffix}"


@pytest.fixture
def emu(tmp_path: Any) -> Iterator[EmulatorServer]:
    """A private emulator: listings here must see only this test's tasks."""
    with EmulatorServer(data_dir=tmp_path) as server:
        yield server


# -- 1. DescribeImageTasks as api.json documents it --------------------------------------------------
def test_listing_status_is_required_and_only_processing_or_finish(emu: EmulatorServer) -> None:
    client = emu.mps_client()
    generic = CommonClient("mps", "2019-06-12", emu.credential(), REGION, emu.client_profile())
    assert (
        sdk_error(lambda: generic.call_json("DescribeImageTasks", {"Limit": 5})).get_code()
        == "MissingParameter"
    )
    for bad in ("WAITING", "finish", "FAIL"):
        err = sdk_error(lambda bad=bad: listing(client, bad))
        assert err.get_code() == "InvalidParameterValue"
        assert "allowed values: PROCESSING, FINISH" in err.get_message()
    assert listing(client, "PROCESSING").TotalCount == 0
    assert listing(client, "FINISH").TotalCount == 0


def test_listing_rows_carry_no_input_unless_echoed(tmp_path: Any) -> None:
    for echo in (False, True):
        with EmulatorServer(data_dir=tmp_path / str(echo), echo_listing_input=echo) as server:
            client = server.mps_client()
            src = upload(server, unique())
            task_id = submit(client, body_for(src))
            assert server.wait_idle(30)
            (row,) = listing(client, "FINISH").TaskSet
            assert row.TaskId == task_id and row.Status == "FINISH"
            if echo:
                assert json.loads(row.Input)["CosInputInfo"]["Object"] == "/" + src
            else:
                assert row.Input is None
            # Without Input a client still finds the task's input: describe the candidate.
            assert detail(client, row.TaskId).InputInfo.CosInputInfo.Object == "/" + src


def test_scroll_token_is_the_next_records_task_id_and_paging_is_stable(emu: EmulatorServer) -> None:
    client = emu.mps_client()
    src = upload(emu, unique())
    ids = [submit(client, body_for(src)) for _ in range(7)]
    assert emu.wait_idle(30)
    newest_first = list(reversed(ids))
    first = listing(client, "FINISH", limit=3)
    assert [t.TaskId for t in first.TaskSet] == newest_first[:3]
    assert first.ScrollToken == newest_first[3]  # "该字段表示下一条记录的 ID"
    # Tasks created between pages do not shift the pages already being read.
    more = [submit(client, body_for(src)) for _ in range(4)]
    assert emu.wait_idle(30)
    seen = [t.TaskId for t in first.TaskSet]
    token = first.ScrollToken
    while token:
        page = listing(client, "FINISH", limit=3, token=token)
        seen += [t.TaskId for t in page.TaskSet]
        if page.ScrollToken:
            assert page.ScrollToken not in seen
        token = page.ScrollToken
    assert seen == newest_first  # nothing repeated, nothing skipped, the new tasks not mixed in
    assert listing(client, "FINISH", limit=100).ScrollToken == ""  # "" = no more
    assert [t.TaskId for t in listing(client, "FINISH", limit=4).TaskSet] == list(reversed(more))
    err = sdk_error(lambda: listing(client, "FINISH", token="1250000000-WorkflowTask-" + "f" * 32))
    assert err.get_code() == "InvalidParameterValue"


def _queue_three(server: EmulatorServer) -> list[str]:
    """One task PROCESSING (held 5 s on the single worker) and two WAITING behind it."""
    client = server.mps_client()
    src = upload(server, unique())
    ids = [submit(client, body_for(src)) for _ in range(3)]
    deadline = time.monotonic() + 10
    while detail(client, ids[0]).Status != "PROCESSING" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [detail(client, i).Status for i in ids] == ["PROCESSING", "WAITING", "WAITING"]
    return ids


@pytest.mark.parametrize(
    ("mode", "listed"),
    [("hidden", [0]), ("processing", [2, 1, 0]), ("waiting", [0])],
)
def test_waiting_tasks_in_listings(tmp_path: Any, mode: str, listed: list[int]) -> None:
    with EmulatorServer(
        data_dir=tmp_path, workers=1, task_duration_ms="5000", listing_waiting=mode
    ) as server:
        ids = _queue_three(server)
        client = server.mps_client()
        rows = listing(client, "PROCESSING").TaskSet
        assert [r.TaskId for r in rows] == [ids[i] for i in listed]
        assert {r.Status for r in rows} == {"PROCESSING"}
        if mode == "waiting":  # the pre-issue-11 behaviour: WAITING is a filter and a row status
            waiting = listing(client, "WAITING").TaskSet
            assert [(r.TaskId, r.Status) for r in waiting] == [(ids[2], "WAITING"), (ids[1], "WAITING")]
        else:
            assert sdk_error(lambda: listing(client, "WAITING")).get_code() == "InvalidParameterValue"


def test_lenient_is_one_switch_back_to_the_old_behaviour(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, lenient=True) as server:
        assert (server.config.describe_rate, server.config.echo_listing_input) == (100, True)
        assert server.config.listing_waiting == "waiting"
        client = server.mps_client()
        src = upload(server, unique())
        submit(client, body_for(src))
        assert server.wait_idle(30)
        assert json.loads(listing(client, "FINISH").TaskSet[0].Input)["CosInputInfo"]["Object"] == "/" + src
        assert listing(client, "WAITING").TotalCount == 0
        # an output into a bucket nobody created creates it, and tasks are kept forever
        assert (server.config.auto_create_buckets, server.config.task_retention_seconds) == (True, None)
        out = {"Type": "COS", "CosOutputStorage": {"Bucket": "madeonwrite-1250000000", "Region": REGION}}
        task_id = submit(client, body_for(src, OutputStorage=out))
        assert server.wait_idle(30)
        assert detail(client, task_id).ImageProcessTaskResultSet[0].Status == "SUCCESS"
        assert server.cos_client().bucket_exists(Bucket="madeonwrite-1250000000")
        now = time.time()
        server.app.mps.clock.wall = lambda: now + 365 * 86400
        assert detail(client, task_id).Status == "FINISH"


def test_an_output_bucket_is_never_created_by_a_task(emu: EmulatorServer) -> None:
    """Real MPS cannot write into a missing bucket: the task FINISHes failed with the documented
    ``InvalidInput`` and the bucket still does not exist; once created (PUT Bucket) the same request
    succeeds."""
    client = emu.mps_client()
    src = upload(emu, unique())
    out = {"Type": "COS", "CosOutputStorage": {"Bucket": "later-1250000000", "Region": REGION}}
    failed = submit(client, body_for(src, OutputStorage=out))
    assert emu.wait_idle(30)
    done = detail(client, failed)
    assert (done.Status, done.ErrCode, done.ErrMsg) == ("FINISH", 40000, "InvalidInput")
    assert "later-1250000000" in done.Message and "does not exist" in done.Message
    assert emu.cos_client().bucket_exists(Bucket="later-1250000000") is False
    emu.cos_client().create_bucket(Bucket="later-1250000000")
    ok = submit(client, body_for(src, OutputStorage=out))
    assert emu.wait_idle(30)
    result = detail(client, ok).ImageProcessTaskResultSet[0]
    assert (
        result.Status == "SUCCESS"
        and result.Output.OutputStorage.CosOutputStorage.Bucket == "later-1250000000"
    )


# -- 1b. Tasks are kept 7 days (mps-api.md §2.1, §2.3) --------------------------------------------------
def test_tasks_expire_seven_days_after_their_create_time(emu: EmulatorServer) -> None:
    """Past the retention a task is unknown to both actions; the emulator's clock decides."""
    assert emu.config.task_retention_seconds == 7 * 24 * 3600
    client = emu.mps_client()
    old = submit(client, body_for(upload(emu, unique())))
    assert emu.wait_idle(30)
    created = emu.app.mps.get(old).create_time
    clock = emu.app.mps.clock
    clock.wall = lambda: created + 7 * 24 * 3600  # exactly 7 days: still kept
    assert detail(client, old).Status == "FINISH"
    assert [r.TaskId for r in listing(client, "FINISH").TaskSet] == [old]
    new = submit(client, body_for(upload(emu, unique())))  # created "7 days later"
    assert emu.wait_idle(30)
    clock.wall = lambda: created + 7 * 24 * 3600 + 1  # one second more: forgotten
    err = sdk_error(lambda: detail(client, old))
    assert err.get_code() == "ResourceNotFound.TaskNotFound" and old in err.get_message()
    rows = listing(client, "FINISH", StartTime="2000-01-01T00:00:00Z")
    assert ([r.TaskId for r in rows.TaskSet], rows.TotalCount) == ([new], 1)
    assert detail(client, new).Status == "FINISH"
    assert listing(client, "FINISH", SubTaskHasFailed=False).TotalCount == 1


def test_task_retention_is_configurable_and_pages_skip_expired_tasks(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, task_retention_seconds=60) as server:
        client = server.mps_client()
        ids = [submit(client, body_for(upload(server, unique()))) for _ in range(3)]
        assert server.wait_idle(30)
        first = listing(client, "FINISH", limit=2)
        assert [r.TaskId for r in first.TaskSet] == [ids[2], ids[1]] and first.ScrollToken == ids[0]
        newest = max(server.app.mps.get(i).create_time for i in ids)
        server.app.mps.clock.wall = lambda: newest + 61  # every task is older than 60 s now
        assert listing(client, "FINISH").TotalCount == 0
        for task_id in ids:
            assert (
                sdk_error(lambda t=task_id: detail(client, t)).get_code() == "ResourceNotFound.TaskNotFound"
            )
        # the ScrollToken named a task that has expired since: refused, as any unknown token
        err = sdk_error(lambda: listing(client, "FINISH", limit=2, token=ids[0]))
        assert err.get_code() == "InvalidParameterValue"
        server.app.mps.clock.wall = time.time  # the clock back: the tasks were forgotten, not deleted
        assert detail(client, ids[0]).Status == "FINISH"


# -- 2. Describe* at 20/s by default ------------------------------------------------------------------
def _burst(server: EmulatorServer, action: str, n: int) -> list[str]:
    """Fire ``n`` calls at once; the error code of each ("OK" when answered without error)."""
    barrier = threading.Barrier(n)
    codes: list[str] = []
    messages: list[str] = []
    lock = threading.Lock()

    def fire() -> None:
        client = server.mps_client()
        barrier.wait()
        try:
            if action == "DescribeImageTasks":
                listing(client, "FINISH")
            else:
                sdk_call = models.DescribeImageTaskDetailRequest()
                sdk_call.TaskId = "1250000000-WorkflowTask-" + "0" * 32
                client.DescribeImageTaskDetail(sdk_call)
            code = "OK"
        except TencentCloudSDKException as exc:
            code = exc.get_code()
            if code == "RequestLimitExceeded":
                with lock:
                    messages.append(exc.get_message())
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=fire) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    limit = f"which exceeds the frequency limit `{server.config.describe_rate}` for a second"
    assert all(limit in m for m in messages), messages[:1]
    return codes


@pytest.mark.parametrize("action", ["DescribeImageTasks", "DescribeImageTaskDetail"])
def test_describe_actions_default_to_twenty_per_second(emu: EmulatorServer, action: str) -> None:
    assert emu.config.describe_rate == 20
    codes = _burst(emu, action, 40)
    answered = len(codes) - codes.count("RequestLimitExceeded")  # TaskNotFound counts as answered
    # 40 at once: 20 fit the one-second window; a slow machine may spread them over a boundary.
    assert 20 <= answered <= 28 and codes.count("RequestLimitExceeded") >= 12, codes


def test_describe_rate_is_configurable(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, describe_rate=5) as server:
        codes = _burst(server, "DescribeImageTasks", 12)
        assert 5 <= codes.count("OK") <= 8, codes


# -- 3. Task failures carry documented ErrMsg codes --------------------------------------------------
@pytest.mark.parametrize(
    ("case", "err_code", "err_msg"),
    [
        ("missing-object", 60000, "SourceFileError.ContentMalformed"),
        ("missing-bucket", 60000, "SourceFileError.ContentMalformed"),
        ("corrupt-file", 60000, "SourceFileError.ContentMalformed"),
        ("empty-file", 60000, "SourceFileError.ContentMalformed"),
        ("too-many-pixels", 60000, "SourceFileError.ContentUnsupported"),
        ("url-not-downloadable", 60000, "SourceFileError.DownloadNotAccessible"),
        ("unsupported-config", 40000, "InvalidInput.ConfigurationUnsupported"),
        ("unusable-parameter", 40000, "InvalidInput.ConfigurationUnsupported"),
        ("schedule-id", 40000, "InvalidInput.ConfigurationUnsupported"),
        ("output-bucket-unwritable", 40000, "InvalidInput"),
        ("output-bucket-missing", 40000, "InvalidInput"),
        ("injected-internal", 70000, "InternalError"),
    ],
)
def test_failed_tasks_carry_documented_codes(
    emulator: EmulatorServer, case: str, err_code: int, err_msg: str
) -> None:
    client = emulator.mps_client()
    src = unique()
    body = body_for(src)
    if case == "missing-bucket":
        body = body_for(src)
        body["InputInfo"]["CosInputInfo"]["Bucket"] = "nosuchbucket-1250000000"
    elif case == "corrupt-file":
        upload(emulator, src, b"GIF89a but not really an image")
    elif case == "empty-file":
        upload(emulator, src, b"")
    elif case == "too-many-pixels":
        upload(emulator, src, huge_png_header())
    elif case == "url-not-downloadable":
        body = {
            "InputInfo": {
                "Type": "URL",
                "UrlInputInfo": {"Url": f"http://{emulator.endpoint}/nobucket/{src}"},
            },
            "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}},
        }
    elif case == "unsupported-config":
        upload(emulator, src)
        body["ImageTask"] = {"BeautyConfig": {"BeautyEffectItems": [{"Type": "Whiten", "Value": 30}]}}
    elif case == "unusable-parameter":
        upload(emulator, src)  # 24x16 super-resolved to 5000 px wide: over the documented 4096
        body["ImageTask"] = {
            "EnhanceConfig": {"AdvancedSuperResolutionConfig": {"Mode": "percent", "Percent": 250}}
        }
    elif case == "schedule-id":
        upload(emulator, src)
        body["ScheduleId"] = 30010
    elif case == "output-bucket-unwritable":
        upload(emulator, src)  # a name COS refuses (no -appid suffix): the output cannot be written
        body["OutputStorage"] = {
            "Type": "COS",
            "CosOutputStorage": {"Bucket": "NoSuchOutput", "Region": REGION},
        }
    elif case == "output-bucket-missing":
        upload(emulator, src)  # a valid name nobody created: MPS cannot write there, nor create it
        body["OutputStorage"] = {
            "Type": "COS",
            "CosOutputStorage": {"Bucket": "nosuchoutput-1250000000", "Region": REGION},
        }
    elif case == "injected-internal":
        upload(emulator, src)
        emulator.faults.fail_tasks(count=1)
    task_id = submit(client, body)
    assert emulator.wait_idle(30)
    done = detail(client, task_id)
    assert (done.Status, done.ErrCode, done.ErrMsg) == ("FINISH", err_code, err_msg), done.Message
    result = done.ImageProcessTaskResultSet[0]
    assert (result.Status, result.ErrMsg, result.Output) == ("FAIL", err_msg, None)
    assert done.Message
    # The provider's table: InternalError is worth a retry, every other task failure is terminal.
    expected = "transient" if err_msg == "InternalError" else "terminal"
    assert classify_code(err_msg) == expected
    assert error_from_code(err_msg).retryable is (err_msg == "InternalError")


# -- 4. OutputPath: the emulator writes where expected_output_key predicts ----------------------------
OUTPUT_MATRIX = [
    # (input name, data, OutputDir, OutputPath, EncodeConfig.Format, Definition)
    ("cat.png", "png", None, None, None, None),
    ("cat.png", "png", None, None, "JPEG", None),
    ("cat.png", "png", "/enhanced/dt=1/", None, "WebP", None),
    ("cat.png", "png", "enhanced", None, "bmp", None),
    ("cat.png", "png", "/", None, "PNG", None),
    ("cat.png", "png", "", None, "jpeg", None),
    ("cat.png", "png", None, "{inputName}_{inputFormat}.{format}", "JPEG", None),
    ("cat.png", "png", "/o/", "{inputName}_{definition}_{number}.{format}", "webp", 20001),
    ("cat.png", "png", "/o/", "{inputName}_{definition}.{format}", None, None),
    ("cat.png", "png", "/ignored/", "/abs/{inputName}.{format}", "JPEG", None),
    ("cat.png", "png", "/o/", "sub/dir/{inputName}-v2.{format}", "PNG", None),
    ("a.b.PNG", "png", None, "{inputName}.{inputFormat}.{format}", None, None),
    ("photo.jpg", "jpeg", None, None, None, None),
    ("photo.jpeg", "jpeg", "/x/", "{inputName}.{format}", None, None),
    ("photo.jpg", "jpeg", None, "{inputName}_from_{inputFormat}.{format}", "WebP", None),
]


def test_emulator_output_key_equals_expected_output_key(emulator: EmulatorServer) -> None:
    client = emulator.mps_client()
    runs = []
    for name, kind, out_dir, out_path, fmt, definition in OUTPUT_MATRIX:
        src = upload(
            emulator, f"strict/{uuid.uuid4().hex}/{name}", png_bytes() if kind == "png" else jpeg_bytes()
        )
        request = ProcessImageRequest.build(
            input=f"cos://{BUCKET}/{src}",
            region=REGION,
            output_dir=out_dir,
            output_path=out_path,
            image_task={"EncodeConfig": {"Format": fmt}} if fmt else None,
            definition=definition,
        )
        body = request.to_api()
        if out_dir == "":
            body["OutputDir"] = ""  # the SDK sends an empty string as it is
        runs.append((src, out_dir, request, submit(client, body)))
    assert emulator.wait_idle(60)
    mismatches = []
    for src, out_dir, request, task_id in runs:
        done = detail(client, task_id)
        result = done.ImageProcessTaskResultSet[0]
        assert result.Status == "SUCCESS", (src, done.ErrMsg, done.Message)
        predicted = expected_output_key(
            src, out_dir, request.output_path, request.output_format, request.definition
        )
        written = result.Output.Path.lstrip("/")
        emulator.cos_client().head_object(Bucket=BUCKET, Key=written)  # really there
        if written != predicted or "{" in written:
            mismatches.append((src, out_dir, request.output_path, written, predicted))
    assert mismatches == []


# -- 5. Region ---------------------------------------------------------------------------------------
def test_region_is_checked_against_the_documented_mps_regions(emulator: EmulatorServer) -> None:
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    for region in ("ap-guangzhou", "ap-singapore", "eu-frankfurt", "na-siliconvalley", ""):
        client = sync_client.MpsClient(emulator.credential(), region, emulator.client_profile())
        assert client.DescribeImageTasks(req).RequestId  # "" = no X-TC-Region: not required
    for region in ("ap-guangzho", "us-east-1", "ap-shanghai-fsi", "cn-hangzhou"):
        client = sync_client.MpsClient(emulator.credential(), region, emulator.client_profile())
        err = sdk_error(lambda client=client: client.DescribeImageTasks(req))
        assert err.get_code() == "UnsupportedRegion" and region in err.get_message()
    assert emulator.stats()["actions"]["DescribeImageTasks"]["succeeded"] == 5


def test_extra_regions_are_accepted_and_the_configured_region_must_be_one(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, extra_regions=["ap-shanghai-fsi"]) as server:
        req = models.DescribeImageTasksRequest()
        req.Status = "PROCESSING"
        client = sync_client.MpsClient(server.credential(), "ap-shanghai-fsi", server.client_profile())
        assert client.DescribeImageTasks(req).TotalCount == 0
    with pytest.raises(ValueError, match="not an MPS region"):
        EmulatorServer(data_dir=tmp_path, region="ap-guangzho")


# -- 10. The request model's documented shape, end to end ---------------------------------------------
def test_schedule_id_without_input_info_is_accepted(emulator: EmulatorServer) -> None:
    client = emulator.mps_client()
    task_id = submit(
        client,
        {
            "ScheduleId": 30010,
            "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}},
        },
    )
    assert emulator.wait_idle(30)
    done = detail(client, task_id)  # created as the service would; orchestrations are not emulated
    assert (done.Status, done.ErrMsg) == ("FINISH", "InvalidInput.ConfigurationUnsupported")
    assert "not emulated" in done.Message
    generic = CommonClient("mps", "2019-06-12", emulator.credential(), REGION, emulator.client_profile())
    err = sdk_error(
        lambda: generic.call_json("ProcessImage", {"ImageTask": {"EncodeConfig": {"Format": "PNG"}}})
    )
    assert err.get_code() == "MissingParameter" and "InputInfo" in err.get_message()


def test_long_resource_id_and_zero_super_resolution_sides_are_accepted(emulator: EmulatorServer) -> None:
    client = emulator.mps_client()
    src = upload(emulator, unique())
    config = {"Mode": "fixed", "Width": 48, "Height": 0, "LongSide": 0, "ShortSide": 0}
    task_id = submit(
        client,
        body_for(
            src, ResourceId="r" * 300, ImageTask={"EnhanceConfig": {"AdvancedSuperResolutionConfig": config}}
        ),
    )
    assert emulator.wait_idle(30)
    done = detail(client, task_id)
    assert done.ImageProcessTaskResultSet[0].Status == "SUCCESS", done.Message
    out = emulator.cos_client().get_object(Bucket=BUCKET, Key=done.ImageProcessTaskResultSet[0].Output.Path)
    image = Image.open(io.BytesIO(out["Body"].get_raw_stream().read()))
    assert image.size == (48, 32)  # Height 0 = not set: the ratio decides


def test_literal_output_extension_is_refused_like_the_model(emulator: EmulatorServer) -> None:
    client = emulator.mps_client()
    err = sdk_error(lambda: submit(client, body_for(unique(), OutputPath="/out/x.jpg")))
    assert err.get_code() == "InvalidParameterValue" and "OutputPath" in err.get_message()
    assert ".{format}" in err.get_message()
