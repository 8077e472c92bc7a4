"""One request as staff see it (诉求详情): the citizen's words (contact masked), its work orders with
units, deadlines, replies and ratings, what intelligent intake found, and the history; a supervisor
opens a supervision case from here (督办, optionally ordering a redo).

Read through ``requests.scope.visible_request``: outside the caller's scope the request is the 404 page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from civicloop.core.roles import STAFF
from civicloop.core.validation import MAX_ID, mask_name, mask_phone
from civicloop.requests import closing, scope, triage
from civicloop.requests.schemas import SuperviseIn
from civicloop.web.common import (
    SUPERVISE_ROLES,
    Page,
    events_of,
    local,
    masked,
    page,
    unit_names,
    validated,
)

router = APIRouter()

PathId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.get("/case/{request_id}")
def case_page(request_id: PathId, p: Annotated[Page, page(STAFF, "open_case")]) -> Response:
    """The request's page for staff (residents follow theirs under ``/resident``). 404 outside the
    caller's scope (a handler: a request without an order of its unit)."""
    request = scope.visible_request(p.session, p.user, request_id)
    names = unit_names(p.session, [o.unit_id for o in request.work_orders]
                       + [request.street_id, request.district_id])
    orders = [{"id": o.id, "unit": names.get(o.unit_id, ""), "unit_id": o.unit_id, "role": o.role, "round": o.round,
               "status": o.status, "dispatched": local(o.dispatched_at, p.settings),
               "deadline": local(o.due_at or o.response_due_at, p.settings), "overdue": o.overdue,
               "reply": masked(o.reply_text), "replied": local(o.replied_at, p.settings),
               "satisfaction": o.satisfaction, "resolved": o.resolved, "return_reason": masked(o.return_reason)}
              for o in request.work_orders]
    record = triage.get_triage(p.session, request_id=request_id)
    intake = None
    if record is not None:
        intake = {"outcome": record.outcome, "place": (record.place or {}).get("label") or "",
                  "reasons": [p.t(f"triage.{c}") for c in record.reasons or []],
                  "suggestions": record.suggestions or [], "duplicate_of": record.duplicate_of_id}
    info = {"id": request.id, "title": masked(request.title), "description": masked(request.description),
            "address": masked(request.address), "name": mask_name(request.citizen_name),
            "phone": mask_phone(request.citizen_phone), "status": request.status, "channel": request.channel,
            "created": local(request.created_at, p.settings), "tier": request.deadline_tier,
            "street": names.get(request.street_id or 0, ""), "district": names.get(request.district_id or 0, ""),
            "support": request.support_count, "reject_reason": request.reject_reason,
            "duplicate_of": request.duplicate_of_id, "returns": request.return_count,
            "reopens": request.reopen_count, "fallback": request.fallback}
    own_orders = [o["id"] for o in orders if o["unit_id"] == p.user.unit_id]
    return p.render("case.html", case=info, orders=orders, intake=intake, own_orders=own_orders,
                    events=events_of(p.session, request.id, p.settings),
                    can_supervise=p.user.role in SUPERVISE_ROLES)


@router.post("/case/{request_id}/supervise")
def supervise(request_id: PathId, p: Annotated[Page, page(SUPERVISE_ROLES, "supervise")]) -> Response:
    """Open a supervision case on the request with a note (422 without); ``redo`` orders its unit to
    redo a replied or closed case (409 while it is still being handled). 404 outside the scope."""
    scope.visible_request(p.session, p.user, request_id)
    body = validated(SuperviseIn, p.lang, note=p.field("note"), redo=p.field("redo") == "1")
    closing.supervise(p.session, request_id=request_id, actor=p.actor, settings=p.settings, **body.model_dump())
    return p.redirect(f"/case/{request_id}", "supervised")
