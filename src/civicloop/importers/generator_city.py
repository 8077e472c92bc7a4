"""The generator's own city: districts, streets and townships, communities and villages, grids with
polygons, departments, utilities and property companies, and the category catalogue it files under.

Every name is built from the word lists below (made up for civicloop; no real gazetteer is copied).
The grids lie on a lattice south-west of the sample city's (origin 39.80° N, 116.20° E, cells of
0.004°), so both cities can live in one database without overlapping polygons. Every unit and grid
code starts with ``GC-``; a later ``civicloop generate --append`` finds the city by that prefix and
reuses it instead of building a second one.

``plan_city`` is pure (seed → rows with explicit ids); ``city_from_rows`` turns unit and grid rows
(planned, or read back from the database) into the arrays the row generator draws from.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from civicloop.catalog.rules import default_tier, default_unit_kind
from civicloop.org.models import UnitKind

PREFIX = "GC-"
ORIGIN_LAT, ORIGIN_LON, STEP = 39.80, 116.20, 0.004
BLOCK = 14  # a district is a BLOCK × BLOCK square of grid cells; districts sit 3 to a row

_HEAD = "云青澄栖映汀嘉和明瑞安润翠朗清泰宁康丰永长兴华锦"
_TAIL = "河山湖阳林川原台泉溪峰桥苑坡洲浦岭塘湾坪"
_TREE = "枫桂荷杏柏槐桐竹梅兰菊柳榆桑松樱棠芷"
_SPOT = "园苑里庭坊湾景岸坡亭"
_COMMUNITY_END = ["北里", "南里", "东区", "西区", "家园", "花园", "新村", "东里", "西里", ""]
_ROAD_HEAD = ["光明", "团结", "建设", "和平", "友谊", "胜利", "文化", "振兴", "幸福", "新华", "民主", "复兴", "育才",
              "青年", "前进", "红星", "东风", "春晖", "向阳", "滨河", "环湖", "临泉", "新园", "安康"]
_ROAD_END = ["路", "街", "大街", "南路", "北路", "胡同", "巷"]
_BRAND = "安居宜家恒信万和嘉园盛世金湾锦绣华府佳泰鸿福馨悦康乐"

CITY_DEPARTMENTS = [
    ("JT", "交通委员会"), ("JY", "教育委员会"), ("RS", "人力资源和社会保障局"), ("WJ", "卫生健康委员会"),
    ("SW", "商务局"), ("GA", "公安局交通管理局"), ("MZ", "民政局"), ("WL", "文化和旅游局"),
]
DISTRICT_DEPARTMENTS = [
    ("CG", "城市管理委员会"), ("ZJ", "住房和城乡建设委员会"), ("HB", "生态环境局"), ("SJ", "市场监督管理局"),
]
UTILITIES = [
    ("WATER", "清源自来水集团"), ("POWER", "华光供电公司"), ("GAS", "安燃燃气集团"), ("HEAT", "恒暖热力集团"),
    ("DRAIN", "畅流排水集团"),
]


@dataclass
class City:
    """The arrays the row generator draws from. Unit references are database ids; ``grid_*`` arrays
    are indexed by grid ordinal (0..grids-1), ``comm_*`` by community ordinal, and so on."""

    unit_rows: list[dict[str, Any]]
    grid_rows: list[dict[str, Any]]
    district_ids: np.ndarray
    district_names: list[str]
    street_ids: np.ndarray
    street_names: list[str]
    street_district: np.ndarray
    comm_ids: np.ndarray
    comm_names: list[str]
    comm_street: np.ndarray
    comm_property: np.ndarray
    grid_ids: np.ndarray
    grid_comm: np.ndarray
    grid_lon0: np.ndarray
    grid_lat0: np.ndarray
    grid_step: np.ndarray
    city_departments: dict[str, int]
    district_departments: dict[str, np.ndarray]
    utilities: dict[str, int]
    property_ids: np.ndarray
    roads: list[list[str]] = field(default_factory=list)

    @property
    def grid_street(self) -> np.ndarray:
        """Street ordinal of every grid."""
        return self.comm_street[self.grid_comm]

    @property
    def grid_district(self) -> np.ndarray:
        """District ordinal of every grid."""
        return self.street_district[self.grid_street]


def _names(rng: np.random.Generator, count: int, make: Any, taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < count:
        name = make(rng)
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


def _pick(rng: np.random.Generator, chars: str | list[str]) -> str:
    return chars[int(rng.integers(len(chars)))]


def _square(cell: int, district: int) -> dict[str, Any]:
    block_row, block_col = divmod(district, 3)
    row, col = divmod(cell, BLOCK)
    lat0 = ORIGIN_LAT + (block_row * BLOCK + row) * STEP
    lon0 = ORIGIN_LON + (block_col * BLOCK + col) * STEP
    ring = [[lon0, lat0], [lon0 + STEP, lat0], [lon0 + STEP, lat0 + STEP], [lon0, lat0 + STEP], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [[[round(x, 6), round(y, 6)] for x, y in ring]]}


def plan_city(
    seed: int, *, unit_id_base: int = 1, grid_id_base: int = 1, districts: int = 6
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Plan a city for ``seed``: ``districts`` districts (at most 6) of 6–8 streets (about one in five
    a township, 镇/乡) of 4–6 communities (villages, 村, in a township) of 3–4 grids, plus city
    departments, four departments per district, five utilities and about 30 property companies.

    Returns (unit rows, grid rows): dicts with the columns of ``org_units`` and ``grids``, ids
    assigned from ``unit_id_base`` and ``grid_id_base``. Deterministic for ``seed``. Raises
    ``ValueError`` for more than 6 districts (the lattice holds 6 blocks).
    """
    if not 1 <= districts <= 6:
        raise ValueError("districts must be 1..6")
    rng = np.random.default_rng([seed, 11])
    taken: set[str] = set()
    units: list[dict[str, Any]] = []
    grids: list[dict[str, Any]] = []

    def add(code: str, name: str, kind: UnitKind, parent: int | None) -> int:
        """Append a unit row with the next id and return that id."""
        uid = unit_id_base + len(units)
        units.append({"id": uid, "code": PREFIX + code, "name": name, "kind": str(kind), "parent_id": parent,
                      "contact_name": "值班室", "contact_phone": f"010-8{uid:07d}", "active": True})
        return uid

    district_names = _names(rng, districts, lambda r: _pick(r, _HEAD) + _pick(r, _TAIL) + "区", taken)
    for d, d_name in enumerate(district_names):
        d_code = f"D{d + 1:02d}"
        district = add(d_code, d_name, UnitKind.DISTRICT, None)
        for key, name in DISTRICT_DEPARTMENTS:
            add(f"{d_code}-DEP-{key}", d_name + name, UnitKind.DEPARTMENT, district)
        streets = int(rng.integers(6, 9))
        street_names = _names(rng, streets, lambda r: _pick(r, _HEAD) + _pick(r, _SPOT + _TAIL), taken)
        cell = 0
        for s, s_base in enumerate(street_names):
            township = rng.random() < 0.2
            s_name = s_base + (_pick(rng, "镇乡") if township else "街道")
            street = add(f"{d_code}-S{s + 1:02d}", s_name, UnitKind.STREET, district)
            communities = int(rng.integers(4, 7))
            c_names = _names(rng, communities, lambda r, t=township: _pick(r, _TREE) + _pick(r, _SPOT + _TAIL)
                             + ("村" if t else _pick(r, _COMMUNITY_END) + "社区"), taken)
            for c, c_name in enumerate(c_names):
                community = add(f"{d_code}-S{s + 1:02d}-C{c + 1:02d}", c_name, UnitKind.COMMUNITY, street)
                for g in range(int(rng.integers(3, 5))):
                    code = f"{PREFIX}{d_code}-S{s + 1:02d}-C{c + 1:02d}-G{g + 1}"
                    grids.append({"id": grid_id_base + len(grids), "code": code, "name": f"{c_name}第{g + 1}网格",
                                  "community_id": community, "geometry": _square(cell, d)})
                    cell += 1
    for key, name in CITY_DEPARTMENTS:
        add(f"DEP-{key}", name, UnitKind.DEPARTMENT, None)
    for key, name in UTILITIES:
        add(f"UT-{key}", name, UnitKind.UTILITY, None)
    brands = _names(rng, 30, lambda r: _pick(r, _BRAND) + _pick(r, _BRAND), set())
    for p, brand in enumerate(brands):
        add(f"PM-{p + 1:02d}", f"{brand}物业服务有限公司", UnitKind.PROPERTY, None)
    return units, grids


