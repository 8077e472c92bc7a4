"""Use cases of the ``org`` domain: look up units and grids, walk the hierarchy, locate a point, and
keep the gazetteer of place names (地名库)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from shapely import STRtree
from shapely.geometry import Point, shape
from sqlalchemy import Row, event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, object_session

from civicloop.core import audit
from civicloop.core.db import keep
from civicloop.core.errors import FieldError, NotFound
from civicloop.org.models import Grid, OrgUnit, Place, PlaceKind, UnitKind


def get_unit(session: Session, *, unit_id: int) -> OrgUnit:
    """Return the unit ``unit_id``; raises ``NotFound``."""
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        raise NotFound("OrgUnit", unit_id)
    return unit


def find_unit(session: Session, unit_id: int | None) -> OrgUnit | None:
    """Return unit ``unit_id`` (active or not), or ``None`` for ``None`` or an unknown id."""
    return keep(session, session.get(OrgUnit, unit_id)) if unit_id is not None else None


def find_grid(session: Session, grid_id: int | None) -> Grid | None:
    """Return grid ``grid_id``, or ``None`` for ``None`` or an unknown id."""
    return session.get(Grid, grid_id) if grid_id is not None else None


def require_unit(session: Session, *, unit_id: int, field: str | tuple[str, ...]) -> OrgUnit:
    """Return the active unit ``unit_id`` named by input ``field``; raises ``FieldError`` (422)."""
    unit = keep(session, session.get(OrgUnit, unit_id))
    if unit is None or not unit.active:
        raise FieldError(field, "v.unknown_unit", id=unit_id)
    return unit


def unit_by_code_or_id(session: Session, ref: str, *, field: str = "unit") -> OrgUnit:
    """Return the active unit whose code is ``ref`` (or, when ``ref`` is all digits and no code
    matches, whose id it is); raises ``FieldError`` on ``field``."""
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == ref))
    if unit is None and ref.isdigit():
        unit = session.get(OrgUnit, int(ref))
    if unit is None or not unit.active:
        raise FieldError(field, "v.unknown_unit", id=ref)
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
    actor: str = "system",
) -> OrgUnit:
    """Create a handling unit. Raises ``FieldError`` when ``parent_id`` names no unit or ``code``
    is taken (also when another transaction took it a moment ago: the unique index decides).
    Written to the audit log (``core.audit``) by ``actor``, without the contact's name and phone."""
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
    audit.enqueue(session, actor=actor, role=audit.admin_role(actor), action="create_unit",
                  subject=f"unit:{unit.id}", data={"code": code, "name": name, "kind": str(kind),
                                                   "parent_id": parent_id})
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


@dataclass(frozen=True)
class GridPlace:
    """What intake needs of a grid, without its polygon: its id and name, and the community, street and
    district it lies in (``None`` where the hierarchy has none)."""

    id: int
    name: str
    community_id: int
    street_id: int | None
    district_id: int | None


@dataclass(frozen=True)
class _GridIndex:
    places: dict[int, GridPlace]
    ids: list[int]  # in the order of ``shapes`` (by id)
    shapes: list[Any]
    tree: STRtree


_grid_indexes: dict[str, tuple[tuple[int, ...], _GridIndex]] = {}
_grid_lock = threading.Lock()
_grid_edits = 0


def _count_grid_edit(session: Session) -> None:
    global _grid_edits
    session.info.pop("grids_edited", None)
    with _grid_lock:
        _grid_edits += 1


@event.listens_for(Grid, "after_insert")
@event.listens_for(Grid, "after_update")
@event.listens_for(Grid, "after_delete")
def _grid_edited(_mapper: Any, connection: Any, _target: Grid) -> None:
    # counted after commit, as the gazetteer's edits: a reader must not rebuild before the rows are visible
    session = object_session(_target)
    if session is None:
        return
    session.info.pop("grid_index", None)
    if not session.info.get("grids_edited"):
        session.info["grids_edited"] = True
        event.listen(session, "after_commit", _count_grid_edit, once=True)


def grids_version(session: Session) -> tuple[int, ...]:
    """Return a cheap fingerprint of the grids: their count and largest id (one aggregate query), and
    the number of grid edits this process committed through the ORM. Grids are only ever added by the
    importers, so a new grid changes the count and the largest id; an edit made outside this process
    that keeps both is not seen (``clear_grid_cache``)."""
    count, largest = session.execute(select(func.count(), func.max(Grid.id)).select_from(Grid)).one()
    return (int(count or 0), int(largest or 0), _grid_edits)


