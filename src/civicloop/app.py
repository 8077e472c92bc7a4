"""The FastAPI application: JSON API under ``/api/v1`` and OpenAPI docs at ``/docs``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from civicloop import __version__
from civicloop.core import ratelimit
from civicloop.core.bodylimit import BodySizeLimit
from civicloop.core.http import ERROR_RESPONSES, error_response, install_error_handlers
from civicloop.core.settings import get_settings


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the classifier's model once at start (about 2 s with jieba's dictionary), so the first
    request does not wait for it; a missing or unreadable model only means requests wait for a person.
    With ``triage_mode = "deferred"``, run this worker's deferred intake runner
    (``requests.triage_queue.TriageRunner``) until shutdown."""
    from civicloop.intelligence import model_store
    from civicloop.requests.triage import model_path

    settings = get_settings()
    if settings.triage_on_intake:
        try:
            model_store.current(model_path(settings))
        except Exception:  # logged, never fatal: intake queues every request without a model
            logging.getLogger(__name__).exception("the classifier's model could not be loaded at start")
    runner = None
    if settings.triage_on_intake and settings.triage_mode == "deferred":
        from civicloop.requests.triage_queue import TriageRunner

        runner = TriageRunner(settings).start()  # drains what earlier runs left, then each filing
    try:
        yield
    finally:
        if runner is not None:
            runner.stop()


def create_app() -> FastAPI:
    """Build the application with every domain's routes and the one error handler."""
    from civicloop.accounts.routes import router as accounts_router
    from civicloop.analytics.finding_routes import router as findings_router
    from civicloop.analytics.routes import router as analytics_router
    from civicloop.catalog.routes import router as catalog_router
    from civicloop.open311 import openapi as open311_openapi
    from civicloop.open311 import render as open311_render
    from civicloop.open311.routes import router as open311_router
    from civicloop.org.routes import router as org_router
    from civicloop.requests.ledger_routes import router as ledger_router
    from civicloop.requests.routes import router as requests_router
    from civicloop.requests.triage_routes import router as triage_router

    app = FastAPI(
        lifespan=lifespan,
        title="civicloop",
        version=__version__,
        description="接诉即办：诉求受理、派单、签收、办结、回访、督办与三率考核。"
        " The closed loop of citizen requests: intake, dispatch, deadlines, callback, supervision, rates.",
    )
    install_error_handlers(app)
    for router in (requests_router, triage_router, org_router, catalog_router, ledger_router, analytics_router,
                   findings_router, accounts_router):
        app.include_router(router, responses=ERROR_RESPONSES)  # the error shape, documented in OpenAPI
    app.include_router(open311_router, responses=open311_openapi.ERROR_RESPONSES)
    open311_render.install(app)  # GeoReport v2 errors under /open311/v2 (after the one error handler)

    def render_error(request: Request, status: int, code: str, params: dict[str, Any]) -> Response:
        # errors raised outside the handlers: Open311's errors list under its prefix, else the JSON shape
        if request.url.path.startswith(open311_render.PREFIX):
            return open311_render.errors_response(request, status, [(code, params)])
        return error_response(request, status, code, **params)

    ratelimit.install(app, render_error)
    from civicloop import web

    app.include_router(web.router())  # the pages (issue 7), outside the OpenAPI schema
    web.install(app)  # /static, and errors under the pages' paths as pages (after the rate limit's handler)
    app.add_middleware(BodySizeLimit, max_bytes=get_settings().max_body_bytes, render=render_error)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        """Liveness probe: ``{"status": "ok"}``."""
        return {"status": "ok"}

    return app