def city_from_rows(units: list[dict[str, Any]], grids: list[dict[str, Any]], *, seed: int) -> City:
    """Build the generator's arrays from ``GC-`` unit and grid rows (planned or read from the
    database: dicts with the table's columns; ``geometry`` a GeoJSON dict or its JSON text).

    Communities get a property company by their position (every community the same company on every
    run). ``seed`` only draws the road names used in the texts. Raises ``ValueError`` when there is
    no district, street, community or grid among the rows.
    """
    units = sorted(units, key=lambda u: u["code"])
    by_id = {u["id"]: u for u in units}
    districts = [u for u in units if u["kind"] == UnitKind.DISTRICT]
    streets = [u for u in units if u["kind"] == UnitKind.STREET]
    comms = [u for u in units if u["kind"] == UnitKind.COMMUNITY]
    grids = sorted(grids, key=lambda g: g["code"])
    if not (districts and streets and comms and grids):
        raise ValueError("the generated city needs districts, streets, communities and grids")
    if not all(u["parent_id"] in by_id for u in streets + comms):
        raise ValueError("a street or community of the generated city has no parent among its units")
    d_pos = {u["id"]: i for i, u in enumerate(districts)}
    s_pos = {u["id"]: i for i, u in enumerate(streets)}
    c_pos = {u["id"]: i for i, u in enumerate(comms)}
    props = np.array([u["id"] for u in units if u["kind"] == UnitKind.PROPERTY], dtype=np.int64)
    city_deps = {u["code"].split("-")[-1]: u["id"] for u in units
                 if u["kind"] == UnitKind.DEPARTMENT and u["parent_id"] is None}
    dist_deps: dict[str, np.ndarray] = {}
    for key, _ in DISTRICT_DEPARTMENTS:
        ids = np.zeros(len(districts), dtype=np.int64)
        for u in units:
            if u["kind"] == UnitKind.DEPARTMENT and u["code"].endswith(f"-DEP-{key}") and u["parent_id"] in d_pos:
                ids[d_pos[u["parent_id"]]] = u["id"]
        dist_deps[key] = ids
    utilities = {u["code"].split("-")[-1]: u["id"] for u in units if u["kind"] == UnitKind.UTILITY}
    lon0, lat0, step = [], [], []
    for g in grids:
        geometry = g["geometry"] if isinstance(g["geometry"], dict) else json.loads(g["geometry"])
        ring = geometry["coordinates"][0]
        lon0.append(ring[0][0])
        lat0.append(ring[0][1])
        step.append(ring[2][0] - ring[0][0])
    rng = np.random.default_rng([seed, 12])
    taken: set[str] = set()
    roads = [_names(rng, 12, lambda r: _pick(r, _ROAD_HEAD) + _pick(r, _ROAD_END), taken)
             for _ in districts]
    n_props = max(len(props), 1)
    return City(
        unit_rows=units, grid_rows=grids,
        district_ids=np.array([u["id"] for u in districts], dtype=np.int64),
        district_names=[u["name"] for u in districts],
        street_ids=np.array([u["id"] for u in streets], dtype=np.int64),
        street_names=[u["name"] for u in streets],
        street_district=np.array([d_pos[u["parent_id"]] for u in streets], dtype=np.int64),
        comm_ids=np.array([u["id"] for u in comms], dtype=np.int64),
        comm_names=[u["name"] for u in comms],
        comm_street=np.array([s_pos[u["parent_id"]] for u in comms], dtype=np.int64),
        comm_property=(props[np.arange(len(comms)) * 7 % n_props] if len(props)
                       else np.zeros(len(comms), dtype=np.int64)),
        grid_ids=np.array([g["id"] for g in grids], dtype=np.int64),
        grid_comm=np.array([c_pos[g["community_id"]] for g in grids], dtype=np.int64),
        grid_lon0=np.array(lon0), grid_lat0=np.array(lat0), grid_step=np.array(step),
        city_departments=city_deps, district_departments=dist_deps, utilities=utilities,
        property_ids=props, roads=roads,
    )


