"""`make demo`: run the main job (``mps_enhance_daily``) offline, end to end, against the emulator.

What it does, in order, and what it leaves behind in ``.demo/``:

1. draws sample photos into a local folder, ``.demo/photos/dt=<date>/``, for three dates, each folder
   completed by an empty ``_SUCCESS`` marker (the DAG's ``wait_for_partition`` waits for it);
2. starts the MPS + COS emulator as a subprocess (data in ``.demo/emulator``) and seeds the folder into
   ``cos://<bucket>/raw/`` with the emulator's own command, printed so you can run it yourself:
   ``airflow-mps-emulator seed --data-dir .demo/emulator .demo/photos cos://<bucket>/raw/``;
3. points ``tencentcloud_default`` at the emulator and ``mps_webhook`` at a local receiver;
4. runs ``airflow dags test mps_enhance_daily <date> -c '{"partition": "<date>"}'`` for each date (a
   fresh SQLite Airflow home; the param names the partition, since a run's own day is the day before
   its logical date — see docs/batch.md);
5. prints a per-image table from each date's manifest and the webhook payloads it received;
6. writes a before/after contact sheet (``.demo/contact_sheet.png``): one detailed region of each
   image at 1:1 pixels, before and after, so 2x super-resolution and denoise are visible
   (``demo/contact_sheet.py``);
7. stops everything it started, also on failure or Ctrl-C, and says how to browse the results in the
   emulator's web page afterwards (its data stays in ``.demo/emulator``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATES = ("2026-11-01", "2026-11-02", "2026-11-03")
BUCKET = "photos-1250000000"


class _WebhookReceiver(ThreadingHTTPServer):
    """Collects the summaries the DAG's ``notify`` task POSTs, standing in for a team's webhook."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        super().__init__(("127.0.0.1", 0), _WebhookHandler)


