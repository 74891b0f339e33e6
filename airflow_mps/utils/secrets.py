"""Secrets inside rendered operator arguments: find them and register them with the masker at render time.

An ``S3SecretKey`` travels inside ``input`` / ``output_storage`` (API-shaped ``InputInfo`` /
``OutputStorage``), given as a literal dict, as JSON text, or produced by a template. Airflow sends the
rendered template fields to the API server (the UI's *Rendered Template* view, table
``rendered_task_instance_fields``) right after rendering and before ``execute()``, redacting them with
the secrets masker on the way (``_serialize_rendered_fields`` in the task runner). A dict key named like
a secret is hidden by its name, but a secret inside JSON *text* is only hidden when its value is
already registered — and the hook registers request secrets in ``execute()``, too late (issue 12 item
4). :func:`mask_rendered_secrets` is therefore called on the rendered values, right after rendering
(:class:`airflow_mps.utils.rendered.RenderedFieldsMixin`), for every form:

* a mapping (any depth; lists included) — values of keys in :data:`SECRET_FIELD_NAMES`;
* a string holding a JSON object or array — parsed, then as above;
* an object with ``to_api()`` (a ``MediaInput`` / ``OutputStorage`` / request model) — its API dict.

Each secret is registered as it is and in its JSON-escaped form (what JSON text contains when the
secret has a quote or a backslash), through :func:`airflow_mps.hooks.base.mask_secret_value` (Airflow's
masker for task logs and rendered fields, plus the SDK-log redaction filter).

Registering is not enough on every supported Airflow: up to 3.0.x the worker sends the rendered fields
unredacted and the API server redacts them with *its* masker, which never saw a value registered in the
worker. :func:`redact_secrets` therefore also produces a copy of a rendered value with every secret
replaced by ``***`` — what the operator keeps in its public attribute (and so what any Airflow stores),
while it submits the original (:class:`airflow_mps.utils.rendered.RenderedFieldsMixin`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["MASK", "SECRET_FIELD_NAMES", "find_secrets", "mask_rendered_secrets", "redact_secrets"]

#: API field names whose values are secrets (the same names the hook masks in request bodies).
SECRET_FIELD_NAMES = frozenset({"S3SecretKey", "SecretKey", "Token"})
#: What a redacted secret reads as (Airflow's masker writes the same).
MASK = "***"

#: Nesting bound: a rendered argument deeper than this is not an API body (and never worth a crash).
_MAX_DEPTH = 32


def _walk(value: Any, depth: int) -> Iterator[str]:
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in SECRET_FIELD_NAMES and isinstance(item, str) and item:
                yield item
            else:
                yield from _walk(item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item, depth + 1)
    elif isinstance(value, str):
        text = value.strip()
        if text[:1] in ("{", "[") and any(name in text for name in SECRET_FIELD_NAMES):
            try:
                parsed = json.loads(text)
            except ValueError:  # not JSON after all: the request model reports it (naming the field)
                return
            yield from _walk(parsed, depth + 1)
    elif callable(getattr(value, "to_api", None)):
        try:
            body = value.to_api()
        except Exception:  # an incomplete model: nothing to find, validation will say why
            return
        yield from _walk(body, depth + 1)


def find_secrets(value: Any) -> list[str]:
    """Every secret value in ``value`` (mapping, JSON text, list or API model), in order, deduplicated."""
    return list(dict.fromkeys(_walk(value, 0)))


def mask_rendered_secrets(values: Iterable[Any]) -> int:
    """Register every secret found in ``values`` with the masker; returns how many were found.

    Called right after templates are rendered, before Airflow serialises the rendered fields, so the
    Rendered Template view and ``rendered_task_instance_fields`` show ``***`` instead.
    """
    found: list[str] = []
    for value in values:
        found.extend(find_secrets(value))
    if not found:
        return 0
    # The hook module (no SDK) is imported only when there is a secret to register.
    from airflow_mps.hooks.base import mask_secret_value

    for secret in dict.fromkeys(found):
        mask_secret_value(secret)
        escaped = json.dumps(secret)[1:-1]
        if escaped != secret:
            mask_secret_value(escaped)
    return len(found)


def _redacted_structure(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            key: MASK
            if key in SECRET_FIELD_NAMES and isinstance(item, str) and item
            else _redacted_structure(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_redacted_structure(item, depth + 1) for item in value]
    if isinstance(value, tuple):
        return tuple(_redacted_structure(item, depth + 1) for item in value)
    return value


def redact_secrets(value: Any) -> Any:
    """``value`` with every secret replaced by :data:`MASK`, or ``value`` itself (the same object) when it
    holds none. Mappings and lists are copied with their secret fields masked; JSON text keeps its exact
    formatting (each secret, raw or JSON-escaped, is replaced in the text); API model objects are left
    alone (their ``repr`` already masks)."""
    secrets = find_secrets(value)
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in sorted(secrets, key=len, reverse=True):
            value = value.replace(json.dumps(secret)[1:-1], MASK).replace(secret, MASK)
        return value
    if isinstance(value, (Mapping, list, tuple)):
        return _redacted_structure(value, 0)
    return value
