"""The analyst's page (分析 · 未诉先办): the findings of the finders (hotspots, surges, co-occurrence,
asset alerts, the monthly topic) with ECharts charts, accepting one as a proactive task or dismissing it
(``analytics.service``); reply quality by unit (``analytics.replies``); and a map of the grids coloured by
the number of requests, drawn by ECharts from the grids' own GeoJSON polygons (``registerMap``: no tile
server, nothing fetched from outside).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from sqlalchemy import func, select

from civicloop.analytics import service
from civicloop.analytics.findings import KINDS
from civicloop.core.timeutil import as_utc
from civicloop.core.validation import MAX_ID
from civicloop.org.models import Grid
from civicloop.requests import scope
from civicloop.requests.models import ServiceRequest
from civicloop.web.common import ANALYSIS_ROLES, FINDING_DECIDERS, Page, local, masked, page, validated

log = logging.getLogger(__name__)
router = APIRouter()

Reader = Annotated[Page, page(ANALYSIS_ROLES, "open_analysis")]
Decider = Annotated[Page, page(FINDING_DECIDERS, "accept_finding")]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]
MAP_DAYS = 90
MAX_GRIDS = 3000
REPLY_DAYS = 90


def _chart(p: Page, kind: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A horizontal bar chart of the kind's top findings by score."""
    top = sorted(rows, key=lambda r: -r["score"])[:8]
    return {
        "grid": {"left": 8, "right": 40, "top": 8, "bottom": 8, "containLabel": True},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value"},
        "yAxis": {"type": "category", "inverse": True,
                  "data": [(r["summary"][:16] + "…") if len(r["summary"]) > 16 else r["summary"] for r in top]},
        "series": [{"type": "bar", "data": [round(r["score"], 2) for r in top], "itemStyle": {"color": "#b45309"},
                    "barMaxWidth": 26, "label": {"show": True, "position": "right"}}],
        "aria": {"enabled": True}, "animation": False,
    }


def latest_filing(p: Page) -> datetime:
    """When the newest request the caller may see was filed (now when there is none): windows such as
    the map's last :data:`MAP_DAYS` days end there, so an imported history (Teddy Cup 2010–2020) shows."""
    newest = p.session.scalar(select(func.max(ServiceRequest.created_at))
                              .where(scope.request_condition(p.session, p.user)))
    return min(as_utc(newest), p.now) if newest is not None else p.now


def _grid_map(p: Page, end: datetime) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, int]]]:
    """The grids as a GeoJSON FeatureCollection, the ECharts option colouring them by the requests
    filed in the :data:`MAP_DAYS` days up to ``end`` (within the caller's scope), and the counts as a
    table. Drawn: the communities with requests in the window, all their grids (the empty ones too, for
    context), or every grid when the window has none."""
    counts = dict(p.session.execute(
        select(ServiceRequest.grid_id, func.count()).where(
            ServiceRequest.grid_id.is_not(None), ServiceRequest.created_at >= end - timedelta(days=MAP_DAYS),
            ServiceRequest.created_at <= end, scope.request_condition(p.session, p.user))
        .group_by(ServiceRequest.grid_id)).all())
    query = select(Grid).order_by(Grid.id).limit(MAX_GRIDS)
    if counts:
        communities = select(Grid.community_id).where(Grid.id.in_(list(counts)))
        query = query.where(Grid.community_id.in_(communities))
    grids = p.session.scalars(query).all()
    seen = Counter(g.name for g in grids)
    names = {g.id: g.name if seen[g.name] == 1 else f"{g.name} #{g.id}" for g in grids}  # ECharts joins by name
    features = [{"type": "Feature", "properties": {"name": names[g.id]}, "geometry": g.geometry} for g in grids]
    data = [{"name": names[g.id], "value": counts.get(g.id, 0)} for g in grids]
    top = max((d["value"] for d in data), default=0)
    option = {
        "tooltip": {"trigger": "item"},
        "visualMap": {"min": 0, "max": max(top, 1), "calculable": True, "left": 8, "bottom": 8,
                      "inRange": {"color": ["#eef2ff", "#93c5fd", "#1d4ed8", "#b42318"]}},
        "series": [{"type": "map", "map": "grids", "roam": True, "data": data, "nameProperty": "name",
                    "label": {"show": False},
                    "itemStyle": {"borderColor": "#475569", "borderWidth": 0.5},
                    "emphasis": {"label": {"show": True}}}],
        "aria": {"enabled": True}, "animation": False,
    }
    table = sorted(((d["name"], d["value"]) for d in data if d["value"]), key=lambda pair: -pair[1])[:20]
    return {"type": "FeatureCollection", "features": features}, option, table


