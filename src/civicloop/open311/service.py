"""The mapping between civicloop and GeoReport v2: services are the catalogue's categories, service
requests are the loop's requests with their richer states folded onto ``open``/``closed``.

Status mapping (GeoReport v2 "GET Service Requests", ``status``: open "it has been reported",
closed "it has been resolved"): ``submitted``, ``accepted``, ``dispatched``, ``in_progress`` and
``replied`` (awaiting the citizen's callback) are ``open``; ``closed`` and ``rejected`` are
``closed``. ``status_notes`` carries the rest: the lead unit's reply once there is one, the reason
of a rejection, else civicloop's own status word.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category
from civicloop.core.i18n import translate, word
from civicloop.core.validation import MAX_ID, mask_phones_in_text
from civicloop.open311.attributes import Attribute, Datatype
from civicloop.open311.models import Submission
from civicloop.open311.render import fail
from civicloop.org.models import OrgUnit
from civicloop.requests.models import RequestStatus, ServiceRequest, WorkOrder, WorkOrderRole, WorkOrderStatus

OPEN = "open"
CLOSED = "closed"
STATUS_OF: dict[str, str] = {
    RequestStatus.SUBMITTED: OPEN, RequestStatus.ACCEPTED: OPEN, RequestStatus.DISPATCHED: OPEN,
    RequestStatus.IN_PROGRESS: OPEN, RequestStatus.REPLIED: OPEN,
    RequestStatus.CLOSED: CLOSED, RequestStatus.REJECTED: CLOSED,
}
"""civicloop request status → GeoReport v2 status."""
STATUSES_OF: dict[str, list[str]] = {s: [k for k, v in STATUS_OF.items() if v == s] for s in (OPEN, CLOSED)}

CONTACT_TIMES = (("morning", "上午", "morning"), ("afternoon", "下午", "afternoon"), ("evening", "晚上", "evening"))

COMMON_ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("title", Datatype.STRING, 1,
              ("诉求标题（不填则取服务名称）", "Title of the request (default: the service name)"),
              ("标题", "Title"), max_length=200),
    Attribute("occurred_at", Datatype.DATETIME, 3,
              ("问题发生或发现的时间", "When the problem happened or was noticed"), ("发生时间", "Happened at"),
              datatype_description=("ISO 8601，须带时区，如 2026-05-01T08:30:00+08:00",
                                    "ISO 8601 with a zone, e.g. 2026-05-01T08:30:00+08:00")),
    Attribute("people_affected", Datatype.NUMBER, 4, ("涉及人数", "How many people are affected"),
              ("涉及人数", "People affected"), minimum=1, maximum=1_000_000),
    Attribute("location_details", Datatype.TEXT, 5,
              ("位置补充说明：楼号、单元、参照物", "Where exactly: building, entrance, landmark"),
              ("位置说明", "Location details"), max_length=500),
    Attribute("contact_time", Datatype.MULTIVALUELIST, 6, ("方便回访的时段", "When the citizen may be called back"),
              ("方便回访时段", "Call back"), values=CONTACT_TIMES),
)
"""Attributes every service has, all optional: what a 12345 form asks besides the text. ``title``
becomes the request's title, the others are appended to its description for the handling unit."""


def service_code(category: Category) -> str:
    """Return the service_code of a category: its id as a string (stable while the tree is)."""
    return str(category.id)


def find_service(session: Session, code: str) -> Category | None:
    """Return the category whose service_code is ``code``, or ``None`` (not a number, unknown)."""
    text = code.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or not 1 <= int(text) <= MAX_ID:
        return None
    return session.get(Category, int(text))


def require_service(session: Session, code: str) -> Category:
    """Return the category of ``code``; raises ``Open311Error`` 404 (GeoReport v2: "404 -
    service_code … provided were not found")."""
    category = find_service(session, code)
    if category is None:
        raise fail(404, "o311.no_service", code=code[:40])
    return category


def _children(session: Session) -> dict[int | None, list[Category]]:
    tree: dict[int | None, list[Category]] = defaultdict(list)
    for category in session.scalars(select(Category).order_by(Category.path)):
        tree[category.parent_id].append(category)
    return tree


