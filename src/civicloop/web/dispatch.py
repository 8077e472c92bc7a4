"""The dispatcher's page (派单): the queue of requests intake could not route alone, with its top
suggestions and why; one click dispatches with a suggestion (``triage.decide``, the choice kept as
training data); accepted and returned requests to (re-)dispatch; the fallback to the district (兜底).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from sqlalchemy import select

from civicloop.catalog import routing
from civicloop.core.errors import FieldError
from civicloop.core.validation import MAX_ID
from civicloop.org.models import OrgUnit
from civicloop.requests import intake, scope, triage
from civicloop.requests.closing import check_role
from civicloop.requests.models import RequestStatus, ServiceRequest, Triage, WorkOrderRole, WorkOrderStatus
from civicloop.requests.rules import Action
from civicloop.requests.schemas import DecideIn, DispatchIn
from civicloop.web.common import (
    DISPATCH_ROLES,
    Page,
    category_options,
    int_or_none,
    local,
    masked,
    page,
    pick_category,
    pick_unit,
    unit_names,
    unit_options,
    validated,
)

router = APIRouter()

Dispatcher = Annotated[Page, page(DISPATCH_ROLES, "open_dispatch")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QUEUE_SHOWN = 30


def _item(p: Page, request: ServiceRequest, record: Triage | None) -> dict[str, Any]:
    place = (record.place if record else None) or {}
    return {
        "id": request.id, "title": masked(request.title), "description": masked(request.description)[:300],
        "address": masked(request.address), "created": local(request.created_at, p.settings),
        "status": request.status, "channel": request.channel, "place": place.get("label") or "",
        "reasons": [p.t(f"triage.{code}") for code in (record.reasons if record else [])],
        "suggestions": [s for s in (record.suggestions if record else []) if s.get("probability") is not None],
        "returns": request.return_count,
    }


def _queue(p: Page) -> list[dict[str, Any]]:
    records = triage.queue(p.session, limit=QUEUE_SHOWN)
    ids = [r.request_id for r in records]
    visible = {r.id: r for r in p.session.scalars(select(ServiceRequest).where(
        ServiceRequest.id.in_(ids), scope.request_condition(p.session, p.user)))} if ids else {}
    return [_item(p, visible[r.request_id], r) for r in records if r.request_id in visible]


def _awaiting(p: Page) -> list[dict[str, Any]]:
    """Accepted requests waiting for a unit (returned ones first), outside the queue."""
    queued = select(Triage.request_id).where(Triage.queued.is_(True))
    rows = p.session.scalars(select(ServiceRequest).where(
        ServiceRequest.status == RequestStatus.ACCEPTED, ServiceRequest.id.not_in(queued),
        scope.request_condition(p.session, p.user))
        .order_by(ServiceRequest.return_count.desc(), ServiceRequest.id).limit(QUEUE_SHOWN)).all()
    items = []
    for request in rows:
        item = _item(p, request, None)
        returned = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD
                    and o.status == WorkOrderStatus.RETURNED]
        last = returned[-1] if returned else None
        item["returned_by"] = last.unit_id if last else None
        item["return_reason"] = masked(last.return_reason) if last else ""
        items.append(item)
    names = unit_names(p.session, [i["returned_by"] for i in items])
    for item in items:
        item["returned_by_name"] = names.get(item["returned_by"], "")
    return items


def _unit(p: Page) -> int | None:
    """The lead unit a form names: the suggestion's id (``lead_unit_id``) or the one typed or picked
    from the page's list (``lead_unit``)."""
    return int_or_none(p.field("lead_unit_id"), "lead_unit_id", p.lang) \
        or pick_unit(p.session, p.field("lead_unit"), "lead_unit", p.lang)


def _category(p: Page) -> int | None:
    """The category a form names: the suggestion's id (``category_id``) or the path picked (``category``)."""
    return int_or_none(p.field("category_id"), "category_id", p.lang) \
        or pick_category(p.session, p.field("category"), "category", p.lang)


