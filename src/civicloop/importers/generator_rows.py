"""Rows of one chunk: service requests, their work orders and supervision cases, drawn with numpy.

Chunk *c* covers request indices [c·chunk, (c+1)·chunk) and draws from its own random stream
(seed, c), so any chunk can be made alone and the same seed always gives the same rows.

The loop's outcome follows the state machine of ``requests.rules`` step by step, as the services
would have run it, frozen at the plan's horizon (the end of the span):

* about 4 % are rejected (duplicate of an earlier request of the same matter, no content, out of
  scope); a duplicate adds one to its original's support count, as ``intake.reject`` does;
* the others are accepted and dispatched; about 4 % first go to a wrong unit that returns them,
  0.5 % are returned twice and fall back to their district (``settings.max_returns``);
* the lead unit acknowledges (late with the unit's own probability), may ask for an extension (5
  working days, approved), replies, and the citizen is called back; an unresolved or dissatisfied
  callback reopens the request to the same unit up to ``settings.max_reopens`` times, after which it
  closes with a supervision case (督办);
* about 5 % get an assisting unit, closed with the request;
* whatever step would fall after the horizon does not happen: the request stays submitted,
  accepted, dispatched, in progress or replied, exactly as the services would have left it.

Deadlines are exact, not clock-day approximations: the response deadline is dispatch + 2 h
(urgent) or 24 h (``settings``), and day tiers end at 23:59:59 local time on the 7th or 15th working
day of the Chinese calendar after acknowledgement (the plan's lookup tables). An order is flagged
overdue when it sat pending past its response deadline or acknowledged past its resolution deadline
at any moment up to the horizon, as the periodic job would have flagged it; each flag opens a
supervision case. No request events are written (see ``generator``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from civicloop.importers.generator_plan import ROUTE_DISTRICT_DEP, ROUTE_FIXED, ROUTE_PROPERTY, Plan, day_index
from civicloop.importers.generator_text import (
    ASSIST_REPLY,
    BUILDING_MAX,
    EXTENSION_REASON,
    NO_CONTENT,
    OUT_OF_SCOPE,
    RETURN_REASONS,
    SPOTS,
    citizens,
    reply_texts,
    request_texts,
)

CHANNELS = ("hotline", "app", "web", "grid_worker", "social_media", "open311", "proactive")
DAY_CHANNELS = np.array([0.52, 0.15, 0.09, 0.12, 0.05, 0.02, 0.05])
NIGHT_CHANNELS = np.array([0.75, 0.14, 0.07, 0.0, 0.04, 0.0, 0.0])
REQUEST_STATUS = ("submitted", "accepted", "rejected", "dispatched", "in_progress", "replied", "closed")
SUB, ACC, REJ, DISP, PROG, REPL, CLOSED = range(7)
ORDER_STATUS = ("pending", "acknowledged", "returned", "extension_requested", "replied", "closed", "reopened")
O_PEND, O_ACK, O_RET, O_EXT, O_REPL, O_CLOSED, O_REOPENED = range(7)
REJECT_REASONS = (None, "duplicate", "no_content", "out_of_scope")
SATISFACTION = ("satisfied", "basically_satisfied", "dissatisfied")
HOUR, DAY = 3600, 86400


@dataclass
class Chunk:
    """The rows of one chunk, column by column: numpy arrays (ids and times as int64, -1 for null;
    floats NaN for null; codes into the vocabularies above) and Python lists of strings."""

    requests: dict[str, object]
    orders: dict[str, object]
    supervisions: dict[str, object]
    rows: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def offset(self, order_id: int, supervision_id: int) -> None:
        """Number this chunk's work orders from ``order_id`` and its cases from ``supervision_id``."""
        self.orders["id"] = self.orders["id"] + order_id
        self.supervisions["id"] = self.supervisions["id"] + supervision_id
        self.supervisions["work_order_id"] = self.supervisions["work_order_id"] + order_id


