"""HTTP routes of intelligent intake (智能分拨) under ``/api/v1``: the dispatcher's queue, a
request's triage record, the dispatcher's decision, the intake statistics and the decisions as
training data."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import AwareDatetime

from civicloop.core.errors import NotFound
from civicloop.core.http import Caller, DbSession, Lang, LoggedIn, SettingsDep, allow
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID, csv_safe
from civicloop.requests import scope, triage, triage_queue
from civicloop.requests.schemas import DecideIn, QueueItemOut, RequestOut, TriageOut
from civicloop.requests.service import Actor, get_request

router = APIRouter(prefix="/api/v1", tags=["intelligent intake (智能分拨)"])

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
QUEUE_ROLES = {Role.DISPATCHER, Role.OPERATOR, Role.SUPERVISOR, Role.ANALYST, Role.ADMIN}


@router.get("/dispatch-queue", response_model=list[QueueItemOut], summary="待人工派单 Dispatcher's queue")
def dispatch_queue(
    session: DbSession, caller: Annotated[Caller, allow(QUEUE_ROLES, "read_queue")], lang: Lang,
    limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> list[QueueItemOut]:
    """Return the requests intake could not route alone, the most urgent first (the deadline tier of the
    suggested category), then oldest first, each with up to three suggestions (category, probability,
    lead unit, rule, why) and the reasons it waits. Staff roles only (403 for residents and handling
    units)."""
    items = []
    for record in triage.queue(session, limit=limit, offset=offset):
        request = get_request(session, request_id=record.request_id)
        items.append(QueueItemOut(request=RequestOut.of(request), triage=TriageOut.of(record, lang)))
    return items


@router.get("/requests/{request_id}/triage", response_model=TriageOut, summary="分拨记录 Triage record")
def read_triage(
    request_id: PathId,
    session: DbSession,
    caller: Annotated[Caller, allow(QUEUE_ROLES, "read_triage")],
    lang: Lang,
) -> TriageOut:
    """Return what intake found for a request (place, duplicate, suggestions, rule, latency, the
    dispatcher's choice). 404 when the request does not exist or never went through intake."""
    scope.visible_request(session, caller, request_id)
    record = triage.get_triage(session, request_id=request_id)
    if record is None:
        raise NotFound("Triage", request_id)
    return TriageOut.of(record, lang)


@router.post("/requests/{request_id}/decide", response_model=TriageOut, summary="人工派单 Dispatcher decides")
def decide(
    request_id: PathId, body: DecideIn, session: DbSession, caller: LoggedIn, settings: SettingsDep, lang: Lang
) -> TriageOut:
    """Accept a queued request under the chosen category and dispatch it to the chosen lead unit
    (or, with a category only, to the unit the routing table gives). The choice is recorded next to
    the suggestions. 422 when the request is not queued or an id is unknown; 409 when it moved on;
    403 for a role that may not dispatch, 404 outside the caller's scope."""
    scope.visible_request(session, caller, request_id)
    record = triage.decide(
        session, request_id=request_id, actor=Actor(caller.name, caller.role, caller.unit_id), settings=settings,
        category_id=body.category_id, lead_unit_id=body.lead_unit_id,
        assisting_unit_ids=body.assisting_unit_ids, note=body.note,
    )
    return TriageOut.of(record, lang)


@router.get("/triage/stats", summary="智能分拨统计 Intake statistics")
def stats(
    session: DbSession, caller: Annotated[Caller, allow(QUEUE_ROLES, "read_triage_stats")],
    since: Annotated[AwareDatetime | None, Query()] = None, until: Annotated[AwareDatetime | None, Query()] = None,
) -> dict[str, Any]:
    """Return intake's figures for requests triaged in [``since``, ``until``): counts by outcome,
    the share dispatched without a person, dispatch latency (seconds from filing to the routed work
    order; p50, p95, max) for automatic and for queued-then-decided requests, and how often the
    dispatcher chose the first, second or third suggestion or none (``decided_rank``), and the
    deferred intake queue now (``deferred_queue``: ``{"waiting", "oldest_seconds"}``, empty with
    inline intake)."""
    return {**triage.statistics(session, since=since, until=until),
            "deferred_queue": triage_queue.backlog(session)}


@router.get("/triage/decisions.csv", summary="人工派单记录 Decisions as training data", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}})
def decisions_csv(
    session: DbSession, caller: Annotated[Caller, allow({Role.ANALYST, Role.ADMIN}, "export_decisions")],
    since: Annotated[AwareDatetime | None, Query()] = None,
) -> Response:
    """Return the dispatchers' decisions as CSV (UTF-8 with BOM) with columns ``request_id``,
    ``title``, ``detail``, ``label`` (the first level of the chosen category), ``category_path``,
    ``suggested_label``, ``confidence``, ``decided_rank``, ``decided_at``: the shape
    ``civicloop model evaluate --data`` reads, for measuring the model against people and for
    retraining. Only decisions with a category are listed (a unit chosen alone gives no label). Titles
    and bodies keep only masked contact data, and a cell that a spreadsheet would run as a formula is
    quoted. Analysts and admins only."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["request_id", "title", "detail", "label", "category_path", "suggested_label", "confidence",
                     "decided_rank", "decided_at"])
    for row in triage.decisions(session, since=since):
        writer.writerow([csv_safe(cell) for cell in row])
    return Response(content="\ufeff" + buffer.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="triage-decisions.csv"'})

