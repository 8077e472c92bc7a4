"""HTTP routes of the ``org`` domain: handling units, grids and the gazetteer of place names."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from civicloop.core.http import Caller, DbSession, LoggedIn, allow
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID
from civicloop.org import service
from civicloop.org.models import PlaceKind, UnitKind
from civicloop.org.schemas import GridOut, PlaceIn, PlaceOut, UnitCreate, UnitOut

router = APIRouter(prefix="/api/v1", tags=["handling units (承办单位)"])


@router.get("/units", response_model=list[UnitOut], summary="承办单位 List units")
def list_units(
    session: DbSession, caller: LoggedIn, kind: UnitKind | None = None,
    parent_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> list[UnitOut]:
    """Return handling units, optionally of one kind or under one parent (logged-in users)."""
    return [UnitOut.of(u) for u in service.list_units(session, kind=kind, parent_id=parent_id)]


@router.get("/units/{unit_id}", response_model=UnitOut, summary="单位详情 One unit")
def read_unit(unit_id: Annotated[int, Path(ge=1, le=MAX_ID)], session: DbSession, caller: LoggedIn) -> UnitOut:
    """Return one unit; 404 if it does not exist (logged-in users)."""
    return UnitOut.of(service.get_unit(session, unit_id=unit_id))


@router.post("/units", response_model=UnitOut, status_code=201, summary="新增单位 Create a unit")
def create_unit(
    body: UnitCreate,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "create_unit")],
) -> UnitOut:
    """Create a handling unit (admin). 422 if the code is taken or the parent does not exist."""
    return UnitOut.of(service.create_unit(session, **body.model_dump(), actor=caller.name))


@router.get("/grids", response_model=list[GridOut], summary="网格 List grids")
def list_grids(session: DbSession) -> list[GridOut]:
    """Return every grid with its GeoJSON polygon."""
    return [GridOut.of(g) for g in service.list_grids(session)]


PlaceId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("/places", response_model=list[PlaceOut], summary="地名库 List place names")
def list_places(
    session: DbSession, kind: PlaceKind | None = None,
    district_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    q: Annotated[str | None, Query(max_length=100)] = None,
    limit: Limit = 100, offset: Offset = 0,
) -> list[PlaceOut]:
    """Return gazetteer rows by id, optionally of one ``kind``, in one ``district_id`` and whose
    name contains ``q`` (plain substring), ``limit`` rows from ``offset``. 422 for a bad filter."""
    rows = service.list_places(session, kind=kind, district_id=district_id, q=(q or "").strip() or None,
                               limit=limit, offset=offset)
    return [PlaceOut.of(p) for p in rows]


@router.get("/places/{place_id}", response_model=PlaceOut, summary="地名详情 One place name")
def read_place(place_id: PlaceId, session: DbSession) -> PlaceOut:
    """Return one gazetteer row; 404 if it does not exist."""
    return PlaceOut.of(service.get_place(session, place_id=place_id))


@router.post("/places", response_model=PlaceOut, status_code=201, summary="新增地名 Add a place name")
def create_place(
    body: PlaceIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "create_place")],
) -> PlaceOut:
    """Add a place name to the gazetteer (admin; 403 otherwise). 422 with the field named for an
    unknown district, unit or grid, a unit or grid outside the district, or a name the district
    already has for that kind (``service.create_place``). Intake sees it on its next request."""
    return PlaceOut.of(service.create_place(session, **body.model_dump(), actor=caller.name))


@router.put("/places/{place_id}", response_model=PlaceOut, summary="修改地名 Replace a place name")
def update_place(
    place_id: PlaceId,
    body: PlaceIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "update_place")],
) -> PlaceOut:
    """Replace gazetteer row ``place_id`` (admin; 403 otherwise): name, kind, aliases, district,
    unit and grid; 404 for an unknown id, 422 as for ``POST /places``."""
    return PlaceOut.of(service.update_place(session, place_id=place_id, **body.model_dump(),
                                             actor=caller.name))


@router.delete("/places/{place_id}", status_code=204, summary="删除地名 Delete a place name")
def delete_place(
    place_id: PlaceId,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "delete_place")],
) -> None:
    """Delete gazetteer row ``place_id`` (admin; 403 otherwise); 404 for an unknown id. Requests
    already placed keep their district, street and grid."""
    service.delete_place(session, place_id=place_id, actor=caller.name)
