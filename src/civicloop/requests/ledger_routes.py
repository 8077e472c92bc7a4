"""HTTP routes of the ledger (台账) under ``/api/v1``: the rows as JSON, and a file download
(Excel xlsx or CSV). Bad filter values answer 422 with a message on the field, never 500."""

from __future__ import annotations

import io
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from civicloop.core.http import Caller, DbSession, Lang, SettingsDep, allow
from civicloop.core.roles import STAFF
from civicloop.core.validation import MAX_ID
from civicloop.requests.ledger import LedgerFilter, LedgerRow, ledger_rows, parse_day, write_csv, write_xlsx
from civicloop.requests.models import RequestStatus
from civicloop.requests.scope import request_condition

router = APIRouter(prefix="/api/v1", tags=["ledger (台账)"])

MAX_ROWS = 5000
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA = "text/csv; charset=utf-8"

UnitId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Day = Annotated[str | None, Query(max_length=32, description="local date YYYY-MM-DD (inclusive)")]


def ledger_filter(
    start: Day = None,
    end: Day = None,
    unit_id: UnitId = None,
    street_id: UnitId = None,
    category_id: UnitId = None,
    status: RequestStatus | None = None,
) -> LedgerFilter:
    """Build a ``LedgerFilter`` from the query string; raises ``FieldError`` (422) for a date that
    is not ``YYYY-MM-DD`` (the range itself is checked by ``ledger_rows``)."""
    return LedgerFilter(
        start=parse_day(start, "start") if start is not None else None,
        end=parse_day(end, "end") if end is not None else None,
        unit_id=unit_id, street_id=street_id, category_id=category_id, status=status,
    )


Filters = Annotated[LedgerFilter, Depends(ledger_filter)]


@router.get("/ledger", response_model=list[LedgerRow], summary="台账 Ledger")
def list_ledger(
    filters: Filters,
    session: DbSession,
    settings: SettingsDep,
    caller: Annotated[Caller, allow(STAFF, "read_ledger")],
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 500,
) -> list[LedgerRow]:
    """Return ledger rows, newest request first: lead unit, street, deadline, status, reply and
    rating of each request, times in the users' zone. Filters: ``start``/``end`` (local dates,
    inclusive, on the request's creation), ``unit_id`` (lead unit), ``street_id``, ``category_id``
    (with its sub-categories), ``status``. 422 for ``start`` after ``end``, a malformed date or an
    unknown id. Staff only, each within their scope (``requests.scope``)."""
    return ledger_rows(session, filters=filters, settings=settings, limit=limit,
                       scope=request_condition(session, caller))


def _filename(filters: LedgerFilter, ext: str) -> str:
    span = "_".join(d.isoformat() for d in (filters.start, filters.end) if d is not None)
    return f"{span or 'all'}.{ext}"


@router.get("/ledger/export", summary="导出台账 Export the ledger",
            responses={200: {"content": {XLSX_MEDIA: {}, "text/csv": {}}}})
def export_ledger(
    filters: Filters,
    session: DbSession,
    settings: SettingsDep,
    caller: Annotated[Caller, allow(STAFF, "read_ledger")],
    lang: Lang,
    file_format: Annotated[Literal["xlsx", "csv"], Query(alias="format")] = "xlsx",
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = MAX_ROWS,
) -> Response:
    """Download the ledger as ``format=xlsx`` (default) or ``csv`` (UTF-8 with a BOM, so Excel
    reads the Chinese), headers and values in the caller's language. Same filters as
    ``GET /ledger``; at most ``limit`` rows, newest first. Staff only, within their scope."""
    rows = ledger_rows(session, filters=filters, settings=settings, limit=limit,
                       scope=request_condition(session, caller))
    if file_format == "csv":
        text = io.StringIO(newline="")
        text.write("\ufeff")
        write_csv(rows, text, lang=lang)
        body, media = text.getvalue().encode("utf-8"), CSV_MEDIA
    else:
        binary = io.BytesIO()
        write_xlsx(rows, binary, lang=lang)
        body, media = binary.getvalue(), XLSX_MEDIA
    name = _filename(filters, file_format)
    disposition = f"attachment; filename=\"ledger-{name}\"; filename*=UTF-8''{quote('台账-' + name)}"
    return Response(content=body, media_type=media, headers={"Content-Disposition": disposition})
