"""API shapes of the ``catalog`` domain."""

from __future__ import annotations

from pydantic import BaseModel

from civicloop.catalog.models import Category


class CategoryOut(BaseModel):
    id: int
    name: str
    level: int
    parent_id: int | None
    path: str
    deadline_tier: str
    default_unit_kind: str

    @classmethod
    def of(cls, category: Category) -> CategoryOut:
        return cls.model_validate(category, from_attributes=True)