def attributes_of(category: Category, children: Sequence[Category]) -> list[Attribute]:
    """Return the definition's attributes of a category: the common ones and, when the category has
    sub-categories, ``subcategory`` (a singlevaluelist of them, optional) to file it more precisely."""
    found = list(COMMON_ATTRIBUTES)
    if children:
        found.insert(1, Attribute(
            "subcategory", Datatype.SINGLEVALUELIST, 2,
            ("更具体的分类（可不选）", "A more precise category (optional)"), ("具体分类", "Sub-category"),
            values=tuple((service_code(c), c.name, "") for c in children)))
    return found


def service_attributes(session: Session, category: Category) -> list[Attribute]:
    """Return the attributes of ``category``'s service definition (see :func:`attributes_of`)."""
    children = session.scalars(select(Category).where(Category.parent_id == category.id).order_by(Category.path))
    return attributes_of(category, list(children))


def list_services(session: Session) -> list[dict[str, Any]]:
    """Return the service list (GeoReport v2 "GET Service List"): one service per category, by path.
    ``group`` is the first-level name, ``keywords`` the names along the path and of the children,
    ``metadata`` true (every service has the optional common attributes), ``type`` realtime (the
    loop files synchronously and returns the service_request_id)."""
    tree = _children(session)
    names = {c.id: c.name for level in tree.values() for c in level}
    services = []
    for category in sorted((c for level in tree.values() for c in level), key=lambda c: c.path):
        parts = category.path.split("/")
        keywords = parts + [c.name for c in tree.get(category.id, [])]
        services.append({
            "service_code": service_code(category), "service_name": category.name,
            "description": " / ".join(parts), "metadata": True, "type": "realtime",
            "keywords": ", ".join(dict.fromkeys(keywords)), "group": parts[0] if parts else names[category.id],
        })
    return services


def definition(session: Session, code: str, lang: str) -> dict[str, Any]:
    """Return the service definition of ``code`` (GeoReport v2 "GET Service Definition"), texts in
    ``lang``. Raises ``Open311Error`` 404 for an unknown code."""
    category = require_service(session, code)
    return {"service_code": service_code(category),
            "attributes": [a.as_dict(lang) for a in service_attributes(session, category)]}


def w3(value: datetime | None, tz: ZoneInfo) -> str | None:
    """Return an aware time as W3C date-time with the city's offset (``2026-05-01T08:30:00+08:00``)."""
    return value.astimezone(tz).isoformat(timespec="seconds") if value is not None else None


def lead_order(request: ServiceRequest) -> WorkOrder | None:
    """Return the request's current lead work order: the last lead order not returned or cancelled."""
    leads = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD
             and o.status not in (WorkOrderStatus.RETURNED, WorkOrderStatus.CANCELLED)]
    return leads[-1] if leads else None


def status_notes(request: ServiceRequest, lang: str) -> str:
    """Return the status_notes of a request: the lead unit's latest reply when it has replied (or the
    request is closed), the rejection's reason when rejected, else civicloop's status word."""
    if request.status in (RequestStatus.REPLIED, RequestStatus.CLOSED):
        replies = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD and o.reply_text]
        if replies:
            return mask_phones_in_text(replies[-1].reply_text) or ""
    if request.status == RequestStatus.REJECTED:
        reason = request.reject_reason or "out_of_scope"
        return translate(f"o311.rejected.{reason}", lang, id=request.duplicate_of_id)
    return word("status", request.status, lang)


def expected(request: ServiceRequest) -> datetime | None:
    """Return when the request is expected to be handled: the lead order's resolution deadline, or
    its response deadline before the unit has acknowledged it; ``None`` before dispatch."""
    order = lead_order(request)
    if order is None:
        return None
    return order.due_at or order.response_due_at


