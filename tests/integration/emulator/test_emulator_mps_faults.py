"""Every fault kind, injected through the Python API or the admin endpoint, observed through the SDKs.

Assertions are on codes and counters (was a task created? how many faults fired?), never on time.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import requests
from qcloud_cos import CosServiceError
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.mps.v20190612 import models
from tencentcloud.mps.v20190612 import mps_client as sync_client

from airflow_mps.emulator.testing import EmulatorServer

BUCKET = "faults-1250000000"
REGION = "ap-guangzhou"


def _request(key: str) -> models.ProcessImageRequest:
    req = models.ProcessImageRequest()
    req.from_json_string(
        json.dumps(
            {
                "InputInfo": {
                    "Type": "COS",
                    "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/" + key},
                }
            }
        )
    )
    return req


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    return buf.getvalue()


def _error(call: Any) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as err:
        call()
    return err.value


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("throttle", "RequestLimitExceeded"),
        ("internal_error", "InternalError"),
        ("http_502", "ServerNetworkError"),
        ("http_503", "ServerNetworkError"),
        ("reset_before", "ClientNetworkError"),
    ],
)
def test_refusing_faults_create_no_task(
    emulator: EmulatorServer, mps_client: Any, kind: str, code: str
) -> None:
    emulator.faults.add(kind, "ProcessImage", count=1)
    err = _error(lambda: mps_client.ProcessImage(_request("raw/x.png")))
    assert err.get_code() == code
    stats = emulator.stats()
    assert stats["tasks_created"] == 0
    assert stats["actions"]["ProcessImage"]["faulted"] == 1
    # The budget was one request: the next one goes through.
    assert mps_client.ProcessImage(_request("raw/x.png")).TaskId
    assert emulator.stats()["tasks_created"] == 1


def test_reset_after_processing_creates_the_task(emulator: EmulatorServer, mps_client: Any) -> None:
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # list only what this test created
    emulator.faults.reset_after("ProcessImage", count=1)
    src = f"raw/{uuid.uuid4().hex}.png"
    assert _error(lambda: mps_client.ProcessImage(_request(src))).get_code() == "ClientNetworkError"
    stats = emulator.stats()
    assert stats["tasks_created"] == 1  # the request was processed; only the answer was lost
    assert stats["submissions_by_input"] == {f"cos://{BUCKET}/{src}": 1}
    assert emulator.wait_idle(30)
    # A client reconciles the ambiguous submission the documented way: list the tasks of the last
    # seconds (rows carry no Input by default), then describe each candidate for its InputInfo.
    candidates: list[str] = []
    token = ""
    while True:
        listing = models.DescribeImageTasksRequest()
        listing.Status, listing.Limit, listing.StartTime = "FINISH", 100, since
        listing.ScrollToken = token or None
        page = mps_client.DescribeImageTasks(listing)
        assert all(t.Input is None for t in page.TaskSet)
        candidates += [t.TaskId for t in page.TaskSet]
        token = page.ScrollToken
        if not token:
            break
    objects = []
    for task_id in candidates:  # other tests' tasks of the same second too: stay under 20/s
        req = models.DescribeImageTaskDetailRequest()
        req.TaskId = task_id
        for _ in range(50):
            try:
                objects.append(mps_client.DescribeImageTaskDetail(req).InputInfo.CosInputInfo.Object)
                break
            except TencentCloudSDKException as exc:
                if exc.get_code() != "RequestLimitExceeded":
                    raise
                time.sleep(0.1)
    assert "/" + src in objects


def test_slow_response_times_out_the_client_but_the_task_exists(emulator: EmulatorServer) -> None:
    emulator.faults.slow(2.5, "ProcessImage", count=1)
    from tencentcloud.common.profile.client_profile import ClientProfile

    profile = ClientProfile(httpProfile=emulator.http_profile(reqTimeout=1))
    client = sync_client.MpsClient(emulator.credential(), REGION, profile)
    assert _error(lambda: client.ProcessImage(_request("raw/slow.png"))).get_code() == "ClientNetworkError"
    assert emulator.stats()["tasks_created"] == 1


def test_latency_fault_fires_and_requests_still_succeed(emulator: EmulatorServer, mps_client: Any) -> None:
    fault = emulator.faults.latency(20, "Describe*")
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    for _ in range(3):
        mps_client.DescribeImageTasks(req)
    assert fault.fired == 3
    assert emulator.stats()["actions"]["DescribeImageTasks"]["succeeded"] == 3


def test_the_limiter_lag_excludes_the_injected_latency(emulator: EmulatorServer, mps_client: Any) -> None:
    """Stats report, per action, how long after a request reached the service (its receipt plus the
    injected network delay) the rate limiter decided on it: the emulator's own delay, which bench P8
    reports to tell it from the clients'. With 300 ms injected, the lag stays far below it."""
    emulator.faults.latency(300, "Describe*")
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    started = time.monotonic()
    for _ in range(3):
        mps_client.DescribeImageTasks(req)
    assert time.monotonic() - started >= 0.9  # the latency was injected
    lag = emulator.stats()["limiter_lag_ms"]["DescribeImageTasks"]
    assert lag["n"] == 3 and 0 <= lag["p50"] <= lag["p99"] <= lag["max"] < 150
    emulator.app.stats.reset()  # the admin API's reset-stats
    assert emulator.stats()["limiter_lag_ms"] == {}


