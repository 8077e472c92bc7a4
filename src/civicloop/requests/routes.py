"""HTTP routes of the closed loop under ``/api/v1``: requests, work orders, supervision, calendar.

Every transition is a ``POST`` on the record's action; an illegal one answers 409, a role that
may not fire it 403, a record that does not exist (or is outside the caller's scope) 404.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Response
from sqlalchemy import select

from civicloop.core.calendar_service import DayEntry, enter_year, known_years
from civicloop.core.http import Caller, CurrentCaller, DbSession, Lang, LoggedIn, SettingsDep, allow
from civicloop.core.ratelimit import RATE_LIMITED_RESPONSES, rate_limited
from civicloop.core.roles import STAFF, Role
from civicloop.core.timeutil import utcnow
from civicloop.core.validation import MAX_ID
from civicloop.requests import closing, handling, idempotency, intake, privacy, scope, triage, triage_queue
from civicloop.requests.jobs import provisional_orders, refresh_deadlines
from civicloop.requests.models import (
    Channel,
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
    CloseUnratedIn,
    ContactIn,
    ContactOut,
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
from civicloop.requests.service import Actor, get_request, history

router = APIRouter(prefix="/api/v1", tags=["closed loop (接诉即办)"])

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def actor(caller: CurrentCaller) -> Actor:  # type: ignore[valid-type]
    return Actor(caller.name, caller.role, caller.unit_id)


def in_scope(session: DbSession, caller: CurrentCaller, request_id: int) -> None:  # type: ignore[valid-type]
    """401 for the anonymous public, 404 for a request the caller may not see (``requests.scope``)."""
    caller.require_login()
    scope.visible_request(session, caller, request_id)


def order_in_scope(session: DbSession, caller: CurrentCaller, work_order_id: int) -> None:  # type: ignore[valid-type]
    """401 for the anonymous public, 404 for a work order the caller may not see."""
    caller.require_login()
    scope.visible_work_order(session, caller, work_order_id)


SUPERVISION_READERS = (Role.SUPERVISOR, Role.ANALYST, Role.ADMIN, Role.DISPATCHER, Role.OPERATOR, Role.HANDLER)

# who may file what: the public and residents file through the web or the app, never as the hotline
PUBLIC_CHANNELS = (Channel.WEB, Channel.APP)


@router.post("/requests", status_code=201, response_model=IntakeOut, summary="提交诉求 Submit a request",
             dependencies=[Depends(triage_queue.admitted), Depends(rate_limited("intake"))],
             responses=RATE_LIMITED_RESPONSES)
def create_request(
    body: RequestCreate, session: DbSession, caller: CurrentCaller, settings: SettingsDep, lang: Lang,
    response: Response, idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> IntakeOut:
    """File a citizen's request and, when ``triage_on_intake`` is on (the default), run intelligent
    intake on it (``requests.triage``): locate it, link it to an open request it repeats, classify
    and route it, and dispatch it without a person when the model is sure and a routing rule
    applies; otherwise it stays ``submitted`` in the dispatcher's queue with three suggestions.
    Returns the stored request (201) with the contact masked and ``triage`` (what intake did, null
    when off). With ``triage_mode = "deferred"`` intake runs right after the answer
    (``requests.triage_queue``): ``triage`` is null and ``triage_pending`` true; the request is
    stored and queued when the 201 arrives; while the queue is full (``triage_backlog_limit``) the
    filing waits for room first. 422 with field messages for bad input; nothing is stored then.

    With an ``Idempotency-Key`` header (``requests.idempotency``, after the IETF draft): a retry
    with the same key and body answers 201 with the request first filed and the header
    ``Idempotent-Replayed: true``; the same key with another body, or a malformed key, is 422.

    Anyone may file, logged in or not (the public web form). A resident or the anonymous public
    files through ``web`` (or ``app``), without a category, deadline tier or support count of
    their own; a logged-in resident then follows the request under their account."""
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
            return IntakeOut(**RequestOut.of(request).model_dump(), triage=TriageOut.of(found, lang) if found else None,
                             triage_pending=triage_queue.is_pending(session, request_id=request.id))
    fields = body.model_dump()
    if caller.role == Role.RESIDENT:  # the public and residents: no hotline channel, no urgency of their own
        fields.update(channel=body.channel if body.channel in PUBLIC_CHANNELS else Channel.WEB,
                      deadline_tier=None, support_count=0, category_id=None)
    data = intake.NewRequest(**fields, submitted_by_user_id=caller.user_id)
    request = intake.submit(session, data=data, actor=actor(caller))
    if claim is not None:
        idempotency.bind(session, claim=claim, request_id=request.id)
    record = triage_queue.on_filing(session, request=request, settings=settings, started=started)
    return IntakeOut(**RequestOut.of(request).model_dump(), triage=TriageOut.of(record, lang) if record else None,
                     triage_pending=record is None and settings.triage_on_intake
                     and settings.triage_mode == "deferred")


@router.get("/requests", response_model=list[RequestOut], summary="诉求列表 List requests")
def list_requests(
    session: DbSession,
    caller: LoggedIn,
    status: RequestStatus | None = None,
    lead_unit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[RequestOut]:
    """Return the requests the caller may see (``requests.scope``), newest first, optionally by
    ``status`` and lead unit (paged). 401 for the anonymous public."""
    query = select(ServiceRequest).where(scope.request_condition(session, caller)) \
        .order_by(ServiceRequest.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(ServiceRequest.status == status)
    if lead_unit_id is not None:
        query = query.where(ServiceRequest.lead_unit_id == lead_unit_id)
    return [RequestOut.of(r) for r in session.scalars(query)]


@router.get("/requests/{request_id}", response_model=RequestOut, summary="诉求详情 One request")
def read_request(request_id: PathId, session: DbSession, caller: LoggedIn) -> RequestOut:
    """Return one request with its work orders; 404 if it does not exist or is outside the
    caller's scope, 401 for the anonymous public."""
    return RequestOut.of(scope.visible_request(session, caller, request_id))


