"""API shapes of the ``org`` domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from civicloop.core.validation import Id, Phone, Text
from civicloop.org.models import Grid, OrgUnit, UnitKind

Code = Text(40, required=True)
Name = Text(200, required=True)
Contact = Text(100)


class UnitCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code  # type: ignore[valid-type]
    name: Name  # type: ignore[valid-type]
    kind: UnitKind
    parent_id: Id | None = None
    contact_name: Contact = ""  # type: ignore[valid-type]
    contact_phone: Phone = ""


class UnitOut(BaseModel):
    id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    contact_name: str
    contact_phone: str
    active: bool

    @classmethod
    def of(cls, unit: OrgUnit) -> UnitOut:
        return cls.model_validate(unit, from_attributes=True)


class GridOut(BaseModel):
    id: int
    code: str
    name: str
    community_id: int
    geometry: dict[str, Any]

    @classmethod
    def of(cls, grid: Grid) -> GridOut:
        return cls.model_validate(grid, from_attributes=True)
