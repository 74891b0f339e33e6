"""Request bodies the emulator must not hold before it knows who sent them (issue 12, Build item 6).

A COS signature covers the method, path, URL params and headers — never the body (cos/auth.py) — so
the server checks it on the request's head, before reading a byte of the body. A refused request's
body is then drained in small pieces (`server._DRAIN_PIECE`) and dropped, so the client still reads
the XML answer instead of a connection reset, and an unauthenticated PUT of any size costs no memory
(before: 3 × 200 MB unauthenticated PUTs grew the server from 27 to 581 MB RSS).

MPS bodies are signed by TC3 over their SHA-256 and so must be read before the check; they are
bounded by `mps.responses.MAX_BODY_BYTES` (10 MB, refused from Content-Length before reading) and
parsed with `safejson`.
"""

from __future__ import annotations

import base64
import os
import re
from typing import Any
from xml.sax.saxutils import escape

from airflow_mps.emulator.http import EmulatorRequest, EmulatorResponse

__all__ = ["cos_refusal", "cos_xml_error"]


def cos_xml_error(status: int, code: str, message: str, resource: str) -> EmulatorResponse:
    """A COS XML error body (Code, Message, Resource, RequestId) with its request id header."""
    rid = base64.b64encode(os.urandom(18)).decode()
    body = (
        "<?xml version='1.0' encoding='utf-8' ?>\n<Error>\n"
        f"\t<Code>{code}</Code>\n\t<Message>{message}</Message>\n\t<Resource>{resource}</Resource>\n"
        f"\t<RequestId>{rid}</RequestId>\n</Error>\n"
    ).encode()
    return EmulatorResponse(
        status,
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body))), ("x-cos-request-id", rid)],
        body,
    )


def _xml_text(text: str) -> str:
    """Escaped for XML, control characters percent-encoded (XML 1.0 cannot carry them)."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", lambda m: f"%{ord(m.group()):02X}", escape(text))


def cos_refusal(auth: Any, head: EmulatorRequest) -> EmulatorResponse | None:
    """The COS error for a request whose head (``head.body`` unused) fails the signature check, else None.

    ``auth`` is the server's `cos.auth.CosAuthConfig`. The answer carries ``Connection: close``: the
    server drains the body and ends the connection. Requests the COS handler would refuse for another
    reason first (a path that is not UTF-8) are left to it, as are correctly signed ones.
    """
    from airflow_mps.emulator.cos.auth import CosAuthError, verify_request
    from airflow_mps.emulator.cos.responses import resolve_target

    try:
        target = resolve_target(head)
    except Exception:  # e.g. a path that is not UTF-8: the handler has the precise answer
        return None
    try:
        verify_request(head, auth, sign_path=target.sign_path)
    except CosAuthError as exc:
        response = cos_xml_error(exc.status, exc.code, _xml_text(exc.message), _xml_text(target.resource))
        response.headers.append(("Connection", "close"))
        return response
    except Exception:  # a head the verifier cannot even read: the handler answers it as before
        return None
    return None