def test_fail_tasks_next_n(emulator: EmulatorServer, mps_client: Any, cos_client: Any) -> None:
    emulator.ensure_bucket(BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
    cos_client.put_object(Bucket=BUCKET, Key="raw/ok.png", Body=_png())
    emulator.faults.fail_tasks(err_code=70013, err_msg="FailedOperation.Injected", message="boom", count=1)
    first = mps_client.ProcessImage(_request("raw/ok.png")).TaskId
    assert emulator.wait_idle(30)
    second = mps_client.ProcessImage(_request("raw/ok.png")).TaskId
    assert emulator.wait_idle(30)
    d1, d2 = models.DescribeImageTaskDetailRequest(), models.DescribeImageTaskDetailRequest()
    d1.TaskId, d2.TaskId = first, second
    r1, r2 = mps_client.DescribeImageTaskDetail(d1), mps_client.DescribeImageTaskDetail(d2)
    assert (r1.Status, r1.ErrCode, r1.ErrMsg, r1.Message) == (
        "FINISH",
        70013,
        "FailedOperation.Injected",
        "boom",
    )
    assert r1.ImageProcessTaskResultSet[0].Status == "FAIL"
    assert (r2.ErrCode, r2.ImageProcessTaskResultSet[0].Status) == (0, "SUCCESS")
    assert emulator.stats()["duplicate_submissions"] == {f"cos://{BUCKET}/raw/ok.png": 2}


def test_cos_faults(emulator: EmulatorServer, cos_client: Any) -> None:
    emulator.ensure_bucket(BUCKET)
    cos_client.put_object(Bucket=BUCKET, Key="c.txt", Body=b"x")
    emulator.faults.internal_error("cos:GetObject", count=1)
    with pytest.raises(CosServiceError) as err:
        cos_client.get_object(Bucket=BUCKET, Key="c.txt")
    assert (err.value.get_status_code(), err.value.get_error_code()) == (500, "InternalError")
    emulator.faults.throttle("cos:*", count=1)
    with pytest.raises(CosServiceError) as err:
        cos_client.get_object(Bucket=BUCKET, Key="c.txt")
    assert (err.value.get_status_code(), err.value.get_error_code()) == (503, "SlowDown")
    assert cos_client.get_object(Bucket=BUCKET, Key="c.txt")["Body"].get_raw_stream().read() == b"x"


def test_probability_faults_are_deterministic_per_seed(emulator: EmulatorServer, mps_client: Any) -> None:
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"

    def run() -> list[str]:
        emulator.reset()  # reseeds the fault RNG
        emulator.faults.internal_error("DescribeImageTasks", probability=0.5)
        out = []
        for _ in range(20):
            try:
                mps_client.DescribeImageTasks(req)
                out.append("ok")
            except TencentCloudSDKException as exc:
                out.append(exc.get_code())
        return out

    first = run()
    assert first == run()
    assert 0 < first.count("InternalError") < 20


def test_admin_endpoint_faults_stats_reset(emulator: EmulatorServer, mps_client: Any) -> None:
    base = f"http://{emulator.endpoint}/_emulator"
    assert requests.get(f"{base}/health", timeout=5).json()["status"] == "ok"
    added = requests.post(
        f"{base}/faults", json={"kind": "throttle", "action": "DescribeImageTasks", "next": 1}, timeout=5
    ).json()
    assert added["added"][0]["count"] == 1
    spec = requests.post(
        f"{base}/faults", json={"faults": ["internal_error@DescribeImageTaskDetail,next=1"]}, timeout=5
    ).json()
    assert len(spec["faults"]) == 2
    req = models.DescribeImageTasksRequest()
    req.Status = "FINISH"
    assert _error(lambda: mps_client.DescribeImageTasks(req)).get_code() == "RequestLimitExceeded"
    detail = models.DescribeImageTaskDetailRequest()
    detail.TaskId = "nope"
    assert _error(lambda: mps_client.DescribeImageTaskDetail(detail)).get_code() == "InternalError"
    stats = requests.get(f"{base}/stats", timeout=5).json()
    assert stats["actions"]["DescribeImageTasks"]["throttled"] == 1
    assert requests.post(f"{base}/faults", json={"kind": "nope"}, timeout=5).status_code == 400
    requests.post(f"{base}/reset-stats", timeout=5)
    assert requests.get(f"{base}/stats", timeout=5).json()["actions"] == {}
    assert requests.get(f"{base}/faults", timeout=5).json()["faults"] == []