class _Orders:
    """Columns of the work orders of a chunk, appended stage by stage."""

    COLUMNS = ("req", "unit", "role", "round", "status", "fallback", "tier", "dispatched", "response_due", "ack",
               "due", "due_prov", "returned", "return_reason", "ext_status", "ext_until", "replied", "callback",
               "resolved", "satisfaction", "overdue", "closed", "version", "assist")

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {c: [] for c in self.COLUMNS}

    def add(self, req: np.ndarray, **cols: object) -> None:
        """Append the orders of rows ``req`` (request positions in the chunk); unnamed columns take
        their null or default value. Raises ``KeyError`` for a required column left out."""
        n = len(req)
        defaults = {"role": 0, "fallback": False, "ack": -1, "due": -1, "due_prov": False, "returned": -1,
                    "return_reason": -1, "ext_status": 0, "ext_until": -1, "replied": -1, "callback": -1,
                    "resolved": -1, "satisfaction": -1, "closed": -1, "assist": False}
        self.parts["req"].append(np.asarray(req, dtype=np.int64))
        for name in self.COLUMNS[1:]:
            value = cols.get(name, defaults.get(name))
            if value is None:
                raise KeyError(name)
            self.parts[name].append(np.broadcast_to(np.asarray(value), (n,)).copy())

    def table(self) -> dict[str, np.ndarray]:
        """Return every column as one array (stages concatenated in the order they were added)."""
        return {c: (np.concatenate(p) if p else np.zeros(0, np.int64)) for c, p in self.parts.items()}


def make_chunk(plan: Plan, number: int) -> Chunk:
    """Draw chunk ``number`` of ``plan`` (see the module docstring) and return its rows. Requests
    carry their final ids; work orders and supervision cases are numbered from 0 within the chunk
    (``Chunk.offset`` moves them to their final ids once the chunks before are counted)."""
    opts, city = plan.opts, plan.city
    a = number * opts.chunk
    b = min(opts.requests, a + opts.chunk)
    n = b - a
    rng = np.random.default_rng([opts.seed, 7, number])
    idx = np.arange(a, b)
    day = np.searchsorted(plan.day_first, idx, side="right") - 1
    u = (idx - plan.day_first[day] + rng.random(n)) / plan.day_counts[day]  # stratified: time order by index
    hour = np.clip(np.searchsorted(plan.hour_cdf, u, side="right") - 1, 0, 23)
    frac = (u - plan.hour_cdf[hour]) / (plan.hour_cdf[hour + 1] - plan.hour_cdf[hour])
    created = plan.midnights[day] + np.minimum((hour + frac) * HOUR, DAY - 1).astype(np.int64)

    month = plan.day_month[day]
    leaf = np.zeros(n, np.int64)
    pick = rng.random(n)
    for m in np.unique(month):
        mask = month == m
        slot = rng.choice(len(plan.topic_slots), size=int(mask.sum()), p=plan.topic_p[m])
        for s in np.unique(slot):
            leaves = plan.slot_leaves[s]
            sub = np.flatnonzero(mask)[slot == s]
            leaf[sub] = leaves[(pick[sub] * len(leaves)).astype(np.int64)]
    grid = rng.choice(len(city.grid_ids), size=n, p=plan.grid_p)
    daytime = (hour >= 8) & (hour < 20)
    channel = np.where(daytime, rng.choice(7, size=n, p=DAY_CHANNELS), rng.choice(7, size=n, p=NIGHT_CHANNELS))
    place = {"building": rng.integers(1, BUILDING_MAX + 1, n), "entrance": rng.integers(1, 7, n),
             "road": rng.integers(0, 12, n), "road2": rng.integers(1, 12, n), "number": rng.integers(1, 300, n),
             "spot": rng.integers(0, len(SPOTS), n)}
    place["road2"] = (place["road"] + place["road2"]) % 12

    lo, hi = np.searchsorted(plan.ov_index, [a, b])
    pos = plan.ov_index[lo:hi] - a
    override = np.zeros(n, bool)
    override[pos] = True
    leaf[pos], grid[pos] = plan.ov_leaf[lo:hi], plan.ov_grid[lo:hi]
    fixed = plan.ov_building[lo:hi] >= 0
    place["building"][pos[fixed]] = plan.ov_building[lo:hi][fixed]
    place["entrance"][pos[fixed]] = plan.ov_entrance[lo:hi][fixed]

    r = rng.random(n)
    reject = np.select([r < 0.025, r < 0.035, r < 0.04], [1, 2, 3], 0)
    reject[override] = 0
    dup_of = np.full(n, -1, np.int64)
    planned = plan.ov_dup_of[lo:hi] >= 0
    reject[pos[planned]] = 1
    dup_of[pos[planned]] = plan.ov_dup_of[lo:hi][planned]
    ordinary = np.flatnonzero((reject == 1) & (dup_of < 0))
    src = ordinary - rng.integers(1, 200, len(ordinary))
    ok = src >= 0
    ok[ok] = (reject[src[ok]] == 0) & ~override[src[ok]]
    reject[ordinary[~ok]] = 0
    ordinary, src = ordinary[ok], src[ok]
    for column in (leaf, grid, *place.values()):
        column[ordinary] = column[src]
    dup_of[ordinary] = a + src
    rejected_at = created + rng.integers(120, 2400, n)
    waiting = (reject > 0) & (rejected_at > plan.horizon)  # the rejection would come after the horizon
    dup_of[waiting] = -1
    support = np.zeros(n, np.int64)
    np.add.at(support, src[~waiting[ordinary]], 1)
    blo, bhi = np.searchsorted(plan.bonus_index, [a, b])
    support[plan.bonus_index[blo:bhi] - a] += plan.bonus_count[blo:bhi]

    requests = _request_columns(plan, rng, idx, created, leaf, grid, channel, place, reject, dup_of, support)
    requests.update(waiting=waiting, rejected_at=rejected_at)
    orders, supervisions, counts = _loop(plan, rng, requests, leaf, grid)
    return Chunk(requests=requests, orders=orders, supervisions=supervisions, rows=n, counts=counts)


