"""HTTP routes of the ``catalog`` domain: the category tree and its deadline tiers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from civicloop.catalog import service
from civicloop.catalog.models import DeadlineTier
from civicloop.catalog.schemas import CategoryOut
from civicloop.core.errors import Forbidden
from civicloop.core.http import CurrentCaller, DbSession
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["categories (诉求分类)"])


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadline_tier: DeadlineTier


@router.get("/categories", response_model=list[CategoryOut], summary="诉求分类 Category tree")
def list_categories(session: DbSession, level: Annotated[int | None, Query(ge=1, le=3)] = None) -> list[CategoryOut]:
    """Return the category tree ordered by path, optionally one level (1–3)."""
    return [CategoryOut.of(c) for c in service.list_categories(session, level=level)]


@router.put("/categories/{category_id}/tier", response_model=CategoryOut, summary="设置时限 Set deadline tier")
def set_tier(
    category_id: Annotated[int, Path(ge=1, le=MAX_ID)], body: TierIn, session: DbSession, caller: CurrentCaller
) -> CategoryOut:
    """Set a category's deadline tier (admin). New work orders use it; existing ones keep theirs."""
    if caller.role != Role.ADMIN:
        raise Forbidden(role=caller.role.value, action="set_tier")
    return CategoryOut.of(service.set_tier(session, category_id=category_id, tier=body.deadline_tier))
