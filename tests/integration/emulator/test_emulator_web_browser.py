"""The emulator's web page in a real browser: headless Chromium screenshots of the task list and a task.

Debian's ``chromium`` (``/usr/bin/chromium``; ``.ci/run`` installs it). Without it the test skips
locally and fails in CI (``CI=true``), so the browser check cannot silently vanish there. Screenshots
are kept under ``.test-artifacts/`` and listed in the "artifacts" section at the end of the run's
output.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tencentcloud.mps.v20190612 import models

from airflow_mps.emulator.testing import EmulatorServer
from airflow_mps.emulator.web import task_path

BUCKET = "browser-1250000000"
HEADER_RGB = (31, 58, 95)  # the page header's background (#1f3a5f)
SUCCESS_RGB = (217, 242, 223)  # the SUCCESS badge (#d9f2df)
FAIL_RGB = (253, 224, 224)  # the FAIL badge (#fde0e0)


def _chromium() -> str:
    found = "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else shutil.which("chromium")
    if found:
        return found
    reason = "headless Chromium is not installed (/usr/bin/chromium; Debian: apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason + " — CI must run the browser test")
    pytest.skip(reason)


def _photo() -> bytes:
    """A picture with a magenta block the screenshot can find (proves the thumbnail loaded)."""
    img = Image.new("RGB", (480, 320))
    img.putdata([(x // 2, 90 + y // 4, 200 - x // 3) for y in range(320) for x in range(480)])
    img.paste((255, 0, 255), (160, 100, 320, 220))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _submit(emu: EmulatorServer, key: str, image_task: dict[str, Any]) -> str:
    req = models.ProcessImageRequest()
    req.from_json_string(
        json.dumps(
            {
                "InputInfo": {
                    "Type": "COS",
                    "CosInputInfo": {"Bucket": BUCKET, "Region": emu.region, "Object": "/" + key},
                },
                "OutputDir": "/enhanced/",
                "ImageTask": image_task,
            }
        )
    )
    return emu.mps_client().ProcessImage(req).TaskId


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with EmulatorServer(data_dir=tmp_path_factory.mktemp("browser-emu")) as emu:
        cos = emu.cos_client()
        cos.create_bucket(Bucket=BUCKET)  # a PUT never creates the bucket (COS: NoSuchBucket)
        cos.put_object(
            Bucket=BUCKET, Key="raw/dt=2026-11-01/harbour.png", Body=_photo(), ContentType="image/png"
        )
        cos.put_object(
            Bucket=BUCKET, Key="raw/dt=2026-11-01/<street> 猫.png", Body=_photo(), ContentType="image/png"
        )
        ok = _submit(
            emu, "raw/dt=2026-11-01/harbour.png", {"EncodeConfig": {"Format": "JPEG", "Quality": 85}}
        )
        _submit(emu, "raw/dt=2026-11-01/<street> 猫.png", {"EncodeConfig": {"Format": "PNG"}})
        _submit(emu, "raw/dt=2026-11-01/missing.jpg", {})
        assert emu.wait_idle(30)
        yield {"base": f"http://{emu.endpoint}", "ok": ok}


def _screenshot(url: str, out: Path, profile: Path) -> Image.Image:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={out}",
        "--window-size=1280,900",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
    return Image.open(out).convert("RGB")


def _count(img: Image.Image, predicate: Any) -> int:
    """Pixels of an RGB image for which ``predicate((r, g, b))`` holds (counted per distinct colour)."""
    return sum(count for count, rgb in img.getcolors(maxcolors=1 << 24) or [] if predicate(rgb))


def _near(rgb: tuple[int, int, int], tol: int = 6) -> Any:
    return lambda px: all(abs(a - b) <= tol for a, b in zip(px, rgb, strict=True))


def _assert_nontrivial(img: Image.Image, path: Path) -> None:
    assert img.size == (1280, 900)
    assert path.stat().st_size > 20_000, "a nearly empty PNG"
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200, f"only {len(colours)} colours: a blank page?"
    assert max(count for count, _ in colours) < 0.9 * 1280 * 900, "one colour fills the page"
    header = img.crop((0, 0, 1280, 40))
    assert _count(header, _near(HEADER_RGB)) > 20_000, "the page header is missing"


def _magenta(px: tuple[int, int, int]) -> bool:
    return px[0] > 225 and px[1] < 45 and px[2] > 225


def test_task_list_and_task_page_render_in_chromium(
    site: dict[str, Any], tmp_path: Path, artifact: Callable[[str, str], Path]
) -> None:
    listing_png = artifact("emulator-task-list.png", "screenshot of the emulator's task list (Chromium)")
    listing = _screenshot(site["base"] + "/", listing_png, tmp_path / "profile")
    _assert_nontrivial(listing, listing_png)
    assert _count(listing, _near(SUCCESS_RGB, 3)) > 100, "no SUCCESS badge"
    assert _count(listing, _near(FAIL_RGB, 3)) > 100, "no FAIL badge"
    assert _count(listing, _magenta) > 200, "the input/output thumbnails did not load"

    task_png = artifact("emulator-task-page.png", "screenshot of an emulator task page (Chromium)")
    page = _screenshot(site["base"] + task_path(site["ok"]), task_png, tmp_path / "profile")
    _assert_nontrivial(page, task_png)
    assert _count(page, _near(SUCCESS_RGB, 3)) > 100
    assert _count(page, _magenta) > 2_000, "the before/after images did not load"
