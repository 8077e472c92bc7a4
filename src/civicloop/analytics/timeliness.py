"""Reply timeliness (答复时效) per handling unit: how many lead work orders a unit answered in a period,
how many of them before their resolution deadline (按期办结), and how long the citizen waited.

The three rates (``analytics.metrics``) need the unit's acknowledgement and the citizen's callback.
Historical records often hold only two instants, filing and reply (the Teddy Cup messages, NYC 311's
created and closed dates): for them this is the figure the data can support, and it is the
"办理时限" half of what the Beijing regulations (北京市接诉即办工作条例, art. 20–21) hold units to.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.core.timeutil import as_utc
from civicloop.org.models import OrgUnit
from civicloop.requests.models import WorkOrder, WorkOrderRole


@dataclass(frozen=True)
class Timeliness:
    """One unit's replies in a period. ``on_time_rate`` is ``on_time ÷ replied`` in [0, 1];
    ``median_days`` and ``p90_days`` (nearest rank) are calendar days (float) from dispatch to reply."""

    rank: int | None
    unit_id: int
    unit_name: str
    replied: int
    on_time: int
    on_time_rate: float
    median_days: float
    p90_days: float


def reply_timeliness(
    session: Session, *, start: datetime, end: datetime, min_replied: int = 5
) -> list[Timeliness]:
    """Return the timeliness of every unit's lead work orders replied in [``start``, ``end``)
    (aware instants). A reply is on time when it came at or before the order's resolution deadline
    (``due_at``, extensions included); an order without a deadline counts as late. Rows are ranked
    by on-time rate (highest first), then median wait (shortest first), then name; a unit with fewer
    than ``min_replied`` replies is listed after the ranked ones with ``rank`` ``None``. Raises
    ``ValueError`` for naive instants or ``start >= end``."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if start >= end:
        raise ValueError("start must be before end")
    query = (select(WorkOrder.unit_id, OrgUnit.name, WorkOrder.dispatched_at, WorkOrder.replied_at, WorkOrder.due_at)
             .join(OrgUnit, OrgUnit.id == WorkOrder.unit_id)
             .where(WorkOrder.role == WorkOrderRole.LEAD, WorkOrder.replied_at >= start, WorkOrder.replied_at < end))
    waits: dict[int, list[float]] = {}
    on_time: dict[int, int] = {}
    names: dict[int, str] = {}
    for unit_id, name, dispatched, replied, due in session.execute(query):
        replied_at = as_utc(replied)
        names[unit_id] = name
        waits.setdefault(unit_id, []).append((replied_at - as_utc(dispatched)).total_seconds() / 86400)
        on_time[unit_id] = on_time.get(unit_id, 0) + (due is not None and replied_at <= as_utc(due))
    rows = []
    for unit_id, days in waits.items():
        ordered = sorted(days)
        rows.append(Timeliness(
            rank=None, unit_id=unit_id, unit_name=names[unit_id], replied=len(days), on_time=on_time[unit_id],
            on_time_rate=on_time[unit_id] / len(days), median_days=statistics.median(ordered),
            p90_days=ordered[math.ceil(0.9 * len(ordered)) - 1]))  # nearest rank
    rows.sort(key=lambda r: (r.replied < min_replied, -r.on_time_rate, r.median_days, r.unit_name, r.unit_id))
    return [row if row.replied < min_replied else replace(row, rank=position)
            for position, row in enumerate(rows, start=1)]