@router.get("/requests/{request_id}/events", response_model=list[EventOut], summary="流转记录 History")
def request_history(request_id: PathId, session: DbSession, caller: LoggedIn) -> list[EventOut]:
    """Return the request's full history, oldest first: who did what, when, from and to, why
    (404 outside the caller's scope, 401 for the anonymous public)."""
    in_scope(session, caller, request_id)
    return [EventOut.of(e) for e in history(session, request_id=request_id)]


@router.post("/requests/{request_id}/contact", response_model=ContactOut, summary="查看联系方式 Reveal contact")
def reveal_contact(request_id: PathId, body: ContactIn, session: DbSession, caller: LoggedIn) -> ContactOut:
    """Return the citizen's full name, phone and identity number of a request in the caller's
    scope, for ``purpose`` (e.g. 回访), and record the reveal in the audit log (who, which request,
    why; never the data). Operators, dispatchers, the handling unit, supervisors and admins (403
    others; 404 outside the scope). Everywhere else the contact is masked (PIPL §§ 5–6, 51)."""
    in_scope(session, caller, request_id)
    found = privacy.reveal(session, request_id=request_id, actor=actor(caller), now=utcnow(), purpose=body.purpose)
    return ContactOut(request_id=request_id, **found.__dict__)


@router.post("/requests/{request_id}/accept", response_model=RequestOut, summary="受理 Accept")
def accept_request(request_id: PathId, body: AcceptIn, session: DbSession, caller: LoggedIn) -> RequestOut:
    """Accept a submitted request, optionally classifying it (category, deadline tier)."""
    in_scope(session, caller, request_id)
    return RequestOut.of(intake.accept(session, request_id=request_id, actor=actor(caller), **body.model_dump()))


@router.post("/requests/{request_id}/reject", response_model=RequestOut, summary="不予受理 Reject")
def reject_request(request_id: PathId, body: RejectIn, session: DbSession, caller: LoggedIn) -> RequestOut:
    """Reject a submitted request with a reason (duplicate needs ``duplicate_of_id``)."""
    in_scope(session, caller, request_id)
    return RequestOut.of(intake.reject(session, request_id=request_id, actor=actor(caller), **body.model_dump()))


