"""HTML of the emulator's web pages: pure functions from emulator state to a complete document.

Why pure: every page is rendered from plain values (``TaskRecord``s, ``CosListResult``s), so the unit
tests check escaping and empty states without a server. Everything that comes from a user (object keys,
bucket names, URLs, error messages, the submitted request) passes through `esc` before it reaches the
document, and every URL is percent-encoded before it is escaped: keys may hold ``<``, quotes, ``&``, CJK
or emoji. No JavaScript and no external asset: styles are inline, images come from this emulator.

URL scheme (stable; the provider's console link points at the task page):

- ``/`` (also ``/tasks``): recent tasks, newest first; ``?status=WAITING|PROCESSING|FINISH|failed``,
  ``?before=<seq>`` pages back;
- ``/tasks/<TaskId>``: one task;
- ``/buckets``: the buckets; ``/buckets/<bucket>?prefix=<p>&marker=<m>``: objects under a prefix;
- ``/buckets/<bucket>/object?key=<k>``: the object's bytes; ``/buckets/<bucket>/thumbnail?key=<k>&size=<px>``:
  a thumbnail of it. Keys travel in the query string because browsers rewrite ``.``/``..`` path segments.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from airflow_mps.emulator.cos.listing import CosListResult
from airflow_mps.emulator.cos.models import CosObjectMeta
from airflow_mps.emulator.mps.models import FINISH, PROCESSING, WAITING, TaskRecord

#: Suffixes the bucket page shows a thumbnail for even when the stored Content-Type is generic.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
LIST_THUMB_PX = 160
PAGE_THUMB_PX = 480

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC",sans-serif;
margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1f3a5f;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:baseline}
header b{font-size:16px}header a{color:#cfe0f5;text-decoration:none}header a:hover{color:#fff}
header .info{margin-left:auto;color:#a9bfd9;font-size:12px}
main{padding:16px 24px 32px}h1{font-size:20px;margin:4px 0 14px;word-break:break-all}
h2{font-size:16px;margin:22px 0 8px}a{color:#1a5fb4}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0002}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e7ee;vertical-align:top}
th{background:#eef1f6;font-weight:600;font-size:12px;color:#4a5568;white-space:nowrap}
tr:hover td{background:#fafbfd}
.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.muted{color:#6b7587}.small{font-size:12px}.nowrap{white-space:nowrap;word-break:normal}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.WAITING{background:#e6e8ec;color:#4a5060}.PROCESSING{background:#dbe9ff;color:#1c4fa0}
.SUCCESS{background:#d9f2df;color:#1d6b31}.FAIL{background:#fde0e0;color:#a11d1d}
.err{color:#a11d1d;font-weight:600}
.cell{display:flex;gap:8px;align-items:flex-start;min-width:220px}.cell>div{min-width:96px}
img.thumb{max-width:120px;max-height:90px;object-fit:contain;background:#e9edf3;border:1px solid #d5dbe5;border-radius:3px}
img.big{max-width:100%;max-height:480px;object-fit:contain;background:#e9edf3;border:1px solid #d5dbe5}
.pair{display:flex;gap:16px;flex-wrap:wrap}.pair figure{margin:0;background:#fff;padding:10px;box-shadow:0 1px 2px #0002;max-width:520px}
figcaption{font-size:12px;margin-top:6px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;padding:12px 16px;margin:0;box-shadow:0 1px 2px #0002}
dt{color:#4a5568;font-weight:600}dd{margin:0;word-break:break-all}
pre{background:#fff;padding:12px;overflow:auto;box-shadow:0 1px 2px #0002;font-size:12px;margin:0}
.filters{margin:0 0 12px}.filters a{margin-right:12px}.filters a.on{font-weight:700;color:#1d2330;text-decoration:none}
.empty{background:#fff;padding:24px;box-shadow:0 1px 2px #0002;color:#4a5568}
.crumbs{margin:0 0 12px}.pager{margin-top:12px}
form{margin:0 0 12px}input[type=text]{width:360px;padding:3px 6px}
footer{color:#6b7587;font-size:12px;padding:0 24px 24px}
"""


