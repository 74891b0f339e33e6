"""The one OutputPath rule (``render_output_path``): each variable of doc 862/37039, the directory rules,
and the emulator's writer and the provider's prediction being the same function."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from airflow_mps.emulator.mps.models import resolve_output
from airflow_mps.models import (
    OUTPUT_PATH_VARIABLES,
    ProcessImageRequest,
    expected_output_key,
    input_path_of,
    render_output_path,
)

BUCKET = "render-1250000000"
REGION = "ap-guangzhou"


def test_the_five_documented_variables() -> None:
    assert OUTPUT_PATH_VARIABLES == ("inputName", "inputFormat", "format", "definition", "number")
    path = "{inputName}|{inputFormat}|{format}|{definition}|{number}.{format}"
    assert render_output_path("raw/cat.PNG", "jpeg", output_path=path, definition=20001) == (
        "raw/cat|PNG|jpg|20001|0.jpg"
    )
    # Without a Definition {definition} is 0; {number} is always 0 (one output, numbered from 0).
    assert render_output_path("a.webp", None, output_path=path) == "a|webp|webp|0|0.webp"


@pytest.mark.parametrize(
    ("input_path", "fmt", "expected"),
    [
        ("raw/cat.png", "JPEG", "raw/cat.jpg"),  # the documented default {inputName}.{format}
        ("raw/cat.png", "jpg", "raw/cat.jpg"),
        ("raw/cat.png", "WebP", "raw/cat.webp"),
        ("raw/cat.png", None, "raw/cat.png"),  # None = the source's format, from its extension
        ("raw/cat.JPEG", None, "raw/cat.jpg"),
        ("/raw/cat.tar.png", "bmp", "raw/cat.tar.bmp"),  # only the last extension is the format
        ("raw/cat", None, "raw/cat"),  # no extension, no format known: no dangling dot
        ("raw/.profile", "png", "raw/.profile.png"),
        ("cat.png", "png", "cat.png"),
    ],
)
def test_default_name(input_path: str, fmt: str | None, expected: str) -> None:
    assert render_output_path(input_path, fmt) == expected


@pytest.mark.parametrize(
    ("output_dir", "output_path", "expected"),
    [
        (None, None, "in/dir/cat.png"),
        ("", None, "in/dir/cat.png"),  # empty = not given = the input's directory
        ("/", None, "cat.png"),  # the bucket root
        ("out", None, "out/cat.png"),
        ("/out/sub/", None, "out/sub/cat.png"),
        ("/out/", "x/{inputName}.{format}", "out/x/cat.png"),
        (None, "x/{inputName}.{format}", "in/dir/x/cat.png"),
        ("/out/", "/abs/{inputName}.{format}", "abs/cat.png"),  # absolute: OutputDir does not apply
        (None, "/{inputName}.{format}", "cat.png"),
        ("/out/", "{unknown}.{format}", "out/{unknown}.png"),  # left as written (the model refuses it)
    ],
)
def test_directories(output_dir: str | None, output_path: str | None, expected: str) -> None:
    assert (
        render_output_path("in/dir/cat.png", "png", output_dir=output_dir, output_path=output_path)
        == expected
    )


def test_input_path_of_each_input_type() -> None:
    assert input_path_of({"Type": "COS", "CosInputInfo": {"Object": "/a/b.png"}}) == "a/b.png"
    assert (
        input_path_of({"Type": "URL", "UrlInputInfo": {"Url": "https://h/x/a%20b.jpg?sig=1"}}) == "x/a b.jpg"
    )
    assert input_path_of({"Type": "AWS-S3", "S3InputInfo": {"S3Object": "/s3/k.webp"}}) == "s3/k.webp"
    assert input_path_of({"Type": "VOD", "VODInputInfo": {"Object": "/v/k.bmp"}}) == "v/k.bmp"
    assert (
        input_path_of(None) == input_path_of({}) == input_path_of({"Type": "VOD", "VODInputInfo": {}}) == ""
    )


INPUTS = ["raw/cat.png", "raw/dt=1/Photo.JPG", "a.b.c.webp", "deep/er/x.bmp"]
DIRS = [None, "", "/", "/out/", "out/dt=2"]
PATHS = [
    None,
    "{inputName}.{format}",
    "{inputName}_{inputFormat}_{definition}_{number}.{format}",
    "sub/{inputName}-v2.{format}",
    "/abs/{inputName}.{format}",
]
FORMATS = [None, "JPEG", "PNG", "WebP", "bmp"]


@pytest.mark.parametrize(("input_key", "output_dir"), list(itertools.product(INPUTS, DIRS)))
def test_emulator_writer_and_provider_prediction_agree(input_key: str, output_dir: str | None) -> None:
    """The emulator's resolve_output (what it writes) == expected_output_key (what skip-existing looks
    for) for every OutputPath x format x Definition; the full request goes through the model first."""
    for output_path, fmt, definition in itertools.product(PATHS, FORMATS, (None, 7)):
        request = ProcessImageRequest.build(
            input=f"cos://{BUCKET}/{input_key}",
            region=REGION,
            output_dir=output_dir,
            output_path=output_path,
            image_task={"EncodeConfig": {"Format": fmt}} if fmt else None,
            definition=definition,
        )
        body: dict[str, Any] = request.to_api()
        if output_dir is not None:
            body["OutputDir"] = output_dir  # as the user gave it, "" included
        source = input_key.rsplit(".", 1)[1].lower()
        written_format = (fmt or {"jpg": "jpeg"}.get(source, source)).lower()
        bucket, region, written = resolve_output(body, written_format)
        predicted = expected_output_key(input_key, output_dir, output_path, request.output_format, definition)
        assert (bucket, region) == (BUCKET, REGION)
        assert written == predicted, (input_key, output_dir, output_path, fmt, definition)
        assert "{" not in written and not written.startswith("/")


def test_url_input_output_lands_under_the_url_path() -> None:
    body = {
        "InputInfo": {"Type": "URL", "UrlInputInfo": {"Url": "https://cdn.example.com/img/a%20b.png?x=1"}},
        "OutputStorage": {"Type": "COS", "CosOutputStorage": {"Bucket": BUCKET, "Region": REGION}},
        "OutputPath": "{inputName}_{inputFormat}.{format}",
    }
    assert resolve_output(body, "jpeg") == (BUCKET, REGION, "img/a b_png.jpg")
    assert resolve_output({**body, "OutputDir": "/u/"}, "png")[2] == "u/a b_png.png"