def _grid_index(session: Session) -> _GridIndex:
    """Return the grids' spatial index (shapely ``STRtree`` over their polygons) and places, built once
    per database and :func:`grids_version`; safe across threads. The version is read once per
    transaction of ``session`` (intake asks three times per request): grids this session adds through
    the ORM make it read again."""
    transaction = session.get_transaction()
    memo = session.info.get("grid_index")
    if memo is not None and transaction is not None and memo[0] is transaction:
        return memo[1]
    index = _current_grid_index(session)
    transaction = session.get_transaction()  # begun by the version query if there was none
    if transaction is not None:
        session.info["grid_index"] = (transaction, index)
    return index


def _current_grid_index(session: Session) -> _GridIndex:
    bind = session.get_bind()
    database = bind.url.render_as_string(hide_password=True) if hasattr(bind, "url") else str(id(bind))
    version = grids_version(session)
    cached = _grid_indexes.get(database)
    if cached is not None and cached[0] == version:
        return cached[1]
    units = {uid: (kind, parent) for uid, kind, parent in session.execute(
        select(OrgUnit.id, OrgUnit.kind, OrgUnit.parent_id))}

    def ancestor(unit_id: int | None, kind: UnitKind) -> int | None:
        for _ in range(16):  # bounded as ancestor_of_kind: a cycle in bad data must not hang a request
            if unit_id is None or unit_id not in units:
                return None
            if units[unit_id][0] == kind:
                return unit_id
            unit_id = units[unit_id][1]
        return None

    places: dict[int, GridPlace] = {}
    shapes = []
    for grid_id, name, community_id, geometry in session.execute(
            select(Grid.id, Grid.name, Grid.community_id, Grid.geometry).order_by(Grid.id)):
        places[grid_id] = GridPlace(id=grid_id, name=name, community_id=community_id,
                                    street_id=ancestor(community_id, UnitKind.STREET),
                                    district_id=ancestor(community_id, UnitKind.DISTRICT))
        shapes.append(shape(geometry))
    index = _GridIndex(places=places, ids=list(places), shapes=shapes, tree=STRtree(shapes))
    with _grid_lock:
        _grid_indexes[database] = (version, index)
    return index


def clear_grid_cache() -> None:
    """Forget every cached grid index (tests that rebuild a database with the same grid ids use it)."""
    with _grid_lock:
        _grid_indexes.clear()


def grid_place(session: Session, grid_id: int | None) -> GridPlace | None:
    """Return what intake needs of grid ``grid_id`` (:class:`GridPlace`), or ``None`` for ``None`` or an
    unknown id: from the cached grid index (one aggregate query to check it is current)."""
    if grid_id is None:
        return None
    return _grid_index(session).places.get(grid_id)


def locate_grid_place(session: Session, *, lat: float, lon: float) -> GridPlace | None:
    """Return the :class:`GridPlace` of the grid whose polygon covers the point (``lat``, ``lon``), or
    ``None``: as :func:`locate_grid` (GeoJSON order, lowest id on a shared edge), through the cached
    spatial index (shapely ``STRtree``: the grids whose bounding box holds the point, then their
    polygons), so the cost does not grow with the number of grids (issue 9)."""
    index = _grid_index(session)
    point = Point(lon, lat)
    for position in sorted(int(i) for i in index.tree.query(point)):  # ids ascend with positions
        if index.shapes[position].covers(point):
            return index.places[index.ids[position]]
    return None


def locate_grid(session: Session, *, lat: float, lon: float) -> Grid | None:
    """Return the grid whose polygon contains the point (``lat``, ``lon``), or ``None``.

    GeoJSON orders coordinates (longitude, latitude) (RFC 7946 §3.1.1). A point on a shared edge
    goes to the grid with the lowest id. Found through :func:`locate_grid_place`'s index.
    """
    found = locate_grid_place(session, lat=lat, lon=lon)
    return session.get(Grid, found.id) if found is not None else None


# --- the gazetteer (地名库) ------------------------------------------------------------------------

AREA_KINDS = (UnitKind.DISTRICT, UnitKind.STREET, UnitKind.COMMUNITY)
"""The unit kinds that are places (administrative areas); departments and companies are not."""
MAX_ALIASES = 20

_edits = 0
_edits_lock = threading.Lock()


def _count_edit(session: Session) -> None:
    global _edits
    session.info.pop("gazetteer_edited", None)
    with _edits_lock:
        _edits += 1


def _edited_after_commit(session: Session) -> None:
    # Side effects after commit (docs/architecture.md): a cache keyed on gazetteer_version must not
    # see a new version before the new rows are visible to other sessions.
    if not session.info.get("gazetteer_edited"):
        session.info["gazetteer_edited"] = True
        event.listen(session, "after_commit", _count_edit, once=True)