def esc(value: object) -> str:
    """HTML-escape anything (quotes too, so the result is safe inside attributes)."""
    return html.escape(str(value), quote=True)


def url(path: str, **query: object) -> str:
    """``path`` (already percent-encoded by the caller) plus ``query`` encoded; None and "" values dropped."""
    pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    return path + ("?" + urlencode(pairs, safe="/=", quote_via=quote) if pairs else "")


def task_path(task_id: str) -> str:
    """Path of a task's page: ``/tasks/<TaskId>`` (part of the stable URL scheme)."""
    return "/tasks/" + quote(task_id, safe="")


def bucket_path(bucket: str, prefix: str = "") -> str:
    return url("/buckets/" + quote(bucket, safe=""), prefix=prefix)


def object_path(bucket: str, key: str) -> str:
    return url("/buckets/" + quote(bucket, safe="") + "/object", key=key)


def thumbnail_path(bucket: str, key: str, size: int = LIST_THUMB_PX) -> str:
    return url("/buckets/" + quote(bucket, safe="") + "/thumbnail", key=key, size=size)


def fmt_time(ts: float | None) -> str:
    """``YYYY-MM-DD hh:mm:ss`` in UTC (the header says so), or an em dash."""
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def fmt_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - loop always returns


@dataclass(frozen=True)
class PageContext:
    """What every page's header shows about the emulator serving it."""

    endpoint: str
    region: str
    appid: str


def document(ctx: PageContext, title: str, body: str, *, refresh: int | None = None) -> str:
    """A complete HTML document around ``body`` (already HTML); ``refresh`` reloads it every N seconds."""
    meta_refresh = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<link rel="icon" href="data:,">{meta_refresh}<title>{esc(title)} · airflow-mps emulator</title>'
        f"<style>{_CSS}</style></head><body>"
        f'<header><b>airflow-mps emulator</b><a href="/">Tasks</a><a href="/buckets">Buckets</a>'
        f'<span class="info">{esc(ctx.endpoint)} · {esc(ctx.region)} · appid {esc(ctx.appid)} · times in UTC</span>'
        f"</header><main>{body}</main>"
        "<footer>Local development tool: these pages and the object and thumbnail URLs under /buckets/ "
        "serve stored objects without authentication. Do not expose this port beyond your machine.</footer>"
        "</body></html>\n"
    )


# -- tasks ------------------------------------------------------------------------------------------------


def task_input(rec: TaskRecord) -> tuple[str | None, str | None, str]:
    """(bucket, key, display) of a task's input; bucket/key None for a URL input."""
    info = rec.request.get("InputInfo") or {}
    if str(info.get("Type") or "").upper() == "COS":
        cos = info.get("CosInputInfo") or {}
        bucket, key = str(cos.get("Bucket") or ""), str(cos.get("Object") or "").lstrip("/")
        return bucket, key, f"cos://{bucket}/{key}"
    return None, None, str((info.get("UrlInputInfo") or {}).get("Url") or rec.input_key)


def status_badge(rec: TaskRecord) -> str:
    """WAITING / PROCESSING, or for a finished task its result: SUCCESS or FAIL."""
    if rec.status != FINISH:
        return f'<span class="badge {esc(rec.status)}">{esc(rec.status)}</span>'
    result = "FAIL" if rec.failed else "SUCCESS"
    return f'<span class="badge {result}" title="Status FINISH">{result}</span>'


def _thumb(bucket: str, key: str, size: int = LIST_THUMB_PX, css: str = "thumb") -> str:
    return (
        f'<a href="{esc(object_path(bucket, key))}"><img class="{css}" loading="lazy" alt="{esc(key)}" '
        f'src="{esc(thumbnail_path(bucket, key, size))}"></a>'
    )


def _location(bucket: str, key: str) -> str:
    """``cos://bucket/key`` linking to the key's folder in the bucket page."""
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return f'<a class="mono" href="{esc(bucket_path(bucket, folder))}">cos://{esc(bucket)}/{esc(key)}</a>'


