"""What happens to an MPS task's templated arguments right after Airflow renders them.

:class:`RenderedFieldsMixin` (mixed into ``MpsBaseOperator`` and ``MpsImageTaskSensor``, so the batch
operator has it too) hooks the one method every rendering path goes through —
``_do_render_template_fields``, called by ``render_template_fields`` for a plain task and directly on
the unmapped task for a mapped one — and, for the task's own fields:

* registers every secret found in the rendered values with the masker
  (:func:`airflow_mps.utils.secrets.mask_rendered_secrets`) *before* Airflow serialises the rendered
  fields for the UI and ``rendered_task_instance_fields`` (issue 12 item 4);
* remembers which fields a template rendered to ``None`` (native rendering of a missing value), so
  :meth:`RenderedFieldsMixin.rendered_to_none` can tell "not given" from "rendered to nothing".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow_mps.utils.secrets import mask_rendered_secrets

if TYPE_CHECKING:
    import jinja2
    from airflow.providers.common.compat.sdk import BaseOperator, Context

    _Base = BaseOperator
else:
    _Base = object

__all__ = ["RenderedFieldsMixin"]


class RenderedFieldsMixin(_Base):
    """Masks secrets in rendered fields at render time and records fields rendered to ``None``.

    Mix in before Airflow's operator class: ``class MyOperator(RenderedFieldsMixin, BaseOperator)``.
    """

    #: Template fields that held a value before rendering and ``None`` after it.
    _rendered_to_none: frozenset[str] = frozenset()

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
        self._rendered_to_none = frozenset(name for name in given if getattr(self, name, None) is None)
        mask_rendered_secrets(getattr(self, name, None) for name in names)

    def rendered_to_none(self, field: str) -> bool:
        """Whether a template in ``field`` rendered to ``None`` (as opposed to the field not being given)."""
        return field in self._rendered_to_none
