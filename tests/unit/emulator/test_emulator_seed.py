"""The `seed` command without a running server, and the data-dir lock that decides how it writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_mps.emulator.__main__ import build_parser, main
from airflow_mps.emulator.cos.models import CosBackend
from airflow_mps.emulator.datadir import DataDirLock, read_holder
from airflow_mps.emulator.seed import SeedError, collect, content_type_for, parse_destination, seed

BUCKET = "photos-1250000000"


def _tree(root: Path) -> Path:
    """A folder as a user has it: nested files, odd names, hidden clutter."""
    (root / "night").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "landscape.JPG").write_bytes(b"\xff\xd8jpeg")
    (root / "night" / "street 猫 🐱.webp").write_bytes(b"RIFFwebp")
    (root / "flowers.png").write_bytes(b"\x89PNGpng")
    (root / "notes.unknownsuffix").write_bytes(b"?")
    (root / ".DS_Store").write_bytes(b"junk")
    (root / ".git" / "HEAD").write_bytes(b"ref")
    return root


def test_destination_parsing() -> None:
    assert parse_destination(f"cos://{BUCKET}/raw/dt=2026-11-01/") == (BUCKET, "raw/dt=2026-11-01/")
    assert parse_destination(f"cos://{BUCKET}/raw") == (BUCKET, "raw/")  # a prefix is a folder
    assert parse_destination(f"cos://{BUCKET}") == (BUCKET, "")
    assert parse_destination(f"cos://{BUCKET}//x/") == (BUCKET, "x/")
    for bad in ("s3://b/x", f"{BUCKET}/x", "cos://Photos/x", "cos:///x"):
        with pytest.raises(SeedError):
            parse_destination(bad)


def test_content_types_come_from_the_suffix() -> None:
    assert content_type_for("a.JPG") == "image/jpeg"
    assert content_type_for("a.jpeg") == "image/jpeg"
    assert content_type_for("a.webp") == "image/webp"
    assert content_type_for("a.png") == "image/png"
    assert content_type_for("a.unknownsuffix") == "application/octet-stream"


def test_collect_keeps_relative_paths_and_skips_hidden_entries(tmp_path: Path) -> None:
    files = collect(_tree(tmp_path / "photos"), "raw/")
    assert [(f.key, f.content_type) for f in files] == [
        ("raw/flowers.png", "image/png"),
        ("raw/landscape.JPG", "image/jpeg"),
        ("raw/night/street 猫 🐱.webp", "image/webp"),
        ("raw/notes.unknownsuffix", "application/octet-stream"),
    ]
    single = collect(tmp_path / "photos" / "flowers.png", "x/")
    assert [f.key for f in single] == ["x/flowers.png"]
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    with pytest.raises(SeedError, match="no files to seed"):
        collect(tmp_path / "empty", "")
    with pytest.raises(SeedError, match="neither a file nor a folder"):
        collect(tmp_path / "missing", "")


def test_seed_without_a_server_writes_the_data_dir_directly(tmp_path: Path) -> None:
    seen: list[str] = []
    result = seed(
        _tree(tmp_path / "photos"),
        f"cos://{BUCKET}/raw/dt=2026-11-01/",
        data_dir=tmp_path / "data",
        secret_key="unused",
        progress=lambda key, size, ctype: seen.append(key),
    )
    assert result.via == "direct" and result.where == str((tmp_path / "data").resolve())
    assert seen == [key for key, _, _ in result.objects] and len(seen) == 4
    backend = CosBackend(tmp_path / "data" / "cos")  # what a server starting later loads
    listed = backend.list_objects(BUCKET, prefix="raw/dt=2026-11-01/").contents
    assert [m.key for m in listed] == seen
    obj = backend.get_object(BUCKET, "raw/dt=2026-11-01/night/street 猫 🐱.webp")
    assert (obj.data, obj.content_type) == (b"RIFFwebp", "image/webp")
    assert not DataDirLock(tmp_path / "data").held and read_holder(tmp_path / "data") is None  # let go


def test_the_cli_seed_command_prints_each_object_and_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photos = _tree(tmp_path / "photos")
    code = main(["seed", "--data-dir", str(tmp_path / "data"), str(photos), f"cos://{BUCKET}/raw/"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"  cos://{BUCKET}/raw/night/street 猫 🐱.webp  8 B  image/webp" in out
    assert "seeded 4 objects (" in out and "directly in the data dir" in out
    assert main(["seed", "--data-dir", str(tmp_path / "data"), str(photos), "s3://x/"]) == 1
    assert "cos://<bucket>-<appid>/<prefix>/" in capsys.readouterr().err


def test_the_server_cli_without_a_command_is_unchanged() -> None:
    args = build_parser().parse_args(["--host", "0.0.0.0", "--port", "9200", "--data-dir", "d"])
    assert (args.host, args.port, args.data_dir) == ("0.0.0.0", 9200, "d")
    assert "seed" in build_parser().format_help()


def test_seed_gives_up_when_the_data_dir_stays_locked_without_a_server(tmp_path: Path) -> None:
    other = DataDirLock(tmp_path / "data")
    assert other.try_acquire({"role": "seed"})
    try:
        (tmp_path / "a.png").write_bytes(b"x")
        with pytest.raises(SeedError, match="stayed locked"):
            seed(tmp_path / "a.png", f"cos://{BUCKET}/", data_dir=tmp_path / "data", secret_key="k", wait=0.2)
    finally:
        other.release()
