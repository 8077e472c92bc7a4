"""The ledger (台账): one row per service request with its lead unit, deadline, result and rating.

Read with one SQL query (plus one look-up of the ids a filter names), never by walking ORM rows,
and written to Excel (xlsx) or CSV. The ledger carries no personal data: the citizen's name and
phone are not selected at all.

The *lead order* of a request is its latest lead work order (主办工单, highest id): after a
reopen that is the new round, after a return it is the returned order until the request is
dispatched again. Unit, deadline, reply and rating of a row are the lead order's.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from civicloop.catalog.models import Category
from civicloop.core.errors import FieldError
from civicloop.core.i18n import translate, word
from civicloop.core.settings import Settings
from civicloop.core.timeutil import as_utc
from civicloop.core.validation import mask_phones_in_text
from civicloop.org.models import OrgUnit
from civicloop.requests.models import (
    Channel,
    RequestStatus,
    Satisfaction,
    ServiceRequest,
    WorkOrder,
    WorkOrderRole,
    WorkOrderStatus,
)
from civicloop.requests.service import now_or

MIN_YEAR, MAX_YEAR = 2000, 2100
"""Dates a filter may name: wide enough for any real ledger, narrow enough that local midnight
always converts to UTC without overflow."""

OPEN_LEAD = frozenset({WorkOrderStatus.PENDING, WorkOrderStatus.ACKNOWLEDGED, WorkOrderStatus.EXTENSION_REQUESTED})
"""Lead-order statuses in which the unit still owes an acknowledgement or a reply."""

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_XLSX_MAX_TEXT = 32767  # Excel's limit on the characters of one cell


@dataclass(frozen=True)
class LedgerFilter:
    """Which requests a ledger holds. Every field is optional; given ones are ANDed.

    ``start``/``end`` are local dates (in ``settings.tz``), both inclusive, on the request's
    ``created_at``. ``unit_id`` is the lead order's unit; ``street_id`` the request's street;
    ``category_id`` matches the category and every category below it; ``status`` the request's.
    """

    start: date | None = None
    end: date | None = None
    unit_id: int | None = None
    street_id: int | None = None
    category_id: int | None = None
    status: RequestStatus | None = None


@dataclass(frozen=True)
class LedgerRow:
    """One line of the ledger. Times are aware, in the users' zone (``settings.tz``).

    ``deadline`` is the lead order's resolution deadline (``due_at``), or its response deadline
    (``response_due_at``) while it is not yet acknowledged. ``overdue`` is true when any lead order
    of the request was flagged overdue, the lead order is still open past ``deadline``, or it
    was acknowledged after its response deadline or replied after its resolution deadline.
    """

    id: int
    created_at: datetime
    channel: Channel
    title: str
    category_path: str | None
    street_id: int | None
    street_name: str | None
    lead_unit_id: int | None
    lead_unit_name: str | None
    deadline: datetime | None
    status: RequestStatus
    reply_text: str | None
    replied_at: datetime | None
    resolved: bool | None
    satisfaction: Satisfaction | None
    overdue: bool
    fallback: bool
    return_count: int
    reopen_count: int


def parse_day(text: str, field: str) -> date:
    """Parse a local date ``YYYY-MM-DD`` given in input ``field``.

    Returns the ``date``. Raises ``FieldError(field, "v.date_parsing")`` for anything else
    (``2019-6-1``, ``2019-02-30``, ``20190601``) and ``FieldError(field, "v.year_range")`` for a
    year outside ``MIN_YEAR``..``MAX_YEAR``.
    """
    if not _DAY.fullmatch(text.strip()):
        raise FieldError(field, "v.date_parsing")
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise FieldError(field, "v.date_parsing") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise FieldError(field, "v.year_range", min=MIN_YEAR, max=MAX_YEAR)
    return day


def day_bounds(start: date | None, end: date | None, tz: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    """Return the UTC instants [start 00:00 local, the day after ``end`` 00:00 local) of an
    inclusive range of local dates; an open side stays ``None``.

    Raises ``FieldError("start", "v.date_range")`` when ``start`` is after ``end``, and
    ``FieldError(..., "v.year_range")`` for a year outside ``MIN_YEAR``..``MAX_YEAR``.
    """
    for field, day in (("start", start), ("end", end)):
        if day is not None and not MIN_YEAR <= day.year <= MAX_YEAR:
            raise FieldError(field, "v.year_range", min=MIN_YEAR, max=MAX_YEAR)
    if start is not None and end is not None and start > end:
        raise FieldError("start", "v.date_range")
    lower = as_utc(datetime.combine(start, time(), tzinfo=tz)) if start is not None else None
    upper = as_utc(datetime.combine(end + timedelta(days=1), time(), tzinfo=tz)) if end is not None else None
    return lower, upper


def _look_up(session: Session, filters: LedgerFilter) -> str | None:
    """Check the ids a filter names, in one query; return the path of the filter's category.

    Raises ``FieldError`` for an unknown ``unit_id``, ``street_id`` or ``category_id``.
    """
    ids = {"unit_id": filters.unit_id, "street_id": filters.street_id, "category_id": filters.category_id}
    wanted = {field: value for field, value in ids.items() if value is not None}
    if not wanted:
        return None
    columns = [
        select(Category.path).where(Category.id == value).scalar_subquery() if field == "category_id"
        else select(OrgUnit.id).where(OrgUnit.id == value).scalar_subquery()
        for field, value in wanted.items()
    ]
    found = dict(zip(wanted, session.execute(select(*columns)).one(), strict=True))
    for field, value in wanted.items():
        if found[field] is None:
            raise FieldError(field, "v.unknown_category" if field == "category_id" else "v.unknown_unit", id=value)
    return found.get("category_id")


def ledger_rows(
    session: Session,
    *,
    filters: LedgerFilter,
    settings: Settings,
    now: datetime | None = None,
    limit: int | None = None,
    scope: ColumnElement[bool] | None = None,
) -> list[LedgerRow]:
    """Return the ledger rows matching ``filters``, newest request first (then by id, descending).

    ``now`` (aware; default the current time) decides the overdue flag of open orders; ``limit``
    caps the number of rows (``None``: all); ``scope`` is the caller's condition on requests
    (``requests.scope.request_condition``; ``None``: all). One query over requests joined with their lead order,
    unit, street and category, plus one look-up of the ids named by the filters (if any).

    Raises ``FieldError`` (422) for ``start`` after ``end`` (``v.date_range``), a year out of
    range, or an unknown ``unit_id``/``street_id``/``category_id``.
    """
    now = now_or(now)
    tz = settings.tz
    lower, upper = day_bounds(filters.start, filters.end, tz)
    category_path = _look_up(session, filters)

    # correlated look-ups by request_id (indexed): the cost follows the rows read, not the table size
    lead_id = (
        select(func.max(WorkOrder.id))
        .where(WorkOrder.request_id == ServiceRequest.id, WorkOrder.role == WorkOrderRole.LEAD)
        .correlate(ServiceRequest)
        .scalar_subquery()
    )
    flagged = (
        exists()
        .where(WorkOrder.request_id == ServiceRequest.id, WorkOrder.role == WorkOrderRole.LEAD,
               WorkOrder.overdue.is_(True))
        .correlate(ServiceRequest)
    )
    lead = aliased(WorkOrder, name="lead")
    unit = aliased(OrgUnit, name="lead_unit")
    street = aliased(OrgUnit, name="street")
    query = (
        select(
            ServiceRequest.id, ServiceRequest.created_at, ServiceRequest.channel, ServiceRequest.title,
            Category.path, ServiceRequest.street_id, street.name, unit.id, unit.name, ServiceRequest.status,
            ServiceRequest.fallback, ServiceRequest.return_count, ServiceRequest.reopen_count,
            lead.status, lead.due_at, lead.response_due_at, lead.acknowledged_at, lead.reply_text, lead.replied_at,
            lead.resolved,
            lead.satisfaction, flagged.label("flagged"),
        )
        .select_from(ServiceRequest)
        .outerjoin(lead, lead.id == lead_id)
        .outerjoin(unit, unit.id == lead.unit_id)
        .outerjoin(street, street.id == ServiceRequest.street_id)
        .outerjoin(Category, Category.id == ServiceRequest.category_id)
        .order_by(ServiceRequest.created_at.desc(), ServiceRequest.id.desc())
    )
    if scope is not None:
        query = query.where(scope)
    if lower is not None:
        query = query.where(ServiceRequest.created_at >= lower)
    if upper is not None:
        query = query.where(ServiceRequest.created_at < upper)
    if filters.unit_id is not None:
        query = query.where(lead.unit_id == filters.unit_id)
    if filters.street_id is not None:
        query = query.where(ServiceRequest.street_id == filters.street_id)
    if category_path is not None:
        query = query.where(or_(Category.path == category_path,
                                Category.path.startswith(category_path + "/", autoescape=True)))
    if filters.status is not None:
        query = query.where(ServiceRequest.status == filters.status)
    if limit is not None:
        query = query.limit(limit)

    rows: list[LedgerRow] = []
    for (rid, created, channel, title, path, street_id, street_name, unit_id, unit_name, status, fallback,
         returns, reopens, lead_status, due_at, response_due_at, acknowledged_at, reply_text, replied_at, resolved,
         satisfaction, any_overdue) in session.execute(query):
        deadline = due_at or response_due_at
        open_late = lead_status in OPEN_LEAD and deadline is not None and deadline < now
        # replied after the deadline before any overdue job ran: late all the same
        replied_late = replied_at is not None and due_at is not None and replied_at > due_at
        acknowledged_late = acknowledged_at is not None and acknowledged_at > response_due_at
        rows.append(LedgerRow(
            id=rid, created_at=created.astimezone(tz), channel=Channel(channel),
            title=mask_phones_in_text(title) or "",
            category_path=path, street_id=street_id, street_name=street_name, lead_unit_id=unit_id,
            lead_unit_name=unit_name, deadline=deadline.astimezone(tz) if deadline else None,
            status=RequestStatus(status), reply_text=mask_phones_in_text(reply_text),
            replied_at=replied_at.astimezone(tz) if replied_at else None, resolved=resolved,
            satisfaction=Satisfaction(satisfaction) if satisfaction else None,
            overdue=bool(any_overdue) or open_late or replied_late or acknowledged_late, fallback=bool(fallback),
            return_count=returns or 0,
            reopen_count=reopens or 0,
        ))
    return rows


# (field of LedgerRow, Chinese header, English header, column width in characters)
COLUMNS: tuple[tuple[str, str, str, int], ...] = (
    ("id", "诉求编号", "Request ID", 10),
    ("created_at", "登记时间", "Created", 17),
    ("channel", "渠道", "Channel", 10),
    ("title", "诉求标题", "Title", 36),
    ("category_path", "诉求分类", "Category", 30),
    ("street_name", "所属街道", "Street", 14),
    ("lead_unit_name", "主办单位", "Lead unit", 24),
    ("deadline", "办理时限", "Deadline", 17),
    ("status", "状态", "Status", 12),
    ("reply_text", "答复内容", "Reply", 40),
    ("replied_at", "答复时间", "Replied at", 17),
    ("resolved", "是否解决", "Resolved", 10),
    ("satisfaction", "满意度", "Satisfaction", 14),
    ("overdue", "是否超期", "Overdue", 10),
    ("fallback", "是否兜底", "Fallback", 10),
    ("return_count", "退单次数", "Returns", 10),
    ("reopen_count", "重办次数", "Reopens", 10),
)
TIME_FORMAT = "%Y-%m-%d %H:%M"
XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm"
_LABELLED = {"channel": "channel", "status": "status", "satisfaction": "satisfaction"}


def headers(lang: str = "zh") -> list[str]:
    """Return the ledger's column headers in ``lang`` (``"zh"`` or ``"en"``)."""
    return [en if lang == "en" else zh for _, zh, en, _ in COLUMNS]


