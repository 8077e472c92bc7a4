"""Drive synthetic requests through the whole loop, for the demo and for tests of the metrics.

Each request is filed at a random time of one month, routed to a unit of the kind its category
calls for (street categories to the street of the request's grid), acknowledged, replied and
called back after delays drawn from the unit's own quality profile, so that units differ the way
real ones do: some acknowledge late, some return orders, some leave citizens dissatisfied.
Deterministic for a given ``seed``. Uses the real services, so every rule of the loop applies.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.org.models import Grid, OrgUnit, UnitKind
from civicloop.org.service import ancestor_of_kind
from civicloop.requests import closing, handling, intake
from civicloop.requests.jobs import mark_overdue
from civicloop.requests.models import Channel, Satisfaction
from civicloop.requests.service import Actor, get_request

OPERATOR = Actor("demo-operator", Role.OPERATOR)
DISPATCHER = Actor("demo-dispatcher", Role.DISPATCHER)
CALLBACK = Actor("demo-callback", Role.OPERATOR)

PLACES = ["小区东门", "3号楼", "菜市场旁", "学校门口", "公交站", "地下车库", "河边步道", "社区活动中心"]
PROBLEMS = {
    "路灯": "路灯不亮已经好几天，晚上出行不安全。", "道路": "路面塌陷出现大坑，车辆经过很危险。",
    "噪声": "夜间施工噪声很大，影响休息。", "垃圾": "垃圾堆放多日无人清运，气味难闻。",
    "停车": "车辆长期占用消防通道。", "电梯": "电梯频繁故障，老人上下楼困难。",
    "供暖": "家里暖气不热，室温只有十几度。", "物业": "物业服务差，报修无人处理。",
}


TOPIC_WORDS = {
    "路灯": ("路灯", "照明", "市政"), "道路": ("道路", "市政设施", "交通"), "噪声": ("噪声", "噪音", "环境"),
    "垃圾": ("垃圾", "环卫", "环境卫生"), "停车": ("停车", "道路交通", "交通管理", "交通"),
    "电梯": ("电梯", "物业", "住房"),
    "供暖": ("供暖", "暖气", "供热", "燃气"), "物业": ("物业", "住房"),
}
"""Words that pick the categories a topic's requests are filed under (first word with a match)."""
DEPARTMENT_OF = {
    "城乡建设": "DEP-ZJ", "环境保护": "DEP-HB", "交通运输": "DEP-JT", "教育文体": "DEP-JY",
    "劳动和社会保障": "DEP-RS", "卫生计生": "DEP-WJ", "商贸旅游": "DEP-SW",
}
"""First-level category → the sample city's department that handles it (城管委 otherwise)."""
UTILITY_OF = {"燃气": "UT-GAS", "水": "UT-WATER", "电": "UT-POWER", "暖": "UT-HEAT", "热": "UT-HEAT"}
"""A word of the category's path → the utility that handles it."""


def topic_categories(leaves: list[Category]) -> dict[str, list[Category]]:
    """Return, for each topic, the leaf categories whose path names its first matching word (all
    leaves when none does), so a request about a street lamp is not filed under school places."""
    chosen = {}
    for topic, words in TOPIC_WORDS.items():
        matches: list[Category] = []
        for word in words:
            matches = [leaf for leaf in leaves if word in leaf.path]
            if matches:
                break
        chosen[topic] = matches or leaves
    return chosen


@dataclass
class Profile:
    """How a unit behaves: chance of a late acknowledgement, of returning an order, of a poor
    result, and its typical working days to reply."""

    late_ack: float
    returns: float
    poor: float
    reply_days: float


@dataclass
class SimulationReport:
    requests: int = 0
    closed: int = 0
    reopened: int = 0
    returned: int = 0
    overdue_marked: int = 0
    by_unit: dict[int, int] = field(default_factory=dict)


def _route(category: Category, grid: Grid, rng: random.Random, units: dict[UnitKind, list[OrgUnit]]) -> OrgUnit:
    kind = UnitKind(category.default_unit_kind)
    if kind == UnitKind.STREET:
        street = ancestor_of_kind(grid.community, UnitKind.STREET)
        if street is not None:
            return street
    if kind == UnitKind.UTILITY:
        code = next((c for word, c in UTILITY_OF.items() if word in category.path), None)
        named = [u for u in units.get(kind, []) if u.code == code]
        if named:
            return named[0]
    if kind == UnitKind.DEPARTMENT or not units.get(kind):
        code = DEPARTMENT_OF.get(category.path.split("/")[0], "DEP-CG")
        named = [u for u in units[UnitKind.DEPARTMENT] if u.code == code]
        return named[0] if named else rng.choice(units[UnitKind.DEPARTMENT])
    return rng.choice(units[kind])


