"""The resident's pages (居民): submit a request (public, with or without a login: ``/submit``), follow
one's own requests, read the reply and rate it (回访: solved? satisfied?) — the transition table lets a
resident call back their own request (``requests.rules.CALLBACK_ROLES``).

A resident sees only the requests they filed while logged in (``requests.scope``); another's is the 404
page. Filing runs the same use cases as ``POST /api/v1/requests`` (intake, then triage when on), rate
limited per client like it ("intake").
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import HTMLResponse, Response
from pydantic import HttpUrl, TypeAdapter, ValidationError
from sqlalchemy import select

from civicloop.core.errors import CivicloopError
from civicloop.core.http import ANONYMOUS
from civicloop.core.ratelimit import rate_limited
from civicloop.core.roles import Role
from civicloop.core.validation import MAX_ID
from civicloop.requests import closing, intake, scope, triage_queue
from civicloop.requests.models import Channel, RequestStatus, ServiceRequest, WorkOrderRole
from civicloop.requests.schemas import RequestCreate
from civicloop.requests.service import Actor, history
from civicloop.web.common import (
    RESIDENT_ROLES,
    FormInvalid,
    Page,
    PublicPage,
    Rerender,
    callback_answer,
    error_message,
    local,
    masked,
    page,
    validated,
)

router = APIRouter()

Resident = Annotated[Page, page(RESIDENT_ROLES, "open_resident")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
PHOTO = TypeAdapter(HttpUrl)
MAX_PHOTO = 500
RESIDENT_EVENTS = {"submit", "accept", "reject", "dispatch", "acknowledge", "fallback", "reply", "callback", "reopen",
                   "answer_duplicate", "supervise"}
"""The steps a resident is shown in their request's progress (not internal ones such as returns)."""


def _submit_form(p: Page, *, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                 status: int = 200) -> HTMLResponse:
    return p.render("submit.html", status=status, values=values or {}, errors=errors or {})


def _photo(p: Page, link: str) -> str:
    """Return the photo link checked as an http(s) URL (``""`` when blank); raises ``FormInvalid``."""
    link = link.strip()
    if not link:
        return ""
    try:
        if len(link) > MAX_PHOTO:
            raise ValueError(link)
        url = PHOTO.validate_python(link)
    except (ValidationError, ValueError):
        raise FormInvalid({"photo": p.t("o311.url")}) from None
    return str(url)


@router.get("/submit")
def submit_form(p: PublicPage) -> Response:
    """The request form: title, what happened, where, an optional photo link. Public: without a login
    the request cannot be followed online (the page says so)."""
    return _submit_form(p)


@router.post("/submit", dependencies=[Depends(triage_queue.admitted), Depends(rate_limited("intake"))])
def submit(p: PublicPage) -> Response:
    """File the request (channel web; a grid worker's: grid_worker) with the photo link in its text, run
    intake, and go to the request (a resident) or back to the form with its number (the public). Bad
    input shows the form again with a message on each field (422), nothing stored."""
    started = time.perf_counter()
    values = {name: p.field(name) for name in ("title", "description", "address", "photo")}
    caller = p.caller
    try:
        photo = _photo(p, values["photo"])
        description = values["description"].strip()
        if photo:
            description = f"{description}\n{p.t('f.photo')}：{photo}" if description else photo
        channel = Channel.GRID_WORKER if caller is not None and caller.role == Role.GRID_WORKER else Channel.WEB
        body = validated(RequestCreate, p.lang, channel=channel, title=values["title"], description=description,
                         address=values["address"])
        resident = caller is not None and caller.role == Role.RESIDENT  # followed under their account
        data = intake.NewRequest(**body.model_dump(), submitted_by_user_id=caller.user_id if resident else None)
        actor = p.actor if caller is not None else Actor(ANONYMOUS, Role.RESIDENT)
        request = intake.submit(p.session, data=data, actor=actor)
        triage_queue.on_filing(p.session, request=request, settings=p.settings, started=started)
    except FormInvalid as exc:
        raise Rerender(_submit_form(p, values=values, errors=exc.fields, status=422)) from None
    except CivicloopError as exc:
        field = ".".join(getattr(exc, "field", ()) or ("form",))
        raise Rerender(_submit_form(p, values=values, errors={field: error_message(exc, p.lang)},
                                    status=exc.status_code)) from None
    if caller is not None and caller.role == Role.RESIDENT:
        return p.redirect(f"/resident/requests/{request.id}", "filed", id=request.id)
    return p.redirect("/submit", "filed", id=request.id)


@router.get("/resident")
def my_requests(p: Resident) -> Response:
    """The resident's own requests, newest first, with their status and whether there is a reply to
    rate."""
    rows = p.session.scalars(select(ServiceRequest).where(scope.request_condition(p.session, p.user))
                             .order_by(ServiceRequest.id.desc()).limit(200)).all()
    items = [{"id": r.id, "title": masked(r.title), "status": r.status, "created": local(r.created_at, p.settings),
              "to_rate": r.status == RequestStatus.REPLIED} for r in rows]
    return p.render("resident.html", items=items)


def _answer(request: ServiceRequest, events: list[Any]) -> tuple[str, Any, Any]:
    """The reply the resident reads (the latest lead order's, or the master's for a duplicate), when it
    came, and the rating already given (``None`` before the callback)."""
    leads = [o for o in request.work_orders if o.role == WorkOrderRole.LEAD and o.reply_text]
    if leads:
        lead = leads[-1]
        rating = (lead.resolved, lead.satisfaction) if lead.satisfaction else None
        return masked(lead.reply_text), lead.replied_at, rating
    answered = [e for e in events if e.action == "answer_duplicate"]
    if answered:
        return masked(answered[-1].reason), answered[-1].created_at, None
    return "", None, None


@router.get("/resident/requests/{request_id}")
def my_request(request_id: PathId, p: Resident) -> Response:
    """One of the resident's requests: what they wrote, its progress (public steps only), the reply and
    the rating form once it is replied. 404 for a request of someone else."""
    request = scope.visible_request(p.session, p.user, request_id)
    events = list(history(p.session, request_id=request.id))
    reply, replied_at, rating = _answer(request, events)
    steps = [{"at": local(e.created_at, p.settings), "action": e.action, "to": e.to_status} for e in events
             if e.action in RESIDENT_EVENTS]
    info = {"id": request.id, "title": masked(request.title), "description": masked(request.description),
            "address": masked(request.address), "status": request.status,
            "created": local(request.created_at, p.settings), "reject_reason": request.reject_reason}
    return p.render("resident_request.html", req=info, steps=steps, reply=reply,
                    replied=local(replied_at, p.settings), rating=rating,
                    can_rate=request.status == RequestStatus.REPLIED)


@router.post("/resident/requests/{request_id}/rate")
def rate(request_id: PathId, p: Resident) -> Response:
    """The resident's callback (回访): resolved yes/no and satisfied / basically satisfied / dissatisfied.
    Resolved and at least basically satisfied closes the request; otherwise it goes back to the unit
    (重办, ``closing.callback``). 422 for a missing answer, 409 when it is not awaiting a rating."""
    scope.visible_request(p.session, p.user, request_id)
    body = callback_answer(p)
    closing.callback(p.session, request_id=request_id, actor=p.actor, settings=p.settings, **body.model_dump())
    return p.redirect(f"/resident/requests/{request_id}", "rated")
