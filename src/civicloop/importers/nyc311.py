"""Import New York City 311 service requests (NYC Open Data's 41 standard columns).

Each row becomes a service request: the agency (``NYPD``, ``DOT``…) is its handling unit, the
complaint type and descriptor its category (two levels), the incident address its address, the
coordinates its place: each community board of the file becomes a community (under its borough,
a district) with a grid whose polygon is the convex hull of the board's points in the file,
buffered by about 200 m (the file has no board boundaries; NYC publishes them separately), and a
request lands in the first grid that covers its point. A closed row is replayed through the
loop: dispatched when it was created,
answered with its resolution description when it was closed (the resolution clock starting at
dispatch, as for any record that knows only those two instants) and closed at that instant without
a rating (``closing.close_unrated``: NYC asked nobody, so it counts in the response rate only and
reads ``closed`` through Open311, like its source row); an ``Assigned`` row waits for
its agency to acknowledge, a ``Pending`` one for dispatch. Times are New York local times.
Idempotent by ``external_id = nyc311:<Unique Key>``; malformed rows are reported and skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

from shapely import MultiPoint, STRtree
from shapely.geometry import Point, mapping, shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category, DeadlineTier
from civicloop.catalog.rules import default_unit_kind
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.importers.common import ImportSummary, parse_time
from civicloop.org.models import Grid, OrgUnit, UnitKind
from civicloop.requests import closing, handling, intake
from civicloop.requests.models import Channel, ServiceRequest
from civicloop.requests.service import Actor

NEW_YORK = ZoneInfo("America/New_York")
IMPORTER = Actor("import:nyc311", Role.SYSTEM)
CHANNELS = {"PHONE": Channel.HOTLINE, "ONLINE": Channel.WEB, "MOBILE": Channel.APP}
BUFFER_DEGREES = 0.002


def _point(row: dict[str, str]) -> tuple[float, float] | None:
    try:
        lat, lon = float(row.get("Latitude") or ""), float(row.get("Longitude") or "")
    except ValueError:
        return None
    return (lon, lat) if -90 <= lat <= 90 and -180 <= lon <= 180 else None


def build_board_grids(session: Session, path: Path) -> list[Grid]:
    """Create a borough (district), community and grid for each community board named in the
    file with at least three located rows, unless it exists; returns every NYC board grid."""
    points: dict[str, list[tuple[float, float]]] = {}
    borough_of: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            board = (row.get("Community Board") or "").strip()
            point = _point(row)
            if point is None or not board or board.lower().startswith("0 unspecified"):
                continue
            points.setdefault(board, []).append(point)
            borough_of[board] = (row.get("Borough") or "").strip() or board.split(" ", 1)[-1]
    existing = {g.code: g for g in session.scalars(select(Grid).where(Grid.code.like("nyc:cb:%")))}
    units = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.code.like("nyc:%")))}

    def unit(code: str, name: str, kind: UnitKind, parent: OrgUnit | None) -> OrgUnit:
        found = units.get(code)
        if found is None:
            found = OrgUnit(code=code[:40], name=name[:200], kind=kind, parent_id=parent.id if parent else None,
                            contact_name="", contact_phone="", active=True)
            session.add(found)
            session.flush()
            units[code] = found
        return found

    for board, located in sorted(points.items()):
        code = f"nyc:cb:{board}"[:40]
        if code in existing or len(set(located)) < 3:
            continue
        borough = unit(f"nyc:boro:{borough_of[board]}", borough_of[board].title(), UnitKind.DISTRICT, None)
        community = unit(f"nyc:cb:{board}", f"Community Board {board.title()}", UnitKind.COMMUNITY, borough)
        hull = MultiPoint(located).convex_hull.buffer(BUFFER_DEGREES)
        # RFC 7946 §6.1 foreign member: says where the polygon comes from
        geometry = {**mapping(hull), "derived": "convex hull of the sample's points"}
        geometry["coordinates"] = [[list(p) for p in ring] for ring in geometry["coordinates"]]
        grid = Grid(code=code, name=f"CB {board.title()}"[:200], community_id=community.id, geometry=geometry)
        session.add(grid)
        session.flush()
        existing[code] = grid
    return sorted(existing.values(), key=lambda g: g.id)


class _Locator:
    """Point-in-grid over the NYC board grids with a spatial index (built once per import)."""

    def __init__(self, grids: list[Grid]) -> None:
        self.grids = grids
        self.shapes = [shape(g.geometry) for g in grids]
        self.tree = STRtree(self.shapes)

    def grid_id(self, lon: float, lat: float) -> int | None:
        hits = sorted(int(i) for i in self.tree.query(Point(lon, lat), predicate="intersects"))
        return self.grids[hits[0]].id if hits else None


def _category(session: Session, cache: dict[str, Category], complaint: str, descriptor: str) -> Category:
    parent: Category | None = None
    path: list[str] = []
    for level, name in enumerate([complaint, descriptor], start=1):
        if not name:
            break
        path.append(name[:100])
        key = "/".join(path)
        node = cache.get(key)
        if node is None:
            node = session.scalars(select(Category).where(Category.path == key)).first()
        if node is None:
            node = Category(name=name[:100], level=level, parent_id=parent.id if parent else None, path=key[:400],
                            deadline_tier=DeadlineTier.DAYS_7, default_unit_kind=default_unit_kind(path))
            session.add(node)
            session.flush()
        cache[key] = node
        parent = node
    assert parent is not None
    return parent


def _agency(session: Session, cache: dict[str, OrgUnit], code: str, name: str) -> OrgUnit:
    key = f"nyc:{code}"[:40]
    unit = cache.get(key) or session.scalars(select(OrgUnit).where(OrgUnit.code == key)).first()
    if unit is None:
        unit = OrgUnit(code=key, name=(name or code)[:200], kind=UnitKind.DEPARTMENT, parent_id=None,
                       contact_name="", contact_phone="", active=True)
        session.add(unit)
        session.flush()
    cache[key] = unit
    return unit


def import_nyc311(
    session: Session, *, path: Path, settings: Settings, on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import an NYC 311 CSV file; returns the summary. Does not commit."""
    summary = ImportSummary()
    known = set(session.scalars(select(ServiceRequest.external_id).where(ServiceRequest.external_id.like("nyc311:%"))))
    categories: dict[str, Category] = {}
    agencies: dict[str, OrgUnit] = {}
    locator = _Locator(build_board_grids(session, path))
    summary.notes["community board grids"] = len(locator.grids)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            summary.read += 1
            if on_progress:
                on_progress(1)
            key = (row.get("Unique Key") or "").strip()
            if not key:
                summary.skip(path.name, line, "no Unique Key")
                continue
            source = f"nyc311:{key}"
            if source in known:
                summary.unchanged += 1
                continue
            problem = _check(row)
            if problem:
                summary.skip(path.name, line, problem)
                continue
            with session.begin_nested():
                _store(session, row, source, settings, categories, agencies, summary, locator)
            known.add(source)
            summary.stored += 1
    return summary


