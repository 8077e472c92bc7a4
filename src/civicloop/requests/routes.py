"""HTTP routes of the closed loop under ``/api/v1``: requests, work orders, supervision, calendar.

Every transition is a ``POST`` on the record's action; an illegal one answers 409, a role that
may not fire it 403, a record that does not exist (or is outside the caller's scope) 404.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response
from sqlalchemy import select

from civicloop.core.calendar_service import DayEntry, enter_year, known_years
from civicloop.core.errors import NotFound
from civicloop.core.http import CurrentCaller, DbSession, Lang, SettingsDep
from civicloop.core.roles import Role
from civicloop.core.timeutil import utcnow
from civicloop.core.validation import MAX_ID
from civicloop.requests import closing, handling, idempotency, intake, triage
from civicloop.requests.jobs import provisional_orders, refresh_deadlines
from civicloop.requests.models import (
    RequestStatus,
    ServiceRequest,
    Supervision,
    WorkOrder,
    WorkOrderStatus,
)
from civicloop.requests.schemas import (
    AcceptIn,
    CalendarYearIn,
    CallbackIn,
    CloseSupervisionIn,
    DispatchIn,
    EventOut,
    ExtensionDecisionIn,
    ExtensionIn,
    IntakeOut,
    RejectIn,
    ReopenIn,
    ReplyIn,
    RequestCreate,
    RequestOut,
    ReturnIn,
    SuperviseIn,
    SupervisionOut,
    TriageOut,
    WorkOrderOut,
)
from civicloop.requests.service import Actor, get_request, get_work_order, history

router = APIRouter(prefix="/api/v1", tags=["closed loop (接诉即办)"])

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def actor(caller: CurrentCaller) -> Actor:  # type: ignore[valid-type]
    return Actor(caller.name, caller.role, caller.unit_id)


@router.post("/requests", status_code=201, response_model=IntakeOut, summary="提交诉求 Submit a request")
def create_request(
    body: RequestCreate, session: DbSession, caller: CurrentCaller, settings: SettingsDep, lang: Lang,
    response: Response, idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> IntakeOut:
    """File a citizen's request and, when ``triage_on_intake`` is on (the default), run intelligent
    intake on it (``requests.triage``): locate it, link it to an open request it repeats, classify
    and route it, and dispatch it without a person when the model is sure and a routing rule
    applies; otherwise it stays ``submitted`` in the dispatcher's queue with three suggestions.
    Returns the stored request (201) with the contact masked and ``triage`` (what intake did, null
    when off). 422 with field messages for bad input; nothing is stored then.

    With an ``Idempotency-Key`` header (``requests.idempotency``, after the IETF draft): a retry
    with the same key and body answers 201 with the request first filed and the header
    ``Idempotent-Replayed: true``; the same key with another body, or a malformed key, is 422."""
    started = time.perf_counter()
    key = idempotency.parse_key(idempotency_key)
    claim = None
    if key is not None:
        claim = idempotency.claim(session, key=key, body_hash=idempotency.fingerprint(body.model_dump(mode="json")),
                                  now=utcnow())
        if claim.replay_request_id is not None:
            response.headers["Idempotent-Replayed"] = "true"
            request = get_request(session, request_id=claim.replay_request_id)
            found = triage.get_triage(session, request_id=request.id)
            return IntakeOut(**RequestOut.of(request).model_dump(), triage=TriageOut.of(found, lang) if found else None)
    data = intake.NewRequest(**body.model_dump())
    request = intake.submit(session, data=data, actor=actor(caller))
    if claim is not None:
        idempotency.bind(session, claim=claim, request_id=request.id)
    record = triage.triage(session, request=request, settings=settings, started=started) \
        if settings.triage_on_intake else None
    return IntakeOut(**RequestOut.of(request).model_dump(), triage=TriageOut.of(record, lang) if record else None)


@router.get("/requests", response_model=list[RequestOut], summary="诉求列表 List requests")
def list_requests(
    session: DbSession,
    status: RequestStatus | None = None,
    lead_unit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[RequestOut]:
    """Return requests, newest first, optionally by ``status`` and lead unit (paged)."""
    query = select(ServiceRequest).order_by(ServiceRequest.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(ServiceRequest.status == status)
    if lead_unit_id is not None:
        query = query.where(ServiceRequest.lead_unit_id == lead_unit_id)
    return [RequestOut.of(r) for r in session.scalars(query)]


@router.get("/requests/{request_id}", response_model=RequestOut, summary="诉求详情 One request")
def read_request(request_id: PathId, session: DbSession) -> RequestOut:
    """Return one request with its work orders; 404 if it does not exist."""
    return RequestOut.of(get_request(session, request_id=request_id))


@router.get("/requests/{request_id}/events", response_model=list[EventOut], summary="流转记录 History")
def request_history(request_id: PathId, session: DbSession) -> list[EventOut]:
    """Return the request's full history, oldest first: who did what, when, from and to, why."""
    get_request(session, request_id=request_id)
    return [EventOut.of(e) for e in history(session, request_id=request_id)]


