"""The config's strict field types and the base of every section: a leaf of ``config/`` (pydantic only), so the
sections (``sections.py``) and the sections built from a model's params class (``params.py``) both import it."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    return value


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
# Not strict: PyYAML reads 1e-3 (no dot) as a string, which pydantic parses; a boolean is refused.
Float = Annotated[float, BeforeValidator(_not_bool)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)
