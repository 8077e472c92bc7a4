"""API shapes of the ``org`` domain."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from civicloop.core.validation import Id, Phone, Text
from civicloop.org.models import Grid, OrgUnit, Place, PlaceKind, UnitKind

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


PlaceName = Text(100, required=True)
Alias = Text(100, required=True)


class PlaceIn(BaseModel):
    """A gazetteer row as an admin writes it (``POST /places``, ``PUT /places/{id}``): the whole
    row, so a ``PUT`` replaces every editable field. ``district_id`` may be left out when a unit or
    grid is given: it is taken from where they lie."""

    model_config = ConfigDict(extra="forbid")

    name: PlaceName  # type: ignore[valid-type]
    kind: PlaceKind
    district_id: Id | None = None
    unit_id: Id | None = None
    grid_id: Id | None = None
    aliases: list[Alias] = Field(default_factory=list, max_length=20)  # type: ignore[valid-type]


class PlaceOut(BaseModel):
    id: int
    name: str
    kind: str
    district_id: int | None
    unit_id: int | None
    grid_id: int | None
    aliases: list[str]
    source: str

    @classmethod
    def of(cls, place: Place) -> PlaceOut:
        return cls.model_validate(place, from_attributes=True)
