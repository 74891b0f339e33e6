"""The emulator's web pages rendered without a server: escaping, URL encoding, empty states, routing.

Keys and messages are user data: each page must show them literally (a ``<script>`` key is text, not
markup) and link to them with URLs that survive the browser (``..`` segments, ``#``, ``?``, ``%``).
"""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from airflow_mps.emulator.cos.listing import CosListResult
from airflow_mps.emulator.cos.models import CosObjectMeta
from airflow_mps.emulator.http import Headers
from airflow_mps.emulator.mps.models import FINISH, PROCESSING, WAITING, TaskRecord
from airflow_mps.emulator.web import is_web_request, pages, task_path
from airflow_mps.emulator.web.thumbs import ThumbnailCache, clamp_size, image_dimensions, make_thumbnail

CTX = pages.PageContext(endpoint="127.0.0.1:9100", region="ap-guangzhou", appid="1250000000")
BUCKET = "photos-1250000000"
NASTY = "raw/<script>alert(\"x\")</script> & 'q' 猫 🐱.jpg"
SCRIPTY = "<script>"


class _Collector(HTMLParser):
    """Every tag, attribute and text node of a document, to check what a browser would see."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(document: str) -> _Collector:
    parser = _Collector()
    parser.feed(document)
    return parser


def _task(
    n: int,
    *,
    status: str = FINISH,
    key: str = "raw/a.jpg",
    failed: bool = False,
    output_key: str | None = None,
) -> TaskRecord:
    rec = TaskRecord(
        task_id=f"1250000000-WorkflowTask-{n:032x}",
        seq=n,
        status=status,
        request={
            "InputInfo": {
                "Type": "COS",
                "CosInputInfo": {"Bucket": BUCKET, "Region": "ap-guangzhou", "Object": "/" + key},
            },
            "ImageTask": {"EncodeConfig": {"Format": "JPEG"}},
        },
        input_key=f"cos://{BUCKET}/{key}",
        create_time=1_793_491_200.0 + n,
        request_id="req-" + str(n),
    )
    if status == FINISH:
        rec.finish_time = rec.create_time + 1.5
        rec.begin_time = rec.create_time + 0.1
        if failed:
            rec.result_status, rec.err_code, rec.err_msg = "FAIL", 70000, "ResourceNotFound.CosObjectNotExist"
            rec.message = f"The input object cos://{BUCKET}/{key} does not exist."
        else:
            rec.result_status, rec.progress = "SUCCESS", 100
            rec.output = {"bucket": BUCKET, "region": "ap-guangzhou", "key": output_key or "out/a.jpg"}
    return rec


def _meta(key: str, content_type: str = "image/jpeg", size: int = 2048) -> CosObjectMeta:
    return CosObjectMeta(
        key=key, size=size, etag="0" * 32, last_modified=1_793_491_200.0, content_type=content_type
    )


def _listing(
    contents: tuple[CosObjectMeta, ...] = (), prefixes: tuple[str, ...] = (), prefix: str = "", **kw: object
) -> CosListResult:
    base: dict[str, object] = dict(
        bucket=BUCKET,
        prefix=prefix,
        marker="",
        max_keys=200,
        delimiter="/",
        is_truncated=False,
        next_marker=None,
        contents=contents,
        common_prefixes=prefixes,
    )
    base.update(kw)
    return CosListResult(**base)  # type: ignore[arg-type]


# -- escaping ---------------------------------------------------------------------------------------------


def test_task_list_shows_a_hostile_key_as_text_and_links_to_it_exactly() -> None:
    doc = pages.task_list(CTX, [_task(1, key=NASTY, output_key="out/" + NASTY)], total=1)
    parsed = _parse(doc)
    assert "script" not in parsed.tags  # no injected element
    assert SCRIPTY not in doc  # never raw in the markup
    assert NASTY in parsed.text and "out/" + NASTY in parsed.text  # shown literally
    titles = {v for tag, k, v in parsed.attrs if k == "title"}
    assert f"cos://{BUCKET}/{NASTY}" in titles  # the full URI as the link's tooltip
    srcs = [v for tag, k, v in parsed.attrs if tag == "img" and k == "src"]
    assert len(srcs) == 2
    for src in srcs:  # the thumbnail URL round-trips to the exact key
        query = parse_qs(urlsplit(src).query)
        assert query["key"][0] in (NASTY, "out/" + NASTY)
        assert urlsplit(src).path == f"/buckets/{BUCKET}/thumbnail"


def test_task_page_escapes_messages_request_and_definition() -> None:
    rec = _task(2, key=NASTY, failed=True)
    rec.message = '<img src=x onerror="alert(1)">'
    rec.request["Definition"] = '"><b>'
    doc = pages.task_page(CTX, rec, input_facts=pages.ObjectFacts(_meta(NASTY)), output_facts=None)
    parsed = _parse(doc)
    assert not any(tag == "img" and k == "onerror" for tag, k, _ in parsed.attrs)
    assert "<b>" not in doc.split("<main>", 1)[1].replace("<b>input", "")  # the only <b> is the caption's
    text = "".join(parsed.text)
    assert rec.message in text and NASTY in text and "ResourceNotFound.CosObjectNotExist" in text
    assert '"Definition": "\\"><b>"' in text  # the request JSON, literally
    assert "70000" in text


def test_object_list_escapes_keys_and_prefixes_and_encodes_their_urls() -> None:
    keys = ["dir/../x.png", "dir/a#b?.png", "dir/100%.png", "dir/" + NASTY]
    doc = pages.object_list(CTX, _listing(tuple(_meta(k) for k in keys), ("dir/<sub>/",), prefix="dir/"))
    parsed = _parse(doc)
    assert "script" not in parsed.tags and "sub" not in parsed.tags
    hrefs = [v for tag, k, v in parsed.attrs if tag == "a" and k == "href" and "/object?" in v]
    assert sorted({parse_qs(urlsplit(h).query)["key"][0] for h in hrefs}) == sorted(keys)
    assert all(".." not in urlsplit(h).path for h in hrefs)  # '..' travels in the query only
    folder = [
        v
        for tag, k, v in parsed.attrs
        if tag == "a" and k == "href" and "prefix=dir%2F%3Csub" in v.replace("/", "%2F")
    ]
    assert folder, "the folder links to its prefix"
    assert "<sub>/" in "".join(parsed.text)


def test_value_attribute_of_the_prefix_form_is_escaped() -> None:
    doc = pages.object_list(CTX, _listing(prefix='"><script>x'))
    assert 'value="&quot;&gt;&lt;script&gt;x"' in doc
    assert "script" not in _parse(doc).tags


def test_esc_and_url_helpers() -> None:
    assert pages.esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert pages.url("/", status="", before=None) == "/"
    assert pages.url("/x", key="a b/c?d") == "/x?key=a%20b/c%3Fd"
    assert task_path("1250000000-WorkflowTask-" + "a" * 32) == "/tasks/1250000000-WorkflowTask-" + "a" * 32
    assert (
        pages.thumbnail_path(BUCKET, "猫.png", 480)
        == f"/buckets/{BUCKET}/thumbnail?key=%E7%8C%AB.png&size=480"
    )


# -- content and empty states -----------------------------------------------------------------------------


def test_empty_task_list_explains_how_to_get_tasks() -> None:
    doc = pages.task_list(CTX, [], total=0)
    assert "No tasks yet" in doc and "<table" not in doc
    assert "No tasks match this filter" in pages.task_list(CTX, [], total=0, status="failed")


def test_task_list_rows_statuses_errors_and_refresh() -> None:
    tasks = [_task(5, status=WAITING), _task(4, status=PROCESSING), _task(3, failed=True), _task(2)]
    doc = pages.task_list(CTX, tasks, total=9, next_before=2)
    for needle in (
        "WAITING",
        "PROCESSING",
        ">FAIL<",
        ">SUCCESS<",
        "ResourceNotFound.CosObjectNotExist",
        "ErrCode 70000",
        "pending",
        "9 in total",
        "?before=2",
        "2026-11-01<br>00:00:03",
    ):
        assert needle in doc, needle
    assert 'http-equiv="refresh"' in doc  # unfinished tasks: the page reloads itself (no JavaScript)
    assert 'http-equiv="refresh"' not in pages.task_list(CTX, [_task(2)], total=1)
    hrefs = re.findall(r'href="(/tasks/[^"]+)"', doc)
    assert hrefs == [task_path(t.task_id) for t in tasks]


def test_task_page_shows_before_and_after_with_facts() -> None:
    rec = _task(7, output_key="out/a.jpg")
    doc = pages.task_page(
        CTX,
        rec,
        input_facts=pages.ObjectFacts(_meta("raw/a.jpg"), (480, 320)),
        output_facts=pages.ObjectFacts(_meta("out/a.jpg"), (960, 640)),
    )
    assert "input · 480×320 · 2.0 KiB · image/jpeg" in doc and "output · 960×640" in doc
    assert f"/buckets/{BUCKET}/thumbnail?key=raw/a.jpg&amp;size=480" in doc
    assert "req-7" in doc and "&quot;EncodeConfig&quot;" in doc
    missing = pages.task_page(CTX, rec, input_facts=pages.ObjectFacts(None), output_facts=None)
    assert "object not found" in missing


def test_url_input_is_shown_but_never_loaded() -> None:
    rec = _task(8)
    rec.request["InputInfo"] = {"Type": "URL", "UrlInputInfo": {"Url": "https://example.com/<a>.jpg"}}
    doc = pages.task_list(CTX, [rec], total=1)
    assert "https://example.com/&lt;a&gt;.jpg" in doc
    assert "example.com" not in " ".join(v for tag, k, v in _parse(doc).attrs if k == "src")


def test_bucket_pages_empty_states_and_paging() -> None:
    assert "No buckets yet" in pages.bucket_list(CTX, [])
    listed = pages.bucket_list(CTX, [(BUCKET, 10_000, True), ("b-1250000000", 3, False)])
    assert "10000+" in listed and ">3<" in listed
    assert "No objects in this bucket" in pages.object_list(CTX, _listing())
    assert "No objects under the prefix &#x27;x/&#x27;" in pages.object_list(CTX, _listing(prefix="x/"))
    paged = pages.object_list(
        CTX, _listing((_meta("a.txt", "text/plain"),), is_truncated=True, next_marker="a.txt")
    )
    assert "marker=a.txt" in paged and "Next page" in paged
    assert "<img" not in paged  # no thumbnail for a non-image


def test_breadcrumbs_link_every_folder_of_the_prefix() -> None:
    doc = pages.object_list(CTX, _listing(prefix="raw/dt=2026-11-01/par"))
    assert f'href="/buckets/{BUCKET}?prefix=raw/"' in doc
    assert f'href="/buckets/{BUCKET}?prefix=raw/dt=2026-11-01/"' in doc
    assert "par*" in doc


def test_every_page_is_self_contained() -> None:
    docs = [
        pages.task_list(CTX, [_task(1)], total=1),
        pages.task_page(CTX, _task(1), input_facts=None, output_facts=None),
        pages.bucket_list(CTX, [(BUCKET, 1, False)]),
        pages.object_list(CTX, _listing((_meta("a.jpg"),))),
        pages.not_found(CTX, "nothing <here>"),
    ]
    for doc in docs:
        parsed = _parse(doc)
        assert "script" not in parsed.tags
        for tag, k, v in parsed.attrs:
            if k in ("src", "href", "action"):
                assert not re.match(r"^[a-z]+://|^//", v), (tag, k, v)  # no external asset or link


# -- routing ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "expected"),
    [
        ("GET", "/", "", [("Host", "127.0.0.1:9100")], True),
        ("HEAD", "/", "", [("Host", "127.0.0.1:9100")], True),
        ("GET", "/", "status=failed", [("Host", "localhost:9100")], True),
        ("GET", "/tasks/1250000000-WorkflowTask-x", "", [("Host", "127.0.0.1:9100")], True),
        ("GET", "/buckets/photos-1250000000/thumbnail", "key=a", [("Host", "127.0.0.1:9100")], True),
        # COS keeps everything it answered before:
        ("GET", "/", "", [("Host", f"{BUCKET}.cos.ap-guangzhou.myqcloud.com")], False),  # ListObjects (vhost)
        (
            "GET",
            "/tasks/x",
            "",
            [("Host", f"{BUCKET}.cos.ap-guangzhou.myqcloud.com")],
            False,
        ),  # key "tasks/x"
        ("GET", "/", "", [("Host", "127.0.0.1:9100"), ("Authorization", "q-sign-algorithm=sha1")], False),
        ("GET", "/tasks/x", "q-sign-algorithm=sha1&q-signature=abc", [("Host", "127.0.0.1:9100")], False),
        ("GET", f"/{BUCKET}/raw/a.jpg", "", [("Host", "127.0.0.1:9100")], False),  # path-style object
        ("GET", "//tasks", "", [("Host", "127.0.0.1:9100")], False),
        ("POST", "/", "", [("Host", "127.0.0.1:9100")], False),  # MPS
        ("PUT", "/buckets/x", "", [("Host", "127.0.0.1:9100")], False),
        ("GET", "/%ff", "", [("Host", "127.0.0.1:9100")], False),  # not UTF-8: COS answers InvalidURI
    ],
)
def test_which_requests_are_page_views(
    method: str, path: str, query: str, headers: list[tuple[str, str]], expected: bool
) -> None:
    assert is_web_request(method, path, query, Headers(headers)) is expected


# -- thumbnails -------------------------------------------------------------------------------------------


def _image_bytes(size: tuple[int, int], mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 80, 20, 128) if mode == "RGBA" else (200, 80, 20)).save(buf, fmt)
    return buf.getvalue()


def test_thumbnails_fit_the_box_and_keep_transparency() -> None:
    data, ctype = make_thumbnail(_image_bytes((1600, 900)), 160) or (b"", "")
    assert ctype == "image/jpeg" and Image.open(io.BytesIO(data)).size == (160, 90)
    data, ctype = make_thumbnail(_image_bytes((300, 600), "RGBA", "PNG"), 100) or (b"", "")
    img = Image.open(io.BytesIO(data))
    assert ctype == "image/png" and img.size == (50, 100) and img.mode == "RGBA"
    assert make_thumbnail(b"not an image", 160) is None
    assert image_dimensions(_image_bytes((33, 44))) == (33, 44) and image_dimensions(b"x") is None


def test_thumbnail_size_is_clamped_and_cache_keys_on_etag() -> None:
    assert (clamp_size(None, 160), clamp_size("5", 160), clamp_size("99999", 160), clamp_size("x", 160)) == (
        160,
        16,
        1024,
        160,
    )
    cache = ThumbnailCache(max_entries=2)
    first = cache.get(BUCKET, "a", "etag1", 32, _image_bytes((64, 64)))
    assert first is not None
    assert cache.get(BUCKET, "a", "etag1", 32, b"ignored: served from the cache") == first
    assert cache.get(BUCKET, "a", "etag2", 32, b"new bytes, not an image") is None
    cache.get(BUCKET, "b", "e", 32, b"x")
    assert cache.get(BUCKET, "a", "etag1", 32, b"evicted, so re-rendered from these bytes") is None