def _request_columns(plan: Plan, rng: np.random.Generator, idx: np.ndarray, created: np.ndarray, leaf: np.ndarray,
                     grid: np.ndarray, channel: np.ndarray, place: dict[str, np.ndarray], reject: np.ndarray,
                     dup_of: np.ndarray, support: np.ndarray) -> dict[str, object]:
    city, n = plan.city, len(idx)
    comm = city.grid_comm[grid]
    street = city.comm_street[comm]
    district = city.street_district[street]
    district_roads = [city.roads[d] for d in district.tolist()]
    topic = plan.leaf_topic[leaf]
    titles, bodies, addresses = request_texts(
        rng, topic=topic, leaf_name=[plan.leaves[i].name for i in leaf.tolist()],
        comm=[city.comm_names[c] for c in comm.tolist()],
        district=[city.district_names[d] for d in district.tolist()],
        street=[city.street_names[s] for s in street.tolist()],
        road=[rs[i] for rs, i in zip(district_roads, place["road"].tolist(), strict=True)],
        road2=[rs[i] for rs, i in zip(district_roads, place["road2"].tolist(), strict=True)],
        building=place["building"], entrance=place["entrance"], number=place["number"], spot=place["spot"])
    names, phones = citizens(rng, n)
    lon = city.grid_lon0[grid] + rng.uniform(0.02, 0.98, n) * city.grid_step[grid]
    lat = city.grid_lat0[grid] + rng.uniform(0.02, 0.98, n) * city.grid_step[grid]
    category = np.array([lf.id for lf in plan.leaves], dtype=np.int64)[leaf]
    tier = plan.leaf_tier[leaf].copy()
    grid_id, street_id, district_id = city.grid_ids[grid], city.street_ids[street], city.district_ids[district]
    empty = reject >= 2  # no content or out of scope: never classified or located
    for i in np.flatnonzero(empty).tolist():
        titles[i] = "无效来电" if reject[i] == 2 else "不属于受理范围的咨询"
        pool = NO_CONTENT if reject[i] == 2 else OUT_OF_SCOPE
        bodies[i] = pool[int(created[i]) % len(pool)]
        addresses[i] = ""
    channel = np.where(empty, 0, channel)
    for arr in (category, grid_id, street_id, district_id):
        arr[empty] = -1
    lat[empty] = lon[empty] = np.nan
    tier[empty] = 2
    no_citizen = (channel == 6) | (channel == 3)
    for i in np.flatnonzero(no_citizen).tolist():
        names[i] = "" if channel[i] == 6 else "网格员"
        phones[i] = ""
    return {"id": plan.opts.request_id_base + idx, "channel": channel, "title": titles, "description": bodies,
            "citizen_name": names, "citizen_phone": phones, "address": addresses, "lat": lat, "lon": lon,
            "grid_id": grid_id, "street_id": street_id, "district_id": district_id, "category_id": category,
            "deadline_tier": tier, "support_count": support, "reject": reject,
            "duplicate_of_id": np.where(dup_of >= 0, plan.opts.request_id_base + dup_of, -1),
            "created_at": created, "topic": topic, "grid": grid, "comm": comm, "street": street, "district": district}


