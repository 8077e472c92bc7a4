"""Import the Teddy Cup 2020 C messages (../shared/data/teddy2020c) and replay their history.

Every message becomes a service request of channel ``web`` with its real title, body and time;
upvotes become its support count; the publisher's first-level label becomes its category. A
message that appears in several files (same id and title) is one request. The place it names
(``A7县``, ``A3区洋湖街道``, ``潇楚南路``, ``丽发新城``) lands it in a district, street and grid built
from the data, and every such name goes into the gazetteer (``places``) with where it lies (see
``intelligence.place_patterns``).

A message with the government's reply is replayed through the real loop: accepted and dispatched
when it was filed, acknowledged and replied at the real reply time with the real text, to the
unit the reply names (created if new), else to the district it is about, else to the city's
government. The record knows only two instants, so the reply is taken as the unit's first
response (the response rate is the share replied within the response deadline) and the
resolution clock starts at dispatch (a reply after 7 working days is overdue). No callback was
published: replayed requests stay ``replied``. Messages without reply stay ``submitted`` for intake.

Importing twice changes nothing: each request carries ``external_id = teddy:<id>:<title hash>``.
A malformed row is reported with its file and line and skipped; each message is stored in a
savepoint of its own, so nothing is stored half-way.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category
from civicloop.catalog.service import load_tree
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.importers.common import ImportSummary, parse_time
from civicloop.intelligence.place_patterns import DISTRICT, Places, find_places, find_unit, unit_kind
from civicloop.org.models import Grid, OrgUnit, Place, PlaceKind, UnitKind
from civicloop.requests import handling, intake
from civicloop.requests.models import Channel, ServiceRequest
from civicloop.requests.service import Actor

MESSAGE_FILES = ("messages_labelled.csv", "messages_unlabelled.csv", "messages_with_votes.csv",
                 "messages_with_replies.csv")
IMPORTER = Actor("import:teddy2020c", Role.SYSTEM)
CITY_GOVERNMENT = "A市人民政府"
LATTICE = 0.01  # degrees; the gazetteer's grids are placed on a lattice: the data has no coordinates


@dataclass
class Message:
    """One message merged from the files it appears in."""

    key: str
    message_id: str
    user_id: str
    title: str
    detail: str
    created_at: datetime
    label: str | None = None
    upvotes: int = 0
    reply: str | None = None
    replied_at: datetime | None = None
    sources: list[str] = field(default_factory=list)


def external_id(message_id: str, title: str) -> str:
    """Return the request's source id: the message id and a hash of its title (the files reuse
    ids for different messages)."""
    digest = hashlib.sha1(title.strip().encode("utf-8")).hexdigest()[:10]
    return f"teddy:{message_id.strip()}:{digest}"


def read_messages(folder: Path, settings: Settings, summary: ImportSummary) -> list[Message]:
    """Read and merge the four message files of ``folder``; malformed rows go to ``summary``.

    Returns messages ordered by filing time. Missing files are noted, not fatal.
    """
    merged: dict[str, Message] = {}
    for name in MESSAGE_FILES:
        path = folder / name
        if not path.is_file():
            summary.notes[f"missing file {name}"] += 1
            continue
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for line, row in enumerate(csv.DictReader(handle), start=2):
                summary.read += 1
                problem = _merge_row(row, name, merged, settings)
                if problem:
                    summary.skip(name, line, problem)
    return sorted(merged.values(), key=lambda m: (m.created_at, m.key))


def _merge_row(row: dict[str, str], name: str, merged: dict[str, Message], settings: Settings) -> str | None:
    title, detail = (row.get("title") or "").strip(), (row.get("detail") or "").strip()
    message_id = (row.get("message_id") or "").strip()
    if not message_id:
        return "no message_id"
    if not title and not detail:
        return "no title and no body"
    try:
        created = parse_time(row.get("created_at") or "", settings.tz)
    except ValueError:
        return "unreadable created_at"
    replied = None
    if row.get("reply") is not None:
        try:
            replied = parse_time(row.get("replied_at") or "", settings.tz)
        except ValueError:
            return "unreadable replied_at"
        if replied < created:
            return "replied before created"
    try:
        upvotes = int(float(row.get("upvotes") or 0))
    except ValueError:
        return "unreadable upvotes"
    key = external_id(message_id, title or detail[:40])
    message = merged.get(key)
    if message is None:
        message = merged[key] = Message(key=key, message_id=message_id, user_id=(row.get("user_id") or "").strip(),
                                        title=title or detail[:40], detail=detail or title, created_at=created)
    message.sources.append(name)
    message.label = (row.get("label") or "").strip() or message.label
    message.upvotes = max(message.upvotes, max(upvotes, 0))
    if replied is not None and (row.get("reply") or "").strip():
        message.reply, message.replied_at = row["reply"].strip(), replied
    return None


def short_code(text: str) -> str:
    """Return ``text`` if it fits a unit or grid code (40 characters), else a stable shortening."""
    if len(text) <= 40:
        return text
    return f"{text[:27]}~{hashlib.sha1(text.encode('utf-8')).hexdigest()[:12]}"


class Gazetteer:
    """Units and grids of the places the data names, created on first mention and cached."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.units = {u.code: u for u in session.scalars(select(OrgUnit).where(OrgUnit.code.like("teddy:%")))}
        """Units by code; codes longer than 40 characters are looked up by their short form."""
        self.grids = {g.code: g for g in session.scalars(select(Grid).where(Grid.code.like("teddy:%")))}
        self.places = {(p.name, p.kind, p.district_id) for p in session.scalars(
            select(Place).where(Place.source == "teddy2020c"))}
        self.created = 0

    def remember(self, name: str, kind: PlaceKind, district: OrgUnit | None, *, unit: OrgUnit | None = None,
                 grid: Grid | None = None) -> None:
        """Add ``name`` to the gazetteer (地名库) unless it is there already."""
        key = (name[:100], kind.value, district.id if district else None)
        if key in self.places:
            return
        self.session.add(Place(name=key[0], kind=kind, district_id=key[2], unit_id=unit.id if unit else None,
                               grid_id=grid.id if grid else None, aliases=[], source="teddy2020c"))
        self.places.add(key)

    def unit(self, code: str, name: str, kind: UnitKind, parent: OrgUnit | None) -> OrgUnit:
        """Return the unit ``code``, creating it under ``parent`` when new."""
        code = short_code(code)
        found = self.units.get(code)
        if found is None:
            found = OrgUnit(code=short_code(code), name=name[:200], kind=kind, parent_id=parent.id if parent else None,
                            contact_name="", contact_phone="", active=True)
            self.session.add(found)
            self.session.flush()
            self.units[code] = found
            self.created += 1
        return found

    def district(self, name: str) -> OrgUnit:
        return self.unit(f"teddy:{name}", name, UnitKind.DISTRICT, None)

    def place(self, places: Places) -> tuple[OrgUnit | None, OrgUnit | None, Grid | None]:
        """Return (district, street, grid) for the places of a message, creating what is new."""
        if places.district is None:
            return None, None, None
        district = self.district(places.district)
        self.remember(places.district, PlaceKind.DISTRICT, district, unit=district)
        street = None
        if places.street:
            street = self.unit(f"teddy:{places.district}/{places.street}", places.street, UnitKind.STREET, district)
            self.remember(places.street, PlaceKind.STREET, district, unit=street)
        if places.road:
            self.remember(places.road, PlaceKind.ROAD, district)
        if not places.estate:
            return district, street, None
        parent = street or district
        code = short_code(f"teddy:{parent.code[6:]}/{places.estate}")
        grid = self.grids.get(code)
        if grid is None:
            community = self.unit(f"{parent.code}/直管", f"{parent.name}直管网格", UnitKind.COMMUNITY, parent)
            index = len(self.grids)
            lon0, lat0 = 112.0 + (index % 100) * LATTICE, 28.0 + (index // 100) * LATTICE
            ring = [[lon0, lat0], [lon0 + LATTICE, lat0], [lon0 + LATTICE, lat0 + LATTICE], [lon0, lat0 + LATTICE],
                    [lon0, lat0]]
            # RFC 7946 §6.1 foreign member: the data has no coordinates, so the square is a placeholder
            grid = Grid(code=code, name=places.estate[:200], community_id=community.id,
                        geometry={"type": "Polygon", "coordinates": [ring], "synthetic": True})
            self.session.add(grid)
            self.session.flush()
            self.grids[code] = grid
        self.remember(places.estate, PlaceKind.ESTATE, district, grid=grid)
        return district, street, grid

    def answering_unit(self, name: str, places: Places) -> OrgUnit:
        """Return the unit a reply names, under its district when the name starts with one."""
        kind = UnitKind(unit_kind(name))
        if kind == UnitKind.DISTRICT:
            return self.district(name.removesuffix("人民政府"))
        district = DISTRICT.match(name)
        parent = self.district(district.group(1)) if district else None
        return self.unit(f"teddy:unit:{name}", name, kind, parent)


def import_teddy(
    session: Session, *, folder: Path, settings: Settings, on_progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import the Teddy Cup 2020 C folder (categories and the four message files) and replay the
    replied messages. Returns the summary. Does not commit (the caller does, once)."""
    summary = ImportSummary()
    tree = folder / "categories.csv"
    if tree.is_file():
        summary.notes["categories created"] = load_tree(session, csv_path=tree)
    level1 = {c.name: c.id for c in session.scalars(select(Category).where(Category.level == 1))}
    messages = read_messages(folder, settings, summary)
    if on_total:
        on_total(len(messages))
    known = set(session.scalars(select(ServiceRequest.external_id).where(ServiceRequest.external_id.like("teddy:%"))))
    places = Gazetteer(session)
    for message in messages:
        if message.key in known:
            summary.unchanged += 1
        else:
            with session.begin_nested():
                _store(session, message, places, level1, settings, summary)
            summary.stored += 1
            known.add(message.key)
        if on_progress:
            on_progress(1)
    summary.notes["places created (units and grids)"] = places.created
    summary.notes["messages merged from several files"] = sum(1 for m in messages if len(m.sources) > 1)
    return summary


def _store(
    session: Session, message: Message, gazetteer: Gazetteer, level1: dict[str, int], settings: Settings,
    summary: ImportSummary,
) -> None:
    found = find_places(message.title, message.detail)
    district, street, grid = gazetteer.place(found)
    data = intake.NewRequest(
        channel=Channel.WEB, title=message.title[:200], description=message.detail,
        citizen_name=message.user_id[:100],
        address=" ".join(filter(None, [found.district, found.street, found.road, found.estate]))[:500],
        grid_id=grid.id if grid else None, category_id=level1.get(message.label or ""),
        support_count=message.upvotes, external_id=message.key,
    )
    request = intake.submit(session, data=data, actor=IMPORTER, now=message.created_at)
    if grid is None and (district or street):
        request.district_id = district.id if district else None
        request.street_id = street.id if street else None
        session.flush()
    if message.reply is None or message.replied_at is None:
        return
    named = find_unit(message.reply, found)
    summary.notes["replies naming their unit" if named else "replies naming no unit"] += 1
    if named:
        unit = gazetteer.answering_unit(named, found)
    else:
        unit = district or gazetteer.unit(f"teddy:unit:{CITY_GOVERNMENT}", CITY_GOVERNMENT, UnitKind.DEPARTMENT, None)
    filed = message.created_at
    intake.accept(session, request_id=request.id, actor=IMPORTER, now=filed)
    intake.dispatch(session, request_id=request.id, actor=IMPORTER, lead_unit_id=unit.id, settings=settings, now=filed)
    order = request.work_orders[-1]
    handler = Actor(f"import:{unit.name}"[:100], Role.ADMIN)
    handling.acknowledge(session, work_order_id=order.id, actor=handler, settings=settings, now=message.replied_at,
                         clock_start=filed)
    handling.reply(session, work_order_id=order.id, actor=handler, text=message.reply, now=message.replied_at)


def build_routes(session: Session) -> int:
    """Fill an empty routing table for the imported city by the territorial rule of 接诉即办 (属地):
    the street or township of the request's place leads; where only the district is known, the
    district; where no place is known, the city's government (``A市人民政府``, the unit the import
    gives replies that name no unit). Three rules for every category (``category_id`` null), so
    routing never waits on the classifier's level; a city edits them through
    ``/api/v1/routing-rules``. Does nothing when the table has rules. Returns the rules created."""
    from datetime import UTC
    from datetime import datetime as clock

    from civicloop.catalog.models import LeadTarget, RoutingRule

    if session.scalar(select(RoutingRule.id).limit(1)) is not None:
        return 0
    city = Gazetteer(session).unit(f"teddy:unit:{CITY_GOVERNMENT}", CITY_GOVERNMENT, UnitKind.DEPARTMENT, None)
    now = clock.now(UTC)
    rules = [(LeadTarget.STREET, None, 0, "属地：街道乡镇主办 the street of the place leads"),
             (LeadTarget.DISTRICT, None, 0, "属地：区县主办 the district leads where no street is known"),
             (LeadTarget.UNIT, city.id, -1, "地点不明：市政府主办 no place known: the city's government")]
    for target, unit_id, priority, note in rules:  # ids in this order: the street rule wins ties
        session.add(RoutingRule(category_id=None, lead_target=target, lead_unit_id=unit_id, assisting_unit_ids=[],
                                priority=priority, active=True, note=note, updated_by="import:teddy2020c",
                                updated_at=now))
        session.flush()
    return len(rules)
