"""Open311 GeoReport v2 under ``/open311/v2`` (https://wiki.open311.org/GeoReport_v2/): the six
methods, each in XML (the spec's required format) and JSON, chosen by the extension.

``jurisdiction_id`` is accepted on every method and ignored: one deployment serves one
jurisdiction (GeoReport v2 "jurisdiction_id": "Implementations can ignore this parameter").
Every failure is the spec's ``errors`` list (see ``open311.render.install``).
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from starlette.datastructures import FormData

from civicloop.core.http import DbSession, Lang, SettingsDep
from civicloop.core.ratelimit import rate_limited
from civicloop.core.timeutil import utcnow
from civicloop.core.validation import MAX_ID
from civicloop.open311 import keys, service
from civicloop.open311.filing import file_request
from civicloop.open311.inputs import parse_filing, parse_query
from civicloop.open311.models import Submission
from civicloop.open311.openapi import RATE_LIMITED, formats
from civicloop.open311.render import PREFIX, check_format, fail, respond
from civicloop.requests import triage_queue
from civicloop.requests.models import ServiceRequest

router = APIRouter(prefix=PREFIX, tags=["Open311 GeoReport v2"])

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FIELDS = 1000


async def read_form(request: Request) -> FormData:
    """Return the posted form (GeoReport v2: POST is ``application/x-www-form-urlencoded``; multipart
    is accepted too). The body is read as UTF-8, raw or percent-encoded (GeoReport v2 "Encoding":
    "All text received … will be assumed to be UTF-8"), whatever charset the header names. Raises
    ``Open311Error`` 400 for another content type, a body that is not UTF-8 or not a form."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in FORM_TYPES:
        raise fail(400, "o311.content_type")
    try:
        if kind == "multipart/form-data":
            return await request.form()
        text = (await request.body()).decode("utf-8")
        return FormData(parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8",
                                  errors="strict", max_num_fields=MAX_FIELDS))
    except Exception as exc:  # UnicodeDecodeError, ValueError (too many fields), multipart errors
        raise fail(400, "o311.bad_form") from exc


Form = Annotated[FormData, Depends(read_form)]


@router.get("/services.{fmt}", summary="GET Service List", responses=formats())
def get_services(fmt: str, session: DbSession) -> Response:
    """GeoReport v2 "GET Service List": every category of the catalogue as a service (see
    ``open311.service.list_services``). 400 for a format other than json/xml."""
    return respond(check_format(fmt), "services", service.list_services(session))


@router.get("/services/{service_code}.{fmt}", summary="GET Service Definition", responses=formats())
def get_service_definition(service_code: str, fmt: str, session: DbSession, lang: Lang) -> Response:
    """GeoReport v2 "GET Service Definition": the attributes of one service, texts in the caller's
    language. 404 for an unknown service_code."""
    fmt = check_format(fmt)
    return respond(fmt, "service_definition", service.definition(session, service_code, lang))


@router.post("/requests.{fmt}", status_code=201, summary="POST Service Request",
             dependencies=[Depends(triage_queue.admitted), Depends(rate_limited("intake", per_user=False))],
             responses={**formats(201), **RATE_LIMITED})
def post_request(fmt: str, form: Form, session: DbSession, settings: SettingsDep, lang: Lang) -> Response:
    """GeoReport v2 "POST Service Request": file a request into the loop (intake, then intelligent
    intake when on) and answer 201 with ``service_request_id``, ``service_notice`` (what happens
    next) and ``account_id``. The request's token is in the ``X-Open311-Token`` header (the body
    carries the id, not the token: the spec allows one of the two). 403 for a missing, unknown or
    revoked ``api_key``; 404 for an unknown service_code; 400 for anything else wrong, every
    problem listed. Nothing is stored on any error."""
    started = time.perf_counter()
    fmt = check_format(fmt)
    api_key = next((v for v in reversed(form.getlist("api_key")) if isinstance(v, str) and v.strip()), "")
    if not api_key:
        raise fail(403, "o311.api_key_missing")
    key = keys.verify_key(session, key=api_key)
    if key is None:
        raise fail(403, "o311.api_key_invalid")
    filing = parse_filing(form)
    request, submission = file_request(session, filing=filing, key=key, settings=settings, started=started)
    body = [{"service_request_id": request.id,
             "service_notice": service.service_notice(request, session, tz=settings.tz, lang=lang),
             "account_id": filing.account_id}]
    return respond(fmt, "service_requests", body, status=201, headers={"X-Open311-Token": submission.token})


@router.get("/tokens/{token}.{fmt}", summary="GET service_request_id from a token", responses=formats())
def get_token(token: str, fmt: str, session: DbSession) -> Response:
    """GeoReport v2 "GET service_request_id from a token": the request a token stands for. 404 for
    an unknown token."""
    fmt = check_format(fmt)
    found = session.scalar(select(Submission).where(Submission.token == token)) if len(token) <= 64 else None
    if found is None:
        raise fail(404, "o311.no_token", token=token[:64])
    return respond(fmt, "service_requests", [{"service_request_id": found.request_id, "token": found.token}])


@router.get("/requests.{fmt}", summary="GET Service Requests", responses=formats())
def get_requests(fmt: str, request: Request, session: DbSession, settings: SettingsDep, lang: Lang) -> Response:
    """GeoReport v2 "GET Service Requests": requests filed in the window (default the last 90 days),
    newest first, at most 1000; filters ``service_request_id`` (overrides the rest),
    ``service_code`` (a category and those below it), ``start_date``, ``end_date``, ``status``.
    400 for a bad filter, an unknown service_code or a window over 90 days."""
    fmt = check_format(fmt)
    wanted = parse_query(request.query_params, now=utcnow(), tz=settings.tz)
    categories = None
    if wanted.codes and wanted.ids is None:
        roots = []
        for code in wanted.codes:
            category = service.find_service(session, code)
            if category is None:
                raise fail(400, "o311.unknown_code", field="service_code", code=code[:40])
            roots.append(category.id)
        categories = service.descendants(session, roots)
    found = service.query(session, ids=wanted.ids, categories=categories, statuses=wanted.statuses,
                          start=wanted.start, end=wanted.end)
    return respond(fmt, "service_requests", service.to_items(session, found, tz=settings.tz, lang=lang))


@router.get("/requests/{service_request_id}.{fmt}", summary="GET Service Request", responses=formats())
def get_request(service_request_id: str, fmt: str, session: DbSession, settings: SettingsDep, lang: Lang) -> Response:
    """GeoReport v2 "GET Service Request": one request, as a list of one. 404 when there is none."""
    fmt = check_format(fmt)
    text = service_request_id.strip()
    found = session.get(ServiceRequest, int(text)) \
        if text.isascii() and text.isdigit() and len(text) <= 10 and 1 <= int(text) <= MAX_ID else None
    if found is None:
        raise fail(404, "o311.no_request", id=service_request_id[:40])
    return respond(fmt, "service_requests", service.to_items(session, [found], tz=settings.tz, lang=lang))
