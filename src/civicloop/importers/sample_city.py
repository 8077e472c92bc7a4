"""civicloop's own small sample city, for ``civicloop init``, the demo and the tests.

Two districts of three streets, two communities per street and two grids per community (grid
polygons are rectangles on a regular lattice near 39.9° N, 116.4° E), city departments, utilities
and property companies. Deterministic: the same call builds the same city. The names are made
up; no real data is copied.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.org.models import Grid, OrgUnit, UnitKind

DISTRICTS = [
    ("D01", "云河区", ["望湖街道", "东桥街道", "柳岸镇"]),
    ("D02", "青山区", ["松林街道", "北苑街道", "石门乡"]),
]
COMMUNITY_NAMES = ["第一社区", "第二社区"]
DEPARTMENTS = [
    ("DEP-CG", "城市管理委员会"), ("DEP-ZJ", "住房和城乡建设委员会"), ("DEP-JT", "交通委员会"),
    ("DEP-HB", "生态环境局"), ("DEP-JY", "教育委员会"), ("DEP-RS", "人力资源和社会保障局"),
    ("DEP-WJ", "卫生健康委员会"), ("DEP-SW", "商务局"), ("DEP-SJ", "市场监督管理局"),
]
UTILITIES = [("UT-WATER", "自来水集团"), ("UT-POWER", "供电公司"), ("UT-GAS", "燃气集团"), ("UT-HEAT", "热力集团")]
PROPERTIES = [("PM-01", "安居物业服务有限公司"), ("PM-02", "宜家园物业管理有限公司")]

ORIGIN_LAT, ORIGIN_LON, STEP = 39.90, 116.40, 0.01


@dataclass(frozen=True)
class SampleCity:
    units: int
    grids: int


def _square(row: int, col: int) -> dict[str, object]:
    lat0, lon0 = ORIGIN_LAT + row * STEP, ORIGIN_LON + col * STEP
    ring = [[lon0, lat0], [lon0 + STEP, lat0], [lon0 + STEP, lat0 + STEP], [lon0, lat0 + STEP], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


def build(session: Session) -> SampleCity:
    """Create the sample city unless units already exist; returns what it created (zeros when
    the database already had units)."""
    if session.scalar(select(OrgUnit.id).limit(1)) is not None:
        return SampleCity(0, 0)
    units = grids = 0

    def add(code: str, name: str, kind: UnitKind, parent: OrgUnit | None = None) -> OrgUnit:
        nonlocal units
        unit = OrgUnit(code=code, name=name, kind=kind, parent_id=parent.id if parent else None,
                       contact_name="值班室", contact_phone=f"010-6{units:07d}", active=True)
        session.add(unit)
        session.flush()
        units += 1
        return unit

    row = 0
    for d_code, d_name, streets in DISTRICTS:
        district = add(d_code, d_name, UnitKind.DISTRICT)
        for s_index, s_name in enumerate(streets, start=1):
            street = add(f"{d_code}-S{s_index:02d}", s_name, UnitKind.STREET, district)
            for c_index, c_name in enumerate(COMMUNITY_NAMES, start=1):
                community = add(f"{street.code}-C{c_index:02d}", f"{s_name}{c_name}", UnitKind.COMMUNITY, street)
                for g_index in (1, 2):
                    session.add(Grid(code=f"{community.code}-G{g_index}", name=f"{community.name}{g_index}号网格",
                                     community_id=community.id, geometry=_square(row, g_index - 1)))
                    grids += 1
                row += 1
    for code, name in DEPARTMENTS:
        add(code, name, UnitKind.DEPARTMENT)
    for code, name in UTILITIES:
        add(code, name, UnitKind.UTILITY)
    for code, name in PROPERTIES:
        add(code, name, UnitKind.PROPERTY)
    session.flush()
    return SampleCity(units, grids)


SAMPLE_ROUTES: list[tuple[str, str, str, list[str]]] = [
    # (category path, lead target, lead unit code for a fixed lead, assisting unit codes)
    ("城乡建设", "street", "", ["DEP-CG"]),
    ("城乡建设/住房与物业", "street", "", ["DEP-ZJ"]),
    ("城乡建设/供水供电/停水", "unit", "UT-WATER", []),
    ("城乡建设/供水供电/停电", "unit", "UT-POWER", []),
    ("城乡建设/供暖燃气/暖气不热", "unit", "UT-HEAT", []),
    ("城乡建设/供暖燃气/燃气泄漏", "unit", "UT-GAS", []),
    ("环境保护", "street", "", ["DEP-HB"]),
    ("交通运输", "unit", "DEP-JT", []),
    ("教育文体", "unit", "DEP-JY", []),
    ("劳动和社会保障", "unit", "DEP-RS", []),
    ("卫生计生", "unit", "DEP-WJ", []),
    ("商贸旅游", "unit", "DEP-SW", ["DEP-SJ"]),
]
"""The sample city's routing table: street matters to the street office of the place (属地) with the
city department assisting; utilities' matters to the utility; the rest to the city department."""


def build_routes(session: Session) -> int:
    """Fill the routing table of the sample city for the categories that exist (run after ``build``
    and after the category tree is loaded). Does nothing when the table already has rules. Returns
    the number of rules created."""
    from datetime import UTC, datetime

    from civicloop.catalog.models import Category, RoutingRule

    if session.scalar(select(RoutingRule.id).limit(1)) is not None:
        return 0
    units = {u.code: u.id for u in session.scalars(select(OrgUnit))}
    categories = {c.path: c.id for c in session.scalars(select(Category))}
    now = datetime.now(UTC)
    created = 0
    for path, target, lead, assisting in SAMPLE_ROUTES:
        if path not in categories or (lead and lead not in units):
            continue
        session.add(RoutingRule(
            category_id=categories[path], lead_target=target, lead_unit_id=units.get(lead) if lead else None,
            assisting_unit_ids=[units[c] for c in assisting if c in units], priority=0, active=True,
            note="示例城市 sample city", updated_by="system", updated_at=now,
        ))
        created += 1
    session.flush()
    return created
