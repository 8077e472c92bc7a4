"""Helpers of the web app's tests: users of every role, logging in through the login form, and the
CSRF token a page's forms carry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from civicloop.accounts import service
from civicloop.core.db import session_factory
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.core.timeutil import utcnow
from civicloop.org.models import Grid

PASSWORD = "correct horse battery"

USERS: dict[str, tuple[Role, str | None]] = {
    # user name: (role, unit code)
    "op": (Role.OPERATOR, None),
    "disp": (Role.DISPATCHER, None),
    "street1": (Role.HANDLER, "D01-S01"),
    "street2": (Role.HANDLER, "D02-S01"),
    "sup": (Role.SUPERVISOR, "D01"),
    "sup2": (Role.SUPERVISOR, "D02"),
    "ana": (Role.ANALYST, None),
    "admin": (Role.ADMIN, None),
    "res": (Role.RESIDENT, None),
    "res2": (Role.RESIDENT, None),
    "grid": (Role.GRID_WORKER, None),
}
"""The users :func:`make_users` creates: a handler of street D01-S01 and one of D02-S01, supervisors of
districts D01 and D02, two residents, a grid worker of grid D01-S01-C01-G1, and the city-wide roles."""


def web_settings(folder: Path) -> Settings:
    """The web tests' settings: role headers off (pages need a web login anyway), intake on without a
    model in ``folder`` (new requests wait in the dispatcher's queue, as in a city that has not trained
    one yet), generous rate limits."""
    return Settings(_env_file=None, trust_role_headers=False, triage_on_intake=True,  # type: ignore[call-arg]
                    model_path=str(folder / "no-model"), rate_limit_intake="100000/minute",
                    rate_limit_login="100000/minute")


def make_users(engine: Engine, city: dict[str, int], only: tuple[str, ...] = ()) -> dict[str, int]:
    """Create :data:`USERS` (or ``only`` those, by name; committed) and return user name → user id."""
    ids: dict[str, int] = {}
    with session_factory(engine)() as session:
        grid = session.scalar(select(Grid.id).where(Grid.code == "D01-S01-C01-G1"))
        for name, (role, unit) in USERS.items():
            if only and name not in only:
                continue
            user = service.create_user(
                session, username=name, password=PASSWORD, role=role, unit_id=city[unit] if unit else None,
                grid_ids=[grid] if role == Role.GRID_WORKER and grid else [], display_name=name, actor="test",
                now=utcnow())
            ids[name] = user.id
        session.commit()
    return ids


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """Return the CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, "no csrf_token on the page"
    return found.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the login form (as a browser: its page first, for the form's token); returns the
    session's CSRF token."""
    client.cookies.clear()
    form = client.get("/login")
    assert form.status_code == 200
    done = client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(form.text)}, follow_redirects=False)
    assert done.status_code == 303, done.text
    page = client.get(done.headers["location"])
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def one_month_now(settings: Any) -> datetime:
    """Now, unless the users' month (``settings.tz``) began less than 8 hours ago: then the last day of the
    month before at 12:00, so that the last hours of work :func:`seed_activity` files lie in one month
    (the supervisor's ranking shows one; its test failed on the first night of December, when the closed
    cases of "3 to 7 hours ago" were November's and the default month December)."""
    now = utcnow()
    local = now.astimezone(settings.tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if local - start >= timedelta(hours=8):
        return now
    return (start - timedelta(hours=12)).astimezone(UTC)


def seed_activity(engine: Engine, city: dict[str, int], settings: Any, now: datetime | None = None) -> None:
    """A month of plausible work in the sample city (committed): orders of street D01-S01 overdue, nearly
    due and on time; closed, dissatisfied and replied cases of other streets; requests spread over the
    grids (for the density map); three findings to review. Times are relative to ``now`` (default: now),
    so the colours of the deadlines are known: one overdue (red), one with two hours left (orange), one
    with seven working days (green)."""
    from civicloop.analytics.findings import Finding
    from civicloop.analytics.service import store_findings
    from civicloop.requests import handling
    from civicloop.requests.models import Satisfaction
    from tests.helpers import HANDLER, closed, dispatched, make_request

    now = now or utcnow()
    with session_factory(engine)() as session:
        old = dispatched(session, settings, unit_id=city["D01-S01"], now=now - timedelta(days=12),
                         title="楼道堆放杂物堵塞消防通道", description="三号楼一单元楼道堆满纸箱，存在火灾隐患。",
                         lat=39.905, lon=116.405)
        handling.acknowledge(session, work_order_id=old.work_orders[-1].id, actor=HANDLER, settings=settings,
                             now=now - timedelta(days=12))
        soon = dispatched(session, settings, unit_id=city["D01-S01"], now=now - timedelta(minutes=10),
                          title="燃气味道很重", description="五号楼楼下闻到燃气味，请尽快处理。", deadline_tier="2h",
                          lat=39.906, lon=116.415)
        handling.acknowledge(session, work_order_id=soon.work_orders[-1].id, actor=HANDLER, settings=settings,
                             now=now - timedelta(minutes=5))
        later = dispatched(session, settings, unit_id=city["D01-S01"], now=now - timedelta(hours=1),
                           title="小区门口井盖松动", description="东门井盖松动，车辆经过有响声。",
                           lat=39.904, lon=116.402)
        handling.acknowledge(session, work_order_id=later.work_orders[-1].id, actor=HANDLER, settings=settings,
                             now=now - timedelta(minutes=30))
        lat_of = {"D01-S02": 39.925, "D01-S03": 39.945, "D02-S01": 39.965}  # a grid of the unit's own street
        cases = [("D01-S02", Satisfaction.SATISFIED), ("D01-S02", Satisfaction.SATISFIED),
                 ("D01-S03", Satisfaction.BASICALLY_SATISFIED), ("D02-S01", Satisfaction.DISSATISFIED),
                 ("D01-S03", Satisfaction.SATISFIED)]
        for i, (unit, mood) in enumerate(cases):
            closed(session, settings, unit_id=city[unit], satisfaction=mood,
                   resolved=mood != Satisfaction.DISSATISFIED, now=now - timedelta(hours=3 + i),
                   title=f"噪音扰民 {i + 1}", description="夜间施工噪音很大，影响休息。", lat=lat_of[unit],
                   lon=116.405 + 0.01 * (i % 2))
        for i in range(12):
            make_request(session, now=now - timedelta(days=i), title=f"路灯不亮 {i + 1}",
                         description="小区里的路灯晚上不亮。", lat=39.905 + 0.002 * (i % 3), lon=116.405)
        start = now.astimezone(settings.tz).replace(tzinfo=None)
        findings = [
            Finding(kind="hotspot", key="web-h1", rank=1, score=8.4, summary="望湖街道第一社区 路灯不亮 集中反映",
                    place="望湖街道第一社区", start=start - timedelta(days=11), end=start, request_ids=(1, 2, 3),
                    people=12, category="城乡建设"),
            Finding(kind="hotspot", key="web-h2", rank=2, score=5.1, summary="东桥街道 噪音扰民 夜间施工",
                    place="东桥街道", start=start - timedelta(days=5), end=start, request_ids=(4, 5), people=5),
            Finding(kind="surge", key="web-s1", rank=1, score=3.2, summary="供暖季 暖气不热 激增",
                    place="云河区", start=start - timedelta(days=20), end=start, request_ids=(6,), people=30),
        ]
        store_findings(session, findings, settings=settings, now=now)
        session.commit()
