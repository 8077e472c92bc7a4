"""The web app (issue 7): server-rendered pages for every role of 接诉即办, Chinese first.

:func:`router` gathers the pages of each role (one module each); :func:`install` mounts the static
files at ``/static`` and makes errors under the pages' paths pages too (the JSON API keeps its shape).
What each page does and who sees it: docs/web.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicloop.core.auth import Unauthenticated
from civicloop.core.errors import CivicloopError
from civicloop.web.common import (
    HERE,
    FormInvalid,
    Rerender,
    error_message,
    error_page,
    is_web,
    login_redirect,
    web_lang,
)
from civicloop.web.messages import text


def router() -> APIRouter:
    """Return one router with every page (left out of the OpenAPI schema: pages are not API)."""
    from civicloop.web import analysis, auth, case, dispatch, ledger, operator, resident, supervise, unit

    combined = APIRouter(include_in_schema=False)
    for module in (auth, operator, dispatch, unit, supervise, case, analysis, resident, ledger):
        combined.include_router(module.router)
    return combined


def install(app: FastAPI) -> None:
    """Mount ``/static`` (the vendored ECharts, htmx and Pico CSS, copied from npm by ``make``, and the
    app's own CSS and script at ``/static/web``) and wrap the application's error handlers: under a page
    path (``common.WEB_PATHS``) a domain error, a validation error, an unknown page or a database outage
    is an HTML page in the user's language (a missing login: a redirect to ``/login``); any other path is
    answered by the handler installed before (the JSON API's, Open311's). Call after
    ``core.ratelimit.install`` so a refused login is a page too."""
    app.mount("/static/web", StaticFiles(directory=HERE / "static", check_dir=False), name="web-static")
    app.mount("/static", StaticFiles(directory=HERE.parent / "static", check_dir=False), name="static")
    originals: dict[Any, Any] = dict(app.exception_handlers)

    def wrap(kind: Any, convert: Any) -> None:
        original = originals.get(kind) or originals.get(CivicloopError)

        async def handler(request: Request, exc: Any) -> Response:
            if is_web(request):
                return convert(request, exc)
            return await original(request, exc)

        app.add_exception_handler(kind, handler)

    def domain(request: Request, exc: CivicloopError) -> Response:
        if isinstance(exc, Unauthenticated) and exc.code == "unauthenticated":
            return login_redirect(request)
        lang = web_lang(request)
        fields = exc.fields if isinstance(exc, FormInvalid) else {}
        field = getattr(exc, "field", None)
        if field:
            fields = {".".join(field): error_message(exc, lang)}
        response = error_page(request, exc.status_code, error_message(exc, lang), fields)
        retry = getattr(exc, "retry_after", None)
        if retry is not None:
            response.headers["Retry-After"] = str(retry)
        return response

    def validation(request: Request, exc: RequestValidationError) -> Response:
        lang = web_lang(request)
        fields = {}
        for err in exc.errors():
            ctx = {k: str(v) for k, v in dict(err.get("ctx") or {}).items()}
            name = ".".join(str(p) for p in err.get("loc", ())[1:]) or "form"
            fields.setdefault(name, text(f"v.{err.get('type', 'default')}", lang, **ctx))
        return error_page(request, 422, text("validation", lang), fields)

    def http(request: Request, exc: StarletteHTTPException) -> Response:
        lang = web_lang(request)
        status = exc.status_code if exc.status_code in (404, 405) else 400
        message = text("error.404", lang) if status == 404 else text("method", lang, method=request.method)
        response = error_page(request, status, message)
        if status == 405 and exc.headers:
            response.headers.update(exc.headers)
        return response

    def database(request: Request, exc: OperationalError) -> Response:
        return error_page(request, 503, text("internal", web_lang(request)))

    app.add_exception_handler(Rerender, lambda request, exc: exc.response)
    wrap(CivicloopError, domain)
    from civicloop.core.ratelimit import RateLimited

    if RateLimited in originals:
        wrap(RateLimited, domain)
    wrap(RequestValidationError, validation)
    wrap(StarletteHTTPException, http)
    wrap(OperationalError, database)
