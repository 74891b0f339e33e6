"""`airflow-mps-emulator seed` against a running emulator: through its signed COS API, visible at once.

The server keeps an in-memory index per bucket, so a seed that wrote files behind its back would stay
invisible until a restart; these tests load the index first, seed, and expect the objects immediately.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from tencentcloud.mps.v20190612 import models

from airflow_mps.emulator.datadir import read_holder
from airflow_mps.emulator.seed import SeedError, seed
from airflow_mps.emulator.testing import EmulatorProcess, EmulatorServer

BUCKET = "photos-1250000000"
REPO = Path(__file__).resolve().parents[3]


def _photos(root: Path) -> Path:
    (root / "night").mkdir(parents=True)
    for name, colour in (("a.jpg", (200, 40, 40)), ("night/b.png", (20, 20, 60))):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(buf, "PNG" if name.endswith(".png") else "JPEG")
        (root / name).write_bytes(buf.getvalue())
    return root


def _keys(emu: EmulatorServer | EmulatorProcess, prefix: str) -> list[str]:
    listed = emu.cos_client().list_objects(Bucket=BUCKET, Prefix=prefix)
    return [c["Key"] for c in listed.get("Contents", [])]


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "airflow_mps.emulator", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def test_seed_goes_through_a_running_in_thread_server(tmp_path: Path) -> None:
    with EmulatorServer(data_dir=tmp_path / "data") as emu:
        emu.cos_client().create_bucket(Bucket=BUCKET)  # a PUT never creates the bucket
        emu.cos_client().put_object(Bucket=BUCKET, Key="raw/old.txt", Body=b"loads the bucket index")
        assert _keys(emu, "raw/") == ["raw/old.txt"]
        holder = read_holder(tmp_path / "data")
        assert holder and holder["role"] == "server" and holder["endpoint"] == emu.endpoint
        assert emu.secret_key not in (tmp_path / "data" / "emulator.lock").read_text()  # never the key
        result = seed(
            _photos(tmp_path / "photos"),
            f"cos://{BUCKET}/raw/dt=2026-11-01/",
            data_dir=tmp_path / "data",
            secret_key=emu.secret_key,
        )
        assert result.via == "server" and result.where == f"http://{emu.endpoint}"
        assert _keys(emu, "raw/") == [
            "raw/dt=2026-11-01/a.jpg",
            "raw/dt=2026-11-01/night/b.png",
            "raw/old.txt",
        ]
        assert emu.stats()["actions"]["cos:PutObject"]["succeeded"] == 3  # 1 above + 2 seeded, all signed
        head = emu.cos_client().head_object(Bucket=BUCKET, Key="raw/dt=2026-11-01/night/b.png")
        assert head["Content-Type"] == "image/png"
        # ... and a task can use a seeded image straight away.
        req = models.ProcessImageRequest()
        req.from_json_string(
            json.dumps(
                {
                    "InputInfo": {
                        "Type": "COS",
                        "CosInputInfo": {
                            "Bucket": BUCKET,
                            "Region": emu.region,
                            "Object": "/raw/dt=2026-11-01/a.jpg",
                        },
                    },
                    "OutputDir": "/out/",
                }
            )
        )
        task_id = emu.mps_client().ProcessImage(req).TaskId
        assert emu.wait_idle(30)
        assert emu.app.mps.get(task_id).output == {"bucket": BUCKET, "region": emu.region, "key": "out/a.jpg"}


def test_seed_with_the_wrong_key_says_which_credentials_to_pass(tmp_path: Path) -> None:
    with (
        EmulatorServer(data_dir=tmp_path / "data", secret_key="a-key-of-my-own"),
        pytest.raises(SeedError, match=r"SignatureDoesNotMatch.*--secret-key"),
    ):
        seed(
            _photos(tmp_path / "photos"),
            f"cos://{BUCKET}/raw/",
            data_dir=tmp_path / "data",
            secret_key="mps-emulator-secret-key",
        )


def test_cli_seed_against_a_server_process_and_after_kill_9(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos")
    data = tmp_path / "data"
    emu = EmulatorProcess(data, secret_key="custom-key-1")
    with emu:
        refused = _cli("seed", "--data-dir", str(data), str(photos), f"cos://{BUCKET}/raw/")
        assert refused.returncode == 1 and "SignatureDoesNotMatch" in refused.stderr
        done = _cli(
            "seed",
            "--data-dir",
            str(data),
            str(photos),
            f"cos://{BUCKET}/raw/",
            env={"MPS_EMULATOR_SECRET_KEY": "custom-key-1"},
        )
        assert done.returncode == 0, done.stderr
        assert f"  cos://{BUCKET}/raw/night/b.png" in done.stdout
        assert f"through the emulator running at http://{emu.endpoint}" in done.stdout
        assert f"look at them: http://{emu.endpoint}/buckets/{BUCKET}?prefix=raw/" in done.stdout
        assert _keys(emu, "raw/") == ["raw/a.jpg", "raw/night/b.png"]
        emu.kill()  # kill -9: the lock note stays behind, but the kernel dropped the lock
        assert (read_holder(data) or {}).get("role") == "server"
        later = _cli("seed", "--data-dir", str(data), str(photos), f"cos://{BUCKET}/later/")
        assert later.returncode == 0 and "directly in the data dir" in later.stdout, later.stderr
        emu.start()  # the restarted server sees both seeds
        assert _keys(emu, "") == ["later/a.jpg", "later/night/b.png", "raw/a.jpg", "raw/night/b.png"]


def test_a_second_server_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with EmulatorServer(data_dir=tmp_path / "data") as emu:
        second = _cli("--data-dir", str(tmp_path / "data"), "--port", "0")
        assert second.returncode == 2
        assert (
            f"already served by another airflow-mps-emulator (pid {os.getpid()}, {emu.endpoint})"
            in second.stderr
        )
