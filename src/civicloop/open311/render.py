"""GeoReport v2 output: XML as the spec shows it, JSON alongside (its Spark-convention mapping), and
the spec's ``errors`` list for every failure under ``/open311/v2``.

GeoReport v2 "Format Support": the format is the resource's extension (``services.xml``,
``requests/12.json``); XML is ``text/xml; charset=utf-8`` with an ``encoding="utf-8"`` declaration,
schemaless and without a namespace; JSON is ``application/json; charset=utf-8``. A list under
``attributes`` or ``values`` becomes one child element per item (``<attributes><attribute>``).
"""

from __future__ import annotations

import json
import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from civicloop.core.errors import CivicloopError
from civicloop.core.http import allowed_methods, language
from civicloop.core.i18n import label, translate

log = logging.getLogger("civicloop.open311")

PREFIX = "/open311/v2"
FORMATS = ("json", "xml")
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
ITEM_TAG = {"attributes": "attribute", "values": "value", "services": "service",
            "service_requests": "request", "errors": "error"}
"""Element name of one item of each list (GeoReport v2 examples)."""


class Open311Error(Exception):
    """A failure answered with the spec's ``errors`` list. ``problems`` are (message code, params)
    pairs of the message catalogues (``core.i18n``), each rendered as one ``error`` with ``code`` = ``status``.

    GeoReport v2 "Errors": 404 for a resource that does not exist, 403 for a missing or wrong
    ``api_key``, 400 for any other request that cannot be fulfilled."""

    def __init__(self, status: int, problems: Sequence[tuple[str, dict[str, Any]]]) -> None:
        super().__init__(f"{status} {[code for code, _ in problems]}")
        self.status = status
        self.problems = list(problems)


def fail(status: int, code: str, /, **params: Any) -> Open311Error:
    """Return (for ``raise``) an :class:`Open311Error` with one problem."""
    return Open311Error(status, [(code, params)])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def _fill(parent: ET.Element, data: dict[str, Any]) -> None:
    for key, value in data.items():
        child = ET.SubElement(parent, key)
        if isinstance(value, list):
            for item in value:
                _fill(ET.SubElement(child, ITEM_TAG.get(key, "item")), item)
        elif value is not None:
            child.text = _text(value)


def to_xml(root: str, body: list[dict[str, Any]] | dict[str, Any]) -> bytes:
    """Return the XML document of ``body``: a list becomes ``<root>`` with one item element per dict
    (``services``/``service``, ``service_requests``/``request``), a dict becomes ``<root>`` itself
    (``service_definition``). ``None`` is an empty element, booleans ``true``/``false``."""
    top = ET.Element(root)
    if isinstance(body, list):
        for item in body:
            _fill(ET.SubElement(top, ITEM_TAG[root]), item)
    else:
        _fill(top, body)
    ET.indent(top, space="  ")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(top, encoding="unicode").encode("utf-8")


def respond(fmt: str, root: str, body: list[dict[str, Any]] | dict[str, Any], status: int = 200,
            headers: dict[str, str] | None = None) -> Response:
    """Return ``body`` as a response in ``fmt`` (``json`` or ``xml``; ``root`` names the XML root)."""
    if fmt == "json":
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Response(content, status_code=status, media_type=JSON_TYPE, headers=headers)
    return Response(to_xml(root, body), status_code=status, media_type=XML_TYPE, headers=headers)


def check_format(fmt: str) -> str:
    """Return ``fmt`` if it is ``json`` or ``xml``; raises :class:`Open311Error` 400 otherwise."""
    if fmt not in FORMATS:
        raise fail(400, "o311.format", format=fmt[:20])
    return fmt


def format_of(path: str) -> str:
    """Return the format a path asks for: ``json`` for ``….json``, else XML (the spec's required one)."""
    return "json" if path.endswith(".json") else "xml"


def _describe(code: str, params: dict[str, Any], lang: str) -> str:
    text = translate(code, lang, **params)
    return f"{params['field']}: {text}" if params.get("field") else text


def errors_response(request: Request, status: int, problems: Sequence[tuple[str, dict[str, Any]]]) -> Response:
    """Render ``problems`` as the spec's errors list in the path's format and the caller's language."""
    lang = language(request)
    body = [{"code": status, "description": _describe(code, params, lang)} for code, params in problems]
    return respond(format_of(request.url.path), "errors", body, status=status)


def _validation_problems(exc: RequestValidationError) -> list[tuple[str, dict[str, Any]]]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header"))
        ctx = {k: v for k, v in (err.get("ctx") or {}).items() if isinstance(v, int | str)}
        problems.append((f"v.{err.get('type', 'default')}", {"field": field, **ctx}))
    return problems


def install(app: FastAPI) -> None:
    """Make every error under ``/open311/v2`` the spec's ``errors`` list.

    Wraps the application's handlers (``core.http.install_error_handlers``, installed first): a path
    under the prefix is answered here, any other path by the original handler. Raised errors go
    through the session dependency first, so nothing a failed request wrote is committed."""
    originals: dict[Any, Callable[..., Any]] = dict(app.exception_handlers)

    def wrap(kind: Any, convert: Callable[[Request, Any], Response]) -> None:
        original = originals.get(kind)

        async def handler(request: Request, exc: Any) -> Response:
            if request.url.path.startswith(PREFIX) or original is None:
                return convert(request, exc)
            return await original(request, exc)

        app.add_exception_handler(kind, handler)

    def domain(request: Request, exc: CivicloopError) -> Response:
        params = dict(exc.params)
        if "what" in params:
            params["what"] = label(str(params["what"]), language(request))
        status = exc.status_code if exc.status_code in (403, 404) else 400
        return errors_response(request, status, [(exc.code, params)])

    def http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return errors_response(request, 404, [("o311.no_resource", {"path": request.url.path[:200]})])
        if exc.status_code == 405:  # with the Allow header RFC 9110 §15.5.6 requires
            response = errors_response(request, 405, [("o311.method", {"method": request.method})])
            response.headers["Allow"] = allowed_methods(request)
            return response
        return errors_response(request, 400, [("o311.bad_request", {})])

    def database(request: Request, exc: OperationalError) -> Response:
        log.exception("database error on %s %s", request.method, request.url.path)
        return errors_response(request, 503, [("internal", {})])

    app.add_exception_handler(Open311Error, lambda request, exc: errors_response(request, exc.status, exc.problems))
    wrap(CivicloopError, domain)
    wrap(RequestValidationError, lambda request, exc: errors_response(request, 400, _validation_problems(exc)))
    wrap(StarletteHTTPException, http)
    wrap(OperationalError, database)
