"""The naive way: what a data engineer writes without this provider, measured as the baseline.

A PythonOperator callable with the official sync SDK: build each ``ProcessImage`` body by hand, send
it, on ``RequestLimitExceeded`` sleep a second and try again (no client-side pacing), then poll every
task with ``DescribeImageTaskDetail`` and ``time.sleep``. The whole loop holds a worker slot.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from harness import BUCKET


@dataclass
class NaiveRun:
    task_ids: list[str] = field(default_factory=list)
    throttled: int = 0
    failed: int = 0
    first_start: float = 0.0
    last_end: float = 0.0
    describe_calls: int = 0
    #: error code → first message, of the submissions that failed for good (a baseline that fails
    #: measures nothing: the scenarios report these)
    errors: dict[str, str] = field(default_factory=dict)


def _client(emu: Any) -> Any:
    return emu.mps_client()


def _body(emu: Any, key: str, out_prefix: str) -> str:
    name = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return json.dumps(
        {
            "InputInfo": {
                "Type": "COS",
                "CosInputInfo": {"Bucket": BUCKET, "Region": emu.region, "Object": "/" + key},
            },
            "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": emu.region}},
            # The documented service requires OutputPath to end in ".{format}" (doc 862/37039), as
            # the strict emulator does; a literal ".jpg" is refused (InvalidParameterValue.OutputPath).
            "OutputPath": f"/{out_prefix}/{name}.{{format}}",
            "ImageTask": {"EncodeConfig": {"Format": "JPEG", "Quality": 80}},
        }
    )


def _submit_one(
    client: Any, emu: Any, key: str, out_prefix: str, run: NaiveRun, lock: threading.Lock
) -> None:
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.mps.v20190612 import models

    request = models.ProcessImageRequest()
    request.from_json_string(_body(emu, key, out_prefix))
    for _attempt in range(10):
        try:
            response = client.ProcessImage(request)
        except TencentCloudSDKException as err:
            if str(err.get_code() or "").startswith("RequestLimitExceeded"):
                with lock:
                    run.throttled += 1
                time.sleep(1.0)  # the usual "back off a second" retry
                continue
            with lock:
                run.failed += 1
                run.errors.setdefault(str(err.get_code()), str(err.get_message()))
            return
        with lock:
            run.task_ids.append(response.TaskId)
        return
    with lock:
        run.failed += 1


def submit(emu: Any, keys: list[str], out_prefix: str, threads: int = 1) -> NaiveRun:
    """Sequential (``threads=1``) or a plain unpaced thread pool; returns ids, throttles, failures."""
    run = NaiveRun()
    lock = threading.Lock()
    local = threading.local()

    def one(key: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = _client(emu)
        _submit_one(client, emu, key, out_prefix, run, lock)

    run.first_start = time.perf_counter()
    if threads == 1:
        for key in keys:
            one(key)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, keys))
    run.last_end = time.perf_counter()
    if keys and not run.task_ids:  # a baseline that submits nothing measures nothing
        raise RuntimeError(f"the naive baseline failed every submission: {run.errors}")
    return run


def wait_all(emu: Any, run: NaiveRun, poll_interval: float) -> None:
    """Poll every task in turn until it is FINISH (``time.sleep`` between polls)."""
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
    from tencentcloud.mps.v20190612 import models

    client = _client(emu)
    for task_id in run.task_ids:
        while True:
            request = models.DescribeImageTaskDetailRequest()
            request.TaskId = task_id
            run.describe_calls += 1
            try:
                response = client.DescribeImageTaskDetail(request)
            except TencentCloudSDKException:
                time.sleep(1.0)
                continue
            if response.Status == "FINISH":
                break
            time.sleep(poll_interval)
