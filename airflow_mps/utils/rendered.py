"""What happens to an MPS task's templated arguments right after Airflow renders them, and the checks
every rendered value goes through before any API call.

:class:`RenderedFieldsMixin` (mixed into ``MpsBaseOperator`` and ``MpsImageTaskSensor``, so the batch
operator has it too) hooks the one method every rendering path goes through —
``_do_render_template_fields``, called by ``render_template_fields`` for a plain task and directly on
the unmapped task for a mapped one — and, for the task's own fields:

* registers every secret found in the rendered values with the masker
  (:func:`airflow_mps.utils.secrets.mask_rendered_secrets`) *before* Airflow serialises the rendered
  fields for the UI and ``rendered_task_instance_fields`` (issue 12 item 4) — and, for a class with
  :attr:`RenderedFieldsMixin.redact_rendered_secrets`, replaces them by ``***`` in the attribute itself,
  keeping the original for the API call (:meth:`RenderedFieldsMixin.unredacted`): what Airflow stores is
  clean even where the rendered fields are redacted by another process's masker (Airflow 3.0.x);
* remembers which fields a template rendered to ``None`` (native rendering of a missing value), so
  :meth:`RenderedFieldsMixin.rendered_to_none` can tell "not given" from "rendered to nothing".

**Rendered-empty values** (issue 12 item 5). A template whose source was missing renders to nothing
that looks like something: ``"None"`` (a missing XCom, non-native rendering), ``""`` (an undefined
variable), ``"null"`` (``tojson`` of nothing), ``"[]"`` (an empty list), or ``None`` itself (native
rendering). Sent on, they become ``None/a.jpg`` outputs, a task without an ``ImageTask`` or a
``ResourceId`` of ``"None"``. :func:`reject_rendered_empty` is THE check, shared by the single-image
operator, the batch operator and the sensor:

* ``reject_rendered_empty(field, value, required=False)`` raises ``MpsValidationError`` naming
  ``field`` when ``value`` is one of :data:`RENDERED_EMPTY_TEXTS` (case-insensitive, surrounding blanks
  ignored) or an empty list/tuple; ``None`` is refused only when ``required`` (an optional argument that
  was simply not given is ``None`` too);
* :meth:`RenderedFieldsMixin.reject_rendered_empty_fields` applies it to an operator's fields, with
  ``required`` for the mandatory ones and for every field a template rendered to ``None``.

Callers turn the ``MpsValidationError`` into ``AirflowFailException`` (no retry: a rerun renders the same
nothing), with :func:`airflow_mps.utils.results.airflow_exception_for`.

:func:`check_task_id` refuses values that cannot be an MPS ``TaskId`` (sensor ``mps_task_id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mps.errors import MpsValidationError
from airflow_mps.utils.secrets import mask_rendered_secrets, redact_secrets

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import BaseOperator, Context

    _Base = BaseOperator
else:
    _Base = object

__all__ = [
    "RENDERED_EMPTY_TEXTS",
    "TASK_ID_SHAPE",
    "RenderedFieldsMixin",
    "check_task_id",
    "is_rendered_empty",
    "reject_rendered_empty",
]

#: What templates render when their source was missing (compared lower-cased, blanks stripped).
RENDERED_EMPTY_TEXTS = frozenset({"", "none", "null", "[]", "undefined"})

#: How the checks describe an MPS TaskId (mps-api.md §2: ``24000089-WorkflowTask-0723542d…`` in the
#: examples, an opaque 64-character token in others; "treat TaskId as an opaque string").
TASK_ID_SHAPE = (
    "an MPS TaskId such as '1250000000-WorkflowTask-<32 hex>' (letters, digits, '-' and '_', at most "
    "128 characters, not only digits)"
)
_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_rendered_empty(value: Any) -> bool:
    """``None``, an empty list/tuple, or text that is one of :data:`RENDERED_EMPTY_TEXTS`."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in RENDERED_EMPTY_TEXTS
    return isinstance(value, (list, tuple)) and not value