def gazetteer_version(session: Session) -> tuple[int, ...]:
    """Return a cheap fingerprint of everything place matching reads: count and largest id of the
    places, units and grids, plus the number of gazetteer edits this process committed.

    One query of six aggregates. The counts and ids change with every insert and delete, the edit
    counter with every committed :func:`update_place` of this process; an edit that keeps count and
    ids, made by *another* process, is not seen here (callers cache with a time limit for that).

    Read once per transaction of ``session`` (deferred intake and replays match a batch of requests in
    one; the aggregates over places, units and grids were 6 % of a replay's time, issue 9): a place, unit
    or grid this session inserts, updates or deletes through the ORM makes it read again.
    """
    transaction = session.get_transaction()
    memo = session.info.get(_VERSION_MEMO)
    if memo is not None and transaction is not None and memo[0] is transaction and memo[1][-1] == _edits:
        return memo[1]  # type: ignore[no-any-return]
    aggregates = [
        select(func.count()).select_from(Place).scalar_subquery(), select(func.max(Place.id)).scalar_subquery(),
        select(func.count()).select_from(OrgUnit).scalar_subquery(), select(func.max(OrgUnit.id)).scalar_subquery(),
        select(func.count()).select_from(Grid).scalar_subquery(), select(func.max(Grid.id)).scalar_subquery(),
    ]
    row = session.execute(select(*aggregates)).one()
    version = (*(int(v or 0) for v in row), _edits)
    session.info[_VERSION_MEMO] = (session.get_transaction(), version)
    return version


_VERSION_MEMO = "civicloop.gazetteer_version"
"""Key in ``Session.info``: (transaction, :func:`gazetteer_version` read in it); its last item is the edit count."""


@event.listens_for(Place, "after_insert")
@event.listens_for(Place, "after_update")
@event.listens_for(Place, "after_delete")
@event.listens_for(OrgUnit, "after_insert")
@event.listens_for(OrgUnit, "after_update")
@event.listens_for(OrgUnit, "after_delete")
@event.listens_for(Grid, "after_insert")
@event.listens_for(Grid, "after_update")
@event.listens_for(Grid, "after_delete")
def _gazetteer_written(_mapper: Any, _connection: Any, target: Any) -> None:
    # the transaction's remembered version no longer holds once it wrote a place, unit or grid
    session = object_session(target)
    if session is not None:
        session.info.pop(_VERSION_MEMO, None)


def list_area_units(session: Session) -> Sequence[Row[Any]]:
    """Return ``(id, name, kind, parent_id)`` of every active district, street and community, by id:
    what place matching needs of the hierarchy, without loading whole units."""
    query = (select(OrgUnit.id, OrgUnit.name, OrgUnit.kind, OrgUnit.parent_id)
             .where(OrgUnit.active.is_(True), OrgUnit.kind.in_([k.value for k in AREA_KINDS]))
             .order_by(OrgUnit.id))
    return session.execute(query).all()


def list_grid_names(session: Session) -> Sequence[Row[Any]]:
    """Return ``(id, name, community_id)`` of every grid by id, without the polygons."""
    return session.execute(select(Grid.id, Grid.name, Grid.community_id).order_by(Grid.id)).all()


def get_place(session: Session, *, place_id: int) -> Place:
    """Return gazetteer row ``place_id``; raises ``NotFound`` (404)."""
    place = session.get(Place, place_id)
    if place is None:
        raise NotFound("Place", place_id)
    return place


def list_places(
    session: Session, *, kind: PlaceKind | None = None, district_id: int | None = None, q: str | None = None,
    limit: int | None = None, offset: int = 0,
) -> Sequence[Place]:
    """Return gazetteer rows ordered by id: optionally of one ``kind``, in one ``district_id``, whose
    name contains ``q`` (a plain substring: ``%`` and ``_`` are no wildcards), at most ``limit``
    from ``offset``. Without a limit, every row (what place matching reads)."""
    query = select(Place).order_by(Place.id).offset(offset)
    if kind is not None:
        query = query.where(Place.kind == kind)
    if district_id is not None:
        query = query.where(Place.district_id == district_id)
    if q:
        query = query.where(Place.name.contains(q, autoescape=True))
    if limit is not None:
        query = query.limit(limit)
    return session.scalars(query).all()


def _district_of_unit(unit: OrgUnit) -> OrgUnit | None:
    return ancestor_of_kind(unit, UnitKind.DISTRICT)


