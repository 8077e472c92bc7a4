"""HTTP plumbing shared by every domain's routes: the database session of a request, the caller,
the caller's language, and the one handler that renders every error.

Errors are JSON ``{"error": {"code", "message", "fields": [{"field", "message", "type"}]}}``
with messages in the caller's language (Chinese unless ``Accept-Language`` asks for English).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from civicloop.core import auth
from civicloop.core.auth import Principal, Unauthenticated
from civicloop.core.db import get_engine, session_factory
from civicloop.core.errors import CivicloopError, FieldError, Forbidden
from civicloop.core.i18n import label, pick_language, translate, word
from civicloop.core.roles import Role
from civicloop.core.settings import Settings, get_settings
from civicloop.core.timeutil import utcnow

log = logging.getLogger("civicloop.http")


def get_session() -> Iterator[Session]:
    """Yield the request's session; commit when the endpoint returns, roll back on any error.

    Used as :data:`DbSession`, with ``scope="function"``: FastAPI then runs the code after
    ``yield`` before the response is sent, so a 2xx answer means the transaction is committed, and
    a failed commit is an error answer. (With the default ``"request"`` scope, FastAPI ≥ 0.118
    commits *after* sending: tests/test_crash.py caught a 201 whose request a crash then lost.)
    """
    session = session_factory(get_engine())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def language(request: Request) -> str:
    """Return ``zh`` or ``en`` for the caller (``?lang=`` first, then ``Accept-Language``)."""
    forced = request.query_params.get("lang")
    if forced in ("zh", "en"):
        return forced
    return pick_language(request.headers.get("accept-language"), get_settings().default_language)


Lang = Annotated[str, Depends(language)]


SESSION_COOKIE = "civicloop_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Caller:
    """Who is calling, resolved once per request by :func:`current_caller`.

    ``user_id`` is the logged-in user (``None`` for the anonymous public and for header callers),
    ``grid_ids`` the grids a grid worker covers, ``via`` how they proved it (``session``, ``api``,
    ``header``, ``anonymous``) and ``csrf_token`` their session's CSRF token (web forms carry it)."""

    def __init__(
        self, name: str, role: Role, unit_id: int | None, *, user_id: int | None = None,
        grid_ids: tuple[int, ...] = (), via: str = "header", csrf_token: str = "", token_id: int | None = None,
    ) -> None:
        self.name, self.role, self.unit_id = name, role, unit_id
        self.user_id, self.grid_ids, self.via = user_id, grid_ids, via
        self.csrf_token, self.token_id = csrf_token, token_id

    @property
    def authenticated(self) -> bool:
        """``True`` unless this is the anonymous public (no session, no token)."""
        return self.via != "anonymous"

    @classmethod
    def of(cls, principal: Principal) -> Caller:
        """The caller of a logged-in user's session or API token."""
        return cls(principal.username, principal.role, principal.unit_id, user_id=principal.user_id,
                   grid_ids=principal.grid_ids, via=principal.via, csrf_token=principal.csrf_token,
                   token_id=principal.token_id)

    def require(self, roles: Role | Collection[Role], action: str) -> None:
        """Raise ``Unauthenticated`` (401) for the anonymous public, ``Forbidden`` (403, naming
        ``action``) unless the caller's role is ``roles`` or one of them."""
        if not self.authenticated:
            raise Unauthenticated()
        allowed = {roles} if isinstance(roles, Role) else set(roles)
        if self.role not in allowed:
            raise Forbidden(role=self.role.value, action=action)

    def require_login(self) -> None:
        """Raise ``Unauthenticated`` (401) unless the caller is logged in (any role)."""
        if not self.authenticated:
            raise Unauthenticated()


ANONYMOUS = "anonymous"


def current_caller(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    x_civicloop_actor: Annotated[str | None, Header(max_length=100)] = None,
    x_civicloop_role: Annotated[Role | None, Header()] = None,
    x_civicloop_unit: Annotated[int | None, Header(ge=1, le=2**31 - 1)] = None,
) -> Caller:
    """Return the request's caller, in this order:

    1. ``Authorization: Bearer TOKEN``: an API token (``civicloop user token``); a bad one is 401.
    2. The web app's session cookie; an unsafe method (POST, PUT, DELETE) on ``/api`` must then
       carry the session's CSRF token in ``X-CSRF-Token`` (403 otherwise; the pages send it). The
       web pages check their forms' own ``csrf_token`` field (``web``).
    3. Only when ``settings.trust_role_headers`` is on (development and the test suite, never a
       deployment): the ``X-Civicloop-Actor``/``-Role``/``-Unit`` headers (default: an operator).
    4. Else the anonymous public, who may file a request and read public reference data only.
    """
    now = utcnow()
    header = request.headers.get("authorization")
    if header:
        scheme, _, secret = header.partition(" ")
        principal = auth.principal_for(session, secret.strip(), kind=auth.API, now=now) \
            if scheme.lower() == "bearer" else None
        if principal is None:
            raise Unauthenticated("token_invalid")
        return Caller.of(principal)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        principal = auth.principal_for(session, cookie, kind=auth.SESSION, now=now)
        if principal is not None:
            if request.method not in SAFE_METHODS and request.url.path.startswith("/api/") \
                    and not auth.csrf_matches(principal.csrf_token, request.headers.get("x-csrf-token")):
                raise Forbidden("csrf_failed")
            return Caller.of(principal)
    if settings.trust_role_headers:  # without any header: an anonymous operator, as before logins existed
        name = (x_civicloop_actor or "").strip() or ANONYMOUS
        return Caller(name, x_civicloop_role or Role.OPERATOR, x_civicloop_unit, via="header")
    return Caller(ANONYMOUS, Role.RESIDENT, None, via="anonymous")


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def allow(roles: Role | Collection[Role], action: str) -> Any:
    """A dependency (use as ``caller: Annotated[Caller, allow(Role.ADMIN, "create_unit")]``) that
    returns the caller once they may do ``action``: 401 for the anonymous public, 403 for another
    role. Being a dependency, it answers before the body is validated, so a caller who may not act
    learns nothing from a 422."""

    def _allowed(caller: CurrentCaller) -> Caller:
        caller.require(roles, action)
        return caller

    return Depends(_allowed)