def _units(plan: Plan, rng: np.random.Generator, leaf: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The unit each request should go to, by its leaf's routing and its grid."""
    city = plan.city
    comm = city.grid_comm[grid]
    street = city.comm_street[comm]
    kind, unit = plan.route_kind[leaf], plan.route_unit[leaf]
    out = np.where(rng.random(len(leaf)) < 0.25, city.comm_ids[comm], city.street_ids[street])
    out = np.where(kind == ROUTE_PROPERTY, city.comm_property[comm], out)
    out = np.where(kind == ROUTE_FIXED, unit, out)
    if plan.district_deps.size:
        dep = plan.district_deps[np.clip(unit, 0, None) % len(plan.district_deps), city.street_district[street]]
        out = np.where(kind == ROUTE_DISTRICT_DEP, dep, out)
    return out


def _due(plan: Plan, tier: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resolution deadline and provisional flag for orders of ``tier`` acknowledged at ``start``."""
    d = day_index(plan, start)
    due = np.select([tier == 0, tier == 1, tier == 2], [start + 2 * HOUR, start + DAY, plan.due7[d]], plan.due15[d])
    prov = np.select([tier == 2, tier == 3], [plan.prov7[d], plan.prov15[d]], False)
    return due, prov


def _loop(plan: Plan, rng: np.random.Generator, req: dict[str, object], leaf: np.ndarray,
          grid: np.ndarray) -> tuple[dict[str, object], dict[str, object], dict[str, int]]:
    """Drive every request of the chunk through the loop up to the horizon; fill the request's
    status columns in place and return (work orders, supervisions, counts)."""
    opts, H = plan.opts, plan.horizon
    created = req["created_at"]
    n = len(created)
    reject = req["reject"]
    tier = req["deadline_tier"]
    status = np.full(n, SUB)
    version = np.ones(n, np.int64)
    updated = created.copy()
    closed_at = np.full(n, -1, np.int64)
    lead = np.full(n, -1, np.int64)
    returns = np.zeros(n, np.int64)
    reopens = np.zeros(n, np.int64)
    fallback = np.zeros(n, bool)
    orders = _Orders()
    sup: list[tuple[np.ndarray, np.ndarray, int, np.ndarray]] = []  # (req rows, order positions, reason, at)

    def move(rows: np.ndarray, to: int | None, at: np.ndarray) -> None:
        """One request transition of ``rows`` at ``at`` (``to`` None: the status stays, as for an
        extension): the version goes up by one and ``updated_at`` follows, as in ``move_request``."""
        if to is not None:
            status[rows] = to
        version[rows] += 1
        updated[rows] = at

    rejected_at = req["rejected_at"]
    rej = (reject > 0) & ~req["waiting"]
    move(np.flatnonzero(rej), REJ, rejected_at[rej])
    closed_at[rej] = rejected_at[rej]
    live = reject == 0
    accepted_at = created + rng.integers(60, 1200, n)
    live &= accepted_at <= H
    move(np.flatnonzero(live), ACC, accepted_at[live])
    t = accepted_at + rng.integers(60, 900, n)
    act = live & (t <= H)
    window = np.where(tier == 0, opts.response_urgent, opts.response_default)
    right = _units(plan, rng, leaf, grid)
    r = rng.random(n)
    want_returns = np.minimum(np.select([r < 0.005, r < 0.04], [2, 1], 0), opts.max_returns)
    rnd = np.ones(n, np.int64)
    for step in range(int(want_returns.max(initial=0))):
        rows = np.flatnonzero(act & (want_returns > step))
        if not len(rows):
            break
        pool = plan.wrong_pool
        drawn = rng.integers(0, len(pool), len(rows))
        unit = np.where(pool[drawn] == right[rows], pool[(drawn + 1) % len(pool)], pool[drawn])
        disp, rdue = t[rows], t[rows] + window[rows]
        move(rows, DISP, disp)
        lead[rows] = unit
        ret = disp + rng.integers(HOUR // 5, 10 * HOUR, len(rows))
        pend = ret > H
        done = rows[~pend]
        act[rows[pend]] = False
        over = np.where(pend, H > rdue, ret > rdue)
        orders.add(rows, unit=unit, round=rnd[rows], status=np.where(pend, O_PEND, O_RET), tier=tier[rows],
                   dispatched=disp, response_due=rdue, returned=np.where(pend, -1, ret),
                   return_reason=np.where(pend, -1, rng.integers(0, len(RETURN_REASONS), len(rows))),
                   overdue=over, version=1 + (~pend) + over)
        sup.append((rows[over], _last(orders, over), 0, rdue[over]))
        returns[done] += 1
        move(done, ACC, ret[~pend])
        lead[done] = -1
        falls = returns[done] >= opts.max_returns
        nxt = np.where(falls, ret[~pend], ret[~pend] + rng.integers(300, 5400, len(done)))
        fallback[done[falls]] = True
        t[done] = nxt
        act[done[~falls & (nxt > H)]] = False
        rnd[done] += 1
    final = np.where(fallback, plan.city.district_ids[req["district"]], right)
    assist = act & (rng.random(n) < 0.05)
    assist_dispatch = np.where(assist, t, -1)
    assist_round = rnd.copy()
    for attempt in range(opts.max_reopens + 1):
        rows = np.flatnonzero(act)
        if not len(rows):
            break
        _attempt(plan, rng, orders, sup, rows, attempt, t, final, tier, window, fallback, rnd, move, lead, act,
                 closed_at, reopens)
    _assisting(plan, rng, orders, sup, np.flatnonzero(assist), assist_dispatch, assist_round, tier, window, req,
               final, status, closed_at)
    req.update(status=status, version=version, updated_at=updated, closed_at=closed_at, lead_unit_id=lead,
               return_count=returns, reopen_count=reopens, fallback=fallback)
    return _finish(rng, req, orders, sup)


def _last(orders: _Orders, mask: np.ndarray) -> np.ndarray:
    """Positions (in the chunk's order table) of the rows of the last ``add`` selected by ``mask``."""
    before = sum(len(p) for p in orders.parts["req"][:-1])
    return before + np.flatnonzero(mask)


def _attempt(plan: Plan, rng: np.random.Generator, orders: _Orders, sup: list, rows: np.ndarray, attempt: int,
             t: np.ndarray, final: np.ndarray, tier: np.ndarray, window: np.ndarray, fallback: np.ndarray,
             rnd: np.ndarray, move, lead: np.ndarray, act: np.ndarray, closed_at: np.ndarray,
             reopens: np.ndarray) -> None:
    """One round of the lead unit: dispatch (or the reopen's new order), acknowledge, maybe extend,
    reply, callback; rows that close or stop at the horizon leave ``act``."""
    opts, H, prof = plan.opts, plan.horizon, plan.profile
    k = len(rows)
    unit, tr, w = final[rows], tier[rows], window[rows]
    disp, rdue = t[rows], t[rows] + w
    if attempt == 0:
        move(rows, DISP, disp)  # dispatch (or fallback) to the final unit
    lead[rows] = unit
    soften = 0.6 if attempt else 1.0
    late = rng.random(k) < prof["late_ack"][unit] * soften
    mean = np.where(tr == 0, 0.2 * w, prof["ack_hours"][unit] * HOUR)
    delay = np.where(late, w * rng.uniform(1.05, 2.5, k), np.minimum(rng.exponential(1.0, k) * mean, 0.95 * w))
    ack = disp + delay.astype(np.int64)
    acked = ack <= H
    due, prov = _due(plan, tr, np.minimum(ack, H))
    ext = acked & (tr >= 2) & ~late & (rng.random(k) < prof["ext_p"][unit])
    ext_req = ack + (0.6 * (due - ack)).astype(np.int64)
    decide = ext_req + rng.integers(2 * HOUR, 20 * HOUR, k)
    ext &= ext_req <= H
    new_due = plan.ext5[day_index(plan, due)]
    approved = ext & (decide <= H)
    scale = prof["reply_scale"][unit] * (0.7 if attempt else 1.0)
    base = np.select([tr == 0, tr == 1, tr == 2],
                     [rng.uniform(0.3, 1.6, k) * HOUR, rng.exponential(8 * HOUR, k), rng.gamma(2.0, 1.5 * DAY, k)],
                     rng.gamma(2.0, 3.0 * DAY, k))
    reply = ack + (base * scale * np.where(ext, 1.6, 1.0)).astype(np.int64)
    reply = np.where(ext, np.maximum(reply, decide + HOUR), reply)
    replied = acked & (reply <= H) & ~(ext & ~approved)
    final_due = np.where(approved, new_due, due)
    callback = reply + rng.integers(HOUR, 48 * HOUR, k)
    called = replied & (callback <= H)
    poor = rng.random(k) < prof["poor"][unit] * (0.6 if attempt else 1.0)
    dissatisfied = poor & (rng.random(k) < 0.8)
    resolved = ~poor | (dissatisfied & (rng.random(k) < 0.25))
    satisfaction = np.where(poor, np.where(dissatisfied, 2, 1), np.where(rng.random(k) < 0.78, 0, 1))
    good = resolved & (satisfaction != 2)
    closes = called & (good | (reopens[rows] >= opts.max_reopens))
    reopen = called & ~closes

    o_status = np.select([~acked, ext & ~approved, ~replied, ~called, closes], [0, 3, 1, 4, 5], 6)
    resp_over = np.minimum(ack, H) > rdue
    res_over = acked & (np.minimum(np.where(replied, reply, H), H) > final_due)
    over = resp_over | res_over
    o_version = 1 + acked + ext + approved + replied + called + over
    orders.add(rows, unit=unit, round=rnd[rows], status=o_status, fallback=fallback[rows], tier=tr,
               dispatched=disp, response_due=rdue, ack=np.where(acked, ack, -1), due=np.where(acked, final_due, -1),
               due_prov=acked & prov & ~approved, ext_status=np.where(approved, 2, np.where(ext, 1, 0)),
               ext_until=np.where(ext, new_due, -1), replied=np.where(replied, reply, -1),
               callback=np.where(called, callback, -1), resolved=np.where(called, resolved, -1),
               satisfaction=np.where(called, satisfaction, -1), overdue=over,
               closed=np.where(closes, callback, -1), version=o_version)
    sup.append((rows[over], _last(orders, over), 0, np.where(resp_over, rdue, final_due)[over]))
    bad = closes & ~good
    sup.append((rows[bad], _last(orders, bad), 1, callback[bad]))
    move(rows[acked], PROG, ack[acked])
    for mask, at in ((ext, ext_req), (approved, decide)):
        move(rows[mask], None, at[mask])
    move(rows[replied], REPL, reply[replied])
    move(rows[closes], CLOSED, callback[closes])
    closed_at[rows[closes]] = callback[closes]
    move(rows[reopen], DISP, callback[reopen])
    reopens[rows[reopen]] += 1
    t[rows[reopen]] = callback[reopen]
    rnd[rows[reopen]] += 1
    act[rows[~reopen]] = False


def _assisting(plan: Plan, rng: np.random.Generator, orders: _Orders, sup: list, rows: np.ndarray,
               dispatched: np.ndarray, rounds: np.ndarray, tier: np.ndarray, window: np.ndarray,
               req: dict[str, object], final: np.ndarray, status: np.ndarray, closed_at: np.ndarray) -> None:
    """Assisting orders (协办): dispatched with the lead's first final-round order, closed with the
    request (``closing._close_all``) or left where the horizon finds them."""
    if not len(rows):
        return
    city, H = plan.city, plan.horizon
    k = len(rows)
    comm = req["comm"][rows]
    street_unit = city.street_ids[req["street"][rows]]
    unit = np.where(final[rows] == street_unit, city.comm_ids[comm], street_unit)
    disp, w, tr = dispatched[rows], window[rows], tier[rows]
    rdue = disp + w
    ack = disp + (w * np.where(rng.random(k) < 0.1, rng.uniform(1.05, 2.0, k), rng.uniform(0.05, 0.9, k))).astype(
        np.int64)
    due, prov = _due(plan, tr, ack)
    reply = ack + ((due - ack) * rng.uniform(0.1, 0.7, k)).astype(np.int64)
    closed = status[rows] == CLOSED
    end = np.where(closed, closed_at[rows], H)
    acked, replied = ack <= end, reply <= end
    o_status = np.where(closed, 5, np.select([~acked, ~replied], [0, 1], 4))
    over = (np.minimum(ack, end) > rdue) | (acked & (np.minimum(reply, end) > due))
    orders.add(rows, unit=unit, role=1, round=rounds[rows], status=o_status, tier=tr, dispatched=disp,
               response_due=rdue, ack=np.where(acked, ack, -1), due=np.where(acked, due, -1), due_prov=acked & prov,
               replied=np.where(replied, reply, -1), overdue=over, closed=np.where(closed, end, -1),
               version=1 + acked + replied + closed + over, assist=True)
    sup.append((rows[over], _last(orders, over), 0, np.where(np.minimum(ack, end) > rdue, rdue, due)[over]))


def _finish(rng: np.random.Generator, req: dict[str, object], orders: _Orders,
            sup: list) -> tuple[dict[str, object], dict[str, object], dict[str, int]]:
    """Give orders and supervision cases their ids and texts; return them with counts."""
    o = orders.table()
    k = len(o["req"])
    order = np.lexsort((np.arange(k), o["dispatched"]))  # ids in dispatch order; rounds stay in order
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(k)
    o = {c: v[order] for c, v in o.items()}
    ids = np.arange(k)
    topic = req["topic"][o["req"]]
    replies = reply_texts(rng, topic)
    has_reply = o["replied"] >= 0
    reply_text = [(ASSIST_REPLY if assist else text) if flag else None
                  for text, flag, assist in zip(replies, has_reply.tolist(), o["assist"].tolist(), strict=True)]
    orders_out = {
        "id": ids, "request_id": req["id"][o["req"]], "unit_id": o["unit"], "role": o["role"], "round": o["round"],
        "status": o["status"], "fallback": o["fallback"].astype(bool), "deadline_tier": o["tier"],
        "dispatched_at": o["dispatched"], "response_due_at": o["response_due"], "acknowledged_at": o["ack"],
        "due_at": o["due"], "due_provisional": o["due_prov"].astype(bool), "returned_at": o["returned"],
        "return_reason": [RETURN_REASONS[i] if i >= 0 else None for i in o["return_reason"].tolist()],
        "extension_status": o["ext_status"], "extension_until": o["ext_until"],
        "extension_reason": [EXTENSION_REASON if s else None for s in o["ext_status"].tolist()],
        "replied_at": o["replied"], "reply_text": reply_text, "callback_at": o["callback"], "resolved": o["resolved"],
        "satisfaction": o["satisfaction"], "overdue": o["overdue"].astype(bool), "closed_at": o["closed"],
        "version": o["version"],
    }
    s_req = np.concatenate([s[0] for s in sup]) if sup else np.zeros(0, np.int64)
    s_pos = np.concatenate([s[1] for s in sup]) if sup else np.zeros(0, np.int64)
    s_reason = np.concatenate([np.full(len(s[0]), s[2]) for s in sup]) if sup else np.zeros(0, np.int64)
    s_at = np.concatenate([s[3] for s in sup]) if sup else np.zeros(0, np.int64)
    s_order = np.lexsort((rank[s_pos], s_at))
    s_req, s_pos, s_reason, s_at = s_req[s_order], s_pos[s_order], s_reason[s_order], s_at[s_order]
    closed = req["status"][s_req] == CLOSED
    still_open = ~closed | (s_reason == 1)
    supervisions = {
        "id": np.arange(len(s_req)), "request_id": req["id"][s_req],
        "work_order_id": rank[s_pos], "reason": s_reason,
        "note": ["" if o_ else "已随诉求结案" for o_ in still_open.tolist()], "redo": np.zeros(len(s_req), bool),
        "open": still_open, "opened_by": ["system" if r_ == 0 else "generator-callback" for r_ in s_reason.tolist()],
        "created_at": s_at, "closed_at": np.where(still_open, -1, req["closed_at"][s_req]),
    }
    status = req["status"]
    counts = {f"requests_{name}": int((status == i).sum()) for i, name in enumerate(REQUEST_STATUS)}
    counts.update(work_orders=k, supervisions=len(s_req), overdue_orders=int(o["overdue"].sum()),
                  returned_orders=int((o["status"] == O_RET).sum()),
                  reopened_orders=int((o["status"] == O_REOPENED).sum()))
    return orders_out, supervisions, counts
