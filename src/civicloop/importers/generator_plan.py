"""The generator's plan: everything decided once for a whole run before any row is drawn.

* the local calendar of the span, with working days (``core.calendar``) and, for every local date,
  the exact 7- and 15-working-day deadlines and the 5-working-day extension (lookup tables, so the
  deadline of a million orders is one array index, not a million calendar walks);
* how many requests fall on each day (seasonal topic volume × working day or not × a slow upward
  trend, drawn as one multinomial), so row *i* always lands on the same day and rows are in time
  order across chunks;
* topic weights per calendar month, the leaves of each topic, grid weights (population), routing
  of each leaf to a kind of unit, and a quality profile per unit;
* the planted patterns: hotspots (one matter at one building in a ten-day window) and surges (one
  category in one grid far above its baseline in one month), as fixed overrides of row indices.

Deterministic for the options' seed. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from civicloop.core.calendar import WorkCalendar
from civicloop.importers.generator_city import City, Leaf
from civicloop.importers.generator_text import ALL, BUILDING_MAX, TOPICS, topic_of

TIERS = ("2h", "24h", "7wd", "15wd")
HOUR_WEIGHTS = np.array([0.25, 0.15, 0.1, 0.08, 0.08, 0.15, 0.4, 1.0, 2.2, 3.0, 3.2, 2.9, 2.2, 2.4, 2.8, 2.8, 2.6,
                         2.2, 1.8, 1.6, 1.4, 1.2, 0.8, 0.5])
NON_WORKING_FACTOR = 0.68  # weekends and holidays bring about two thirds of a working day's calls
TREND = 0.2  # the last day of the span gets 20 % more calls than the first
HOTSPOT_TOPICS = ("elevator", "water", "property", "power", "gas", "heating")
SURGE_TOPICS = ("parking", "garbage", "fumes", "noise", "road", "streetlight")
DEPARTMENT_KEYS = (  # first match wins; district keys (CG, ZJ, HB, SJ) go to the district's own branch
    (("停车", "违停"), "GA"), (("交通", "公交", "地铁"), "JT"), (("教育", "学校", "入学", "幼儿园"), "JY"),
    (("劳动", "工资", "社保", "社会保险", "养老", "就业"), "RS"), (("卫生", "医疗", "医院", "就医"), "WJ"),
    (("市场", "消费", "食品", "价格"), "SJ"), (("商贸", "商务"), "SW"), (("住房", "建设", "物业"), "ZJ"),
    (("环境", "噪声", "污染", "油烟"), "HB"), (("民政", "低保"), "MZ"), (("文化", "旅游", "体育"), "WL"),
)
UTILITY_KEYS = ((("暖", "热"), "HEAT"), (("燃气", "煤气", "天然气"), "GAS"), (("电",), "POWER"),
                (("排水", "污水"), "DRAIN"), (("水",), "WATER"))
ROUTE_STREET, ROUTE_PROPERTY, ROUTE_FIXED, ROUTE_DISTRICT_DEP = 0, 1, 2, 3


@dataclass(frozen=True)
class Options:
    """What a run is asked for. ``start``/``end`` are aware local midnights; the loop's state is
    frozen at ``end`` (requests still being handled then stay open). Deadline and loop settings
    come from ``core.settings``; ids start at the given bases (max id in the database + 1)."""

    requests: int
    seed: int
    start: datetime
    end: datetime
    tz: ZoneInfo
    max_returns: int = 2
    max_reopens: int = 1
    response_urgent: int = 2 * 3600
    response_default: int = 24 * 3600
    chunk: int = 50_000
    request_id_base: int = 1
    order_id_base: int = 1
    supervision_id_base: int = 1


@dataclass
class Plan:
    """The decisions of a run (see the module docstring). Times are int64 UTC epoch seconds."""

    opts: Options
    city: City
    leaves: list[Leaf]
    horizon: int
    midnights: np.ndarray  # local midnights of the span and 120 days past it
    due7: np.ndarray
    prov7: np.ndarray
    due15: np.ndarray
    prov15: np.ndarray
    ext5: np.ndarray
    span_days: int
    day_month: np.ndarray  # calendar month 0..11 of each span day
    day_counts: np.ndarray
    day_first: np.ndarray  # index of the first request of each span day (length span_days + 1)
    hour_cdf: np.ndarray
    leaf_topic: np.ndarray  # topic index per leaf (-1 generic)
    leaf_tier: np.ndarray
    topic_slots: list[int]  # topic indices (into TOPICS, -1 generic) that have leaves
    topic_p: np.ndarray  # (12, slots) probability of each slot per calendar month
    slot_leaves: list[np.ndarray]
    grid_p: np.ndarray
    route_kind: np.ndarray
    route_unit: np.ndarray  # unit id for ROUTE_FIXED, department key index for ROUTE_DISTRICT_DEP
    district_deps: np.ndarray  # (keys, districts) unit ids
    wrong_pool: np.ndarray
    profile: dict[str, np.ndarray]  # per unit id: late_ack, ack_hours, reply_scale, poor, ext_p
    ov_index: np.ndarray
    ov_leaf: np.ndarray
    ov_grid: np.ndarray
    ov_building: np.ndarray
    ov_entrance: np.ndarray
    ov_dup_of: np.ndarray
    bonus_index: np.ndarray
    bonus_count: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _calendar_tables(opts: Options, calendar: WorkCalendar, days: int) -> tuple[np.ndarray, ...]:
    """Local midnights of ``days`` dates from the start, and for each date the 7- and 15-working-day
    deadlines (23:59:59 local) with their provisional flags and the 5-working-day extension.

    The same count as ``WorkCalendar.add_working_days`` (counting starts the day after), done with
    cumulative sums over the days' statuses instead of one calendar walk per date."""
    first = opts.start.date()
    reach = days + 60  # a deadline never lies more than 15 working days (+ holidays) past its date
    dates = [first + timedelta(days=i) for i in range(reach)]
    statuses = [calendar.day(d) for d in dates]
    working = np.cumsum([s.working for s in statuses])
    unknown = np.cumsum([not s.known for s in statuses])
    stamps = np.array([_epoch(datetime.combine(d, time(23, 59, 59), tzinfo=opts.tz)) for d in dates])
    index = np.arange(days)
    out: list[np.ndarray] = [np.array([_epoch(datetime.combine(d, time(0), tzinfo=opts.tz)) for d in dates[:days]])]
    for count in (7, 15, 5):
        target = np.searchsorted(working, working[index] + count, side="left")
        out.append(stamps[target])
        if count != 5:
            out.append(unknown[target] > unknown[index])
    midnights, due7, prov7, due15, prov15, ext5 = out
    return midnights, due7, prov7, due15, prov15, ext5