@router.get("/analysis")
def analysis_page(p: Reader) -> Response:
    """Findings by kind (with a chart of the top scores), the grid map, and reply quality (loaded as a
    fragment: scoring takes a moment). Analysts, supervisors, dispatchers and admins; accepting and
    dismissing: analysts, supervisors and admins."""
    rows = service.list_findings(p.session, limit=500)
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for f in rows:
        groups.setdefault(f.kind, []).append({
            "id": f.id, "rank": f.rank, "score": f.score, "summary": masked(f.summary), "place": f.place,
            "category": f.category, "status": f.status, "people": f.people, "requests": len(f.request_ids),
            "period": f"{local(f.start_at, p.settings, '%Y-%m-%d')} ~ {local(f.end_at, p.settings, '%Y-%m-%d')}",
            "request_id": f.request_id, "evidence": f.request_ids[:5]})
    charts = {kind: _chart(p, kind, items) for kind, items in groups.items() if items}
    end = latest_filing(p)
    geojson, map_option, grid_table = _grid_map(p, end)
    return p.render("analysis.html", groups=groups, charts=charts, geojson=geojson, map_option=map_option,
                    grid_table=grid_table, map_days=MAP_DAYS, map_end=local(end, p.settings, "%Y-%m-%d"),
                    can_decide=p.user.role in FINDING_DECIDERS,
                    has_findings=bool(rows))


@router.get("/analysis/replies")
def reply_quality(p: Reader) -> Response:
    """Fragment: reply quality by unit over requests filed in the :data:`REPLY_DAYS` days up to the newest
    (``analytics.replies.score_replies`` and ``unit_table`` over the operational database through
    DuckDB, as ``civicloop analyze`` does): replies, median working days, share within 7 working days,
    relevance, completeness, overall. Says so when analytics cannot read the database."""
    from civicloop.analytics import replies
    from civicloop.analytics.duck import connect
    from civicloop.analytics.sources import from_operational

    since = (latest_filing(p).astimezone(p.settings.tz) - timedelta(days=REPLY_DAYS)).replace(tzinfo=None)
    try:
        conn = connect(p.session.get_bind().url.render_as_string(hide_password=False))  # type: ignore[union-attr]
        try:
            from_operational(conn, timezone=p.settings.timezone)
            units = replies.unit_table(replies.score_replies(conn, since=since)).to_pylist()
        finally:
            conn.close()
    except Exception:  # analytics is optional: the page works without it (logged)
        log.exception("reply quality could not be computed")
        units = []
    return p.render("_replies.html", units=units[:30])


@router.post("/analysis/findings/{finding_id}/accept")
def accept(finding_id: PathId, p: Decider) -> Response:
    """Accept a proposed finding as a proactive request (channel proactive), routed and deadlined by
    intake like any other; 422 when it was already decided, 404 when unknown."""
    from civicloop.analytics.finding_routes import DecisionIn

    body = validated(DecisionIn, p.lang, note=p.field("note"))
    row = service.accept_finding(p.session, finding_id=finding_id, actor=p.actor, settings=p.settings,
                                 note=body.note)
    return p.redirect("/analysis", "finding_accepted", id=row.request_id or "")


@router.post("/analysis/findings/{finding_id}/dismiss")
def dismiss(finding_id: PathId, p: Annotated[Page, page(FINDING_DECIDERS, "dismiss_finding")]) -> Response:
    """Dismiss a proposed finding (it is not proposed again); 422 when already decided, 404 when
    unknown."""
    from civicloop.analytics.finding_routes import DecisionIn

    body = validated(DecisionIn, p.lang, note=p.field("note"))
    service.dismiss_finding(p.session, finding_id=finding_id, actor=p.actor, note=body.note)
    return p.redirect("/analysis", "finding_dismissed")


@router.post("/analysis/run")
def run_analysis(p: Annotated[Page, page(FINDING_DECIDERS, "run_analysis")]) -> Response:
    """Run every finder over the operational database and keep the findings (as ``civicloop analyze``
    does with the database as source); findings decided before are not proposed again."""
    from civicloop.analytics.run import analyze, open_source

    conn, source = open_source(database_url=p.session.get_bind().url.render_as_string(hide_password=False),  # type: ignore[union-attr]
                               timezone=p.settings.timezone)
    try:
        results = analyze(conn, source=source)
    finally:
        conn.close()
    counts = service.store_findings(p.session, results.all_findings(), settings=p.settings)
    return p.redirect("/analysis", "analysed", id=counts["new"])