@dataclass(frozen=True)
class Leaf:
    """A leaf of the category tree as the generator uses it."""

    id: int
    path: str
    name: str
    tier: str
    unit_kind: str


def builtin_categories(csv_path: Path) -> tuple[list[dict[str, Any]], list[Leaf]]:
    """Read a level1,level2,level3 CSV into category rows with ids 1.. in file order, as
    ``catalog.service.load_tree`` would store them in an empty database (same tier and unit kind
    rules). Returns (all rows, the leaves). For ``--parquet``, which writes no database."""
    rows: dict[str, dict[str, Any]] = {}
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        for record in csv.DictReader(handle):
            names = [(record.get(f"level{i}") or "").strip() for i in (1, 2, 3)]
            path: list[str] = []
            parent = None
            for level, name in enumerate(names, start=1):
                if not name:
                    break
                path.append(name)
                key = "/".join(path)
                if key not in rows:
                    rows[key] = {"id": len(rows) + 1, "name": name, "level": level, "parent_id": parent, "path": key,
                                 "deadline_tier": str(default_tier(path)),
                                 "default_unit_kind": str(default_unit_kind(path))}
                parent = rows[key]["id"]
    return list(rows.values()), leaves_of(list(rows.values()))


def leaves_of(rows: list[dict[str, Any]]) -> list[Leaf]:
    """Return the leaves (categories no other category names as parent) of category rows, by id."""
    parents = {r["parent_id"] for r in rows}
    return [Leaf(r["id"], r["path"], r["name"], str(r["deadline_tier"]), str(r["default_unit_kind"]))
            for r in sorted(rows, key=lambda r: r["id"]) if r["id"] not in parents]