@router.get("/dispatch")
def dispatch_page(p: Dispatcher) -> Response:
    """The queue (most urgent first, as ``GET /api/v1/dispatch-queue``) with each request's
    suggestions and reasons, and the accepted or returned requests awaiting a unit. Dispatchers and
    admins (403 others)."""
    return p.render("dispatch.html", queue=_queue(p), awaiting=_awaiting(p),
                    categories=category_options(p.session), units=unit_options(p.session))


@router.post("/dispatch/{request_id}/decide")
def decide(request_id: PathId, p: Dispatcher) -> Response:
    """Dispatch a queued request with the category and/or lead unit chosen (a suggestion's, or the
    dispatcher's own: with a category only, the routing table picks the unit). 404 outside the scope;
    422 when neither is given or no rule routes the category; 409 when the request moved on."""
    request = scope.visible_request(p.session, p.user, request_id)
    body = validated(DecideIn, p.lang, category_id=_category(p), lead_unit_id=_unit(p), note=p.field("note"))
    record = triage.get_triage(p.session, request_id=request_id)
    if record is not None and record.queued and request.status == RequestStatus.SUBMITTED:
        triage.decide(p.session, request_id=request_id, actor=p.actor, settings=p.settings, **body.model_dump())
    else:  # filed with intake off, or accepted by an operator while it waited: accept if needed, dispatch
        _accept_and_dispatch(p, request, body)
    return p.redirect("/dispatch", "dispatched")


def _accept_and_dispatch(p: Page, request: ServiceRequest, body: DecideIn) -> None:
    """Accept a submitted request (with the category chosen) and dispatch it to the lead unit chosen,
    else to the unit the routing table gives for the category at its place."""
    if request.status == RequestStatus.SUBMITTED:
        intake.accept(p.session, request_id=request.id, actor=p.actor, category_id=body.category_id, note=body.note)
    lead = body.lead_unit_id
    if lead is None and body.category_id is not None:
        found = routing.route(p.session, category_id=body.category_id, place=triage.route_place(p.session, request))
        lead = found.lead_unit_id if found else None
    if lead is None:
        raise FieldError("lead_unit_id", "v.category_or_unit_required" if body.category_id is None else "v.no_route")
    intake.dispatch(p.session, request_id=request.id, actor=p.actor, lead_unit_id=lead, settings=p.settings,
                    note=body.note)


@router.post("/dispatch/{request_id}/dispatch")
def dispatch(request_id: PathId, p: Dispatcher) -> Response:
    """(Re-)dispatch an accepted request (returned by its unit) to the lead unit chosen; 404 outside the
    scope, 422 for an unknown unit, 409 when it is not accepted."""
    scope.visible_request(p.session, p.user, request_id)
    body = validated(DispatchIn, p.lang, lead_unit_id=_unit(p), note=p.field("note"))
    intake.dispatch(p.session, request_id=request_id, actor=p.actor, settings=p.settings, **body.model_dump())
    return p.redirect("/dispatch", "dispatched")


@router.post("/dispatch/{request_id}/fallback")
def fallback(request_id: PathId, p: Dispatcher) -> Response:
    """Fall back (兜底): dispatch an accepted request nobody took to its district as a fallback order,
    which cannot be returned (北京市接诉即办工作条例: the district owns what no unit accepts). 409 when
    it is not accepted; 404 outside the scope."""
    request = scope.visible_request(p.session, p.user, request_id)
    check_role(Action.FALLBACK, p.actor)
    last = next((o for o in reversed(request.work_orders) if o.role == WorkOrderRole.LEAD), None)
    intake.fall_back(p.session, request=request, last_unit=p.session.get(OrgUnit, last.unit_id) if last else None,
                     settings=p.settings, now=p.now, actor=p.actor)
    return p.redirect("/dispatch", "fallback")