def _compact_location(bucket: str, key: str) -> str:
    """For table cells: the key (linking to its folder, the full URI as tooltip), the bucket below it."""
    folder = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    return (
        f'<div><a class="mono" href="{esc(bucket_path(bucket, folder))}" title="cos://{esc(bucket)}/{esc(key)}">'
        f'{esc(key)}</a><br><span class="muted small">{esc(bucket)}</span></div>'
    )


def _input_cell(rec: TaskRecord) -> str:
    bucket, key, shown = task_input(rec)
    if bucket and key:
        return f'<div class="cell">{_thumb(bucket, key)}{_compact_location(bucket, key)}</div>'
    return f'<span class="mono" title="URL input (not previewed: no external assets)">{esc(shown)}</span>'


def _output_cell(rec: TaskRecord) -> str:
    out = rec.output
    if rec.status != FINISH:
        return '<span class="muted">pending</span>'
    if not out or rec.failed:
        return '<span class="muted">—</span>'
    return f'<div class="cell">{_thumb(out["bucket"], out["key"])}{_compact_location(out["bucket"], out["key"])}</div>'


def _error_cell(rec: TaskRecord) -> str:
    if not rec.failed:
        return '<span class="muted">—</span>'
    code = rec.err_msg or "(no code)"
    return f'<span class="err" title="{esc(rec.message)}">{esc(code)}</span><br><span class="muted small">ErrCode {esc(rec.err_code)}</span>'


def _stamp(ts: float | None) -> str:
    """`fmt_time` on two lines (date, then time) for narrow table columns; digits only, nothing to escape."""
    return fmt_time(ts).replace(" ", "<br>")


def _duration(rec: TaskRecord) -> str:
    if rec.finish_time is None:
        return ""
    return f"{max(0.0, rec.finish_time - rec.create_time):.1f} s"


STATUS_FILTERS = ("", WAITING, PROCESSING, FINISH, "failed")


