"""What the OpenAPI schema says of the GeoReport v2 routes under ``/open311/v2``: each answers in
the format its extension names (``.json``: ``application/json``, ``.xml``: ``text/xml``, GeoReport
v2 "Format Support"), and every failure is the spec's ``errors`` list (GeoReport v2 "Errors"), in
that format too (``open311.render``).
"""

from __future__ import annotations

from typing import Any

_ERRORS_JSON = {
    "type": "array",
    "items": {"type": "object", "required": ["code", "description"],
              "properties": {"code": {"type": "integer"}, "description": {"type": "string"}}},
}
_XML = {"schema": {"type": "string"}}


def _errors(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": _ERRORS_JSON}, "text/xml": _XML}, **extra}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _errors("Any request that cannot be fulfilled: every problem listed (GeoReport v2 \"Errors\")"),
    403: _errors("A missing, unknown or revoked `api_key` (POST only)"),
    404: _errors("No such service, request, token or resource"),
    405: _errors("The resource does not take this method (header `Allow` lists those it takes)"),
    413: _errors("The body is larger than `max_body_bytes`"),
    "4XX": _errors("Any other client error, in the same list"),
    503: _errors("The database is unavailable; nothing was stored, retry later"),
}
"""The errors every Open311 route may answer with, for ``include_router(responses=…)``. The
``4XX`` entry also keeps FastAPI from documenting its own 422: validation errors are 400s here."""

RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: _errors("Too many submissions from this address; retry after `Retry-After` seconds",
                 headers={"Retry-After": {"description": "Seconds until the next call is accepted",
                                          "schema": {"type": "integer", "minimum": 1}}}),
}
"""The 429 of a rate-limited Open311 route (``core.ratelimit``)."""


def formats(status: int = 200) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses=`` entry of a GeoReport v2 route whose success is ``status``: JSON or
    XML, by the path's extension (FastAPI knows only the JSON of its default response class)."""
    return {status: {"content": {"application/json": {"schema": {}}, "text/xml": _XML}}}
