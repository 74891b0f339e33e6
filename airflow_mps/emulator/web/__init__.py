"""The emulator's web page: recent tasks, one page per task, objects per bucket, thumbnails.

Served by the emulator itself on its own port (``GET /``; the MPS API stays ``POST /``). Plain HTML and
inline CSS, no JavaScript, no external asset. A local development tool: it reads stored objects without
authentication, so the emulator must not be exposed beyond the machine (docs/emulator.md).

- `pages`: pure rendering (and the stable URL scheme, e.g. `pages.task_path`);
- `thumbs`: Pillow thumbnails (optional) and their cache;
- `ui`: which requests are page views (`is_web_request`) and the `WebUI` handler the server calls.
"""

from __future__ import annotations

from airflow_mps.emulator.web.pages import task_path
from airflow_mps.emulator.web.ui import WebUI, is_web_request

__all__ = ["WebUI", "is_web_request", "task_path"]
