"""Intake use cases: submit a request, accept or reject it, dispatch it, and fall back (兜底)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from civicloop.catalog.models import DeadlineTier
from civicloop.catalog.service import require_category
from civicloop.core.crypto import citizen_key
from civicloop.core.errors import FieldError, RuleViolation
from civicloop.core.settings import Settings
from civicloop.core.validation import first_mobile, mask_phones_in_text
from civicloop.intelligence import duplicates
from civicloop.org.models import Grid, OrgUnit, UnitKind
from civicloop.org.service import (
    GridPlace,
    ancestor_of_kind,
    get_grid,
    grid_place,
    locate_grid_place,
    require_unit,
)
from civicloop.requests.deadlines import response_due
from civicloop.requests.models import (
    Channel,
    RejectReason,
    RequestStatus,
    ServiceRequest,
    Triage,
    TriageOutcome,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.rules import Action
from civicloop.requests.service import SYSTEM, Actor, get_request, move_request, now_or, record


@dataclass(frozen=True)
class NewRequest:
    """What intake needs to file a request. Text fields are already validated by the schema."""

    channel: Channel
    title: str
    description: str
    citizen_name: str = ""
    citizen_phone: str = ""
    citizen_id_number: str = ""
    address: str = ""
    lat: float | None = None
    lon: float | None = None
    grid_id: int | None = None
    category_id: int | None = None
    deadline_tier: DeadlineTier | None = None
    support_count: int = 0
    external_id: str | None = None
    submitted_by_user_id: int | None = None  # the logged-in resident who filed it


def submit(session: Session, *, data: NewRequest, actor: Actor, now: datetime | None = None) -> ServiceRequest:
    """File a new request in status ``submitted`` and return it.

    The grid is the one given, or the one whose polygon holds (lat, lon); street and district
    follow from the grid's community, and the grid's name is the request's place label for the
    duplicate check (``place_key``, as ``requests.triage.locate`` labels it). The deadline tier is the
    one given, else the category's, else 7 working days. Raises ``FieldError`` for an unknown grid or
    category.
    """
    now = now_or(now)
    grid: GridPlace | None = None
    if data.grid_id is not None:  # the cached index, else the table (which raises for an unknown id)
        grid = grid_place(session, data.grid_id) or grid_place_of(get_grid(session, grid_id=data.grid_id))
    elif data.lat is not None and data.lon is not None:
        grid = locate_grid_place(session, lat=data.lat, lon=data.lon)
    category = require_category(session, category_id=data.category_id) if data.category_id is not None else None
    tier = data.deadline_tier or (category.deadline_tier if category else DeadlineTier.DAYS_7)
    # a number the citizen typed into the text becomes their (encrypted) contact; the stored text keeps it masked
    phone = data.citizen_phone or first_mobile(data.description) or first_mobile(data.title)
    request = ServiceRequest(
        channel=data.channel, title=mask_phones_in_text(data.title) or "",
        description=mask_phones_in_text(data.description) or "",
        citizen_name=data.citizen_name, citizen_phone=phone, citizen_id_number=data.citizen_id_number,
        citizen_key=citizen_key(phone) if phone else None, address=data.address,
        lat=data.lat, lon=data.lon, grid_id=grid.id if grid else None,
        street_id=grid.street_id if grid else None, district_id=grid.district_id if grid else None,
        category_id=category.id if category else None, deadline_tier=str(tier),
        support_count=data.support_count, status=RequestStatus.SUBMITTED, external_id=data.external_id,
        submitted_by_user_id=data.submitted_by_user_id, created_at=now, updated_at=now, version=1,
        return_count=0, reopen_count=0, fallback=False, place_key=duplicates.place_key(grid.name) if grid else None,
    )
    session.add(request)
    session.flush()
    record(session, request=request, action=Action.SUBMIT, actor=actor, now=now, to_status=RequestStatus.SUBMITTED,
           data={"channel": str(data.channel)})
    return request


def grid_place_of(grid: Grid) -> GridPlace:
    """Return a grid loaded from the table as :class:`~civicloop.org.service.GridPlace` (its community's
    street and district by :func:`~civicloop.org.service.ancestor_of_kind`)."""
    street = ancestor_of_kind(grid.community, UnitKind.STREET)
    district = ancestor_of_kind(grid.community, UnitKind.DISTRICT)
    return GridPlace(id=grid.id, name=grid.name, community_id=grid.community_id,
                     street_id=street.id if street else None, district_id=district.id if district else None)


def accept(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    category_id: int | None = None,
    deadline_tier: DeadlineTier | None = None,
    note: str = "",
    now: datetime | None = None,
) -> ServiceRequest:
    """Accept (受理) a submitted request, optionally setting its category and deadline tier.

    Raises ``NotFound``, ``FieldError`` (unknown category), ``IllegalTransition`` or ``Forbidden``.
    """
    now = now_or(now)
    request = get_request(session, request_id=request_id)
    values: dict[str, object] = {}
    if category_id is not None:
        category = require_category(session, category_id=category_id)
        values["category_id"] = category.id
        values["deadline_tier"] = str(deadline_tier or category.deadline_tier)
    elif deadline_tier is not None:
        values["deadline_tier"] = str(deadline_tier)
    old, new = move_request(session, request, Action.ACCEPT, actor=actor, values=values, now=now)
    record(session, request=request, action=Action.ACCEPT, actor=actor, now=now, from_status=old, to_status=new,
           reason=note, data=dict(values))
    return request


def reject(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    reason: RejectReason,
    duplicate_of_id: int | None = None,
    note: str = "",
    now: datetime | None = None,
    in_queue: bool = True,
) -> ServiceRequest:
    """Reject (不予受理) a submitted request with a ``reason``.

    A duplicate (重复件) must name the request it repeats (``duplicate_of_id``); that request's
    support count goes up by one, so the repeat still counts as a voice. Raises ``FieldError``
    when the original is missing or is the request itself. ``in_queue=False``: the caller knows the
    request is in no dispatcher's queue (intake itself), so :func:`leave_queue` is not asked.
    """
    now = now_or(now)
    request = get_request(session, request_id=request_id)
    values: dict[str, object] = {"reject_reason": str(reason), "closed_at": now}
    if reason == RejectReason.DUPLICATE:
        if duplicate_of_id is None:
            raise FieldError("duplicate_of_id", "v.duplicate_of_required")
        if duplicate_of_id == request.id:
            raise FieldError("duplicate_of_id", "duplicate_of_self")
        # the master's support count goes up first: no row counted means no such request (one statement;
        # loading the master with its work orders to check it was a tenth of a replay of duplicates)
        counted = session.execute(
            update(ServiceRequest)
            .where(ServiceRequest.id == duplicate_of_id)
            .values(support_count=ServiceRequest.support_count + 1)
            .execution_options(synchronize_session=False)
        )
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            raise FieldError("duplicate_of_id", "not_found", what="ServiceRequest", id=duplicate_of_id)
        values["duplicate_of_id"] = duplicate_of_id
    old, new = move_request(session, request, Action.REJECT, actor=actor, values=values, now=now)
    record(session, request=request, action=Action.REJECT, actor=actor, now=now, from_status=old, to_status=new,
           reason=note, data={"reject_reason": str(reason), "duplicate_of_id": duplicate_of_id})
    if in_queue:
        leave_queue(session, request=request, now=now)
    return request


def new_order(
    session: Session,
    *,
    request: ServiceRequest,
    unit: OrgUnit,
    role: WorkOrderRole,
    round_: int,
    settings: Settings,
    now: datetime,
    fallback: bool = False,
) -> WorkOrder:
    """Create a pending work order for ``unit`` with its response deadline, and return it."""
    order = WorkOrder(
        request_id=request.id, unit_id=unit.id, role=role, round=round_, status=WorkOrderStatus.PENDING,
        fallback=fallback, deadline_tier=request.deadline_tier, dispatched_at=now,
        response_due_at=response_due(request.deadline_tier, now, settings), due_provisional=False,
        overdue=False, version=1,
    )
    request.work_orders.append(order)
    session.flush()
    return order


def next_round(request: ServiceRequest) -> int:
    """Return the round number of the request's next lead order (1 for the first dispatch)."""
    return 1 + sum(1 for o in request.work_orders if o.role == WorkOrderRole.LEAD)


