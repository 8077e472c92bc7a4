"""A limit on the size of request bodies (issue #6, "bad input"), as a pure ASGI middleware.

A body larger than ``settings.max_body_bytes`` is refused with **413 Content Too Large** (RFC 9110
§15.5.14) in the project's error shape, code ``too_large``, message in the caller's language:

* when ``Content-Length`` says so, at once, without reading the body;
* when the body comes without a length (``Transfer-Encoding: chunked``) or is longer than its
  header claims, as soon as the bytes read pass the limit: the application's next read fails, and
  whatever it answers to that is replaced by the 413. Nothing it wrote is committed, since its
  request fails before the endpoint runs (or the endpoint's session rolls back on the error).

Every body is counted, whatever the method or path, before FastAPI, the form parser or Open311's
form reader see it. The answer says ``Connection: close``: the unread rest of the body is not
worth reading.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ErrorRenderer = Callable[[Request, int, str, dict[str, Any]], Response]
"""``render(request, status, code, params)``: the error answer for ``request`` with the message
``code`` of the catalogues (``core.i18n``) (the JSON API's shape, or Open311's errors list under its prefix)."""


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body read so far passes the limit, so the application
    stops reading; never seen by a client (the middleware answers 413 instead)."""


def _default_render(request: Request, status: int, code: str, params: dict[str, Any]) -> Response:
    from civicloop.core.http import error_response

    return error_response(request, status, code, **params)


class BodySizeLimit:
    """ASGI middleware: refuse a request body of more than ``max_bytes`` bytes with 413, rendered
    by ``render`` (default: the JSON API's error shape, ``core.http.error_response``).

    Takes the wrapped ASGI app; ``max_bytes`` is an int ≥ 0 (``settings.max_body_bytes``). Raises
    nothing to the server: a body that grows past the limit ends in the 413 answer."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, render: ErrorRenderer | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.render = render or _default_render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass ``scope`` on to the app, counting the body's bytes; answer 413 instead when they
        (or the declared ``Content-Length``) pass ``max_bytes``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        overflow = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, overflow
            if overflow:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflow = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflow and not started:
                return  # the app's answer to its failed read: replaced by the 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not overflow or started:
                raise
        if overflow and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self.render(Request(scope), 413, "too_large", {"max_bytes": self.max_bytes})
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself; count the bytes anyway
    return None