def to_items(session: Session, requests: Sequence[ServiceRequest], *, tz: ZoneInfo, lang: str) -> list[dict[str, Any]]:
    """Return the GeoReport v2 ``request`` elements of ``requests``, in order. Never carries the
    citizen's name, phone, e-mail or account; mobile numbers written in the text are masked."""
    ids = [r.id for r in requests]
    subs = {s.request_id: s for s in session.scalars(select(Submission).where(Submission.request_id.in_(ids)))} \
        if ids else {}
    categories = _by_id(session, Category, {r.category_id for r in requests})
    units = _by_id(session, OrgUnit, {r.lead_unit_id for r in requests})
    items = []
    for request in requests:
        category, sub = categories.get(request.category_id), subs.get(request.id)
        unit = units.get(request.lead_unit_id)
        updated = request.closed_at if request.status in (RequestStatus.CLOSED, RequestStatus.REJECTED) \
            and request.closed_at else request.updated_at
        items.append({
            "service_request_id": request.id, "status": STATUS_OF[request.status],
            "status_notes": status_notes(request, lang),
            "service_name": category.name if category else None,
            "service_code": service_code(category) if category else None,
            "description": mask_phones_in_text(request.description),
            "agency_responsible": unit.name if unit else None, "service_notice": None,
            "requested_datetime": w3(request.created_at, tz), "updated_datetime": w3(updated, tz),
            "expected_datetime": w3(expected(request), tz),
            "address": request.address or None, "address_id": sub.address_id if sub else None, "zipcode": None,
            "lat": request.lat, "long": request.lon, "media_url": sub.media_url if sub else None,
        })
    return items


def _by_id(session: Session, model: Any, ids: Iterable[int | None]) -> dict[int, Any]:
    wanted = [i for i in set(ids) if i is not None]
    return {row.id: row for row in session.scalars(select(model).where(model.id.in_(wanted)))} if wanted else {}


def descendants(session: Session, roots: Iterable[int]) -> set[int]:
    """Return the ids of ``roots`` and every category below them."""
    tree = _children(session)
    found: set[int] = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in found:
            continue
        found.add(node)
        stack.extend(c.id for c in tree.get(node, []))
    return found


def service_notice(request: ServiceRequest, session: Session, *, tz: ZoneInfo, lang: str) -> str:
    """Return what will happen next to a request just filed: dispatched to a unit (and by when),
    linked to the request it repeats, or waiting for a dispatcher."""
    if request.status == RequestStatus.REJECTED and request.duplicate_of_id is not None:
        return translate("o311.notice.duplicate", lang, id=request.duplicate_of_id)
    unit = session.get(OrgUnit, request.lead_unit_id) if request.lead_unit_id else None
    if unit is not None:
        due = expected(request)
        at = due.astimezone(tz).strftime("%Y-%m-%d %H:%M") if due else ""
        return translate("o311.notice.dispatched", lang, unit=unit.name, due=at)
    return translate("o311.notice.queued", lang)


def query(session: Session, *, ids: list[int] | None, categories: set[int] | None, statuses: set[str],
          start: datetime, end: datetime, limit: int = 1000) -> Sequence[ServiceRequest]:
    """Return requests for GET requests, newest first, at most ``limit`` (GeoReport v2 "Response
    Volume": the 90-day span or the first 1000 requests). ``ids`` overrides every other filter;
    otherwise requested between ``start`` and ``end`` (inclusive), of ``categories`` (``None``:
    all) and of the GeoReport ``statuses`` (empty: all)."""
    stmt = select(ServiceRequest).order_by(ServiceRequest.created_at.desc(), ServiceRequest.id.desc()).limit(limit)
    if ids is not None:
        return session.scalars(stmt.where(ServiceRequest.id.in_(ids))).all()
    stmt = stmt.where(ServiceRequest.created_at >= start, ServiceRequest.created_at <= end)
    if categories is not None:
        stmt = stmt.where(ServiceRequest.category_id.in_(categories))
    if statuses and statuses != {OPEN, CLOSED}:
        stmt = stmt.where(ServiceRequest.status.in_([s for status in statuses for s in STATUSES_OF[status]]))
    return session.scalars(stmt).all()
