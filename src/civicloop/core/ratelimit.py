"""Rate limits per client (issue #6), with the ``limits`` library (maintained, the engine behind
Flask-Limiter and SlowAPI).

``Depends(rate_limited("intake"))`` on a route counts each call against the rate
``settings.rate_limit_intake`` (``"60/minute"``: the notation of ``limits``) for the calling
client; ``"login"`` reads ``settings.rate_limit_login``. The window is a moving one (``limits``'
``MovingWindowRateLimiter``: at most N calls in any interval of the period, no burst at a window's
edge). A call over the rate is refused before the endpoint runs, so it stores nothing:

    429 Too Many Requests (RFC 6585 §4), ``Retry-After: <seconds>`` (RFC 9110 §10.2.3), and the
    error shape with code ``rate_limited`` in the caller's language (Open311's errors list under
    ``/open311/v2``).

**Who is a client**: the logged-in user (``user:<id>``, session or API token) when there is one,
so the operators of one call centre behind one address do not share a budget; else the client's
IP address (``ip:<address>``), as the server sees it: behind a reverse proxy, run uvicorn with
``--proxy-headers`` and ``--forwarded-allow-ips`` so that is the real client, not the proxy.
Self-named header callers (``X-Civicloop-Actor``) are not logged in and count by address.

**Where counts live**: ``settings.rate_limit_storage_uri``; ``memory://`` (default) per process,
``redis://localhost:6379`` shared by every worker. A storage that cannot be reached lets calls
through (logged): losing a citizen's request is worse than a missed limit.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.responses import Response

from civicloop.core.bodylimit import ErrorRenderer
from civicloop.core.errors import CivicloopError
from civicloop.core.http import Caller, CurrentCaller, ErrorOut, SettingsDep, error_response
from civicloop.core.settings import Settings

log = logging.getLogger("civicloop.ratelimit")

RATES: dict[str, str] = {"intake": "rate_limit_intake", "login": "rate_limit_login"}
"""Name of a limit → the setting holding its rate."""

RATE_LIMITED_RESPONSES: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorOut, "description": "Too many calls from this client; retry after `Retry-After` seconds",
          "headers": {"Retry-After": {"description": "Seconds until the next call is accepted",
                                      "schema": {"type": "integer", "minimum": 1}}}},
}
"""The 429 answer, for the ``responses=`` of a rate-limited route (documents it in OpenAPI)."""

_LOCK = threading.Lock()


class RateLimited(CivicloopError):
    """The client has used up its rate (429); ``retry_after`` is in whole seconds, at least 1."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, *, retry_after: int) -> None:
        super().__init__("rate_limited", seconds=retry_after)
        self.retry_after = retry_after


def client_key(request: Request, caller: Caller | None = None) -> str:
    """Return who is counted: ``user:<id>`` for a logged-in caller, else ``ip:<address>`` of the
    connection (``ip:unknown`` when the server gives none)."""
    user_id = getattr(caller, "user_id", None)
    if user_id is not None:
        return f"user:{user_id}"
    return f"ip:{request.client.host if request.client else 'unknown'}"


def _limiter(app: FastAPI, uri: str) -> MovingWindowRateLimiter:
    """The application's limiter on storage ``uri``, made on first use (one per app and URI, so a
    test's fresh app starts with fresh ``memory://`` counts)."""
    with _LOCK:
        limiters: dict[str, MovingWindowRateLimiter] | None = getattr(app.state, "rate_limiters", None)
        if limiters is None:
            limiters = {}
            app.state.rate_limiters = limiters
        if uri not in limiters:
            limiters[uri] = MovingWindowRateLimiter(storage_from_string(uri, wrap_exceptions=True))
        return limiters[uri]


def hit(request: Request, *, settings: Settings, name: str, key: str) -> None:
    """Count one call of ``key`` against the limit ``name``; raise :class:`RateLimited` when it is
    over the rate. A storage error is logged and the call let through."""
    rate: RateLimitItem = parse(getattr(settings, RATES[name]))
    limiter = _limiter(request.app, settings.rate_limit_storage_uri)
    try:
        if limiter.hit(rate, name, key):
            return
        reset_at, _ = limiter.get_window_stats(rate, name, key)
    except StorageError:
        log.exception("rate-limit storage %s failed; call let through", settings.rate_limit_storage_uri)
        return
    raise RateLimited(retry_after=max(1, math.ceil(reset_at - time.time())))


def rate_limited(name: str, *, per_user: bool = True) -> Callable[..., None]:
    """Return a FastAPI dependency that counts each call against the limit ``name`` (a key of
    :data:`RATES`: ``"intake"``, ``"login"``) per client (:func:`client_key`), raising
    :class:`RateLimited` (429) over the rate. ``per_user=False`` counts by address only, for
    routes without the JSON API's caller (Open311, whose client is an ``api_key`` checked later).
    Raises ``ValueError`` at once for an unknown ``name``.

    Use: ``@router.post(..., dependencies=[Depends(rate_limited("login"))],
    responses=RATE_LIMITED_RESPONSES)``."""
    if name not in RATES:
        raise ValueError(f"unknown rate limit {name!r}; known: {sorted(RATES)}")
    if per_user:
        def limit_caller(request: Request, settings: SettingsDep, caller: CurrentCaller) -> None:
            hit(request, settings=settings, name=name, key=client_key(request, caller))

        return limit_caller

    def limit_address(request: Request, settings: SettingsDep) -> None:
        hit(request, settings=settings, name=name, key=client_key(request))

    return limit_address


def install(app: FastAPI, render: ErrorRenderer | None = None) -> None:
    """Answer :class:`RateLimited` on ``app`` with 429, ``Retry-After`` and the error rendered by
    ``render`` (``core.bodylimit.ErrorRenderer``; default the JSON API's shape)."""

    async def _limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        params = {"seconds": exc.retry_after}
        response = render(request, 429, exc.code, params) if render else error_response(request, 429, exc.code,
                                                                                         **params)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    app.add_exception_handler(RateLimited, _limited)
