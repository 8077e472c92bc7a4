"""The three rates (三率) of a month, per handling unit or per street, and the ranking by them.

Response rate (响应率), resolution rate (解决率) and satisfaction rate (满意率) are the three rates
by which the Beijing Regulations on Handling Citizens' Requests Immediately (北京市接诉即办工作条例,
in force 2021-09-24) have handling units assessed. The formulas below are civicloop's reading of
them; the weight of a 'basically satisfied' rating (``basic_satisfaction_weight``, 0.8 by
default) and the weights of the composite score (``weight_response``/``weight_resolution``/
``weight_satisfaction``, 10/45/45 by default) are set by the city in ``core.settings``.

Every rate is a ratio in [0, 1] computed on lead work orders (主办工单) only, attributed to the
unit holding the order; a rate whose denominator is 0 is ``None`` (not defined), never 0.

* response rate = responded ÷ due, over lead orders *dispatched* in the month, where
  due = not returned, not cancelled, and not still pending with a response deadline that has not
  passed at ``now``; responded = due and acknowledged at or before ``response_due_at``.
* resolution rate = resolved ÷ called back, over lead orders whose *callback* falls in the month.
* satisfaction rate = (satisfied + basic_satisfaction_weight × basically satisfied) ÷ called back,
  over the same orders.
* composite = Σ wᵢ·rateᵢ ÷ Σ wᵢ over the rates that are defined (weights renormalised).

Months are calendar months of the users' zone (``settings.tz``). See docs/metrics.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.orm import Session

from civicloop.core.errors import FieldError
from civicloop.core.settings import Settings
from civicloop.core.timeutil import as_utc
from civicloop.org.models import OrgUnit, UnitKind
from civicloop.requests.models import Satisfaction, WorkOrder, WorkOrderRole, WorkOrderStatus
from civicloop.requests.service import now_or

Level = Literal["unit", "street"]
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_MAX_DEPTH = 16  # bounded walk up the hierarchy: a cycle in bad data must not hang a report


def parse_month(text: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """Return the calendar month ``YYYY-MM`` of zone ``tz`` as aware UTC instants [start, end).

    ``"2019-06"`` in Asia/Shanghai gives (2019-05-31 16:00 UTC, 2019-06-30 16:00 UTC). Raises
    ``FieldError("month", "v.month")`` for text not shaped ``YYYY-MM`` (``2019-6``, ``2019-6x``,
    ``201906``) and ``FieldError("month", "v.month_range")`` for a well-shaped month that does not
    exist or lies outside 2000-01…2100-12 (``2019-13``, ``0000-01``), the ledger's year range.
    """
    found = _MONTH.fullmatch(text.strip())
    if found is None:
        raise FieldError("month", "v.month")
    year, month = int(found[1]), int(found[2])
    if not (1 <= month <= 12 and 2000 <= year <= 2100):
        raise FieldError("month", "v.month_range", min="2000-01", max="2100-12")
    try:
        start = datetime(year, month, 1, tzinfo=tz)
        end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
        return as_utc(start), as_utc(end)
    except (ValueError, OverflowError):  # month 00 or 13, year 0000, or the edges of datetime
        raise FieldError("month", "v.month") from None


@dataclass(frozen=True)
class Counts:
    """The month's counts of lead orders of one unit (or street): the numerators and
    denominators of the three rates."""

    due: int = 0
    responded: int = 0
    called_back: int = 0
    resolved: int = 0
    satisfied: int = 0
    basically_satisfied: int = 0
    dissatisfied: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Counts)))


@dataclass(frozen=True)
class RateRow:
    """One line of the ranking. Rates are ratios in [0, 1] or ``None`` when their denominator is 0;
    ``rank`` is the 1-based position among rows with a composite, ``None`` for the others."""

    rank: int | None
    unit_id: int
    unit_name: str
    unit_kind: str
    due: int
    responded: int
    response_rate: float | None
    called_back: int
    resolved: int
    resolution_rate: float | None
    satisfied: int
    basically_satisfied: int
    dissatisfied: int
    satisfaction_rate: float | None
    composite: float | None


def ratio(numerator: float, denominator: int) -> float | None:
    """Return ``numerator / denominator``, or ``None`` when the denominator is 0."""
    return numerator / denominator if denominator else None


def satisfaction_rate(counts: Counts, basic_weight: float) -> float | None:
    """Return (satisfied + ``basic_weight`` × basically satisfied) ÷ called back, or ``None`` when
    nobody was called back. ``basic_weight`` is ``settings.basic_satisfaction_weight`` (0..1)."""
    return ratio(counts.satisfied + basic_weight * counts.basically_satisfied, counts.called_back)


def composite(
    response: float | None, resolution: float | None, satisfaction: float | None, settings: Settings
) -> float | None:
    """Return the weighted mean of the defined rates with the weights ``settings.weight_response``,
    ``weight_resolution`` and ``weight_satisfaction`` renormalised over them (a ratio in [0, 1]).

    ``None`` when no rate is defined or the weights of the defined ones sum to 0.
    """
    pairs = [(w, r) for w, r in ((settings.weight_response, response), (settings.weight_resolution, resolution),
                                 (settings.weight_satisfaction, satisfaction)) if r is not None]
    total = sum(w for w, _ in pairs)
    return sum(w * r for w, r in pairs) / total if total > 0 else None


def weights(settings: Settings) -> dict[str, float]:
    """Return the configured weights: the three rates' in the composite (as set, not renormalised)
    and that of a 'basically satisfied' rating."""
    return {
        "response": settings.weight_response, "resolution": settings.weight_resolution,
        "satisfaction": settings.weight_satisfaction, "basic_satisfaction": settings.basic_satisfaction_weight,
    }


def unit_counts(
    session: Session, *, start: datetime, end: datetime, now: datetime
) -> dict[int, tuple[str, str, Counts]]:
    """Count the lead orders of every unit for the month [``start``, ``end``) (aware instants).

    Returns unit id → (unit name, unit kind, ``Counts``) for the units with at least one lead order
    dispatched or called back in the month. ``now`` (aware) decides which pending orders are due.
    One ``GROUP BY`` query.
    """
    lead = WorkOrder
    dispatched = and_(lead.dispatched_at >= start, lead.dispatched_at < end)
    waiting = and_(lead.status == WorkOrderStatus.PENDING, lead.response_due_at >= now)
    due = and_(dispatched, lead.status.not_in([WorkOrderStatus.RETURNED, WorkOrderStatus.CANCELLED]), not_(waiting))
    responded = and_(due, lead.acknowledged_at.is_not(None), lead.acknowledged_at <= lead.response_due_at)
    called = and_(lead.callback_at >= start, lead.callback_at < end)

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    query = (
        select(
            lead.unit_id, OrgUnit.name, OrgUnit.kind,
            count(due), count(responded), count(called), count(and_(called, lead.resolved.is_(True))),
            count(and_(called, lead.satisfaction == Satisfaction.SATISFIED)),
            count(and_(called, lead.satisfaction == Satisfaction.BASICALLY_SATISFIED)),
            count(and_(called, lead.satisfaction == Satisfaction.DISSATISFIED)),
        )
        .join(OrgUnit, OrgUnit.id == lead.unit_id)
        .where(lead.role == WorkOrderRole.LEAD, or_(dispatched, called))
        .group_by(lead.unit_id, OrgUnit.name, OrgUnit.kind)
    )
    return {
        unit_id: (name, str(kind), Counts(*(int(n) for n in numbers)))
        for unit_id, name, kind, *numbers in session.execute(query)
    }


def roll_up_to_streets(
    session: Session, per_unit: dict[int, tuple[str, str, Counts]]
) -> dict[int, tuple[str, str, Counts]]:
    """Sum per-unit counts up to each unit's street: the unit itself if it is a street, else its
    nearest street ancestor (a community's parent). Units with no street above them (departments,
    utilities, districts, city-level companies) are left out. Returns street id → (name, kind,
    ``Counts``). One query loads the hierarchy."""
    tree = {uid: (parent, str(kind), name) for uid, parent, kind, name in session.execute(
        select(OrgUnit.id, OrgUnit.parent_id, OrgUnit.kind, OrgUnit.name))}
    streets: dict[int, tuple[str, str, Counts]] = {}
    for unit_id, (_, _, counts) in per_unit.items():
        current: int | None = unit_id
        for _ in range(_MAX_DEPTH):
            if current is None or current not in tree:
                break
            parent, kind, name = tree[current]
            if kind == UnitKind.STREET:
                _, _, sofar = streets.get(current, (name, kind, Counts()))
                streets[current] = (name, kind, sofar + counts)
                break
            current = parent
    return streets


def _row(unit_id: int, name: str, kind: str, c: Counts, settings: Settings) -> RateRow:
    response, resolution = ratio(c.responded, c.due), ratio(c.resolved, c.called_back)
    satisfaction = satisfaction_rate(c, settings.basic_satisfaction_weight)
    return RateRow(
        rank=None, unit_id=unit_id, unit_name=name, unit_kind=kind, due=c.due, responded=c.responded,
        response_rate=response, called_back=c.called_back, resolved=c.resolved, resolution_rate=resolution,
        satisfied=c.satisfied, basically_satisfied=c.basically_satisfied, dissatisfied=c.dissatisfied,
        satisfaction_rate=satisfaction, composite=composite(response, resolution, satisfaction, settings),
    )


def three_rates(
    session: Session,
    *,
    month: str,
    level: Level,
    settings: Settings,
    now: datetime | None = None,
    min_cases: int = 1,
) -> list[RateRow]:
    """Return the three rates and the composite of ``month`` (``YYYY-MM``, local calendar month)
    for every unit (``level="unit"``) or every street (``level="street"``) with something to assess.

    Rows are ranked by composite, highest first; rows without a composite come last; ties are
    ordered by unit name (then id). A unit with neither a due order nor a callback in the month is
    left out. The counts come from the dashboards' Parquet snapshot when there is one and the month is
    settled in it (``analytics.dashboard.unit_counts``), else from one ``GROUP BY`` (:func:`unit_counts`).
    A row with fewer than ``min_cases`` cases (due orders + callbacks) is listed but not ranked (rank
    ``None``, after the ranked rows): one lucky case must not top the table. ``now``
    (aware; default the current time) decides which pending orders are already due. Raises
    ``FieldError("month", "v.month")`` for a malformed month and ``FieldError("level",
    "v.literal_error")`` for another level.
    """
    if level not in ("unit", "street"):
        raise FieldError("level", "v.literal_error", expected="'unit', 'street'")
    start, end = parse_month(month, settings.tz)
    from civicloop.analytics import dashboard  # the fast path: a settled month from the Parquet snapshot

    moment = now_or(now)
    per_unit = dashboard.unit_counts(session, start=start, end=end, now=moment)
    if per_unit is None:
        per_unit = unit_counts(session, start=start, end=end, now=moment)
    groups = roll_up_to_streets(session, per_unit) if level == "street" else per_unit
    rows = [_row(uid, name, kind, c, settings) for uid, (name, kind, c) in groups.items()
            if c.due or c.called_back]
    # rounded so that equal scores reached by different sums (float noise) tie and go by name
    def ranked(row: RateRow) -> bool:
        return row.composite is not None and row.due + row.called_back >= min_cases

    rows.sort(key=lambda r: (not ranked(r), -round(r.composite or 0.0, 9), r.unit_name, r.unit_id))
    return [replace(row, rank=position if ranked(row) else None) for position, row in enumerate(rows, start=1)]