def simulate_month(
    session: Session, *, start: datetime, days: int, count: int, settings: Settings, seed: int = 2026,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationReport:
    """File ``count`` requests between ``start`` (aware) and ``days`` days later and drive each
    through the loop. Needs units, grids and leaf categories in the database. ``on_progress`` is
    called with 1 after each request. Returns counts of what happened. Does not commit."""
    rng = random.Random(seed)
    units: dict[UnitKind, list[OrgUnit]] = {}
    for unit in session.scalars(select(OrgUnit).order_by(OrgUnit.id)):
        units.setdefault(UnitKind(unit.kind), []).append(unit)
    profiles = {
        u.id: Profile(late_ack=rng.uniform(0.0, 0.3), returns=rng.uniform(0.0, 0.12), poor=rng.uniform(0.03, 0.35),
                      reply_days=rng.uniform(1.0, 6.0))
        for group in units.values() for u in group
    }
    grids = list(session.scalars(select(Grid).order_by(Grid.id)))
    leaves = list(session.scalars(select(Category).where(Category.level == 3).order_by(Category.id)))
    if not grids or not leaves or UnitKind.DEPARTMENT not in units:
        raise ValueError("simulate_month needs grids, leaf categories and departments: run `civicloop init`")
    by_topic = topic_categories(leaves)
    report = SimulationReport()
    times = sorted(start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(count))
    for filed in times:
        grid = rng.choice(grids)
        topic, text = rng.choice(list(PROBLEMS.items()))
        category = rng.choice(by_topic[topic])
        place = rng.choice(PLACES)
        ring = grid.geometry["coordinates"][0]
        lon = rng.uniform(ring[0][0], ring[1][0])
        lat = rng.uniform(ring[0][1], ring[2][1])
        request = intake.submit(session, now=filed, actor=OPERATOR, data=intake.NewRequest(
            channel=rng.choice(list(Channel)[:5]), title=f"{grid.community.name}{place}{topic}问题",
            description=f"{place}{text}", citizen_name=rng.choice("王李张刘陈杨赵黄周吴") + "先生",
            citizen_phone=f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}",
            address=f"{grid.community.name}{place}", lat=lat, lon=lon, category_id=category.id))
        t = filed + timedelta(minutes=rng.uniform(1, 20))
        intake.accept(session, request_id=request.id, actor=OPERATOR, now=t)
        unit = _route(category, grid, rng, units)
        t += timedelta(minutes=rng.uniform(1, 10))
        intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=unit.id, settings=settings,
                        now=t)
        report.requests += 1
        _handle(session, request.id, rng, profiles, settings, t, report, horizon=start + timedelta(days=days))
        if on_progress is not None:
            on_progress(1)
    report.overdue_marked = len(mark_overdue(session, settings=settings, now=start + timedelta(days=days)).marked)
    return report


def _handle(
    session: Session, request_id: int, rng: random.Random, profiles: dict[int, Profile], settings: Settings,
    t: datetime, report: SimulationReport, *, horizon: datetime,
) -> None:
    """Drive one dispatched request until it closes, or until the next step would fall after
    ``horizon`` (the end of the simulated month): such requests stay open, as real ones do."""
    for _ in range(6):  # returns and reopens are bounded by the rules; this only caps the loop
        request = get_request(session, request_id=request_id)
        order = request.work_orders[-1]
        profile = profiles[order.unit_id]
        handler = Actor(f"handler-{order.unit_id}", Role.HANDLER, order.unit_id)
        late = rng.random() < profile.late_ack
        t += timedelta(hours=rng.uniform(25, 60) if late else rng.uniform(0.2, 6))
        if not order.fallback and rng.random() < profile.returns:
            handling.return_order(session, work_order_id=order.id, actor=handler, reason="不属于本单位职责",
                                  settings=settings, now=t)
            report.returned += 1
            request = get_request(session, request_id=request_id)
            if request.status == "accepted":
                others = [u for u in profiles if u != order.unit_id]
                t += timedelta(minutes=rng.uniform(5, 60))
                intake.dispatch(session, request_id=request_id, actor=DISPATCHER, lead_unit_id=rng.choice(others),
                                settings=settings, now=t)
            continue
        if t > horizon:
            return
        handling.acknowledge(session, work_order_id=order.id, actor=handler, settings=settings, now=t)
        t += timedelta(days=rng.expovariate(1 / profile.reply_days))
        if t > horizon:
            return
        handling.reply(session, work_order_id=order.id, actor=handler, text="已派人现场核实处理，问题已解决。", now=t)
        t += timedelta(hours=rng.uniform(2, 48))
        if t > horizon:
            return
        poor = rng.random() < profile.poor
        satisfaction = (Satisfaction.DISSATISFIED if poor else
                        rng.choice([Satisfaction.SATISFIED] * 3 + [Satisfaction.BASICALLY_SATISFIED]))
        resolved = not poor or rng.random() < 0.3
        request = closing.callback(session, request_id=request_id, actor=CALLBACK, resolved=resolved,
                                   satisfaction=satisfaction, settings=settings, now=t)
        report.by_unit[order.unit_id] = report.by_unit.get(order.unit_id, 0) + 1
        if request.status == "closed":
            report.closed += 1
            return
        report.reopened += 1
