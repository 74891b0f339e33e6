"""Official MPS SDK (sync and async) → HTTP → emulator: the three image actions, auth, limits, errors.

Everything goes through the real wire; the only patch is the SDK's clock for the expired-signature
case (a request signed six minutes ago cannot be produced any other way).
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid
from typing import Any
from unittest import mock

import pytest
import requests
from PIL import Image
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.mps.v20190612 import models

from airflow_mps.emulator.testing import EmulatorServer

BUCKET = "photos-1250000000"
REGION = "ap-guangzhou"


def png_bytes(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def upload(emu: Any, key: str, data: bytes | None = None) -> str:
    emu.ensure_bucket(BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
    emu.cos_client().put_object(Bucket=BUCKET, Key=key, Body=data if data is not None else png_bytes())
    return key


def process_request(key: str, **extra: Any) -> models.ProcessImageRequest:
    body = {
        "InputInfo": {
            "Type": "COS",
            "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/" + key},
        }
    }
    body.update(extra)
    req = models.ProcessImageRequest()
    req.from_json_string(json.dumps(body))
    return req


def detail(client: Any, task_id: str) -> models.DescribeImageTaskDetailResponse:
    req = models.DescribeImageTaskDetailRequest()
    req.TaskId = task_id
    return client.DescribeImageTaskDetail(req)


def wait_finish(emu: Any, client: Any, task_id: str) -> models.DescribeImageTaskDetailResponse:
    assert emu.wait_idle(30)
    resp = detail(client, task_id)
    assert resp.Status == "FINISH"
    return resp


def sdk_error(call: Any) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as err:
        call()
    return err.value


def key() -> str:
    return f"raw/{uuid.uuid4().hex}.png"


# -- happy paths -------------------------------------------------------------------------------------
def test_sync_process_detail_and_signed_url(emulator: EmulatorServer, mps_client: Any) -> None:
    src = upload(emulator, key(), png_bytes((40, 30)))
    resp = mps_client.ProcessImage(
        process_request(
            src, OutputDir="/enhanced/", ImageTask={"EncodeConfig": {"Format": "JPEG", "Quality": 80}}
        )
    )
    assert resp.TaskId.startswith("1250000000-WorkflowTask-") and len(resp.TaskId.split("-")[-1]) == 32
    assert resp.RequestId
    first = detail(mps_client, resp.TaskId)
    assert first.Status in ("WAITING", "PROCESSING", "FINISH")
    done = wait_finish(emulator, mps_client, resp.TaskId)
    assert (done.TaskType, done.ErrCode, done.ErrMsg) == ("WorkflowTask", 0, "")
    assert done.CreateTime.endswith("Z") and done.FinishTime.endswith("Z")
    assert done.InputInfo.CosInputInfo.Object == "/" + src
    result = done.ImageProcessTaskResultSet[0]
    assert (result.Status, result.Progress) == ("SUCCESS", 100)
    name = src.rsplit("/", 1)[1].replace(".png", ".jpg")
    assert result.Output.Path == f"/enhanced/{name}"
    assert result.Output.OutputStorage.Type == "COS"
    assert result.Output.OutputStorage.CosOutputStorage.Bucket == BUCKET
    got = requests.get(result.Output.SignedUrl, timeout=10)
    assert got.status_code == 200
    img = Image.open(io.BytesIO(got.content))
    assert (img.format, img.size) == ("JPEG", (40, 30))


def test_async_client_process_and_detail(emulator: EmulatorServer) -> None:
    src = upload(emulator, key())

    async def run() -> tuple[str, str, str]:
        async with emulator.async_mps_client() as client:
            submitted = await client.ProcessImage(
                process_request(src, ImageTask={"EncodeConfig": {"Format": "WebP"}})
            )
            await asyncio.to_thread(emulator.wait_idle, 30)
            req = models.DescribeImageTaskDetailRequest()
            req.TaskId = submitted.TaskId
            got = await client.DescribeImageTaskDetail(req)
            return (
                got.Status,
                got.ImageProcessTaskResultSet[0].Status,
                got.ImageProcessTaskResultSet[0].Output.Path,
            )

    status, sub_status, path = asyncio.run(run())
    assert (status, sub_status) == ("FINISH", "SUCCESS")
    assert path == "/" + src.replace(".png", ".webp")


def test_url_input_with_output_storage(emulator: EmulatorServer, mps_client: Any) -> None:
    from airflow_mps.emulator.cos.auth import presign_url

    src = upload(emulator, key())
    url = presign_url(f"http://{emulator.endpoint}", BUCKET, src, emulator.secret_id, emulator.secret_key)
    body = {
        "InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": url}},
        "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}},
        "OutputDir": "/from-url/",
    }
    req = models.ProcessImageRequest()
    req.from_json_string(json.dumps(body))
    done = wait_finish(emulator, mps_client, mps_client.ProcessImage(req).TaskId)
    assert done.ImageProcessTaskResultSet[0].Status == "SUCCESS"
    assert done.ImageProcessTaskResultSet[0].Output.Path.startswith("/from-url/")


def test_describe_image_tasks_paging_and_filters(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path) as emu:
        client = emu.mps_client()
        ids = []
        for i in range(5):
            src = upload(emu, f"raw/p{i}.png")
            ids.append(client.ProcessImage(process_request(src)).TaskId)
        bad = client.ProcessImage(process_request("raw/missing.png")).TaskId
        assert emu.wait_idle(30)
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            req = models.DescribeImageTasksRequest()
            req.Status, req.Limit = "FINISH", 2
            if token:
                req.ScrollToken = token
            resp = client.DescribeImageTasks(req)
            assert resp.TotalCount == 6
            seen += [t.TaskId for t in resp.TaskSet]
            pages += 1
            token = resp.ScrollToken
            if not token:
                break
        assert pages == 3
        assert seen == list(reversed([*ids, bad]))  # newest first, no repeats
        row = next(t for t in resp.TaskSet if t.TaskId == ids[0])
        assert row.Input is None  # not echoed by default: its format is unpublished (api.json)
        assert row.BeginProcessTime and row.FinishTime and row.SubTaskHasFailed is False

        failed = models.DescribeImageTasksRequest()
        failed.Status, failed.SubTaskHasFailed = "FINISH", True
        assert [t.TaskId for t in client.DescribeImageTasks(failed).TaskSet] == [bad]
        waiting = models.DescribeImageTasksRequest()
        waiting.Status = "WAITING"  # ImageTaskInfo.Status enumerates only FINISH and PROCESSING
        assert sdk_error(lambda: client.DescribeImageTasks(waiting)).get_code() == "InvalidParameterValue"
        window = models.DescribeImageTasksRequest()
        window.Status, window.EndTime = "FINISH", "2000-01-01T00:00:00Z"
        assert client.DescribeImageTasks(window).TotalCount == 0
        bad_limit = models.DescribeImageTasksRequest()
        bad_limit.Status, bad_limit.Limit = "FINISH", 101
        assert (
            sdk_error(lambda: client.DescribeImageTasks(bad_limit)).get_code()
            == "InvalidParameterValue.Limit"
        )


# -- failing tasks -----------------------------------------------------------------------------------
def test_missing_input_object_finishes_failed(emulator: EmulatorServer, mps_client: Any) -> None:
    done = wait_finish(emulator, mps_client, mps_client.ProcessImage(process_request(key())).TaskId)
    # The documented task error list (doc 266/50368): "文件不存在" is SourceFileError.ContentMalformed.
    assert done.ErrCode == 60000 and done.ErrMsg == "SourceFileError.ContentMalformed"
    result = done.ImageProcessTaskResultSet[0]
    assert result.Status == "FAIL" and result.ErrMsg == "SourceFileError.ContentMalformed"
    assert result.Output is None


def test_not_an_image_finishes_with_decode_error(emulator: EmulatorServer, mps_client: Any) -> None:
    src = upload(emulator, key(), b"this is not an image")
    done = wait_finish(emulator, mps_client, mps_client.ProcessImage(process_request(src)).TaskId)
    assert done.ErrCode != 0 and done.ErrMsg
    assert done.ImageProcessTaskResultSet[0].Status == "FAIL"


# -- request errors ----------------------------------------------------------------------------------
def test_validation_errors_come_back_with_codes(emulator: EmulatorServer, mps_client: Any) -> None:
    bad_quality = process_request(key(), ImageTask={"EncodeConfig": {"Format": "JPEG", "Quality": 500}})
    err = sdk_error(lambda: mps_client.ProcessImage(bad_quality))
    assert err.get_code().startswith("InvalidParameterValue") and "Quality" in err.get_message()
    assert err.get_request_id()

    s3 = models.ProcessImageRequest()
    s3.from_json_string(
        json.dumps(
            {
                "InputInfo": {
                    "Type": "AWS-S3",
                    "S3InputInfo": {"S3Bucket": "b", "S3Region": "us-east-1", "S3Object": "/a.png"},
                }
            }
        )
    )
    assert sdk_error(lambda: mps_client.ProcessImage(s3)).get_code().startswith("InvalidParameter")

    url_no_out = models.ProcessImageRequest()
    url_no_out.from_json_string(
        json.dumps({"InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": "http://127.0.0.1:1/a.png"}}})
    )
    err = sdk_error(lambda: mps_client.ProcessImage(url_no_out))
    assert (
        err.get_code() in ("MissingParameter", "InvalidParameterValue")
        and "OutputStorage" in err.get_message()
    )

    assert (
        sdk_error(lambda: mps_client.ProcessImage(models.ProcessImageRequest()))
        .get_code()
        .startswith(("MissingParameter", "InvalidParameter"))
    )
    assert sdk_error(lambda: detail(mps_client, "1250000000-WorkflowTask-" + "0" * 32)).get_code() == (
        "ResourceNotFound.TaskNotFound"
    )
    assert emulator.stats()["tasks_created"] == 0


def test_generic_calls_version_action_and_types(emulator: EmulatorServer) -> None:
    cred, profile = emulator.credential(), emulator.client_profile()
    old = CommonClient("mps", "2018-01-01", cred, REGION, profile)
    assert (
        sdk_error(lambda: old.call_json("DescribeImageTasks", {"Status": "FINISH"})).get_code()
        == "NoSuchVersion"
    )
    client = CommonClient("mps", "2019-06-12", cred, REGION, profile)
    assert sdk_error(lambda: client.call_json("ProcessMedia", {})).get_code() == "InvalidAction"
    assert (
        sdk_error(lambda: client.call_json("DescribeImageTaskDetail", {"TaskId": 5})).get_code()
        == "InvalidParameter"
    )
    assert sdk_error(lambda: client.call_json("DescribeImageTaskDetail", {})).get_code() == "MissingParameter"
    assert sdk_error(lambda: client.call_json("DescribeImageTasks", {})).get_code() == "MissingParameter"


def test_response_content_type_is_exactly_application_json(emulator: EmulatorServer) -> None:
    resp = requests.post(
        f"http://{emulator.endpoint}/", data=b"{}", headers={"X-TC-Action": "ProcessImage"}, timeout=5
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    error = resp.json()["Response"]["Error"]
    assert error["Code"] == "AuthFailure.InvalidAuthorization"
    assert resp.json()["Response"]["RequestId"]


# -- authentication ----------------------------------------------------------------------------------
def test_auth_failures_through_the_sdk(emulator: EmulatorServer) -> None:
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    wrong_key = emulator.mps_client(secret_key="not-the-key")
    assert sdk_error(lambda: wrong_key.DescribeImageTasks(req)).get_code() == "AuthFailure.SignatureFailure"
    unknown = emulator.mps_client(secret_id="AKIDUNKNOWN0000000000000000000000")
    assert sdk_error(lambda: unknown.DescribeImageTasks(req)).get_code() == "AuthFailure.SecretIdNotFound"
    import time as real_time

    stale = real_time.time() - 400
    with mock.patch("tencentcloud.common.abstract_client.time.time", return_value=stale):
        err = sdk_error(lambda: emulator.mps_client().DescribeImageTasks(req))
    assert err.get_code() == "AuthFailure.SignatureExpire"
    assert emulator.mps_client().DescribeImageTasks(req).RequestId


def test_token_is_required_when_configured(tmp_path: Any) -> None:
    with EmulatorServer(data_dir=tmp_path, token="session-token-1") as emu:
        req = models.DescribeImageTasksRequest()
        req.Status = "FINISH"
        assert emu.mps_client().DescribeImageTasks(req).TotalCount == 0  # emu passes its token
        bad = emu.mps_client(token="other-token")
        assert sdk_error(lambda: bad.DescribeImageTasks(req)).get_code() == "AuthFailure.TokenFailure"
        from tencentcloud.common.credential import Credential
        from tencentcloud.mps.v20190612 import mps_client

        none = mps_client.MpsClient(Credential(emu.secret_id, emu.secret_key), REGION, emu.client_profile())
        assert sdk_error(lambda: none.DescribeImageTasks(req)).get_code() == "AuthFailure.TokenFailure"


# -- rate limits -------------------------------------------------------------------------------------
def test_sixty_process_image_in_one_second_are_mostly_throttled(emulator: EmulatorServer) -> None:
    n = 60
    barrier = threading.Barrier(n)
    codes: list[str] = []
    lock = threading.Lock()
    body = json.dumps(
        {
            "InputInfo": {
                "Type": "COS",
                "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/raw/rate.png"},
            }
        }
    )

    def fire() -> None:
        client = emulator.mps_client()
        req = models.ProcessImageRequest()
        req.from_json_string(body)
        barrier.wait()
        try:
            client.ProcessImage(req)
            code = "OK"
        except TencentCloudSDKException as exc:
            code = exc.get_code()
            if code == "RequestLimitExceeded":
                assert "which exceeds the frequency limit `20` for a second" in exc.get_message()
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=fire) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    accepted, throttled = codes.count("OK"), codes.count("RequestLimitExceeded")
    assert accepted + throttled == n
    # 60 requests fired together: 20 fit the one-second window, the rest are refused; a slow machine
    # may spread them over a window boundary, which can only let a few more through.
    assert 20 <= accepted <= 30 and throttled >= 30, (accepted, throttled)
    stats = emulator.stats()
    assert stats["tasks_created"] == accepted  # refused requests created nothing
    assert stats["actions"]["ProcessImage"]["throttled"] == throttled
    assert stats["submissions_by_input"][f"cos://{BUCKET}/raw/rate.png"] == accepted


def test_limits_are_per_secret_id(tmp_path: Any) -> None:
    extra = {"AKIDSECOND000000000000000000000000": "second-key"}
    with EmulatorServer(data_dir=tmp_path, describe_rate=3, extra_credentials=extra) as emu:
        req = models.DescribeImageTasksRequest()
        req.Status = "FINISH"
        first = emu.mps_client()
        for _ in range(3):
            first.DescribeImageTasks(req)
        assert sdk_error(lambda: first.DescribeImageTasks(req)).get_code() == "RequestLimitExceeded"
        second = emu.mps_client(secret_id="AKIDSECOND000000000000000000000000", secret_key="second-key")
        assert second.DescribeImageTasks(req).TotalCount == 0


def test_body_over_ten_megabytes_is_refused_unread(emulator: EmulatorServer) -> None:
    resp = requests.post(
        f"http://{emulator.endpoint}/",
        data=b"x" * (10 * 1024 * 1024 + 1),
        headers={"X-TC-Action": "ProcessImage", "Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json()["Response"]["Error"]["Code"] == "RequestSizeLimitExceeded"
