"""One key rule (airflow_mps.models.keys) and per-image isolation in the batch planner (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_mps.batch import plan
from airflow_mps.models.keys import MAX_KEY_BYTES, TOO_LONG, UNSAFE, is_stable, key_problem, normalize_key

BUCKET = "photos-1250000000"
SRC = f"cos://{BUCKET}/raw/dt=1/"
DEST = plan.CosLocation(BUCKET, "enhanced/dt=1/")


@pytest.mark.parametrize(
    ("key", "normalised"),
    [
        ("a/b.jpg", "a/b.jpg"),
        ("a/./b.jpg", "a/b.jpg"),
        ("a//b.jpg", "a/b.jpg"),
        ("a/x/../b.jpg", "a/b.jpg"),
        ("../../b.jpg", "b.jpg"),  # never above the bucket root
        ("a/b/", "a/b"),
        ("/a/b.jpg", "a/b.jpg"),
        ("a/..", ""),
    ],
)
def test_normalize_key_is_what_a_normalising_writer_stores(key: str, normalised: str) -> None:
    import posixpath

    assert normalize_key(key) == normalised
    # The emulator's writer today: posixpath.normpath of the absolute path, leading '/' stripped.
    assert normalize_key(key) == posixpath.normpath("/" + key.lstrip("/")).lstrip("/")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("a/./b.jpg", UNSAFE),
        ("a//b.jpg", UNSAFE),
        ("a/../b.jpg", UNSAFE),
        ("a/b.jpg/", UNSAFE),
        ("/a.jpg", UNSAFE),
        ("\\a.jpg", UNSAFE),
        ("a/{inputName}.jpg", UNSAFE),
        ("a/\x1bb.jpg", UNSAFE),
        ("a/b\nc.jpg", UNSAFE),
        ("", UNSAFE),
        ("x" * (MAX_KEY_BYTES + 1), TOO_LONG),
        ("图" * 300, TOO_LONG),  # 900 bytes in UTF-8
    ],
)
def test_unpredictable_keys_are_refused(key: str, kind: str) -> None:
    problem = key_problem(key)
    assert problem is not None and problem.kind == kind


@pytest.mark.parametrize(
    "key",
    [
        "a b/c d.jpg",
        "照片/猫.jpg",
        "emoji/😀.jpg",
        "odd/a+b%20c#d?e&f.jpg",
        "x" * MAX_KEY_BYTES,
        "a/.hidden.jpg",
        "a/...jpg",
    ],
)
def test_plain_keys_are_kept_verbatim_and_stable(key: str) -> None:
    assert key_problem(key) is None
    assert is_stable(key)  # kept verbatim or normalised, the same key


def test_braces_matter_only_in_an_output_key() -> None:
    assert key_problem("raw/{x}.png", output=False) is None
    assert key_problem("raw/{x}.png") is not None


def _plan(rels: list[str], extension: str | None = "jpg", dest: plan.CosLocation = DEST) -> plan.Plan:
    src = plan.parse_cos_location(SRC, "source", prefix=True)
    return plan.plan_items([plan.CosLocation(BUCKET, src.key + r) for r in rels], src.key, dest, extension)


def _codes(planned: plan.Plan) -> dict[str, str]:
    return {r.input_uri.rsplit("dt=1/", 1)[1]: r.code for r in planned.refused}


def test_every_collision_shape_is_caught_and_only_those_images_fail() -> None:
    planned = _plan(["x.png", "x.jpg", "U.JPG", "U.jpg", "a//b.png", "a/b.png", "ok.png"])
    assert _codes(planned) == {
        "x.png": plan.OUTPUT_COLLISION,
        "x.jpg": plan.OUTPUT_COLLISION,
        "U.JPG": plan.OUTPUT_COLLISION,
        "U.jpg": plan.OUTPUT_COLLISION,
        "a//b.png": plan.UNSAFE_KEY,  # refused for its shape; it would also have collided
    }
    assert [i.input_key for i in planned.items] == ["raw/dt=1/a/b.png", "raw/dt=1/ok.png"]
    unsafe = next(r for r in planned.refused if r.code == plan.UNSAFE_KEY)
    assert "collide with the output of" in unsafe.message and "a/b.png" in unsafe.message
    assert len(planned.entries) == 7  # every input has its manifest line, in input order


def test_without_a_format_case_variants_of_one_format_collide_too() -> None:
    planned = _plan(["U.JPG", "U.jpg", "V.jpeg", "W.png"], extension=None)
    assert _codes(planned) == {"U.JPG": plan.OUTPUT_COLLISION, "U.jpg": plan.OUTPUT_COLLISION}
    assert [i.output_key for i in planned.items] == ["enhanced/dt=1/V.jpg", "enhanced/dt=1/W.png"]


def test_unsafe_too_long_and_unknown_format_are_refused_per_image() -> None:
    long_name = "n" * 830 + ".png"  # a valid COS key (843 bytes) whose output is too long
    long_dest = plan.CosLocation(BUCKET, "enhanced/dt=1/with-a-longer-prefix/")
    planned = _plan(["./dot.png", "p/../q.png", "{inputName}.png", long_name, "good.png"], dest=long_dest)
    assert _codes(planned) == {
        "./dot.png": plan.UNSAFE_KEY,
        "p/../q.png": plan.UNSAFE_KEY,
        "{inputName}.png": plan.UNSAFE_KEY,
        long_name: plan.OUTPUT_TOO_LONG,
    }
    assert [i.output_key for i in planned.items] == ["enhanced/dt=1/with-a-longer-prefix/good.jpg"]
    tiff = _plan(["scan.tif", "ok.bmp"], extension=None)
    assert _codes(tiff) == {"scan.tif": plan.UNKNOWN_FORMAT}


def test_planned_keys_are_stable_so_the_output_lands_where_planned() -> None:
    planned = _plan(["a b/c d.png", "照片/猫.png", "😀.png", "a+b%20c#d?e&f.png", ".png"])
    assert not planned.refused
    for item in planned.items:
        assert is_stable(item.output_key) and key_problem(item.output_key) is None
        assert item.output_path == "/" + item.output_key[: -len("jpg")] + "{format}"


def test_explicit_list_entries_with_unsafe_segments_fail_alone() -> None:
    source = plan.parse_source(
        [f"cos://{BUCKET}/in/a.png", f"cos://{BUCKET}/in/./b.png", f"cos://{BUCKET}/in/c.png"]
    )
    assert isinstance(source, list)
    planned = plan.plan_items(source, None, DEST, "jpg")
    assert [r.code for r in planned.refused] == [plan.UNSAFE_KEY]
    # The unsafe entry does not move the others' common directory.
    assert [i.output_key for i in planned.items] == ["enhanced/dt=1/a.jpg", "enhanced/dt=1/c.jpg"]


def test_a_destination_no_output_can_be_written_under_fails_the_batch() -> None:
    for bad in (f"cos://{BUCKET}/out/{{x}}/", f"cos://{BUCKET}/" + "d" * 900 + "/"):
        dest = plan.parse_cos_location(bad, "destination", prefix=True)
        with pytest.raises(plan.BatchArgumentError, match=r"^destination"):
            plan.check_destination(plan.parse_source(SRC), dest)


def _operator(**kwargs: Any) -> Any:
    from airflow_mps.operators.batch import MpsBatchProcessImageOperator

    args: dict[str, Any] = {
        "task_id": "batch",
        "source": SRC,
        "destination": f"cos://{BUCKET}/enhanced/dt=1/",
    }
    args.update(kwargs)
    return MpsBatchProcessImageOperator(**args)


@pytest.mark.parametrize(
    ("region", "error"),
    [
        ("Guangzhou", r"^region: .* is not a valid region"),
        ("None", r"^region: 'None' rendered to nothing"),  # the shared rendered-empty rule, first
        ("ap guangzhou", r"^region: .* is not a valid region"),
        ("ap-guangzhou/x", r"^region: .* is not a valid region"),
    ],
)
def test_a_bad_region_argument_fails_before_the_hook_exists(region: str, error: str) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    op = _operator(region=region)
    op.__dict__["hook"] = None  # cached_property slot: any use of the hook would fail loudly
    with pytest.raises(AirflowFailException, match=error):
        op.execute({})


def test_a_bad_connection_region_fails_before_any_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import AirflowFailException

    monkeypatch.setenv(
        "AIRFLOW_CONN_TENCENTCLOUD_DEFAULT",
        "tencentcloud://AKIDx:secret@/?region=Guang+Zhou&endpoint=127.0.0.1%3A1&protocol=http",
    )
    op = _operator()
    monkeypatch.setattr(
        type(op.hook), "list_objects", lambda *a, **k: pytest.fail("listed before the region check")
    )
    with pytest.raises(AirflowFailException, match=r"^region: .*connection 'tencentcloud_default'"):
        op.execute({})
