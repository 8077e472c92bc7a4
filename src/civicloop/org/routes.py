"""HTTP routes of the ``org`` domain: handling units and grids."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from civicloop.core.errors import Forbidden
from civicloop.core.http import CurrentCaller, DbSession
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID
from civicloop.org import service
from civicloop.org.models import UnitKind
from civicloop.org.schemas import GridOut, UnitCreate, UnitOut

router = APIRouter(prefix="/api/v1", tags=["handling units (承办单位)"])


@router.get("/units", response_model=list[UnitOut], summary="承办单位 List units")
def list_units(
    session: DbSession, kind: UnitKind | None = None,
    parent_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[UnitOut]:
    """Return handling units, optionally of one kind or under one parent."""
    return [UnitOut.of(u) for u in service.list_units(session, kind=kind, parent_id=parent_id)]


@router.get("/units/{unit_id}", response_model=UnitOut, summary="单位详情 One unit")
def read_unit(unit_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession) -> UnitOut:
    """Return one unit; 404 if it does not exist."""
    return UnitOut.of(service.get_unit(session, unit_id=unit_id))


@router.post("/units", response_model=UnitOut, status_code=201, summary="新增单位 Create a unit")
def create_unit(body: UnitCreate, session: DbSession, caller: CurrentCaller) -> UnitOut:
    """Create a handling unit (admin). 422 if the code is taken or the parent does not exist."""
    if caller.role != Role.ADMIN:
        raise Forbidden(role=caller.role.value, action="create_unit")
    return UnitOut.of(service.create_unit(session, **body.model_dump()))


@router.get("/grids", response_model=list[GridOut], summary="网格 List grids")
def list_grids(session: DbSession) -> list[GridOut]:
    """Return every grid with its GeoJSON polygon."""
    return [GridOut.of(g) for g in service.list_grids(session)]
