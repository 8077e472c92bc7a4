"""HTTP routes of analytics under ``/api/v1``: the three rates (三率) and the monthly ranking."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from civicloop.analytics.metrics import Level, parse_month, three_rates, weights
from civicloop.core.http import Caller, DbSession, SettingsDep, allow
from civicloop.core.roles import STAFF

router = APIRouter(prefix="/api/v1", tags=["analytics (三率)"])


@router.get("/metrics", summary="三率排名 The three rates of a month")
def monthly_rates(
    session: DbSession,
    settings: SettingsDep,
    caller: Annotated[Caller, allow(STAFF, "read_metrics")],
    month: Annotated[str, Query(max_length=32, description="local calendar month YYYY-MM")],
    level: Level = "unit",
    min_cases: Annotated[int, Query(ge=1, le=100_000, description="cases needed to be ranked")] = 1,
) -> dict[str, Any]:
    """Return the response, resolution and satisfaction rates and the composite score of
    ``month`` per handling unit (``level=unit``) or per street (``level=street``), ranked by the
    composite: ``{"month", "level", "period": {"start", "end"}, "weights", "rows": [...]}``. Rows
    with fewer than ``min_cases`` cases (due orders + callbacks) are listed unranked (rank null).

    Rates are ratios in [0, 1], ``null`` when their denominator is 0; ``period`` is the month as
    local times [start, end). 422 with a message on ``month`` when it is not ``YYYY-MM``.
    Staff only (401 the public, 403 residents).
    Formulas: docs/metrics.md.
    """
    start, end = parse_month(month, settings.tz)
    rows = three_rates(session, month=month, level=level, settings=settings, min_cases=min_cases)
    return {
        "month": month.strip(),
        "level": level,
        "period": {"start": start.astimezone(settings.tz), "end": end.astimezone(settings.tz)},
        "weights": weights(settings),
        "rows": [asdict(row) for row in rows],
    }
