"""The web UI's routing: which requests are page views, and the handler that answers them.

Why a separate routing rule: the emulator's port already serves MPS (``POST /``), COS and the admin API,
and COS requests must keep reaching COS exactly as before. A request is a page view only when it is a
``GET``/``HEAD``, carries no COS signature (no ``Authorization`` header, no presigned ``q-signature``),
is addressed path-style (the Host is not ``<bucket>.cos.<region>.myqcloud.com`` — the SDK's IP/Port
mode, where the whole path is an object key) and its path is ``/`` or starts with ``/tasks`` or
``/buckets``. ``tasks`` and ``buckets`` can never be COS bucket names (those end in ``-<appid>``), and
an unsigned path-style ``GET /`` got an AccessDenied error before, so nothing COS answered changes.

Page views are not counted in the stats and never get injected faults: they are not API calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from airflow_mps.emulator.cos.responses import resolve_target
from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse, Headers
from airflow_mps.emulator.mps.models import FINISH, PROCESSING, WAITING, TaskNotFound
from airflow_mps.emulator.web import pages
from airflow_mps.emulator.web.thumbs import ThumbnailCache, clamp_size, image_dimensions, placeholder_svg

if TYPE_CHECKING:
    from airflow_mps.emulator.server import EmulatorApp

#: First path segments served by the web UI (besides ``/`` itself).
WEB_ROOTS = frozenset({"tasks", "buckets"})
TASKS_PER_PAGE = 50
OBJECTS_PER_PAGE = 200
#: The bucket list counts objects up to this many per bucket, then shows "N+".
BUCKET_COUNT_CAP = 10_000

_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    # No script may run at all; images and styles only from here (the styles are inline).
    (
        "Content-Security-Policy",
        "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'",
    ),
]
#: Stored objects are user content: never let one run script in the emulator's origin.
_OBJECT_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    (
        "Content-Security-Policy",
        "sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'",
    ),
    ("Cache-Control", "no-cache"),
]


def is_web_request(method: str, path: str, query: str, headers: Headers) -> bool:
    """True for an unsigned, path-style GET/HEAD of ``/``, ``/tasks…`` or ``/buckets…`` (see module doc)."""
    if method not in ("GET", "HEAD") or headers.get("Authorization") is not None:
        return False
    if "q-signature=" in query.lower() or "q-sign-algorithm=" in query.lower():
        return False
    try:
        target = resolve_target(EmulatorRequest(method, path, query, headers))
    except (UnicodeDecodeError, ValueError):
        return False
    if not target.path_style:
        return False
    return path == "/" or target.bucket in WEB_ROOTS


class WebUI:
    """Serves the pages of one `EmulatorApp` (tasks from its MPS store, objects from its COS backend)."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.thumbnails = ThumbnailCache()

    @property
    def context(self) -> pages.PageContext:
        cfg = self.app.config
        return pages.PageContext(endpoint=self.app.endpoint, region=cfg.region, appid=str(cfg.appid))

    def handle(self, request: EmulatorRequest) -> EmulatorResponse:
        """Answer one page view; unknown paths get a 404 page, never an exception."""
        segments = (
            [unquote(s, errors="replace") for s in request.path.strip("/").split("/")]
            if request.path.strip("/")
            else []
        )
        query = dict(parse_qsl(request.query, keep_blank_values=True))
        if not segments or segments == ["tasks"]:
            return self._task_list(query)
        if segments[0] == "tasks" and len(segments) == 2:
            return self._task_page(segments[1])
        if segments == ["buckets"]:
            return self._bucket_list()
        if segments[0] == "buckets" and len(segments) == 2:
            return self._object_list(segments[1], query)
        if segments[0] == "buckets" and len(segments) == 3 and segments[2] in ("object", "thumbnail"):
            return self._object(
                segments[1], query.get("key", ""), segments[2] == "thumbnail", query.get("size")
            )
        return self._html(pages.not_found(self.context, f"There is no page at {request.path}."), 404)

    # -- responses ------------------------------------------------------------------------------------
    @staticmethod
    def _html(document: str, status: int = 200) -> EmulatorResponse:
        body = document.encode("utf-8")
        return EmulatorResponse(status, [*_PAGE_HEADERS, ("Content-Length", str(len(body)))], body)

    @staticmethod
    def _bytes(
        data: bytes, content_type: str, status: int = 200, etag: str | None = None
    ) -> EmulatorResponse:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data))), *_OBJECT_HEADERS]
        if etag:
            headers.append(("ETag", f'"{etag}"'))
        return EmulatorResponse(status, headers, data)

    # -- pages ----------------------------------------------------------------------------------------
    def _task_list(self, query: dict[str, str]) -> EmulatorResponse:
        status = query.get("status", "")
        statuses: tuple[str, ...] = ()
        failed: bool | None = None
        if status in (WAITING, PROCESSING, FINISH):
            statuses = (status,)
        elif status == "failed":
            failed = True
        else:
            status = ""
        before = query.get("before", "")
        # Expired tasks are gone for the API (7-day retention); the page agrees with it.
        page, total = self.app.mps.store.query(
            statuses=statuses,
            start=self.app.mps.retention_cutoff(),
            failed=failed,
            before_seq=int(before) if before.isdigit() else None,
            limit=TASKS_PER_PAGE + 1,
        )
        more = len(page) > TASKS_PER_PAGE
        page = page[:TASKS_PER_PAGE]
        return self._html(
            pages.task_list(
                self.context, page, total=total, status=status, next_before=page[-1].seq if more else None
            )
        )

    def _facts(self, bucket: str, key: str) -> pages.ObjectFacts:
        cos = self.app.cos
        if cos is None:
            return pages.ObjectFacts(None)
        try:
            obj = cos.get_object(bucket, key)
        except Exception:  # missing bucket/key, or an invalid name: the page says "not found"
            return pages.ObjectFacts(None)
        return pages.ObjectFacts(obj.meta, image_dimensions(obj.data))

    def _task_page(self, task_id: str) -> EmulatorResponse:
        try:
            rec = self.app.mps.get(task_id)
        except TaskNotFound:
            return self._html(pages.not_found(self.context, f"No task with TaskId {task_id}."), 404)
        bucket, key, _ = pages.task_input(rec)
        input_facts = self._facts(bucket, key) if bucket and key else None
        output_facts = None
        if rec.output and not rec.failed:
            output_facts = self._facts(rec.output["bucket"], rec.output["key"])
        return self._html(
            pages.task_page(self.context, rec, input_facts=input_facts, output_facts=output_facts)
        )

    def _bucket_list(self) -> EmulatorResponse:
        cos = self.app.cos
        rows: list[tuple[str, int, bool]] = []
        for name in cos.list_buckets() if cos is not None else []:
            count, marker, more = 0, "", True
            while more and count < BUCKET_COUNT_CAP:
                listing = cos.list_objects(name, marker=marker)
                count += len(listing.contents)
                more, marker = listing.is_truncated, listing.next_marker or ""
            rows.append((name, count, more))
        return self._html(pages.bucket_list(self.context, rows))

    def _object_list(self, bucket: str, query: dict[str, str]) -> EmulatorResponse:
        from airflow_mps.emulator.cos.errors import CosError

        cos = self.app.cos
        if cos is None:
            return self._html(pages.not_found(self.context, "The COS emulator is not available."), 404)
        try:
            listing = cos.list_objects(
                bucket,
                prefix=query.get("prefix", ""),
                delimiter="/",
                marker=query.get("marker", ""),
                max_keys=OBJECTS_PER_PAGE,
            )
        except CosError as exc:
            return self._html(pages.not_found(self.context, f"{exc.code}: {exc.message}"), 404)
        return self._html(pages.object_list(self.context, listing))

    def _object(self, bucket: str, key: str, thumbnail: bool, size: str | None) -> EmulatorResponse:
        """An object's bytes, or its thumbnail (a placeholder image when it cannot be previewed)."""
        px = clamp_size(size, pages.LIST_THUMB_PX)
        cos = self.app.cos
        try:
            if cos is None or not key:
                raise LookupError
            obj = cos.get_object(bucket, key)
        except Exception:  # NoSuchBucket/NoSuchKey/invalid names all mean "nothing to show"
            if thumbnail:
                return self._bytes(placeholder_svg("not found"), "image/svg+xml", 404)
            return self._html(pages.not_found(self.context, f"No object cos://{bucket}/{key}."), 404)
        if not thumbnail:
            return self._bytes(obj.data, obj.meta.content_type, etag=obj.meta.etag)
        rendered = self.thumbnails.get(bucket, key, obj.meta.etag, px, obj.data)
        if rendered is not None:
            return self._bytes(*rendered)
        if pages.is_image(obj.meta) and _pillow_missing():
            return self._bytes(obj.data, obj.meta.content_type, etag=obj.meta.etag)  # the CSS scales it
        return self._bytes(placeholder_svg("no preview"), "image/svg+xml")


def _pillow_missing() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return True
    return False


__all__ = ["TASKS_PER_PAGE", "WEB_ROOTS", "WebUI", "is_web_request"]
