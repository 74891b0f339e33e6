"""`python -m airflow_mps.emulator` / `airflow-mps-emulator`: run the local MPS + COS emulator.

Without a command it serves (``airflow-mps-emulator --port 9100 ...``). ``airflow-mps-emulator seed
[--data-dir DIR] SOURCE cos://bucket/prefix/`` copies a local folder of images into a bucket prefix of a
data dir, whether a server is running on it or not (`airflow_mps.emulator.seed`).

Every flag has an environment variable `MPS_EMULATOR_<FLAG>` (e.g. `MPS_EMULATOR_SECRET_KEY`); a flag
wins over the variable, which wins over the built-in default. SIGTERM and SIGINT stop it cleanly
(in-flight tasks stay PROCESSING on disk and are finished at the next start).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from airflow_mps.emulator.config import (
    DEFAULT_APPID,
    DEFAULT_DESCRIBE_RATE,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_REGION,
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    EmulatorConfig,
    add_fidelity_arguments,
    env_default,
    fidelity_options,
    parse_duration_range,
)

SEED_EXAMPLE = "airflow-mps-emulator seed --data-dir DIR ./photos cos://photos-1250000000/raw/dt=2026-11-01/"


def build_parser() -> argparse.ArgumentParser:
    env = env_default
    p = argparse.ArgumentParser(
        prog="airflow-mps-emulator",
        description="Local Tencent Cloud MPS (ProcessImage) + COS emulator for the official SDKs. "
        "Its web page (tasks, buckets, thumbnails) is GET / on the same port.",
        epilog=f"commands:\n  seed    copy a local folder into a bucket prefix: {SEED_EXAMPLE}\n"
        "          (see: airflow-mps-emulator seed --help)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=env("host", DEFAULT_HOST), help="bind address (default 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=int(env("port", str(DEFAULT_PORT)) or DEFAULT_PORT),
        help="port (default 9100; 0 = any free port)",
    )
    p.add_argument(
        "--data-dir",
        default=env("data_dir", ".mps-emulator"),
        help="where tasks and COS objects are persisted (default ./.mps-emulator)",
    )
    p.add_argument("--secret-id", default=env("secret_id", DEFAULT_SECRET_ID))
    p.add_argument("--secret-key", default=env("secret_key", DEFAULT_SECRET_KEY))
    p.add_argument("--token", default=env("token"), help="require this X-TC-Token / x-cos-security-token")
    p.add_argument("--region", default=env("region", DEFAULT_REGION))
    p.add_argument("--appid", default=env("appid", DEFAULT_APPID))
    p.add_argument(
        "--process-image-rate",
        type=int,
        default=int(env("process_image_rate", "20") or 20),
        help="ProcessImage requests per second per SecretId (0 = unlimited)",
    )
    p.add_argument(
        "--describe-rate",
        type=int,
        default=int(env("describe_rate", str(DEFAULT_DESCRIBE_RATE)) or DEFAULT_DESCRIBE_RATE),
        help="Describe* requests per second per SecretId (0 = unlimited)",
    )
    p.add_argument("--workers", type=int, default=int(env("workers", "3") or 3), help="task worker threads")
    p.add_argument(
        "--latency-ms",
        type=float,
        default=float(env("latency_ms", "0") or 0),
        help="latency added to every MPS and COS request",
    )
    p.add_argument(
        "--task-duration-ms",
        default=env("task_duration_ms", "0"),
        help="minimum processing time per task, `MS` or `MIN:MAX` (seeded spread)",
    )
    p.add_argument(
        "--seed", type=int, default=int(env("seed", "0") or 0), help="seed for faults and durations"
    )
    p.add_argument(
        "--tls",
        action="store_true",
        default=(env("tls", "") or "").lower() in ("1", "true", "yes"),
        help="serve HTTPS with a self-signed certificate written to DATA_DIR/tls/",
    )
    p.add_argument("--tls-cert", default=env("tls_cert"), help="serve HTTPS with this certificate (PEM)")
    p.add_argument("--tls-key", default=env("tls_key"), help="private key for --tls-cert (PEM)")
    p.add_argument(
        "--fault",
        action="append",
        default=[f for f in (env("faults") or "").split(";") if f],
        help="inject a fault, KIND[@ACTION][,key=value...]; repeatable (see docs/emulator.md)",
    )
    p.add_argument(
        "--ready-file",
        default=None,
        help="write a JSON line with the endpoint once listening (used by EmulatorProcess)",
    )
    p.add_argument("--log-level", default=env("log_level", "INFO"))
    add_fidelity_arguments(p)
    return p


def build_seed_parser() -> argparse.ArgumentParser:
    env = env_default
    p = argparse.ArgumentParser(
        prog="airflow-mps-emulator seed",
        description="Copy a local folder of images (recursively, hidden entries skipped, relative paths kept, "
        "Content-Type from the suffix) into a bucket prefix of an emulator data dir. If an emulator is "
        "running on that data dir the files go through its COS API (signed with the credentials below); "
        "otherwise they are written into the data dir directly.",
        epilog=f"example: {SEED_EXAMPLE}",
    )
    p.add_argument("source", help="a folder (or one file) to upload")
    p.add_argument("destination", help="cos://<bucket>-<appid>/<prefix>/ (the prefix is a folder)")
    p.add_argument(
        "--data-dir",
        default=env("data_dir", ".mps-emulator"),
        help="the emulator data dir (default ./.mps-emulator, as the server's)",
    )
    p.add_argument(
        "--secret-id",
        default=env("secret_id"),
        help="for a running server (default: the SecretId it announces)",
    )
    p.add_argument(
        "--secret-key",
        default=env("secret_key", DEFAULT_SECRET_KEY),
        help="for a running server (default: the emulator's public default key)",
    )
    p.add_argument("--token", default=env("token"), help="for a running server started with --token")
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for a server that is starting (or another seed) to settle",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary line")
    return p


def seed_main(argv: list[str]) -> int:
    """The `seed` command: prints each object as it is stored, then a summary line."""
    from airflow_mps.emulator.seed import SeedError, seed
    from airflow_mps.emulator.web.pages import bucket_path, fmt_size

    args = build_seed_parser().parse_args(argv)

    def _progress(key: str, size: int, content_type: str) -> None:
        if not args.quiet:
            print(f"  cos://{bucket_name}/{key}  {fmt_size(size)}  {content_type}", flush=True)

    bucket_name = args.destination[len("cos://") :].partition("/")[0]
    try:
        result = seed(
            args.source,
            args.destination,
            data_dir=args.data_dir,
            secret_id=args.secret_id,
            secret_key=args.secret_key,
            token=args.token or None,
            wait=args.wait,
            progress=_progress,
        )
    except (SeedError, OSError) as exc:
        print(f"airflow-mps-emulator seed: {exc}", file=sys.stderr)
        return 1
    target = f"cos://{result.bucket}/{result.prefix}"
    count = f"{len(result.objects)} object{'s' if len(result.objects) != 1 else ''} ({fmt_size(result.total_bytes)})"
    if result.via == "server":
        print(f"seeded {count} into {target} through the emulator running at {result.where}")
        print(f"  look at them: {result.where}{bucket_path(result.bucket, result.prefix)}")
    else:
        print(
            f"seeded {count} into {target} directly in the data dir {result.where} (no emulator is running on it)"
        )
    return 0


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("--tls-cert and --tls-key must be given together")
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        data_dir=Path(args.data_dir).resolve(),
        secret_id=args.secret_id,
        secret_key=args.secret_key,
        token=args.token or None,
        region=args.region,
        appid=str(args.appid),
        process_image_rate=args.process_image_rate,
        describe_rate=args.describe_rate,
        workers=args.workers,
        latency_ms=args.latency_ms,
        task_duration=parse_duration_range(args.task_duration_ms),
        seed=args.seed,
        tls=bool(args.tls or args.tls_cert),
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        faults=list(args.fault or []),
        **fidelity_options(args),
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["seed"]:
        return seed_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"airflow-mps-emulator: {exc}", file=sys.stderr)
        return 2
    from airflow_mps.emulator.datadir import DataDirBusy
    from airflow_mps.emulator.server import start

    try:
        running = start(config)
    except DataDirBusy as exc:
        print(f"airflow-mps-emulator: {exc}", file=sys.stderr)
        return 2
    endpoint = running.endpoint
    print(f"airflow-mps emulator listening on {config.scheme}://{endpoint}", flush=True)
    print(f"  web page:   {config.scheme}://{endpoint}/")
    print(f"  data dir:   {config.data_dir}")
    print(f"  SecretId:   {config.secret_id}")
    if config.secret_key == DEFAULT_SECRET_KEY:
        print(f"  SecretKey:  {config.secret_key}  (the emulator's public default)")
    else:
        print("  SecretKey:  (as configured, not shown)")
    print(f"  region:     {config.region}   appid: {config.appid}")
    if running.tls_cert:
        print(f"  TLS cert:   {running.tls_cert}  (use as CA bundle)")
    if config.secret_key == DEFAULT_SECRET_KEY and not config.token:
        print(f"  connection: {config.connection_uri(endpoint, ca_bundle=running.tls_cert)}")
    else:
        print(
            "  connection: tencentcloud://<SecretId>:<SecretKey>@/?region="
            f"{config.region}&endpoint={endpoint.replace(':', '%3A')}&protocol={config.scheme}"
        )
    sys.stdout.flush()
    if args.ready_file:
        Path(args.ready_file).write_text(
            json.dumps(
                {
                    "endpoint": endpoint,
                    "scheme": config.scheme,
                    "tls_cert": str(running.tls_cert) if running.tls_cert else None,
                }
            )
        )

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    while not stop.wait(0.5):
        pass
    print("airflow-mps emulator stopping", flush=True)
    running.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
