"""Use cases of the ``org`` domain: look up units and grids, walk the hierarchy, locate a point."""

from __future__ import annotations

from collections.abc import Sequence

from shapely.geometry import Point, shape
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from civicloop.core.errors import FieldError, NotFound
from civicloop.org.models import Grid, OrgUnit, UnitKind


def get_unit(session: Session, *, unit_id: int) -> OrgUnit:
    """Return the unit ``unit_id``; raises ``NotFound``."""
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        raise NotFound("OrgUnit", unit_id)
    return unit


def require_unit(session: Session, *, unit_id: int, field: str | tuple[str, ...]) -> OrgUnit:
    """Return the active unit ``unit_id`` named by input ``field``; raises ``FieldError`` (422)."""
    unit = session.get(OrgUnit, unit_id)
    if unit is None or not unit.active:
        raise FieldError(field, "v.unknown_unit", id=unit_id)
    return unit


def list_units(session: Session, *, kind: UnitKind | None = None, parent_id: int | None = None) -> Sequence[OrgUnit]:
    """Return units ordered by id, optionally of one ``kind`` and/or under one ``parent_id``."""
    query = select(OrgUnit).order_by(OrgUnit.id)
    if kind is not None:
        query = query.where(OrgUnit.kind == kind)
    if parent_id is not None:
        query = query.where(OrgUnit.parent_id == parent_id)
    return session.scalars(query).all()


def create_unit(
    session: Session,
    *,
    code: str,
    name: str,
    kind: UnitKind,
    parent_id: int | None = None,
    contact_name: str = "",
    contact_phone: str = "",
) -> OrgUnit:
    """Create a handling unit. Raises ``FieldError`` when ``parent_id`` names no unit or ``code``
    is taken (also when another transaction took it a moment ago: the unique index decides)."""
    if parent_id is not None:
        require_unit(session, unit_id=parent_id, field="parent_id")
    if session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is not None:
        raise FieldError("code", "v.code_taken", code=code)
    unit = OrgUnit(
        code=code, name=name, kind=kind, parent_id=parent_id, contact_name=contact_name,
        contact_phone=contact_phone, active=True,
    )
    try:
        with session.begin_nested():
            session.add(unit)
    except IntegrityError as exc:
        raise FieldError("code", "v.code_taken", code=code) from exc
    return unit


def ancestor_of_kind(unit: OrgUnit | None, kind: UnitKind) -> OrgUnit | None:
    """Return ``unit`` itself or its nearest ancestor of ``kind``, or ``None``."""
    seen = 0
    while unit is not None and seen < 16:  # bounded: a cycle in bad data must not hang a request
        if unit.kind == kind:
            return unit
        unit = unit.parent
        seen += 1
    return None


def get_grid(session: Session, *, grid_id: int, field: str = "grid_id") -> Grid:
    """Return grid ``grid_id``; raises ``FieldError`` on input ``field`` when it does not exist."""
    grid = session.get(Grid, grid_id)
    if grid is None:
        raise FieldError(field, "v.unknown_grid", id=grid_id)
    return grid


def list_grids(session: Session) -> Sequence[Grid]:
    """Return all grids ordered by id."""
    return session.scalars(select(Grid).order_by(Grid.id)).all()


def locate_grid(session: Session, *, lat: float, lon: float) -> Grid | None:
    """Return the grid whose polygon contains the point (``lat``, ``lon``), or ``None``.

    GeoJSON orders coordinates (longitude, latitude) (RFC 7946 §3.1.1). A point on a shared edge
    goes to the grid with the lowest id.
    """
    point = Point(lon, lat)
    for grid in list_grids(session):
        if shape(grid.geometry).covers(point):
            return grid
    return None