@router.post("/requests/{request_id}/dispatch", response_model=RequestOut, summary="派单 Dispatch")
def dispatch_request(
    request_id: PathId, body: DispatchIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> RequestOut:
    """Dispatch an accepted request to a lead unit and optional assisting units."""
    in_scope(session, caller, request_id)
    return RequestOut.of(intake.dispatch(session, request_id=request_id, actor=actor(caller), settings=settings,
                                         **body.model_dump()))


@router.post("/requests/{request_id}/callback", response_model=RequestOut, summary="回访 Callback")
def callback_request(
    request_id: PathId, body: CallbackIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> RequestOut:
    """Record the citizen's answer; the request closes or is reopened to its unit."""
    in_scope(session, caller, request_id)
    return RequestOut.of(closing.callback(session, request_id=request_id, actor=actor(caller), settings=settings,
                                          **body.model_dump()))


@router.post("/requests/{request_id}/close-unrated", response_model=RequestOut,
             summary="结案（未回访）Close without callback")
def close_unrated_request(request_id: PathId, body: CloseUnratedIn, session: DbSession, caller: LoggedIn) -> RequestOut:
    """Close a replied request without a rating, with the reason (e.g. the citizen could not be
    reached after three attempts). Operator, supervisor or admin; 409 unless the request is
    ``replied``. It then counts in the response rate only, not in the resolution or satisfaction
    rates (``closing.close_unrated``)."""
    in_scope(session, caller, request_id)
    return RequestOut.of(closing.close_unrated(session, request_id=request_id, actor=actor(caller),
                                               reason=body.reason))


@router.post("/requests/{request_id}/reopen", response_model=RequestOut, summary="重办 Reopen")
def reopen_request(
    request_id: PathId, body: ReopenIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> RequestOut:
    """Reopen a replied or closed request to its last lead unit (supervisor)."""
    in_scope(session, caller, request_id)
    return RequestOut.of(closing.reopen(session, request_id=request_id, actor=actor(caller), settings=settings,
                                        reason=body.reason))


@router.post("/requests/{request_id}/supervise", response_model=SupervisionOut, status_code=201,
             summary="督办 Supervise")
def supervise_request(
    request_id: PathId, body: SuperviseIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> SupervisionOut:
    """Open a supervision case with a note; ``redo`` orders the unit to redo a replied case."""
    in_scope(session, caller, request_id)
    return SupervisionOut.of(closing.supervise(session, request_id=request_id, actor=actor(caller),
                                               settings=settings, note=body.note, redo=body.redo))


@router.get("/work-orders", response_model=list[WorkOrderOut], summary="工单列表 List work orders")
def list_work_orders(
    session: DbSession,
    caller: LoggedIn,
    unit_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    status: WorkOrderStatus | None = None,
    overdue: bool | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[WorkOrderOut]:
    """Return the work orders the caller may see (a handler: its own unit's), by deadline
    (soonest first), optionally by unit, status and overdue flag. 401 for the anonymous public."""
    query = select(WorkOrder).where(scope.work_order_condition(session, caller)) \
        .order_by(WorkOrder.due_at.is_(None), WorkOrder.due_at, WorkOrder.id)
    if unit_id is not None:
        query = query.where(WorkOrder.unit_id == unit_id)
    if status is not None:
        query = query.where(WorkOrder.status == status)
    if overdue is not None:
        query = query.where(WorkOrder.overdue.is_(overdue))
    return [WorkOrderOut.of(o) for o in session.scalars(query.limit(limit).offset(offset))]


@router.get("/work-orders/{work_order_id}", response_model=WorkOrderOut, summary="工单详情 One work order")
def read_work_order(work_order_id: PathId, session: DbSession, caller: LoggedIn) -> WorkOrderOut:
    """Return one work order; 404 if missing or outside the caller's scope (a handler: another
    unit's), 401 for the anonymous public."""
    return WorkOrderOut.of(scope.visible_work_order(session, caller, work_order_id))


@router.post("/work-orders/{work_order_id}/acknowledge", response_model=WorkOrderOut, summary="签收 Acknowledge")
def acknowledge_order(
    work_order_id: PathId, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> WorkOrderOut:
    """Acknowledge a pending order; its resolution deadline starts now. 409 if already taken."""
    order_in_scope(session, caller, work_order_id)
    return WorkOrderOut.of(handling.acknowledge(session, work_order_id=work_order_id, actor=actor(caller),
                                                settings=settings))


@router.post("/work-orders/{work_order_id}/return", response_model=WorkOrderOut, summary="退单 Return")
def return_order(
    work_order_id: PathId, body: ReturnIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> WorkOrderOut:
    """Return a pending order with a reason; after N returns the district takes it (兜底)."""
    order_in_scope(session, caller, work_order_id)
    return WorkOrderOut.of(handling.return_order(session, work_order_id=work_order_id, actor=actor(caller),
                                                 reason=body.reason, settings=settings))


@router.post("/work-orders/{work_order_id}/extension", response_model=WorkOrderOut, summary="申请延期 Ask extension")
def ask_extension(
    work_order_id: PathId, body: ExtensionIn, session: DbSession, caller: LoggedIn, settings: SettingsDep
) -> WorkOrderOut:
    """Ask for a later deadline (``until`` or ``extra_working_days``) with a reason."""
    order_in_scope(session, caller, work_order_id)
    return WorkOrderOut.of(handling.request_extension(session, work_order_id=work_order_id, actor=actor(caller),
                                                      settings=settings, **body.model_dump()))


@router.post("/work-orders/{work_order_id}/extension/decision", response_model=WorkOrderOut,
             summary="审批延期 Decide extension")
def decide_extension(
    work_order_id: PathId, body: ExtensionDecisionIn, session: DbSession, caller: LoggedIn
) -> WorkOrderOut:
    """Approve (optionally with another date) or refuse (with a reason) a pending extension."""
    order_in_scope(session, caller, work_order_id)
    return WorkOrderOut.of(handling.decide_extension(session, work_order_id=work_order_id, actor=actor(caller),
                                                     **body.model_dump()))


@router.post("/work-orders/{work_order_id}/reply", response_model=WorkOrderOut, summary="办结答复 Reply")
def reply_order(work_order_id: PathId, body: ReplyIn, session: DbSession, caller: LoggedIn) -> WorkOrderOut:
    """Reply: what the unit did, in words the citizen reads. The request awaits callback."""
    order_in_scope(session, caller, work_order_id)
    return WorkOrderOut.of(handling.reply(session, work_order_id=work_order_id, actor=actor(caller), text=body.text))


@router.get("/supervisions", response_model=list[SupervisionOut], summary="督办件 Supervision cases")
def list_supervisions(
    session: DbSession,
    caller: Annotated[Caller, allow(SUPERVISION_READERS, "list_supervisions")],
    open: bool | None = True,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[SupervisionOut]:
    """Return the supervision cases of the requests the caller may see, newest first (open ones
    by default; ``open=`` for all). Staff (a handler sees its own unit's; 403 residents and grid
    workers, 401 the public)."""
    query = select(Supervision).where(scope.supervision_condition(session, caller)) \
        .order_by(Supervision.id.desc()).limit(limit).offset(offset)
    if open is not None:
        query = query.where(Supervision.open.is_(open))
    return [SupervisionOut.of(c) for c in session.scalars(query)]


@router.post("/supervisions/{supervision_id}/close", response_model=SupervisionOut, summary="办结督办 Close case")
def close_supervision(
    supervision_id: PathId, body: CloseSupervisionIn, session: DbSession, caller: LoggedIn
) -> SupervisionOut:
    """Close a supervision case with a note (supervisor; 404 outside their scope)."""
    scope.visible_supervision(session, caller, supervision_id)
    return SupervisionOut.of(closing.close_supervision(session, supervision_id=supervision_id, actor=actor(caller),
                                                       note=body.note))


@router.get("/calendar", summary="工作日历 Calendar status")
def calendar_status(session: DbSession, caller: Annotated[Caller, allow(STAFF, "read_calendar")]) -> dict[str, object]:
    """Return the years with an official schedule and the open orders whose deadline is
    provisional (they reach a year nobody has entered: a warning for supervisors). Staff only."""
    orders = provisional_orders(session)
    return {**known_years(session), "provisional_open_orders": [o.id for o in orders]}


@router.put("/calendar/years/{year}", summary="录入年度节假日 Enter a year's schedule")
def put_calendar_year(
    year: Annotated[int, Path(ge=2000, le=2100)],
    body: CalendarYearIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "enter_calendar")],
    settings: SettingsDep,
) -> dict[str, object]:
    """Enter (or replace) ``year``'s official holidays and adjusted working days (admin), then
    recompute provisional deadlines. Returns the ids of the orders recomputed."""
    days = [DayEntry(day=d.date, working=d.working, name=d.name) for d in body.days]
    enter_year(session, year=year, days=days, source=body.source, actor=caller.name)
    return {"year": year, "days": len(days), "recomputed_orders": refresh_deadlines(session, settings=settings)}