def dispatch(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    lead_unit_id: int,
    assisting_unit_ids: Sequence[int] = (),
    settings: Settings,
    note: str = "",
    now: datetime | None = None,
    in_queue: bool = True,
) -> ServiceRequest:
    """Dispatch (派单) an accepted request to a lead unit and optional assisting units.

    Creates one pending work order per unit, each with its response deadline. Raises
    ``FieldError`` for an unknown unit or an assisting unit that is also the lead. ``in_queue=False``:
    the request is in no dispatcher's queue (intake's own dispatch), :func:`leave_queue` is skipped.
    """
    now = now_or(now)
    request = get_request(session, request_id=request_id)
    lead = require_unit(session, unit_id=lead_unit_id, field="lead_unit_id")
    assisting: list[OrgUnit] = []
    seen: set[int] = set()
    for index, unit_id in enumerate(assisting_unit_ids):  # index in the input list, for the field path
        if unit_id == lead_unit_id:
            raise FieldError(("assisting_unit_ids", str(index)), "v.assisting_is_lead")
        if unit_id in seen:  # a unit named twice gets one order
            continue
        seen.add(unit_id)
        assisting.append(require_unit(session, unit_id=unit_id, field=("assisting_unit_ids", str(index))))
    round_ = next_round(request)
    old, new = move_request(session, request, Action.DISPATCH, actor=actor, values={"lead_unit_id": lead.id}, now=now)
    order = new_order(session, request=request, unit=lead, role=WorkOrderRole.LEAD, round_=round_,
                      settings=settings, now=now)
    for unit in assisting:
        new_order(session, request=request, unit=unit, role=WorkOrderRole.ASSISTING, round_=round_,
                  settings=settings, now=now)
    record(session, request=request, action=Action.DISPATCH, actor=actor, now=now, from_status=old, to_status=new,
           order=order, reason=note, data={"lead_unit_id": lead.id, "assisting_unit_ids": [u.id for u in assisting]})
    if in_queue:
        leave_queue(session, request=request, now=now)
    return request