@router.post("/requests/{request_id}/accept", response_model=RequestOut, summary="受理 Accept")
def accept_request(request_id: PathId, body: AcceptIn, session: DbSession, caller: CurrentCaller) -> RequestOut:
    """Accept a submitted request, optionally classifying it (category, deadline tier)."""
    return RequestOut.of(intake.accept(session, request_id=request_id, actor=actor(caller), **body.model_dump()))


@router.post("/requests/{request_id}/reject", response_model=RequestOut, summary="不予受理 Reject")
def reject_request(request_id: PathId, body: RejectIn, session: DbSession, caller: CurrentCaller) -> RequestOut:
    """Reject a submitted request with a reason (duplicate needs ``duplicate_of_id``)."""
    return RequestOut.of(intake.reject(session, request_id=request_id, actor=actor(caller), **body.model_dump()))


@router.post("/requests/{request_id}/dispatch", response_model=RequestOut, summary="派单 Dispatch")
def dispatch_request(
    request_id: PathId, body: DispatchIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> RequestOut:
    """Dispatch an accepted request to a lead unit and optional assisting units."""
    return RequestOut.of(intake.dispatch(session, request_id=request_id, actor=actor(caller), settings=settings,
                                         **body.model_dump()))


@router.post("/requests/{request_id}/callback", response_model=RequestOut, summary="回访 Callback")
def callback_request(
    request_id: PathId, body: CallbackIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> RequestOut:
    """Record the citizen's answer; the request closes or is reopened to its unit."""
    return RequestOut.of(closing.callback(session, request_id=request_id, actor=actor(caller), settings=settings,
                                          **body.model_dump()))


@router.post("/requests/{request_id}/reopen", response_model=RequestOut, summary="重办 Reopen")
def reopen_request(
    request_id: PathId, body: ReopenIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> RequestOut:
    """Reopen a replied or closed request to its last lead unit (supervisor)."""
    return RequestOut.of(closing.reopen(session, request_id=request_id, actor=actor(caller), settings=settings,
                                        reason=body.reason))


@router.post("/requests/{request_id}/supervise", response_model=SupervisionOut, status_code=201,
             summary="督办 Supervise")
def supervise_request(
    request_id: PathId, body: SuperviseIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> SupervisionOut:
    """Open a supervision case with a note; ``redo`` orders the unit to redo a replied case."""
    return SupervisionOut.of(closing.supervise(session, request_id=request_id, actor=actor(caller),
                                               settings=settings, note=body.note, redo=body.redo))


@router.get("/work-orders", response_model=list[WorkOrderOut], summary="工单列表 List work orders")
def list_work_orders(
    session: DbSession,
    caller: CurrentCaller,
    unit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: WorkOrderStatus | None = None,
    overdue: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[WorkOrderOut]:
    """Return work orders by deadline (soonest first); a handler sees only its own unit's."""
    query = select(WorkOrder).order_by(WorkOrder.due_at.is_(None), WorkOrder.due_at, WorkOrder.id)
    if caller.role == Role.HANDLER and caller.unit_id is not None:
        unit_id = caller.unit_id
    if unit_id is not None:
        query = query.where(WorkOrder.unit_id == unit_id)
    if status is not None:
        query = query.where(WorkOrder.status == status)
    if overdue is not None:
        query = query.where(WorkOrder.overdue.is_(overdue))
    return [WorkOrderOut.of(o) for o in session.scalars(query.limit(limit).offset(offset))]


@router.get("/work-orders/{work_order_id}", response_model=WorkOrderOut, summary="工单详情 One work order")
def read_work_order(work_order_id: PathId, session: DbSession, caller: CurrentCaller) -> WorkOrderOut:
    """Return one work order; 404 if missing or another unit's (for a handler)."""
    order = get_work_order(session, work_order_id=work_order_id)
    if caller.role == Role.HANDLER and caller.unit_id not in (None, order.unit_id):
        raise NotFound("WorkOrder", work_order_id)
    return WorkOrderOut.of(order)


@router.post("/work-orders/{work_order_id}/acknowledge", response_model=WorkOrderOut, summary="签收 Acknowledge")
def acknowledge_order(
    work_order_id: PathId, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> WorkOrderOut:
    """Acknowledge a pending order; its resolution deadline starts now. 409 if already taken."""
    return WorkOrderOut.of(handling.acknowledge(session, work_order_id=work_order_id, actor=actor(caller),
                                                settings=settings))


@router.post("/work-orders/{work_order_id}/return", response_model=WorkOrderOut, summary="退单 Return")
def return_order(
    work_order_id: PathId, body: ReturnIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> WorkOrderOut:
    """Return a pending order with a reason; after N returns the district takes it (兜底)."""
    return WorkOrderOut.of(handling.return_order(session, work_order_id=work_order_id, actor=actor(caller),
                                                 reason=body.reason, settings=settings))


@router.post("/work-orders/{work_order_id}/extension", response_model=WorkOrderOut, summary="申请延期 Ask extension")
def ask_extension(
    work_order_id: PathId, body: ExtensionIn, session: DbSession, caller: CurrentCaller, settings: SettingsDep
) -> WorkOrderOut:
    """Ask for a later deadline (``until`` or ``extra_working_days``) with a reason."""
    return WorkOrderOut.of(handling.request_extension(session, work_order_id=work_order_id, actor=actor(caller),
                                                      settings=settings, **body.model_dump()))


@router.post("/work-orders/{work_order_id}/extension/decision", response_model=WorkOrderOut,
             summary="审批延期 Decide extension")
def decide_extension(
    work_order_id: PathId, body: ExtensionDecisionIn, session: DbSession, caller: CurrentCaller
) -> WorkOrderOut:
    """Approve (optionally with another date) or refuse (with a reason) a pending extension."""
    return WorkOrderOut.of(handling.decide_extension(session, work_order_id=work_order_id, actor=actor(caller),
                                                     **body.model_dump()))


@router.post("/work-orders/{work_order_id}/reply", response_model=WorkOrderOut, summary="办结答复 Reply")
def reply_order(work_order_id: PathId, body: ReplyIn, session: DbSession, caller: CurrentCaller) -> WorkOrderOut:
    """Reply: what the unit did, in words the citizen reads. The request awaits callback."""
    return WorkOrderOut.of(handling.reply(session, work_order_id=work_order_id, actor=actor(caller), text=body.text))


@router.get("/supervisions", response_model=list[SupervisionOut], summary="督办件 Supervision cases")
def list_supervisions(
    session: DbSession, open: bool | None = True, limit: Limit = 100, offset: Offset = 0
) -> list[SupervisionOut]:
    """Return supervision cases, newest first (open ones by default; ``open=`` for all)."""
    query = select(Supervision).order_by(Supervision.id.desc()).limit(limit).offset(offset)
    if open is not None:
        query = query.where(Supervision.open.is_(open))
    return [SupervisionOut.of(c) for c in session.scalars(query)]


@router.post("/supervisions/{supervision_id}/close", response_model=SupervisionOut, summary="办结督办 Close case")
def close_supervision(
    supervision_id: PathId, body: CloseSupervisionIn, session: DbSession, caller: CurrentCaller
) -> SupervisionOut:
    """Close a supervision case with a note (supervisor)."""
    return SupervisionOut.of(closing.close_supervision(session, supervision_id=supervision_id, actor=actor(caller),
                                                       note=body.note))


@router.get("/calendar", summary="工作日历 Calendar status")
def calendar_status(session: DbSession) -> dict[str, object]:
    """Return the years with an official schedule and the open orders whose deadline is
    provisional (they reach a year nobody has entered: a warning for supervisors)."""
    orders = provisional_orders(session)
    return {**known_years(session), "provisional_open_orders": [o.id for o in orders]}


@router.put("/calendar/years/{year}", summary="录入年度节假日 Enter a year's schedule")
def put_calendar_year(
    year: Annotated[int, Path(ge=2000, le=2100)], body: CalendarYearIn, session: DbSession, caller: CurrentCaller,
    settings: SettingsDep,
) -> dict[str, object]:
    """Enter (or replace) ``year``'s official holidays and adjusted working days (admin), then
    recompute provisional deadlines. Returns the ids of the orders recomputed."""
    caller.require(Role.ADMIN, "enter_calendar")
    days = [DayEntry(day=d.date, working=d.working, name=d.name) for d in body.days]
    enter_year(session, year=year, days=days, source=body.source, actor=caller.name)
    return {"year": year, "days": len(days), "recomputed_orders": refresh_deadlines(session, settings=settings)}