def logged_in(caller: CurrentCaller) -> Caller:
    """Return the caller if logged in (any role); 401 for the anonymous public."""
    caller.require_login()
    return caller


LoggedIn = Annotated[Caller, Depends(logged_in)]


def _field_path(loc: tuple[Any, ...], kind: str = "") -> str:
    if kind == "json_invalid":  # loc is ("body", character offset): the whole body is at fault
        return "body"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "")


def _error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(status_code=status, content=body)


def error_response(request: Request, status: int, code: str, /, **params: Any) -> JSONResponse:
    """Return the error shape (``ErrorOut``) with status ``status`` and the message ``code`` of
    the message catalogues (``core.i18n``) in the caller's language, ``params`` filled in; no field errors. For
    code outside the exception handlers (middleware, ``core.bodylimit``, ``core.ratelimit``)."""
    return _error(status, code, translate(code, language(request), **params))


class FieldErrorOut(BaseModel):
    """One input field at fault: its dotted path (``title``, ``body``, ``Idempotency-Key``), the
    error type and the message in the caller's language."""

    field: str
    type: str
    message: str


class ErrorDetail(BaseModel):
    """A stable ``code`` (a key of the message catalogues (``core.i18n``)), its message, the fields at fault."""

    code: str
    message: str
    fields: list[FieldErrorOut]


class ErrorOut(BaseModel):
    """The one error shape of the JSON API: ``{"error": {"code", "message", "fields"}}``."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text} for status, text in (
        (400, "The body is not UTF-8 JSON (field `body`)"),
        (401, "A bearer token or session that is not valid, or a login is needed"),
        (403, "The caller's role may not do this"),
        (404, "No such record, or outside the caller's scope"),
        (409, "The record's state does not allow this, or someone else changed it just now"),
        (413, "The body is larger than `max_body_bytes`"),
        (422, "Invalid input: one message per field"),
        (503, "The database is unavailable; nothing was stored, retry later"),
    )
}
"""The error answers any JSON API operation may give, declared on every route of ``/api/v1``
(``app.create_app``) so the OpenAPI schema documents them (and schemathesis checks them)."""


def render_validation(errors: list[dict[str, Any]], lang: str) -> JSONResponse:
    """Render pydantic errors as one 422 with a message per field in ``lang``."""
    fields = []
    for err in errors:
        ctx = dict(err.get("ctx") or {})
        if "expected" in ctx:
            ctx["expected"] = str(ctx["expected"])
        if "error" in ctx:
            ctx["error"] = str(ctx["error"])
        for key in ("ge", "gt", "le", "lt"):  # a bound of a float field reads "90", not "90.0"
            if isinstance(ctx.get(key), float) and ctx[key].is_integer():
                ctx[key] = int(ctx[key])
        kind = str(err.get("type", "default"))
        code = "bad_json" if kind == "json_invalid" else f"v.{kind}"
        field = {"field": _field_path(tuple(err.get("loc", ())), kind), "type": kind,
                 "message": translate(code, lang, **ctx)}
        if field not in fields:  # a header shared by two dependencies (the caller, the rate limit) fails once
            fields.append(field)
    return _error(422, "validation", translate("validation", lang), fields)


def allowed_methods(request: Request) -> str:
    """Return the ``Allow`` value of a 405 for ``request``'s path: every method some route of the
    app answers there, comma-separated (RFC 9110 §15.5.6 requires it in a 405; Starlette names only
    the first route that matches the path, so ``GET``/``POST`` on one path gave ``POST`` alone)."""
    found = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            found.append(method)
    return ", ".join(found)


def install_error_handlers(app: FastAPI) -> None:
    """Install the one error renderer on ``app`` (domain errors, validation, HTTP, database)."""

    @app.exception_handler(CivicloopError)
    async def _domain(request: Request, exc: CivicloopError) -> JSONResponse:
        lang = language(request)
        params = dict(exc.params)
        if "what" in params:
            params["what"] = label(str(params["what"]), lang)
        for kind in ("status", "action", "role"):  # stored values shown as words of the caller's language
            if kind in params:
                params[kind] = word(kind, params[kind], lang)
        message = translate(exc.code, lang, **params)
        fields = []
        if isinstance(exc, FieldError):
            fields = [{"field": ".".join(exc.field), "type": exc.code, "message": message}]
            message = translate("validation", lang)
        return _error(exc.status_code, exc.code, message, fields)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return render_validation(list(exc.errors()), language(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        lang = language(request)
        if exc.status_code == 400:
            # FastAPI answers 400 when the body cannot be decoded at all (e.g. invalid UTF-8)
            message = translate("bad_json", lang)
            return _error(400, "bad_json", message, [{"field": "body", "type": "bad_json", "message": message}])
        if exc.status_code == 404:
            return _error(404, "not_found", translate("not_found", lang, what=request.url.path, id=""))
        if exc.status_code == 405:
            response = _error(405, "method", translate("method", lang, method=request.method))
            response.headers["Allow"] = allowed_methods(request)
            return response
        response = _error(exc.status_code, "http", str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # the database is down or overloaded: a retryable 503, never a half-stored request
        log.exception("database error on %s %s", request.method, request.url.path)
        return _error(503, "internal", translate("internal", language(request)))