def leave_queue(session: Session, *, request: ServiceRequest, now: datetime) -> None:
    """Take a request out of the dispatcher's queue (智能分拨) when a person handled it through the
    plain endpoints (rejected it, or dispatched it): its triage record says ``withdrawn`` and, for a
    dispatch, keeps the latency from filing. No-op for a request that is not queued."""
    triage = session.scalar(select(Triage).where(Triage.request_id == request.id, Triage.queued.is_(True)))
    if triage is None:
        return
    triage.queued, triage.outcome = False, TriageOutcome.WITHDRAWN
    if request.status == RequestStatus.DISPATCHED:
        triage.routed_at = now
        triage.latency_seconds = max(0.0, (now - request.created_at).total_seconds())
    session.flush()


def fallback_district(session: Session, *, request: ServiceRequest, last_unit: OrgUnit | None) -> OrgUnit:
    """Return the district that owns a request nobody accepts: the request's own district, else
    the district above the last unit that returned it, else the first district. Raises
    ``RuleViolation`` when there is no district at all."""
    if request.district_id is not None:
        unit = session.get(OrgUnit, request.district_id)
        if unit is not None:
            return unit
    unit = ancestor_of_kind(last_unit, UnitKind.DISTRICT)
    if unit is not None:
        return unit
    unit = session.scalars(select(OrgUnit).where(OrgUnit.kind == UnitKind.DISTRICT).order_by(OrgUnit.id)).first()
    if unit is None:
        raise RuleViolation("no_district")
    return unit


def fall_back(
    session: Session, *, request: ServiceRequest, last_unit: OrgUnit | None, settings: Settings, now: datetime,
    actor: Actor = SYSTEM,
) -> WorkOrder:
    """Dispatch an accepted request to its district as a fallback order (兜底) and return it: by the
    system after too many returns, or by a dispatcher (``actor``) who sends it there by hand."""
    district = fallback_district(session, request=request, last_unit=last_unit)
    round_ = next_round(request)
    old, new = move_request(session, request, Action.FALLBACK, actor=actor,
                            values={"lead_unit_id": district.id, "fallback": True}, now=now)
    order = new_order(session, request=request, unit=district, role=WorkOrderRole.LEAD, round_=round_,
                      settings=settings, now=now, fallback=True)
    record(session, request=request, action=Action.FALLBACK, actor=actor, now=now, from_status=old, to_status=new,
           order=order, reason=f"returned {request.return_count} times", data={"unit_id": district.id})
    return order