def _check(row: dict[str, str]) -> str | None:
    if not (row.get("Complaint Type") or "").strip():
        return "no Complaint Type"
    if not (row.get("Agency") or "").strip():
        return "no Agency"
    try:
        created = parse_time(row.get("Created Date") or "", NEW_YORK)
    except ValueError:
        return "unreadable Created Date"
    closed_text = (row.get("Closed Date") or "").strip()
    if closed_text:
        try:
            closed = parse_time(closed_text, NEW_YORK)
        except ValueError:
            return "unreadable Closed Date"
        if closed < created:
            return "closed before created"
    lat, lon = (row.get("Latitude") or "").strip(), (row.get("Longitude") or "").strip()
    if lat or lon:
        try:
            if not (-90 <= float(lat) <= 90 and -180 <= float(lon) <= 180):
                return "coordinates out of range"
        except ValueError:
            return "unreadable coordinates"
    return None


def _store(
    session: Session, row: dict[str, str], source: str, settings: Settings, categories: dict[str, Category],
    agencies: dict[str, OrgUnit], summary: ImportSummary, locator: _Locator,
) -> None:
    complaint, descriptor = row["Complaint Type"].strip(), (row.get("Descriptor") or "").strip()
    category = _category(session, categories, complaint, descriptor)
    unit = _agency(session, agencies, row["Agency"].strip(), (row.get("Agency Name") or "").strip())
    created = parse_time(row["Created Date"], NEW_YORK)
    address = ", ".join(filter(None, [(row.get("Incident Address") or "").strip(), (row.get("City") or "").strip(),
                                      (row.get("Incident Zip") or "").strip().removesuffix(".0")]))
    lat = float(row["Latitude"]) if (row.get("Latitude") or "").strip() else None
    lon = float(row["Longitude"]) if lat is not None else None
    description = "; ".join(filter(None, [complaint, descriptor, (row.get("Location Type") or "").strip(), address]))
    request = intake.submit(session, actor=IMPORTER, now=created, data=intake.NewRequest(
        channel=CHANNELS.get((row.get("Open Data Channel Type") or "").strip().upper(), Channel.OPEN311),
        title=f"{complaint} - {descriptor}"[:200] if descriptor else complaint[:200], description=description,
        address=address[:500], lat=lat, lon=lon, category_id=category.id, external_id=source,
        grid_id=locator.grid_id(lon, lat) if lat is not None and lon is not None else None))
    status = (row.get("Status") or "").strip().lower()
    summary.notes[f"status {status or 'blank'}"] += 1
    if status in ("", "pending", "open", "unspecified"):
        return
    intake.accept(session, request_id=request.id, actor=IMPORTER, now=created)
    intake.dispatch(session, request_id=request.id, actor=IMPORTER, lead_unit_id=unit.id, settings=settings,
                    now=created)
    closed_text = (row.get("Closed Date") or "").strip()
    if status != "closed" or not closed_text:
        return
    closed = parse_time(closed_text, NEW_YORK)
    order = request.work_orders[-1]
    handler = Actor(f"import:{unit.code}", Role.ADMIN)
    handling.acknowledge(session, work_order_id=order.id, actor=handler, settings=settings, now=closed,
                         clock_start=created)
    text = (row.get("Resolution Description") or "").strip() or "Closed."
    handling.reply(session, work_order_id=order.id, actor=handler, text=text, now=closed)
    # NYC closed it and asked nobody: closed without a rating, so it counts in the response rate only
    closing.close_unrated(session, request_id=request.id, actor=IMPORTER, reason="closed in the NYC 311 source",
                          now=closed)