def _cells(row: LedgerRow, lang: str) -> list[Any]:
    """Values of one row for a sheet: enums and booleans as words of ``lang``, times as naive
    local datetimes (Excel has no zones), blanks as ``None``."""
    out: list[Any] = []
    for field, *_ in COLUMNS:
        value = getattr(row, field)
        if value is None:
            out.append(None)
        elif isinstance(value, bool):
            out.append(translate("word.yes" if value else "word.no", lang))
        elif field in _LABELLED:
            out.append(word(_LABELLED[field], value, lang))
        elif isinstance(value, datetime):
            out.append(value.replace(tzinfo=None))
        else:
            out.append(value)
    return out


def _safe_text(value: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", value)[:_XLSX_MAX_TEXT]


def write_xlsx(rows: Iterable[LedgerRow], target: Path | BinaryIO, *, lang: str = "zh") -> None:
    """Write the ledger as an Excel workbook to ``target`` (a path or a binary file object).

    One sheet (台账 / Ledger) with a bold, frozen header row in ``lang`` (Chinese by default,
    English for ``"en"``), an autofilter over all columns and fixed column widths. Times are
    date-time cells shown as local ``YYYY-MM-DD HH:MM``; statuses, channels, ratings and yes/no
    are words of ``lang``. Text is always stored as text, never as a formula, so a title such as
    ``=HYPERLINK(...)`` cannot run in the reader's Excel. Raises ``OSError`` from the target.
    """
    book = Workbook()
    sheet = book.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = "Ledger" if lang == "en" else "台账"
    sheet.append(headers(lang))
    bold = Font(bold=True)
    for cell in sheet[1]:
        cell.font = bold
    count = 0
    for count, row in enumerate(rows, start=1):
        for col, value in enumerate(_cells(row, lang), start=1):
            cell = sheet.cell(row=count + 1, column=col)
            if isinstance(value, str):
                cell.value = _safe_text(value)
                cell.data_type = "s"  # never a formula
            else:
                cell.value = value
                if isinstance(value, datetime):
                    cell.number_format = XLSX_TIME_FORMAT
    for col, (_, _, _, width) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[get_column_letter(col)].width = width
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{count + 1}"
    book.save(target)


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(TIME_FORMAT)
    text = str(value)
    # a spreadsheet opening the CSV would evaluate a leading = + - @ as a formula (OWASP: CSV injection)
    return "'" + text if text.startswith(_FORMULA_START) else text


def write_csv(rows: Iterable[LedgerRow], target: TextIO, *, lang: str = "zh") -> None:
    """Write the ledger as CSV (RFC 4180, ``\\r\\n`` line ends) to the text stream ``target``.

    Header row in ``lang``; times as local ``YYYY-MM-DD HH:MM``; statuses, channels, ratings and
    yes/no as words of ``lang``. Text starting with ``= + - @`` gets a leading ``'`` so a
    spreadsheet does not run it as a formula. The caller opens ``target`` as UTF-8 (with
    ``newline=""``) and writes a BOM first if Excel is to open the file.
    """
    writer = csv.writer(target)
    writer.writerow(headers(lang))
    for row in rows:
        writer.writerow([_csv_text(value) for value in _cells(row, lang)])

