"""API shapes of the ``catalog`` domain: categories and routing rules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from civicloop.catalog.models import Category, LeadTarget, RoutingRule
from civicloop.core.validation import Id, Text


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


class RoutingRuleIn(BaseModel):
    """A line of the routing table as an admin enters it. ``lead_target`` ``unit`` needs
    ``lead_unit_id``; ``street``/``district``/``community`` (属地) take the unit of the request's place
    and refuse one. Null ``category_id``/``district_id``/``street_id`` mean any."""

    model_config = ConfigDict(extra="forbid")

    lead_target: LeadTarget
    category_id: Id | None = None
    district_id: Id | None = None
    street_id: Id | None = None
    lead_unit_id: Id | None = None
    assisting_unit_ids: Annotated[list[Id], Field(max_length=20)] = []
    priority: Annotated[int, Field(ge=-1000, le=1000)] = 0
    active: StrictBool = True
    note: Text(500) = ""  # type: ignore[valid-type]


class RoutingRuleOut(BaseModel):
    id: int
    category_id: int | None
    district_id: int | None
    street_id: int | None
    lead_target: str
    lead_unit_id: int | None
    assisting_unit_ids: list[int]
    priority: int
    active: bool
    note: str
    updated_by: str
    updated_at: datetime

    @classmethod
    def of(cls, rule: RoutingRule) -> RoutingRuleOut:
        return cls.model_validate(rule, from_attributes=True)


class RouteOut(BaseModel):
    """Which rule routes a category at a place, and to whom (``rule_id`` null: no rule applies)."""

    rule_id: int | None
    lead_unit_id: int | None
    assisting_unit_ids: list[int]
    why: str
