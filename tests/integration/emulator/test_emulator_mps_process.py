"""The emulator as a separate process: CLI banner, clean stop/start, kill -9 mid-task, and TLS."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from tencentcloud.mps.v20190612 import models

from airflow_mps.emulator.testing import EmulatorProcess, EmulatorServer

BUCKET = "restart-1250000000"
REGION = "ap-guangzhou"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 100, 0)).save(buf, "PNG")
    return buf.getvalue()


def _submit(emu: Any, key: str) -> str:
    req = models.ProcessImageRequest()
    req.from_json_string(
        json.dumps(
            {
                "InputInfo": {
                    "Type": "COS",
                    "CosInputInfo": {"Bucket": BUCKET, "Region": REGION, "Object": "/" + key},
                },
                "OutputDir": "/out/",
            }
        )
    )
    return emu.mps_client().ProcessImage(req).TaskId


def _detail(emu: Any, task_id: str) -> models.DescribeImageTaskDetailResponse:
    req = models.DescribeImageTaskDetailRequest()
    req.TaskId = task_id
    return emu.mps_client().DescribeImageTaskDetail(req)


def test_cli_help_and_banner(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow_mps.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for flag in ("--data-dir", "--process-image-rate", "--task-duration-ms", "--fault", "--tls"):
        assert flag in out
    with EmulatorProcess(tmp_path / "data") as emu:
        assert emu.admin("health")["status"] == "ok"
    log = (tmp_path / "data" / "emulator.log").read_text()
    assert f"listening on http://{emu._endpoint}" in log
    assert (
        "tencentcloud://AKIDMPSEMULATOR000000000000000000:mps-emulator-secret-key@/?region=ap-guangzhou"
        in log
    )


def test_tasks_and_objects_survive_a_clean_restart(tmp_path: Path) -> None:
    emu = EmulatorProcess(tmp_path / "data")
    with emu:
        emu.cos_client().create_bucket(Bucket=BUCKET)  # a PUT never creates the bucket
        emu.cos_client().put_object(Bucket=BUCKET, Key="in/a.png", Body=_png())
        task_id = _submit(emu, "in/a.png")
        assert emu.wait_idle(30)
        before = _detail(emu, task_id)
        assert before.Status == "FINISH"
        assert emu.stop() == 0  # SIGTERM → clean exit
        emu.start()
        after = _detail(emu, task_id)
        assert (after.Status, after.CreateTime, after.FinishTime) == (
            "FINISH",
            before.CreateTime,
            before.FinishTime,
        )
        assert after.ImageProcessTaskResultSet[0].Output.Path == "/out/a.png"
        got = requests.get(after.ImageProcessTaskResultSet[0].Output.SignedUrl, timeout=10)
        assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size == (16, 12)
        assert (
            emu.cos_client().get_object(Bucket=BUCKET, Key="in/a.png")["Body"].get_raw_stream().read()
            == _png()
        )


def test_in_flight_task_is_finished_after_kill_9(tmp_path: Path) -> None:
    # Every task takes at least 3 s, so the kill certainly lands while it is WAITING/PROCESSING.
    emu = EmulatorProcess(tmp_path / "data", task_duration_ms="3000", workers=1)
    with emu:
        emu.cos_client().create_bucket(Bucket=BUCKET)
        emu.cos_client().put_object(Bucket=BUCKET, Key="in/b.png", Body=_png())
        task_id = _submit(emu, "in/b.png")
        assert _detail(emu, task_id).Status in ("WAITING", "PROCESSING")
        emu.kill()
        emu.config.task_duration = (0.0, 0.0)
        emu.start()
        assert emu.wait_idle(30)
        done = _detail(emu, task_id)
        assert (done.Status, done.ErrCode) == ("FINISH", 0)
        assert done.ImageProcessTaskResultSet[0].Status == "SUCCESS"


def test_tls_with_generated_certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with EmulatorServer(data_dir=tmp_path, tls=True) as emu:
        cert = emu.tls_cert
        assert cert is not None and cert.exists() and cert.parent == tmp_path / "tls"
        assert emu.http_profile().protocol == "https"
        req = models.DescribeImageTasksRequest()
        req.Status = "FINISH"
        assert emu.mps_client().DescribeImageTasks(req).TotalCount == 0
        # Without the CA the certificate is (rightly) not trusted.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://{emu.endpoint}/_emulator/health", timeout=5)
        assert requests.get(f"https://{emu.endpoint}/_emulator/health", verify=str(cert), timeout=5).ok
        emu.cos_client().create_bucket(Bucket=BUCKET)
        emu.cos_client().put_object(Bucket=BUCKET, Key="tls.txt", Body=b"secure")
        assert (
            emu.cos_client().get_object(Bucket=BUCKET, Key="tls.txt")["Body"].get_raw_stream().read()
            == b"secure"
        )
        # The async SDK (httpx) trusts the certificate through SSL_CERT_FILE.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.mps.v20190612 import mps_client_async

        async def listing() -> int:
            profile = ClientProfile(httpProfile=HttpProfile(endpoint=emu.endpoint, protocol="https"))
            async with mps_client_async.MpsClient(emu.credential(), REGION, profile) as client:
                return (await client.DescribeImageTasks(req)).TotalCount

        assert asyncio.run(listing()) == 0