class _WebhookHandler(BaseHTTPRequestHandler):
    server: _WebhookReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            self.server.payloads.append(json.loads(body))
        except ValueError:
            self.server.payloads.append({"unparseable": body.decode("utf-8", "replace")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: the demo prints its own report
        return


def _airflow_env(home: Path, emulator_uri: str, webhook_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT": emulator_uri,
            "AIRFLOW_CONN_MPS_WEBHOOK": f"http://127.0.0.1:{webhook_port}",
            "MPS_DAGS_BUCKET": BUCKET,
            "MPS_DAGS_POLL_INTERVAL": "1",
        }
    )
    for name in ("TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "TENCENTCLOUD_TOKEN"):
        env.pop(name, None)
    return env


def _run(cmd: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n" + "\n".join(tail))


def _write_photos(root: Path, dates: list[str]) -> None:
    """The demo's input: sample photos in a plain local folder, one ``dt=<date>`` folder per partition,
    each completed by an empty ``_SUCCESS`` marker (what ``mps_enhance_daily`` waits for; the batch's
    image-suffix filter skips it)."""
    from samples import sample_photos

    for ds in dates:
        for photo in sample_photos(ds):
            path = root / f"dt={ds}" / photo.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(photo.data)
        (root / f"dt={ds}" / "_SUCCESS").write_bytes(b"")  # written last, as a real writer would


def _seed(photos: Path, data_dir: Path, env: dict[str, str], log: Path) -> None:
    """Seed the photo folder with the emulator's `seed` command, shown as a user would type it."""
    script = Path(sys.executable).with_name("airflow-mps-emulator")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "airflow_mps.emulator"]
    args = ["seed", "--data-dir", _shown(data_dir), _shown(photos), f"cos://{BUCKET}/raw/"]
    shown = "airflow-mps-emulator" if script.exists() else "python -m airflow_mps.emulator"
    print(f"$ {shown} {' '.join(args)}")
    proc = subprocess.run([*base, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"\n$ {shown} {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise SystemExit(f"seeding failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    objects = [line for line in proc.stdout.splitlines() if line.startswith("  cos://")]
    for line in objects[:3]:
        print(line)
    if len(objects) > 3:
        print(f"  ... and {len(objects) - 3} more")
    for line in proc.stdout.splitlines():
        if not line.startswith("  cos://"):
            print(line)


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (what a user would type there)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo")
    parser.add_argument("--dates", nargs="+", default=list(DEFAULT_DATES))
    parser.add_argument(
        "--keep", action="store_true", help="keep the previous .demo state instead of starting fresh"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO / "demo"))

    from airflow_mps.emulator.testing import EmulatorProcess

    work: Path = args.workdir
    if work.exists() and not args.keep:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "demo.log"
    print(f"airflow-mps demo — logs in {log}")
    photos = work / "photos"
    _write_photos(photos, args.dates)

    receiver = _WebhookReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    started = time.monotonic()
    try:
        with EmulatorProcess(data_dir=work / "emulator") as emulator:
            from qcloud_cos import CosS3Client

            print(f"emulator up at {emulator.endpoint} (web page: http://{emulator.endpoint}/)")
            cos = CosS3Client(emulator.cos_config(), retry=1)
            _seed(photos, work / "emulator", dict(os.environ), log)
            originals = {
                f"raw/{p.relative_to(photos).as_posix()}": p.read_bytes()
                for p in photos.rglob("*")
                if p.is_file()
            }

            env = _airflow_env(work / "airflow", emulator.connection_uri(), receiver.server_address[1])
            airflow = str(Path(sys.executable).with_name("airflow"))
            _run([airflow, "db", "migrate"], env, log)
            for ds in args.dates:
                t0 = time.monotonic()
                _run(
                    [airflow, "dags", "test", "mps_enhance_daily", ds, "-c", json.dumps({"partition": ds})],
                    env,
                    log,
                )
                print(f"mps_enhance_daily {ds}: run finished in {time.monotonic() - t0:.1f} s")

            print()
            print(f"{'partition':<12} {'input':<28} {'state':<10} {'output':<42} {'mps task'}")
            pairs: list[tuple[str, bytes, bytes]] = []
            for ds in args.dates:
                manifest_key = f"enhanced/dt={ds}/_mps_manifest.jsonl"
                body = cos.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].get_raw_stream().read()
                for line in body.decode().splitlines():
                    rec = json.loads(line)
                    short_in = rec["input"].split(f"dt={ds}/", 1)[-1]
                    out = rec.get("output") or ""
                    print(
                        f"{ds:<12} {short_in:<28} {rec['state']:<10} {out.split(BUCKET + '/', 1)[-1]:<42} {rec.get('task_id') or '-'}"
                    )
                    if ds == args.dates[0] and rec["state"] == "succeeded":
                        out_key = out.split(BUCKET + "/", 1)[-1]
                        after = cos.get_object(Bucket=BUCKET, Key=out_key)["Body"].get_raw_stream().read()
                        in_key = rec["input"].split(BUCKET + "/", 1)[-1]
                        pairs.append((short_in, originals[in_key], after))
                print(f"{'':<12} manifest: cos://{BUCKET}/{manifest_key}")
            sheet = work / "contact_sheet.png"
            from contact_sheet import draw_contact_sheet

            draw_contact_sheet(pairs, sheet)
            print(f"\nbefore/after contact sheet: {sheet}")
            print(f"webhook received {len(receiver.payloads)} summaries:")
            for payload in receiver.payloads:
                summary = payload.get("summary") or {}
                print(
                    f"  {payload.get('partition')}: {summary.get('succeeded')} succeeded, "
                    f"{summary.get('failed')} failed, {summary.get('skipped')} skipped"
                )
            stats = emulator.stats()
            print(f"emulator stats: {json.dumps(stats.get('actions', stats), sort_keys=True)[:400]}")
    finally:
        receiver.shutdown()
        receiver.server_close()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; everything it started is stopped.")
    print(
        f"browse the tasks and images: airflow-mps-emulator --data-dir {_shown(work / 'emulator')}  "
        "then open http://127.0.0.1:9100/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
