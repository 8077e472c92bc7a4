"""The operator's page (受理): take a call fast, with live suggestions as the operator types, accept or
reject the requests waiting for acceptance, and call back (回访) the citizens whose request was answered:
record whether it was solved and how satisfied they are (``closing.callback``), or close it without a
rating when they cannot be reached (``closing.close_unrated``).

Filing goes through the same use case as ``POST /api/v1/requests``: ``intake.submit`` and, when
``settings.triage_on_intake``, intake (``triage_queue.on_filing``: in the same transaction, or right after
it with ``triage_mode = "deferred"``; sure → dispatched by the system; unsure → the dispatcher's queue;
a repeat → linked to its master). The suggestions are
``triage.preview`` (what intake would do, storing nothing) and the duplicate check intake runs
(``triage_steps.find_duplicate``), as ``civicloop classify`` prints them.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from civicloop.catalog.models import DeadlineTier
from civicloop.core.errors import CivicloopError
from civicloop.core.validation import MAX_ID, mask_phones_in_text
from civicloop.org.models import OrgUnit
from civicloop.requests import closing, intake, scope, triage, triage_queue, triage_steps
from civicloop.requests.models import (
    Channel,
    RejectReason,
    RequestStatus,
    ServiceRequest,
    Triage,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.schemas import AcceptIn, CloseUnratedIn, RejectIn, RequestCreate
from civicloop.web.common import (
    OPERATOR_ROLES,
    FormInvalid,
    Page,
    Rerender,
    callback_answer,
    category_options,
    error_message,
    int_or_none,
    local,
    page,
    validated,
    without_control,
)

router = APIRouter()

Operator = Annotated[Page, page(OPERATOR_ROLES, "open_operator")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
FIELDS = ("title", "description", "citizen_name", "citizen_phone", "address", "category_id", "deadline_tier")
POSSIBLE_DUPLICATE = 0.4
"""Similarity (0–1) from which the operator is shown an open request as a possible duplicate; intake links
only from ``settings.duplicate_threshold`` (0.6)."""


def _pending(p: Page) -> list[dict[str, Any]]:
    """The submitted requests the operator may see, newest first, with what intake did."""
    rows = p.session.execute(
        select(ServiceRequest, Triage).outerjoin(Triage, Triage.request_id == ServiceRequest.id)
        .where(ServiceRequest.status == RequestStatus.SUBMITTED, scope.request_condition(p.session, p.user))
        .order_by(ServiceRequest.id.desc()).limit(30)).all()
    return [{"id": r.id, "title": mask_phones_in_text(r.title), "created": local(r.created_at, p.settings),
             "channel": r.channel, "queued": bool(t and t.queued),
             "reasons": [p.t(f"triage.{c}") for c in (t.reasons if t else [])]} for r, t in rows]


def _to_call_back(p: Page) -> list[dict[str, Any]]:
    """The replied requests the operator may see, longest waiting first (by the lead unit's reply),
    with the reply the citizen is to be asked about and the unit that gave it."""
    rows = p.session.execute(
        select(ServiceRequest, WorkOrder, OrgUnit.name)
        .join(WorkOrder, WorkOrder.request_id == ServiceRequest.id)
        .join(OrgUnit, OrgUnit.id == WorkOrder.unit_id)
        .where(ServiceRequest.status == RequestStatus.REPLIED, WorkOrder.role == WorkOrderRole.LEAD,
               WorkOrder.status == WorkOrderStatus.REPLIED, scope.request_condition(p.session, p.user))
        .order_by(WorkOrder.replied_at, ServiceRequest.id).limit(30)).all()
    return [{"id": r.id, "title": mask_phones_in_text(r.title), "unit": unit,
             "reply": mask_phones_in_text(o.reply_text or "")[:300], "replied": local(o.replied_at, p.settings),
             "reopens": r.reopen_count} for r, o, unit in rows]


def _form(p: Page, *, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          status: int = 200) -> HTMLResponse:
    return p.render("operator.html", status=status, values=values or {}, errors=errors or {},
                    categories=category_options(p.session), tiers=[t.value for t in DeadlineTier],
                    pending=_pending(p), reasons=[r.value for r in RejectReason], callbacks=_to_call_back(p),
                    callbacks_total=p.session.scalar(select(func.count()).select_from(ServiceRequest).where(
                        ServiceRequest.status == RequestStatus.REPLIED, scope.request_condition(p.session, p.user))))


@router.get("/operator")
def operator_page(p: Operator) -> Response:
    """The intake form (autofocus on the title, Ctrl+Enter files it) with the suggestions panel, and
    the requests waiting for acceptance. Operators and admins (403 others; login needed)."""
    return _form(p)


@router.post("/operator/suggest")
def suggest(p: Operator) -> Response:
    """The suggestions fragment (htmx, on each pause in typing): the category top 3 with probabilities,
    the place found, the suggested units, a possible duplicate, and whether intake would dispatch
    alone. Stores nothing (the preview's changes are rolled back)."""
    title, body, address = (without_control(p.field(name)).strip()[:4000]
                            for name in ("title", "description", "address"))
    if not (title or body):
        return p.render("_suggest.html", preview=None, duplicate=None)
    preview = triage.preview(p.session, title=title[:200], detail=body, address=address[:500], settings=p.settings)
    place = preview.get("place") or {}
    probe = ServiceRequest(title=title[:200], description=body, address=address[:500], created_at=p.now,
                           district_id=place.get("district_id"), street_id=place.get("street_id"),
                           grid_id=place.get("grid_id"))
    loose = p.settings.model_copy(update={"duplicate_threshold": POSSIBLE_DUPLICATE})
    match = triage_steps.find_duplicate(p.session, request=probe, settings=loose,
                                        place_label=place.get("label") or None, now=p.now)
    p.session.rollback()  # a preview stores nothing
    duplicate = None
    if match is not None:
        master = scope.request_condition(p.session, p.user)
        found = p.session.scalar(select(ServiceRequest).where(ServiceRequest.id == match.master_id, master))
        if found is not None:
            duplicate = {"id": found.id, "title": mask_phones_in_text(found.title), "score": match.score,
                         "linked": match.score >= p.settings.duplicate_threshold,
                         "status": found.status, "created": local(found.created_at, p.settings)}
    reasons = [p.t(f"triage.{code}") for code in preview.get("reasons", [])]
    return p.render("_suggest.html", preview=preview, duplicate=duplicate, reasons=reasons)


@router.post("/operator/requests", dependencies=[Depends(triage_queue.admitted)])
def file_request(p: Operator) -> Response:
    """File the call (channel hotline) and run intake on it as ``POST /api/v1/requests`` does; 303 back
    with the new request's number. Bad input shows the form again with a message on each field (422),
    nothing stored."""
    started = time.perf_counter()
    values = {name: p.field(name) for name in FIELDS}
    try:
        body = validated(
            RequestCreate, p.lang, channel=Channel.HOTLINE, title=values["title"], description=values["description"],
            citizen_name=values["citizen_name"], citizen_phone=values["citizen_phone"].strip(),
            address=values["address"],
            category_id=int_or_none(values["category_id"], "category_id", p.lang),
            deadline_tier=values["deadline_tier"] or None)
        data = intake.NewRequest(**body.model_dump())
        request = intake.submit(p.session, data=data, actor=p.actor)
        triage_queue.on_filing(p.session, request=request, settings=p.settings, started=started)
    except FormInvalid as exc:
        raise Rerender(_form(p, values=values, errors=exc.fields, status=422)) from None
    except CivicloopError as exc:
        field = ".".join(getattr(exc, "field", ()) or ("form",))
        raise Rerender(_form(p, values=values, errors={field: error_message(exc, p.lang)},
                             status=exc.status_code)) from None
    return p.redirect("/operator", "filed", id=request.id)


@router.post("/operator/requests/{request_id}/accept")
def accept(request_id: PathId, p: Operator) -> Response:
    """Accept (受理) a submitted request, optionally with a category and a deadline tier; 404 outside
    the operator's scope, 409 when it is no longer submitted."""
    scope.visible_request(p.session, p.user, request_id)
    body = validated(AcceptIn, p.lang, category_id=int_or_none(p.field("category_id"), "category_id", p.lang),
                     deadline_tier=p.field("deadline_tier") or None, note=p.field("note"))
    intake.accept(p.session, request_id=request_id, actor=p.actor, **body.model_dump())
    return p.redirect("/operator", "accepted")


@router.post("/operator/requests/{request_id}/reject")
def reject(request_id: PathId, p: Operator) -> Response:
    """Reject (不予受理) a submitted request with a reason (a duplicate names its original); 404
    outside the operator's scope, 422 without a reason."""
    scope.visible_request(p.session, p.user, request_id)
    body = validated(RejectIn, p.lang, reason=p.field("reason") or None,
                     duplicate_of_id=int_or_none(p.field("duplicate_of_id"), "duplicate_of_id", p.lang),
                     note=p.field("note"))
    if body.duplicate_of_id is not None:  # the original must be one the operator may see
        scope.visible_request(p.session, p.user, body.duplicate_of_id)
    intake.reject(p.session, request_id=request_id, actor=p.actor, **body.model_dump())
    return p.redirect("/operator", "rejected")


@router.post("/operator/requests/{request_id}/callback")
def call_back(request_id: PathId, p: Operator) -> Response:
    """Record the citizen's answer at callback (回访): resolved yes/no and satisfied / basically satisfied
    / dissatisfied, with a note. Resolved and at least basically satisfied closes the request; otherwise
    it goes back to the unit (重办) or, past ``max_reopens``, closes under supervision
    (``closing.callback``). 422 for a missing answer, 404 outside the operator's scope, 409 when it is
    not awaiting a callback."""
    scope.visible_request(p.session, p.user, request_id)
    body = callback_answer(p)
    closing.callback(p.session, request_id=request_id, actor=p.actor, settings=p.settings, **body.model_dump())
    return p.redirect("/operator", "called_back", id=request_id)


@router.post("/operator/requests/{request_id}/close-unrated")
def close_unrated(request_id: PathId, p: Operator) -> Response:
    """Close a replied request without a rating (结案（未回访）) when the citizen cannot be reached, with
    the reason; it then counts in the response rate only (``closing.close_unrated``). 422 without a
    reason, 404 outside the operator's scope, 409 when it is not replied."""
    scope.visible_request(p.session, p.user, request_id)
    body = validated(CloseUnratedIn, p.lang, reason=p.field("reason"))
    closing.close_unrated(p.session, request_id=request_id, actor=p.actor, reason=body.reason)
    return p.redirect("/operator", "closed_unrated", id=request_id)