def _check_place(
    session: Session, *, name: str, kind: PlaceKind, district_id: int | None, unit_id: int | None,
    grid_id: int | None, place_id: int | None,
) -> int | None:
    """Check the references of a gazetteer row; return its district id (taken from the unit or
    grid when not given). Raises ``FieldError`` on the field at fault."""
    district: OrgUnit | None = None
    if district_id is not None:
        district = session.get(OrgUnit, district_id)
        if district is None or not district.active or district.kind != UnitKind.DISTRICT:
            raise FieldError("district_id", "v.unknown_district", id=district_id)
    lies_in: list[tuple[str, int, OrgUnit | None]] = []
    if unit_id is not None:
        unit = require_unit(session, unit_id=unit_id, field="unit_id")
        lies_in.append(("unit_id", unit_id, _district_of_unit(unit)))
    if grid_id is not None:
        grid = get_grid(session, grid_id=grid_id)
        lies_in.append(("grid_id", grid_id, _district_of_unit(grid.community)))
    for field, ref_id, its_district in lies_in:
        if its_district is None:
            continue
        if district is None:
            district = its_district
        elif its_district.id != district.id:
            raise FieldError(field, "v.place_outside_district", id=ref_id, district=district.name)
    resolved = district.id if district else None
    taken = select(Place.id).where(Place.name == name, Place.kind == kind.value)
    taken = taken.where(Place.district_id == resolved if resolved is not None else Place.district_id.is_(None))
    if place_id is not None:
        taken = taken.where(Place.id != place_id)
    if session.scalar(taken.limit(1)) is not None:
        raise FieldError("name", "v.place_taken", name=name, kind=kind.value)
    return resolved


def _clean_aliases(name: str, aliases: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for alias in aliases:
        alias = alias.strip()
        if alias and alias != name:
            seen.setdefault(alias, None)
    return list(seen)


def create_place(
    session: Session, *, name: str, kind: PlaceKind, district_id: int | None = None, unit_id: int | None = None,
    grid_id: int | None = None, aliases: Sequence[str] = (), source: str = "admin", actor: str = "system",
) -> Place:
    """Add a place name to the gazetteer and return it (flushed, with its id).

    ``district_id`` must name an active district; ``unit_id`` an active unit; ``grid_id`` a grid.
    When ``district_id`` is omitted it is taken from the unit's or grid's district; when given, the
    unit and grid must lie in it. ``aliases`` are other names of the same place (blank ones and
    repeats dropped). Raises ``FieldError`` (422) on the field at fault: ``v.unknown_district``,
    ``v.unknown_unit``, ``v.unknown_grid``, ``v.place_outside_district``, and ``v.place_taken`` when
    the district already has a place of that name and kind (the table's unique constraint
    ``uq_places_name_kind_district``, which also decides a race between two admins).
    """
    resolved = _check_place(session, name=name, kind=kind, district_id=district_id, unit_id=unit_id,
                            grid_id=grid_id, place_id=None)
    place = Place(name=name, kind=kind.value, district_id=resolved, unit_id=unit_id, grid_id=grid_id,
                  aliases=_clean_aliases(name, aliases), source=source)
    try:
        with session.begin_nested():
            session.add(place)
    except IntegrityError as exc:
        raise FieldError("name", "v.place_taken", name=name, kind=kind.value) from exc
    _audit_place(session, place, "create_place", actor)
    return place


def _audit_place(session: Session, place: Place, action: str, actor: str) -> None:
    audit.enqueue(session, actor=actor, role=audit.admin_role(actor), action=action, subject=f"place:{place.id}",
                  data={"name": place.name, "kind": place.kind, "district_id": place.district_id,
                        "unit_id": place.unit_id, "grid_id": place.grid_id, "aliases": list(place.aliases or [])})


def update_place(
    session: Session, *, place_id: int, name: str, kind: PlaceKind, district_id: int | None = None,
    unit_id: int | None = None, grid_id: int | None = None, aliases: Sequence[str] = (), actor: str = "system",
) -> Place:
    """Replace the editable fields of gazetteer row ``place_id`` (name, kind, district, unit, grid,
    aliases; its ``source`` stays) and return it. Same checks and errors as :func:`create_place`;
    ``NotFound`` (404) for an unknown id. Caches of the gazetteer see the edit after commit."""
    place = get_place(session, place_id=place_id)
    resolved = _check_place(session, name=name, kind=kind, district_id=district_id, unit_id=unit_id,
                            grid_id=grid_id, place_id=place_id)
    try:
        with session.begin_nested():
            place.name, place.kind, place.district_id = name, kind.value, resolved
            place.unit_id, place.grid_id, place.aliases = unit_id, grid_id, _clean_aliases(name, aliases)
            session.flush()
    except IntegrityError as exc:
        raise FieldError("name", "v.place_taken", name=name, kind=kind.value) from exc
    _audit_place(session, place, "update_place", actor)
    _edited_after_commit(session)
    return place


def delete_place(session: Session, *, place_id: int, actor: str = "system") -> None:
    """Remove gazetteer row ``place_id``; ``NotFound`` (404) for an unknown id. Requests already
    placed keep their district, street and grid: those are units and grids, not gazetteer rows.
    The audit log keeps what the row said (``core.audit``)."""
    place = get_place(session, place_id=place_id)
    _audit_place(session, place, "delete_place", actor)
    session.delete(place)
    session.flush()
    _edited_after_commit(session)
