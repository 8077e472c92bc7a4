"""The ledger page (台账): the register of requests with filters (dates, lead unit, street, category,
status) and its Excel export, through ``requests.ledger`` (``ledger_rows`` within the caller's scope,
``write_xlsx``) — the same rows as ``GET /api/v1/ledger`` and ``civicloop ledger export``. The ledger
carries no personal data (names and phones are never selected; texts are masked)."""

from __future__ import annotations

import io
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import select

from civicloop.core.errors import CivicloopError
from civicloop.org.models import OrgUnit, UnitKind
from civicloop.requests.ledger import LedgerFilter, ledger_rows, parse_day, write_xlsx
from civicloop.requests.models import RequestStatus
from civicloop.requests.scope import request_condition
from civicloop.web.common import (
    LEDGER_ROLES,
    FormInvalid,
    Page,
    category_options,
    error_message,
    int_or_none,
    page,
    unit_options,
)

router = APIRouter()

Reader = Annotated[Page, page(LEDGER_ROLES, "open_ledger")]
Text = Annotated[str, Query(max_length=32)]
SHOWN = 200
EXPORT_MAX = 5000
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _filters(p: Page, values: dict[str, str]) -> LedgerFilter:
    """Build the filter from the query's text values; raises ``FieldError``/``FormInvalid`` (422)."""
    status = values["status"].strip()
    if status and status not in {s.value for s in RequestStatus}:
        raise FormInvalid({"status": p.t("v.enum", expected=", ".join(s.value for s in RequestStatus))})
    return LedgerFilter(
        start=parse_day(values["start"], "start") if values["start"].strip() else None,
        end=parse_day(values["end"], "end") if values["end"].strip() else None,
        unit_id=int_or_none(values["unit_id"], "unit_id", p.lang),
        street_id=int_or_none(values["street_id"], "street_id", p.lang),
        category_id=int_or_none(values["category_id"], "category_id", p.lang),
        status=RequestStatus(status) if status else None,
    )


def _row(p: Page, row: Any) -> dict[str, Any]:
    return {"id": row.id, "created": row.created_at.strftime("%Y-%m-%d %H:%M"), "title": row.title,
            "category": row.category_path or "", "street": row.street_name or "", "unit": row.lead_unit_name or "",
            "deadline": row.deadline.strftime("%Y-%m-%d %H:%M") if row.deadline else "", "status": row.status,
            "overdue": row.overdue, "satisfaction": row.satisfaction, "channel": row.channel}


@router.get("/ledger")
def ledger_page(p: Reader, start: Text = "", end: Text = "", unit_id: Text = "", street_id: Text = "",
                category_id: Text = "", status: Text = "") -> Response:
    """The ledger, newest request first (the first 200 rows shown; the export holds up to 5,000), within
    the caller's scope. A malformed date, ``start`` after ``end`` or an unknown id shows the form again
    with the message (422). Staff only."""
    values = {"start": start, "end": end, "unit_id": unit_id, "street_id": street_id, "category_id": category_id,
              "status": status}
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        filters = _filters(p, values)
        found = ledger_rows(p.session, filters=filters, settings=p.settings, limit=SHOWN,
                            scope=request_condition(p.session, p.user))
        rows = [_row(p, r) for r in found]
    except FormInvalid as exc:
        errors = exc.fields
    except CivicloopError as exc:
        errors = {".".join(getattr(exc, "field", ()) or ("form",)): error_message(exc, p.lang)}
    streets = [(u.id, u.name) for u in p.session.scalars(
        select(OrgUnit).where(OrgUnit.kind == UnitKind.STREET).order_by(OrgUnit.id))]
    query = urlencode({k: v for k, v in values.items() if v})
    return p.render("ledger.html", status=422 if errors else 200, rows=rows, values=values, errors=errors,
                    units=unit_options(p.session), streets=streets, categories=category_options(p.session),
                    statuses=[s.value for s in RequestStatus], export_url=f"/ledger/export.xlsx?{query}",
                    shown=SHOWN)


@router.get("/ledger/export.xlsx")
def ledger_export(p: Reader, start: Text = "", end: Text = "", unit_id: Text = "", street_id: Text = "",
                  category_id: Text = "", status: Text = "") -> Response:
    """The filtered ledger as an Excel workbook in the page's language (``requests.ledger.write_xlsx``:
    bold frozen header, text never run as a formula), at most 5,000 rows, newest first. 422 page for a
    bad filter. Staff only, within their scope."""
    values = {"start": start, "end": end, "unit_id": unit_id, "street_id": street_id, "category_id": category_id,
              "status": status}
    filters = _filters(p, values)
    rows = ledger_rows(p.session, filters=filters, settings=p.settings, limit=EXPORT_MAX,
                       scope=request_condition(p.session, p.user))
    binary = io.BytesIO()
    write_xlsx(rows, binary, lang=p.lang)
    span = "_".join(d.isoformat() for d in (filters.start, filters.end) if d is not None) or "all"
    disposition = f"attachment; filename=\"ledger-{span}.xlsx\"; filename*=UTF-8''{quote('台账-' + span + '.xlsx')}"
    return Response(binary.getvalue(), media_type=XLSX_MEDIA, headers={"Content-Disposition": disposition})