def reject_rendered_empty(field: str, value: Any, *, required: bool = False) -> None:
    """Refuse a value a template rendered to nothing, naming ``field`` (rules in the module docstring).

    ``None`` passes unless ``required``. Raises ``MpsValidationError`` (code ``InvalidParameterValue``,
    ``MissingParameter`` for a required ``None``); never calls anything.
    """
    if value is None and not required:
        return
    if not is_rendered_empty(value):
        return
    if value is None:
        raise MpsValidationError(
            field=field,
            value=value,
            code="MissingParameter",
            reason="is missing: not given, or a template rendered it to None (check the template)",
        )
    raise MpsValidationError(
        field=field,
        value=value,
        reason=(
            "rendered to nothing (a template whose source — XCom, param, Variable — was missing or empty); "
            "check the template"
        ),
        allowed=f"a value; leave {field} unset (None) to use its default" if not required else None,
    )


def check_task_id(field: str, value: Any) -> str:
    """``value`` as an MPS TaskId, or ``MpsValidationError`` naming ``field`` and :data:`TASK_ID_SHAPE`.

    Rendered-empty values first (:func:`reject_rendered_empty`, required), then the shape: a TaskId is
    opaque, but it never has spaces, slashes, dots, brackets or only digits (``"[]"``, ``"0"``,
    ``"../../x"`` are refused before they reach the API).
    """
    reject_rendered_empty(field, value, required=True)
    if not isinstance(value, str):
        raise MpsValidationError(field=field, value=value, allowed=TASK_ID_SHAPE, reason="is not a string")
    text = value.strip()
    if not _TASK_ID_RE.fullmatch(text) or text.isdigit():
        raise MpsValidationError(
            field=field, value=value, allowed=TASK_ID_SHAPE, reason="is not an MPS TaskId"
        )
    return text


class RenderedFieldsMixin(_Base):
    """Masks secrets in rendered fields at render time and records fields rendered to ``None``.

    Mix in before Airflow's operator class: ``class MyOperator(RenderedFieldsMixin, BaseOperator)``.
    """

    #: Template fields that held a value before rendering and ``None`` after it.
    _rendered_to_none: frozenset[str] = frozenset()
    #: Keep a ``***`` copy of each rendered value that holds a secret in the attribute (what Airflow
    #: stores and shows) and the original aside, for :meth:`unredacted`. Classes that read their fields
    #: through :meth:`unredacted` turn it on (the single-image operator does).
    redact_rendered_secrets: bool = False
    #: The originals of the attributes :attr:`redact_rendered_secrets` masked (set at render time).
    _unredacted_values: dict[str, Any] | None = None

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Airflow's rendering, then (for this task's own fields, not nested objects) the secrets are
        registered and the fields that rendered to ``None`` recorded."""
        if parent is not self:  # a nested templated object: nothing of ours to do
            super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
            return
        names = list(template_fields)
        given = [name for name in names if getattr(self, name, None) is not None]
        super()._do_render_template_fields(parent, names, context, jinja_env, seen_oids)
        values = {name: getattr(self, name, None) for name in names}
        self._rendered_to_none = frozenset(name for name in given if values[name] is None)
        mask_rendered_secrets(values.values())
        if self.redact_rendered_secrets:
            originals: dict[str, Any] = {}
            for name, value in values.items():
                redacted = redact_secrets(value)
                if redacted is not value:
                    originals[name] = value
                    setattr(self, name, redacted)
            self._unredacted_values = originals

    def unredacted(self, field: str) -> Any:
        """The rendered value of ``field`` with its secrets (the attribute holds a ``***`` copy when
        :attr:`redact_rendered_secrets` masked it); read arguments through this to call the API."""
        originals = self._unredacted_values or {}
        return originals[field] if field in originals else getattr(self, field, None)

    def rendered_to_none(self, field: str) -> bool:
        """Whether a template in ``field`` rendered to ``None`` (as opposed to the field not being given)."""
        return field in self._rendered_to_none

    def reject_rendered_empty_fields(self, fields: Iterable[str], *, required: Iterable[str] = ()) -> None:
        """:func:`reject_rendered_empty` on each of ``fields`` (attribute values), ``required`` for the
        names in ``required`` and for every field a template rendered to ``None``."""
        must = frozenset(required)
        for name in fields:
            value = getattr(self, name, None)
            reject_rendered_empty(name, value, required=name in must or self.rendered_to_none(name))