def day_index(plan: Plan, moments: np.ndarray) -> np.ndarray:
    """Return the index in ``plan.midnights`` of the local date of each epoch second."""
    return np.searchsorted(plan.midnights, moments, side="right") - 1


def _key(path: str, table: tuple[tuple[tuple[str, ...], str], ...], default: str) -> str:
    for words, key in table:
        if any(w in path for w in words):
            return key
    return default


def _routing(city: City, leaves: list[Leaf]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    keys = list(city.district_departments)
    district_deps = np.array([city.district_departments[k] for k in keys]) if keys else np.zeros((0, 0), np.int64)
    kinds, units = [], []
    for leaf in leaves:
        if leaf.unit_kind == "street" or leaf.unit_kind == "community":
            kinds.append(ROUTE_STREET)
            units.append(-1)
        elif leaf.unit_kind == "property" and len(city.property_ids):
            kinds.append(ROUTE_PROPERTY)
            units.append(-1)
        elif leaf.unit_kind == "utility" and city.utilities:
            key = _key(leaf.path, UTILITY_KEYS, "WATER")
            kinds.append(ROUTE_FIXED)
            units.append(city.utilities.get(key, next(iter(city.utilities.values()))))
        else:
            key = _key(leaf.path, DEPARTMENT_KEYS, "CG")
            if key in keys:
                kinds.append(ROUTE_DISTRICT_DEP)
                units.append(keys.index(key))
            elif key in city.city_departments:
                kinds.append(ROUTE_FIXED)
                units.append(city.city_departments[key])
            else:
                kinds.append(ROUTE_STREET)
                units.append(-1)
    return np.array(kinds), np.array(units, dtype=np.int64), district_deps, keys


def _profiles(opts: Options, city: City) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Quality profiles per unit id; one street planted as a laggard and one as a model."""
    rng = np.random.default_rng([opts.seed, 13])
    ids = np.array(sorted(u["id"] for u in city.unit_rows), dtype=np.int64)
    size = int(ids.max()) + 1
    profile = {name: np.zeros(size) for name in ("late_ack", "ack_hours", "reply_scale", "poor", "ext_p")}
    profile["late_ack"][ids] = rng.beta(1.2, 9.0, len(ids))
    profile["ack_hours"][ids] = rng.uniform(0.5, 8.0, len(ids))
    profile["reply_scale"][ids] = rng.lognormal(0.0, 0.35, len(ids))
    profile["poor"][ids] = rng.beta(1.5, 10.0, len(ids))
    profile["ext_p"][ids] = rng.uniform(0.0, 0.06, len(ids))
    laggard, model = (int(x) for x in rng.choice(city.street_ids, size=2, replace=False))
    for unit, values in ((laggard, (0.55, 10.0, 2.2, 0.45, 0.0)), (model, (0.01, 0.5, 0.6, 0.02, 0.0))):
        for name, value in zip(("late_ack", "ack_hours", "reply_scale", "poor", "ext_p"), values, strict=True):
            profile[name][unit] = value
    quality = {
        "laggard_unit_id": laggard, "model_unit_id": model,
        "note": "every unit has a profile (late acknowledgement rate, mean hours to acknowledge, reply-time scale, "
                "chance of a poor result, extension rate); the laggard street acknowledges 55 % of orders late and "
                "leaves 45 % of callbacks poor, the model street 1 % and 2 %",
        "profiles": {str(u): {k: round(float(v[u]), 4) for k, v in profile.items()} for u in (laggard, model)},
    }
    return profile, quality


def build_plan(opts: Options, city: City, leaves: list[Leaf], calendar: WorkCalendar) -> Plan:
    """Decide everything about a run (see the module docstring) and return the plan.

    Takes the options, the city, the catalogue's leaves (at least one) and the working-day
    calendar. Raises ``ValueError`` when there are no leaves or the span is empty.
    """
    if not leaves:
        raise ValueError("the catalogue has no leaf categories")
    span = (opts.end.date() - opts.start.date()).days
    if span < 1:
        raise ValueError("the span must be at least one day")
    rng = np.random.default_rng([opts.seed, 1])
    midnights, due7, prov7, due15, prov15, ext5 = _calendar_tables(opts, calendar, span + 120)
    first = opts.start.date()
    days = [first + timedelta(days=i) for i in range(span)]
    day_month = np.array([d.month - 1 for d in days])

    leaf_topic = np.array([topic_of(leaf.path) for leaf in leaves])
    slots = sorted({int(t) for t in leaf_topic}, key=lambda t: (t < 0, t))
    slot_leaves = [np.flatnonzero(leaf_topic == t) for t in slots]
    matched_base = sum(TOPICS[t].base for t in slots if t >= 0)
    weights = np.array([[TOPICS[t].season[m] * TOPICS[t].base if t >= 0 else max(0.15 * matched_base, 1.0)
                         for t in slots] for m in range(12)])
    volume = weights.sum(axis=1)
    working = np.array([calendar.day(d).working for d in days])
    day_weight = volume[day_month] * np.where(working, 1.0, NON_WORKING_FACTOR) * (1 + TREND * np.arange(span) / span)
    day_counts = rng.multinomial(opts.requests, day_weight / day_weight.sum())
    day_first = np.concatenate([[0], np.cumsum(day_counts)])

    grid_w = rng.lognormal(0.0, 0.6, len(city.grid_ids))
    grid_p = grid_w / grid_w.sum()
    route_kind, route_unit, district_deps, _ = _routing(city, leaves)
    wrong_pool = np.concatenate([city.street_ids, *[d for d in district_deps],
                                 np.array(list(city.city_departments.values()), dtype=np.int64)])
    profile, quality = _profiles(opts, city)
    plan = Plan(
        opts=opts, city=city, leaves=leaves, horizon=_epoch(opts.end), midnights=midnights, due7=due7, prov7=prov7,
        due15=due15, prov15=prov15, ext5=ext5, span_days=span, day_month=day_month, day_counts=day_counts,
        day_first=day_first, hour_cdf=np.concatenate([[0.0], np.cumsum(HOUR_WEIGHTS / HOUR_WEIGHTS.sum())]),
        leaf_topic=leaf_topic, leaf_tier=np.array([TIERS.index(leaf.tier) if leaf.tier in TIERS else 2
                                                   for leaf in leaves]),
        topic_slots=slots, topic_p=weights / weights.sum(axis=1, keepdims=True), slot_leaves=slot_leaves,
        grid_p=grid_p, route_kind=route_kind, route_unit=route_unit, district_deps=district_deps,
        wrong_pool=wrong_pool, profile=profile,
        ov_index=np.zeros(0, np.int64), ov_leaf=np.zeros(0, np.int64), ov_grid=np.zeros(0, np.int64),
        ov_building=np.zeros(0, np.int64), ov_entrance=np.zeros(0, np.int64), ov_dup_of=np.zeros(0, np.int64),
        bonus_index=np.zeros(0, np.int64), bonus_count=np.zeros(0, np.int64),
    )
    _plant(plan, np.random.default_rng([opts.seed, 2]))
    plan.manifest["quality"] = quality
    plan.manifest["seasonal"] = {
        ALL[t].key: {"category_ids": [leaves[i].id for i in slot_leaves[s]],
                     "monthly_weight": list(ALL[t].season)}
        for s, t in enumerate(slots) if t >= 0 and ALL[t].key in ("heating", "noise", "power", "school", "wages")
    }
    return plan


def _leaf_for(plan: Plan, rng: np.random.Generator, keys: tuple[str, ...], k: int) -> int:
    """A leaf of the k-th available topic among ``keys`` (cycling), else any leaf."""
    available = [s for s, t in enumerate(plan.topic_slots) if t >= 0 and TOPICS[t].key in keys]
    available.sort(key=lambda s: keys.index(TOPICS[plan.topic_slots[s]].key))
    if not available:
        return int(rng.integers(len(plan.leaves)))
    leaves = plan.slot_leaves[available[k % len(available)]]
    return int(leaves[rng.integers(len(leaves))])


def _plant(plan: Plan, rng: np.random.Generator) -> None:
    """Choose the hotspots and surges and record them as overrides of row indices."""
    opts, city = plan.opts, plan.city
    n = opts.requests
    used = np.zeros(0, np.int64)
    rows: list[tuple[np.ndarray, int, int, int, int, np.ndarray]] = []
    bonus: dict[int, int] = {}
    hotspots, surges = [], []
    window = min(10, plan.span_days)
    hot_size = int(np.clip(round(60 * np.sqrt(n / 1e6)), 20, 250))
    grids = rng.choice(len(city.grid_ids), size=8, replace=False, p=plan.grid_p)
    for k in range(3):
        first_day = int(rng.integers(0, max(plan.span_days - window - 20, 1)))
        lo, hi = int(plan.day_first[first_day]), int(plan.day_first[min(first_day + window, plan.span_days)])
        size = min(hot_size, (hi - lo) // 2)
        if size < 5:
            continue
        leaf, grid = _leaf_for(plan, rng, HOTSPOT_TOPICS, k), int(grids[k])
        building, entrance = BUILDING_MAX + 13 + k, int(rng.integers(1, 4))
        chosen = np.sort(rng.choice(np.setdiff1d(np.arange(lo, hi), used), size=size, replace=False))
        used = np.concatenate([used, chosen])
        dup_of = np.where(rng.random(size) < 0.25, chosen[0], -1)
        dup_of[0] = -1
        bonus[int(chosen[0])] = int((dup_of >= 0).sum())
        rows.append((chosen, leaf, grid, building, entrance, dup_of))
        comm = int(city.grid_comm[grid])
        street = int(city.comm_street[comm])
        end = opts.start + timedelta(days=first_day + window)
        hotspots.append({
            "id": f"H{k + 1}", "topic": ALL[int(plan.leaf_topic[leaf])].key, "category_id": plan.leaves[leaf].id,
            "category_path": plan.leaves[leaf].path, "grid_id": int(city.grid_ids[grid]),
            "street_id": int(city.street_ids[street]),
            "address": f"{city.district_names[int(city.street_district[street])]}{city.street_names[street]}"
                       f"{city.comm_names[comm]}{building}号楼{entrance}单元",
            "window_start": (opts.start + timedelta(days=first_day)).isoformat(),
            "window_end": end.isoformat(), "count": size, "duplicates_rejected": bonus[int(chosen[0])],
            "first_request_id": opts.request_id_base + int(chosen[0]),
        })
    months = _month_starts(opts)
    picks = rng.choice(len(months) - 1, size=min(2, len(months) - 1), replace=False) if len(months) > 1 else []
    for k, m in enumerate(picks):
        d0 = (months[m] - opts.start.date()).days
        d1 = (months[m + 1] - opts.start.date()).days
        lo, hi = int(plan.day_first[d0]), int(plan.day_first[d1])
        leaf, grid = _leaf_for(plan, rng, SURGE_TOPICS, k), int(grids[3 + k])
        slot = plan.topic_slots.index(int(plan.leaf_topic[leaf]))
        month_p = plan.topic_p[months[m].month - 1, slot] / len(plan.slot_leaves[slot])
        expected = (hi - lo) * plan.grid_p[grid] * month_p
        size = min(max(25, round(8 * expected)), (hi - lo) // 3)
        if size < 5:
            continue
        chosen = np.sort(rng.choice(np.setdiff1d(np.arange(lo, hi), used), size=size, replace=False))
        used = np.concatenate([used, chosen])
        rows.append((chosen, leaf, grid, -1, -1, np.full(size, -1)))
        surges.append({
            "id": f"S{k + 1}", "topic": ALL[int(plan.leaf_topic[leaf])].key, "category_id": plan.leaves[leaf].id,
            "category_path": plan.leaves[leaf].path, "grid_id": int(city.grid_ids[grid]),
            "month": f"{months[m]:%Y-%m}", "planted": size, "expected_baseline": round(float(expected), 3),
        })
    if rows:
        index = np.concatenate([r[0] for r in rows])
        order = np.argsort(index)
        plan.ov_index = index[order]
        plan.ov_leaf = np.concatenate([np.full(len(r[0]), r[1]) for r in rows])[order]
        plan.ov_grid = np.concatenate([np.full(len(r[0]), r[2]) for r in rows])[order]
        plan.ov_building = np.concatenate([np.full(len(r[0]), r[3]) for r in rows])[order]
        plan.ov_entrance = np.concatenate([np.full(len(r[0]), r[4]) for r in rows])[order]
        plan.ov_dup_of = np.concatenate([r[5] for r in rows])[order]
    plan.bonus_index = np.array(sorted(bonus), dtype=np.int64)
    plan.bonus_count = np.array([bonus[i] for i in sorted(bonus)], dtype=np.int64)
    plan.manifest["hotspots"] = hotspots
    plan.manifest["surges"] = surges


def _month_starts(opts: Options) -> list[date]:
    """First days of the calendar months inside the span, plus the span's end date."""
    out, day = [], opts.start.date().replace(day=1)
    if day < opts.start.date():
        day = (day + timedelta(days=32)).replace(day=1)
    while day < opts.end.date():
        out.append(day)
        day = (day + timedelta(days=32)).replace(day=1)
    return [*out, opts.end.date()] if out and out[-1] != opts.end.date() else out