def task_list(
    ctx: PageContext,
    tasks: Sequence[TaskRecord],
    *,
    total: int,
    status: str = "",
    next_before: int | None = None,
) -> str:
    """The task list page: newest first, a row per task, filter links, an "older" link when paged."""
    filters = " ".join(
        f'<a class="{"on" if s == status else ""}" href="{esc(url("/", status=s))}">{esc(s or "all")}</a>'
        for s in STATUS_FILTERS
    )
    head = f'<h1>Tasks <span class="muted small">{total} {"matching" if status else "in total"}</span></h1>'
    head += f'<p class="filters">{filters}</p>'
    if not tasks:
        hint = (
            "No tasks match this filter."
            if status
            else "No tasks yet. Submit one with ProcessImage (an operator, the SDK or tccli) and it appears here."
        )
        return document(ctx, "Tasks", head + f'<div class="empty">{esc(hint)}</div>')
    rows = []
    for rec in tasks:
        rows.append(
            "<tr>"
            f'<td><a class="mono nowrap" href="{esc(task_path(rec.task_id))}" title="{esc(rec.task_id)}">…{esc(rec.task_id[-12:])}</a></td>'
            f"<td>{status_badge(rec)}</td><td>{_error_cell(rec)}</td>"
            f"<td>{_input_cell(rec)}</td><td>{_output_cell(rec)}</td>"
            f'<td class="small nowrap">{_stamp(rec.create_time)}</td>'
            f'<td class="small nowrap">{_stamp(rec.finish_time)}<br><span class="muted">{_duration(rec)}</span></td>'
            "</tr>"
        )
    table = (
        "<table><thead><tr><th>Task</th><th>Status</th><th>Error</th><th>Input</th><th>Output</th>"
        f"<th>Created</th><th>Finished</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    pager = ""
    if next_before is not None:
        pager = f'<p class="pager"><a href="{esc(url("/", status=status, before=next_before))}">Older tasks →</a></p>'
    busy = any(rec.status != FINISH for rec in tasks)
    return document(ctx, "Tasks", head + table + pager, refresh=3 if busy else None)


def _json_block(value: Any) -> str:
    return f'<pre class="mono">{esc(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))}</pre>'


def _figure(
    title: str, bucket: str, key: str, meta: CosObjectMeta | None, dims: tuple[int, int] | None
) -> str:
    facts = [title]
    if dims:
        facts.append(f"{dims[0]}×{dims[1]}")
    if meta is not None:
        facts += [fmt_size(meta.size), meta.content_type]
    else:
        facts.append("object not found")
    return (
        f"<figure>{_thumb(bucket, key, PAGE_THUMB_PX, 'big')}"
        f"<figcaption><b>{esc(' · '.join(facts))}</b><br>{_location(bucket, key)}</figcaption></figure>"
    )


@dataclass(frozen=True)
class ObjectFacts:
    """What the task page shows about an input or output object (None: not found / unknown)."""

    meta: CosObjectMeta | None
    dims: tuple[int, int] | None = None


def task_page(
    ctx: PageContext, rec: TaskRecord, *, input_facts: ObjectFacts | None, output_facts: ObjectFacts | None
) -> str:
    """One task: status, error, times, the input and output side by side, the ImageTask and the request."""
    bucket, key, shown = task_input(rec)
    rows = [
        ("TaskId", f'<span class="mono">{esc(rec.task_id)}</span>'),
        ("Status", f"{esc(rec.status)} {status_badge(rec)}"),
        ("Progress", f"{esc(rec.progress)} %"),
    ]
    if rec.failed:
        rows += [
            ("ErrCode", esc(rec.err_code)),
            ("ErrMsg", f'<span class="err">{esc(rec.err_msg)}</span>'),
            ("Message", esc(rec.message)),
        ]
    rows += [
        ("Input", _location(bucket, key) if bucket and key else f'<span class="mono">{esc(shown)}</span>'),
        (
            "Output",
            _location(rec.output["bucket"], rec.output["key"])
            if rec.output and not rec.failed
            else '<span class="muted">—</span>',
        ),
        ("CreateTime", fmt_time(rec.create_time)),
        ("BeginTime", fmt_time(rec.begin_time)),
        (
            "FinishTime",
            fmt_time(rec.finish_time)
            + (f' <span class="muted">({_duration(rec)} after create)</span>' if rec.finish_time else ""),
        ),
    ]
    if rec.request_id:
        rows.append(("RequestId", f'<span class="mono">{esc(rec.request_id)}</span>'))
    if rec.request.get("Definition") is not None:
        rows.append(("Definition", esc(rec.request["Definition"])))
    body = f"<h1>Task {esc(rec.task_id)}</h1><dl>"
    body += "".join(f"<dt>{esc(name)}</dt><dd>{value}</dd>" for name, value in rows) + "</dl>"
    figures = []
    if bucket and key:
        facts = input_facts or ObjectFacts(None)
        figures.append(_figure("input", bucket, key, facts.meta, facts.dims))
    if rec.output and not rec.failed:
        facts = output_facts or ObjectFacts(None)
        figures.append(_figure("output", rec.output["bucket"], rec.output["key"], facts.meta, facts.dims))
    if figures:
        body += f'<h2>Images</h2><div class="pair">{"".join(figures)}</div>'
    body += "<h2>ImageTask</h2>" + _json_block(rec.request.get("ImageTask") or {})
    body += "<h2>ProcessImage request</h2>" + _json_block(rec.request)
    return document(ctx, f"Task {rec.task_id}", body, refresh=2 if rec.status != FINISH else None)


def not_found(ctx: PageContext, what: str) -> str:
    return document(ctx, "Not found", f'<h1>Not found</h1><div class="empty">{esc(what)}</div>')


# -- buckets ----------------------------------------------------------------------------------------------


def bucket_list(ctx: PageContext, buckets: Iterable[tuple[str, int, bool]]) -> str:
    """The bucket list: (name, objects counted, whether the count stopped early) per bucket."""
    items = list(buckets)
    body = "<h1>Buckets</h1>"
    if not items:
        hint = (
            "No buckets yet. A PUT of an object creates its bucket; seed a folder with "
            "`airflow-mps-emulator seed --data-dir DIR ./photos cos://photos-1250000000/raw/`."
        )
        return document(ctx, "Buckets", body + f'<div class="empty">{esc(hint)}</div>')
    rows = "".join(
        f'<tr><td><a href="{esc(bucket_path(name))}">{esc(name)}</a></td>'
        f"<td>{count}{'+' if more else ''}</td></tr>"
        for name, count, more in items
    )
    return document(
        ctx,
        "Buckets",
        body + f"<table><thead><tr><th>Bucket</th><th>Objects</th></tr></thead><tbody>{rows}</tbody></table>",
    )


def is_image(meta: CosObjectMeta) -> bool:
    return meta.content_type.lower().startswith("image/") or meta.key.lower().endswith(IMAGE_SUFFIXES)


def _crumbs(bucket: str, prefix: str) -> str:
    """Buckets / bucket / each folder of the prefix (links), then a partial last segment as ``name*``."""
    parts = ['<a href="/buckets">Buckets</a>', f'<a href="{esc(bucket_path(bucket))}">{esc(bucket)}</a>']
    folders, slash, partial = prefix.rpartition("/")
    acc = ""
    if slash:
        for segment in folders.split("/"):
            acc += segment + "/"
            parts.append(f'<a href="{esc(bucket_path(bucket, acc))}">{esc(segment)}/</a>')
    if partial:
        parts.append(f"{esc(partial)}*")
    return '<p class="crumbs">' + " / ".join(parts) + "</p>"


def object_list(ctx: PageContext, listing: CosListResult) -> str:
    """Objects of one bucket under a prefix: folders first (delimiter ``/``), then objects with thumbnails."""
    bucket, prefix = listing.bucket, listing.prefix
    body = f"<h1>{esc(bucket)}</h1>{_crumbs(bucket, prefix)}"
    body += (
        f'<form method="get" action="{esc(bucket_path(bucket))}"><label>prefix '
        f'<input type="text" name="prefix" value="{esc(prefix)}"></label> <button>list</button></form>'
    )
    if not listing.contents and not listing.common_prefixes:
        where = f"under the prefix {prefix!r}" if prefix else "in this bucket"
        return document(ctx, bucket, body + f'<div class="empty">No objects {esc(where)}.</div>')
    rows = []
    for folder in listing.common_prefixes:
        rows.append(
            f'<tr><td></td><td><a class="mono" href="{esc(bucket_path(bucket, folder))}">'
            f'{esc(folder[len(prefix) :])}</a></td><td class="muted small">folder</td><td></td><td></td></tr>'
        )
    for meta in listing.contents:
        thumb = _thumb(bucket, meta.key) if is_image(meta) else ""
        rows.append(
            f"<tr><td>{thumb}</td>"
            f'<td><a class="mono" href="{esc(object_path(bucket, meta.key))}">{esc(meta.key[len(prefix) :])}</a></td>'
            f'<td class="small">{esc(meta.content_type)}</td><td class="small">{fmt_size(meta.size)}</td>'
            f'<td class="small nowrap">{fmt_time(meta.last_modified)}</td></tr>'
        )
    table = (
        "<table><thead><tr><th></th><th>Key</th><th>Content-Type</th><th>Size</th><th>Last modified</th></tr>"
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )
    pager = ""
    if listing.is_truncated and listing.next_marker:
        nxt = url("/buckets/" + quote(bucket, safe=""), prefix=prefix, marker=listing.next_marker)
        pager = f'<p class="pager"><a href="{esc(nxt)}">Next page →</a></p>'
    return document(ctx, bucket, body + table + pager)


__all__ = [
    "LIST_THUMB_PX",
    "PAGE_THUMB_PX",
    "ObjectFacts",
    "PageContext",
    "bucket_list",
    "bucket_path",
    "document",
    "esc",
    "not_found",
    "object_list",
    "object_path",
    "task_list",
    "task_page",
    "task_path",
    "thumbnail_path",
    "url",
]
