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


@router.get("/dashboard", summary="看板 The dashboard: 30-day counts and this week's hotspot candidates")
def dashboard_view(
    session: DbSession,
    caller: Annotated[Caller, allow(STAFF, "read_metrics")],
    days: Annotated[int, Query(ge=1, le=366, description="days of the counts, up to now")] = 30,
    hotspot_days: Annotated[int, Query(ge=1, le=31, description="days of the hotspot window")] = 7,
) -> dict[str, Any]:
    """Return the requests filed in the last ``days`` days (30) by category and district, and the
    hotspot candidates of the last ``hotspot_days`` days (7): grid × category cells with at least 3
    requests and more than 3 Poisson standard deviations above what the 8 windows before predict
    (``analytics.dashboard``). ``{"end", "source", "watermark", "counts": {"start", "rows": [{"category_id",
    "category", "district_id", "district", "requests"}]}, "hotspot_candidates": {"start", "rows":
    [{"grid_id", "grid", "category_id", "category", "requests", "baseline", "expected"}]}}``; times are
    aware (UTC). ``source`` is ``snapshot`` (the Parquet snapshot plus the requests filed since its
    ``watermark``) or ``sql`` (no snapshot: plain SQL). Staff only (401 the public, 403 residents)."""
    from datetime import timedelta

    from sqlalchemy import select

    from civicloop.analytics import dashboard
    from civicloop.catalog.models import Category
    from civicloop.org.models import Grid, OrgUnit
    from civicloop.requests.service import now_or

    end = now_or(None)
    snapshot = dashboard.snapshot_for(session)
    start = end - timedelta(days=days)
    counts = dashboard.category_district_counts(session, start=start, end=end, snapshot=snapshot)
    candidates = dashboard.hotspot_candidates(session, end=end, days=hotspot_days, snapshot=snapshot)

    def names(model: Any, column: Any, ids: set[Any]) -> dict[int, str]:
        ids.discard(None)
        return {key: value for key, value in session.execute(select(model.id, column).where(model.id.in_(list(ids))))} \
            if ids else {}

    categories = names(Category, Category.path, {c for c, _ in counts} | {c.category_id for c in candidates})
    districts = names(OrgUnit, OrgUnit.name, {d for _, d in counts})
    grids = names(Grid, Grid.name, {c.grid_id for c in candidates})
    rows = sorted(({"category_id": c, "category": categories.get(c), "district_id": d, "district": districts.get(d),
                    "requests": n} for (c, d), n in counts.items()), key=lambda r: -r["requests"])
    return {
        "end": end, "source": "sql" if snapshot is None else "snapshot",
        "watermark": None if snapshot is None else snapshot.watermark,
        "counts": {"start": start, "rows": rows},
        "hotspot_candidates": {"start": end - timedelta(days=hotspot_days), "rows": [
            {"grid_id": c.grid_id, "grid": grids.get(c.grid_id), "category_id": c.category_id,
             "category": categories.get(c.category_id), "requests": c.requests, "baseline": c.baseline,
             "expected": round(c.expected, 3)} for c in candidates]},
    }
