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
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicloop.core.db import get_engine, session_factory
from civicloop.core.errors import CivicloopError, FieldError, Forbidden
from civicloop.core.i18n import label, pick_language, translate, word
from civicloop.core.roles import Role
from civicloop.core.settings import Settings, get_settings

log = logging.getLogger("civicloop.http")


def get_session() -> Iterator[Session]:
    """Yield the request's session; commit when the endpoint returns, roll back on any error.

    FastAPI runs the code after ``yield`` before the response is sent, so a 2xx answer means the
    transaction is committed.
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


DbSession = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def language(request: Request) -> str:
    """Return ``zh`` or ``en`` for the caller (``?lang=`` first, then ``Accept-Language``)."""
    forced = request.query_params.get("lang")
    if forced in ("zh", "en"):
        return forced
    return pick_language(request.headers.get("accept-language"), get_settings().default_language)


Lang = Annotated[str, Depends(language)]


class Caller:
    """Who is calling. Until logins arrive (see the trust issue), the caller names itself with the
    ``X-Civicloop-Actor``, ``X-Civicloop-Role`` and ``X-Civicloop-Unit`` headers."""

    def __init__(self, name: str, role: Role, unit_id: int | None) -> None:
        self.name, self.role, self.unit_id = name, role, unit_id

    def require(self, roles: Role | Collection[Role], action: str) -> None:
        """Raise ``Forbidden`` (403, naming ``action``) unless the caller's role is ``roles`` or one of them."""
        allowed = {roles} if isinstance(roles, Role) else set(roles)
        if self.role not in allowed:
            raise Forbidden(role=self.role.value, action=action)


def current_caller(
    x_civicloop_actor: Annotated[str, Header(max_length=100)] = "anonymous",
    x_civicloop_role: Annotated[Role, Header()] = Role.OPERATOR,
    x_civicloop_unit: Annotated[int | None, Header(ge=1, le=2**31 - 1)] = None,
) -> Caller:
    """Return the caller named by the request headers (defaults: an anonymous operator)."""
    return Caller(x_civicloop_actor.strip() or "anonymous", x_civicloop_role, x_civicloop_unit)


CurrentCaller = Annotated[Caller, Depends(current_caller)]


def _field_path(loc: tuple[Any, ...], kind: str = "") -> str:
    if kind == "json_invalid":  # loc is ("body", character offset): the whole body is at fault
        return "body"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[-1] if loc else "")


def _error(status: int, code: str, message: str, fields: list[dict[str, str]] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "fields": fields or []}}
    return JSONResponse(status_code=status, content=body)


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
        fields.append({
            "field": _field_path(tuple(err.get("loc", ())), kind), "type": kind,
            "message": translate(code, lang, **ctx),
        })
    return _error(422, "validation", translate("validation", lang), fields)


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
        return _error(exc.status_code, "http", str(exc.detail))

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        # the database is down or overloaded: a retryable 503, never a half-stored request
        log.exception("database error on %s %s", request.method, request.url.path)
        return _error(503, "internal", translate("internal", language(request)))
