"""The steps of intelligent intake that call into ``intelligence``: find the place, find an open
request this one repeats, refine a first-level label to the deployment's second and third level.

Each step turns database rows into the pure inputs of an ``intelligence`` module and its answer
back into ids. The matchers are cached per process and rebuilt when their source tables change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    DateTime,
    Select,
    and_,
    bindparam,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from civicloop.catalog.service import list_categories, tree_version
from civicloop.core.db import transaction_memo
from civicloop.core.settings import Settings
from civicloop.intelligence import duplicates, places
from civicloop.intelligence.levels import LevelPredictor
from civicloop.requests.models import OPEN_SQL, OPEN_STATUSES, ServiceRequest

OPEN = OPEN_STATUSES
"""Statuses of a request another can repeat: filed and not yet closed or rejected."""
MAX_CANDIDATES = 500
"""At most this many recent open requests (same district when known, at a place that can be the new
one's) are compared with a new one, newest first."""
MAX_SAME_TEXT = 50
"""At most this many open requests with the same text (or, stored without a key, the same title)."""
SURE_LEVELS = ("high",)
"""Confidence bands of ``intelligence.levels`` at which the finer category is taken: on the judged
sample the band ``high`` was right 18 times of 18 at level 2, ``medium`` only 8 of 17
(docs/intelligence.md)."""


# --- place ----------------------------------------------------------------------------------------


def find_place(session: Session, request: ServiceRequest) -> dict[str, Any]:
    """Return where the request's address and text say it lies, from the gazetteer:
    ``{"district_id", "street_id", "grid_id", "label", "why", "source", "mentions"}`` (ids ``None``
    where unknown; ``mentions`` lists place names found that the gazetteer does not know)."""
    matcher = places.matcher_for(session)
    result = matcher.find(f"{request.title}\n{request.description}", request.address)
    return {
        "district_id": result.district_id, "street_id": result.street_id, "grid_id": result.grid_id,
        "label": result.label, "why": result.why, "source": "gazetteer" if result.matches else "none",
        "mentions": [m.name for m in result.unmatched],
    }


# --- duplicates -----------------------------------------------------------------------------------

CANDIDATE_CACHE = 20000
"""Open requests :func:`find_duplicate` keeps as ``duplicates.Candidate`` (normalised texts included) per
process, keyed by database and every column it reads of them (:data:`_COLUMNS`), so an entry is used
only while the row is unchanged. A request is compared with every later one at its place as long as it
is open, and reading, normalising and wrapping its text again each time was most of intake's CPU (issue
9, docs/benchmarks.md). About 1.5 KB each, some 30 MB when full; then the oldest quarter goes."""

_candidates: dict[tuple[Any, ...], duplicates.Candidate] = {}
_candidates_lock = threading.Lock()


def _database(session: Session) -> str:
    bind = session.get_bind()
    return bind.url.render_as_string(hide_password=True) if hasattr(bind, "url") else str(id(bind))


def remember(database: str, row: tuple[Any, ...], candidate: duplicates.Candidate) -> None:
    """Keep ``candidate``, built from ``row`` (the values of :data:`_COLUMNS`), for later duplicate checks
    (:data:`CANDIDATE_CACHE`). A row without ``text_key`` is not kept: its text is not pinned by a key."""
    if row[-1] is None:
        return
    with _candidates_lock:
        if len(_candidates) >= CANDIDATE_CACHE:
            for stale in list(islice(_candidates, CANDIDATE_CACHE // 4)):
                del _candidates[stale]
        _candidates[(database, *row)] = candidate


def clear_candidate_cache() -> None:
    """Forget every cached candidate (tests that compare the cache's answers with fresh reads use it)."""
    with _candidates_lock:
        _candidates.clear()


_TABLE = ServiceRequest.__table__
_COLUMNS = (_TABLE.c.id, type_coerce(_TABLE.c.created_at, DateTime(timezone=True)).label("created_at"),
            _TABLE.c.district_id, _TABLE.c.street_id, _TABLE.c.grid_id, _TABLE.c.place_key, _TABLE.c.duplicate_of_id,
            _TABLE.c.text_key)
"""What the duplicate check reads of a candidate before its text (which the cache usually has); the last
is ``text_key``. ``created_at`` as the driver returns it (PostgreSQL: aware, in the session's zone;
SQLite: naive UTC, made aware in :func:`find_duplicate`), not through ``UTCDateTime``, whose conversion
of up to 500 rows per request was 7 % of a server worker's time: an instant is an instant in any zone."""
_TEXTS = select(_TABLE.c.id, _TABLE.c.title, _TABLE.c.description).where(
    _TABLE.c.id.in_(bindparam("ids", expanding=True)))


def _is_open() -> tuple[ColumnElement[bool], ...]:
    # the open statuses as constants, as the partial indexes state them (a bound list proves nothing)
    return (_TABLE.c.id != bindparam("request_id"), text(f"service_requests.{OPEN_SQL}"))


def _text_members(*, key: bool, limit: int | Any = MAX_SAME_TEXT) -> list[Select[Any]]:
    """The members of the duplicate check that follow the request's text: the same ``:key`` (when it
    has one) and, among rows stored without a key, the same ``:title``; each at most ``limit``."""
    table = _TABLE
    members: list[Select[Any]] = []
    if key:
        members.append(select(*_COLUMNS).where(*_is_open(), table.c.text_key == bindparam("key")).limit(limit))
    members.append(select(*_COLUMNS).where(*_is_open(), table.c.text_key.is_(None),
                                           table.c.title == bindparam("title")).limit(limit))
    return members


PLACE_MEMBERS = ("unplaced", "grid", "street", "label", "all")
"""The duplicate check's members that follow the request's place (:func:`place_members`)."""


def place_members(*, grid: bool, street: bool, label: bool) -> tuple[str, ...]:
    """Which place members (:data:`PLACE_MEMBERS`) the duplicate check reads for a request with
    (``True``) or without a grid, street and usable place label: one per place that
    :func:`~civicloop.intelligence.duplicates.same_place` can find equal to the request's, plus the
    requests without any place; ``("all",)`` for a request without a place."""
    if not (grid or street or label):
        return ("all",)
    return ("unplaced", *(["grid"] if grid else []), *(["street"] if street else []), *(["label"] if label else []))


def _recent(member: str, *, district: bool, grid: bool, street: bool, limit: int | Any) -> Select[Any]:
    """The rows of place member ``member`` filed since ``:since``, in ``:district`` or none when
    ``district``, newest first, at most ``limit``: ``unplaced`` (no grid, street or label key), ``grid``
    (``:grid``), ``street`` (``:street``, without a grid when the request has one), ``label`` (``:label``,
    without the grid and street the request has), ``all``."""
    table = _TABLE
    recent = select(*_COLUMNS).where(*_is_open(), table.c.created_at >= bindparam("since"))
    if district:
        recent = recent.where(or_(table.c.district_id == bindparam("district"), table.c.district_id.is_(None)))
    no_grid = [table.c.grid_id.is_(None)] if grid else []
    no_street = [table.c.street_id.is_(None)] if street else []
    if member == "unplaced":
        place: ColumnElement[bool] = and_(table.c.grid_id.is_(None), table.c.street_id.is_(None),
                                          table.c.place_key.is_(None))
    elif member == "grid":
        place = table.c.grid_id == bindparam("grid")
    elif member == "street":
        place = and_(table.c.street_id == bindparam("street"), *no_grid)
    elif member == "label":
        place = and_(table.c.place_key == bindparam("label"), *no_grid, *no_street)
    else:
        place = true()
    return recent.where(place).order_by(table.c.created_at.desc()).limit(limit)


def _union(members: list[Select[Any]]) -> CompoundSelect:
    # each member a subquery: SQLite allows LIMIT only there
    return union_all(*(select(member.subquery()) for member in members))


@lru_cache(maxsize=64)
def candidate_statement(*, key: bool, district: bool, grid: bool, street: bool, label: bool) -> CompoundSelect:
    """Return the query (rows of :data:`_COLUMNS`) of the open requests that
    :func:`civicloop.intelligence.duplicates.find_master` can match with a new request, for a request
    with (``True``) or without a text key, district, grid, street and usable place label key:

    * the same normalised text at any time (``text_key`` = ``:key``; rows stored without a key, by a
      bulk load that bypassed the ORM, by the same ``:title`` as before); at most :data:`MAX_SAME_TEXT`;
    * filed since ``:since`` (the window) in the request's ``:district`` or none: when the request has a
      place, one member per place that :func:`~civicloop.intelligence.duplicates.same_place` can find
      equal to it (same ``:grid``; same ``:street`` without both grids; same ``:label`` key without both
      grids or both streets) and one for requests without any place (only a near-verbatim copy counts
      then); without a place, all of them (:func:`place_members`). Each newest first, at most
      :data:`MAX_CANDIDATES`.

    A request the query leaves out fails ``find_master``'s place test, so the answer is the one the whole
    window gives (before issue 9 the newest 500 of the district were read, whatever their place). Each
    place is its own member so that the database can use that column's index. Parameters: ``request_id``
    (left out) and those named above. One statement per shape, built once (cached): SQLAlchemy then
    reuses its compiled form."""
    members = _text_members(key=key)
    for member in place_members(grid=grid, street=street, label=label):
        members.append(_recent(member, district=district, grid=grid, street=street, limit=MAX_CANDIDATES))
    return _union(members)


@lru_cache(maxsize=64)
def _own_statement(*, key: bool, district: bool, grid: bool, street: bool, label: bool) -> CompoundSelect:
    """A batch's query for one request (:class:`BatchPool`): the text members and the label member (one
    building's rows, its own), not the members a batch shares; their limits parameters (``:same_text``,
    ``:limit``), so that the batch's own rows, taken from the session instead, leave room."""
    members = _text_members(key=key, limit=bindparam("same_text"))
    if label:
        members.append(_recent("label", district=district, grid=grid, street=street, limit=bindparam("limit")))
    return _union(members)


@lru_cache(maxsize=64)
def _shared_statement(member: str, *, district: bool, grid: bool, street: bool) -> Select[Any]:
    """A batch's query of one shared place member, its limit a parameter (``:limit``)."""
    return _recent(member, district=district, grid=grid, street=street, limit=bindparam("limit"))


SHARED = {"unplaced", "grid", "street", "all"}
"""The place members a batch reads once (:class:`BatchPool`): the label member is read per request."""
POOL = "civicloop.triage_steps.pool"
"""Key in ``Session.info`` of the :class:`BatchPool` of the batch being triaged."""


class BatchPool:
    """The place members of the duplicate check, read once for a batch triaged in one transaction.

    A batch of deferred intake (``triage_queue.run_batch``) checks its requests one after another; those of
    one street read the same few hundred open requests of that street, each for itself (about a fifth of the
    time of a replay of 12,000 requests on PostgreSQL, py-spy: issue 9, docs/benchmarks.md). Within the
    batch's transaction only the batch's own requests change (located, dispatched, rejected as duplicates),
    so a shared member is read once, :data:`MAX_CANDIDATES` + the batch's size rows, and each request's part
    of it is that read with the batch's requests as they are now (from the session: left out when closed,
    put in where they now belong), newest first, at most :data:`MAX_CANDIDATES`: the rows a query of its own
    would return. Requests another transaction commits while the batch runs are seen by the next batch (as a
    request filed at the same moment as another is never its duplicate either way).

    The batch's requests are always taken from the session, never from a query: the batch is triaged
    without autoflush (``triage_queue.run_batch``), so what intake found of their places is written
    once, at the end of the batch, with their records and events (a few statements instead of some six a
    request)."""

    def __init__(self, requests: Sequence[ServiceRequest]) -> None:
        self.requests = {r.id: r for r in requests}
        self.open: dict[int, tuple[Any, ...]] = {}  # the batch's open requests as rows, kept by :meth:`update`
        self.read: dict[tuple[Any, ...], tuple[datetime, list[tuple[Any, ...]]]] = {}
        for request in requests:
            self.update(request)

    def update(self, request: ServiceRequest) -> None:
        """Take batch request ``request`` as the session has it now (after its triage: a batch request
        changes only while it is triaged)."""
        if request.status in OPEN_STATUSES:
            self.open[request.id] = self.row(request)
        else:
            self.open.pop(request.id, None)

    def row(self, request: ServiceRequest) -> tuple[Any, ...]:
        """A batch request as the rows of :data:`_COLUMNS` give it now (its text key as stored)."""
        return (request.id, request.created_at, request.district_id, request.street_id, request.grid_id,
                request.place_key, request.duplicate_of_id, request.text_key)

    def members(self, session: Session, new: ServiceRequest, params: dict[str, Any],
                members: Sequence[str]) -> list[tuple[Any, ...]]:
        """The rows of the shared ``members`` for request ``new`` (``params`` those of
        :func:`candidate_statement`)."""
        flags = {"district": new.district_id is not None, "grid": new.grid_id is not None,
                 "street": new.street_id is not None}
        since = params["since"]
        batch = [row for rid, row in self.open.items() if rid != new.id]
        rows: list[tuple[Any, ...]] = []
        for member in members:
            value = {"grid": new.grid_id, "street": new.street_id}.get(member)
            key = (member, new.district_id, value, *flags.values())
            if key not in self.read or since < self.read[key][0]:  # read once (again if the window grew)
                found = session.execute(_shared_statement(member, **flags),
                                        {**params, "limit": MAX_CANDIDATES + len(self.requests)})
                self.read[key] = (since, [(r[0], _aware(r[1]), *r[2:]) for r in found if r[0] not in self.requests])
            now = [r for r in self.read[key][1] if r[1] >= since]
            now += [r for r in batch if r[1] >= since and self._within(r, new, member, flags)]
            if len(now) > MAX_CANDIDATES:
                now.sort(key=itemgetter(1), reverse=True)
                del now[MAX_CANDIDATES:]
            rows += now
        return rows

    def own(self, new: ServiceRequest, params: dict[str, Any], *, label: bool) -> list[tuple[Any, ...]]:
        """The batch's requests that the text and label members (:func:`_own_statement`) would return for
        request ``new`` now: open, and with its text key (or, without a key, its title), or at its place
        label (filed since ``:since``, in its district or none, without the grid and street it has)."""
        rows = []
        for rid, row in self.open.items():
            if rid == new.id:
                continue
            same_text = (row[-1] == params["key"] if params["key"] is not None else False) or (
                row[-1] is None and self.requests[rid].title == params["title"])
            at_label = label and row[5] == params["label"] and row[1] >= params["since"] and not (
                (new.district_id is not None and row[2] not in (new.district_id, None))
                or (new.grid_id is not None and row[4] is not None)
                or (new.street_id is not None and row[3] is not None))
            if same_text or at_label:
                rows.append(row)
        return rows

    @staticmethod
    def _within(row: tuple[Any, ...], new: ServiceRequest, member: str, flags: dict[str, bool]) -> bool:
        """Whether ``row`` (of :data:`_COLUMNS`) belongs to ``new``'s place ``member``, as
        :func:`_recent`'s conditions say."""
        _, _, district_id, street_id, grid_id, place_key, *_ = row
        if flags["district"] and district_id not in (new.district_id, None):
            return False
        if member == "unplaced":
            return grid_id is None and street_id is None and place_key is None
        if member == "grid":
            return grid_id == new.grid_id
        if member == "street":
            return street_id == new.street_id and not (flags["grid"] and grid_id is not None)
        return member == "all"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@contextmanager
def batch_pool(session: Session, requests: Sequence[ServiceRequest]) -> Iterator[BatchPool]:
    """Within the block, :func:`find_duplicate` reads the shared place members once for ``requests``
    (a batch triaged in ``session``'s transaction; :class:`BatchPool`). Leave the block before the
    transaction (or a savepoint holding the batch) is rolled back."""
    pool = session.info[POOL] = BatchPool(requests)
    try:
        yield pool
    finally:
        session.info.pop(POOL, None)


def find_duplicate(
    session: Session, *, request: ServiceRequest, settings: Settings, place_label: str | None, now: datetime
) -> duplicates.DuplicateMatch | None:
    """Return the open request that ``request`` repeats (重复件), or ``None``.

    Compares it with the open requests :func:`candidate_statement` returns (the same text at any time;
    in the last ``duplicate_window_days``, in its district when that is known, those at a place that can
    be its own); :func:`civicloop.intelligence.duplicates.find_master` decides (same place and similar
    text, or the same text). ``place_label``: the label intake found for the request (stored on it as
    ``place_key`` by :func:`civicloop.requests.triage.locate`). Candidates come from a per-process cache
    (:data:`CANDIDATE_CACHE`) where it has them, else from the database."""
    database = _database(session)
    key = duplicates.text_key(request.title, request.description)
    label_key = duplicates.place_key(place_label)
    label = label_key is not None and label_key != duplicates.PLACE_KEY_EMPTY
    new = duplicates.Candidate(
        id=request.id, title=request.title, detail=request.description, created_at=request.created_at,
        district_id=request.district_id, street_id=request.street_id, grid_id=request.grid_id,
        place_label=label_key, master_id=request.duplicate_of_id)
    shape = {"key": key is not None, "district": request.district_id is not None,
             "grid": request.grid_id is not None, "street": request.street_id is not None, "label": label}
    # -1 for a probe that is not stored (the operator's form): every id differs from it
    params = {"request_id": request.id if request.id is not None else -1, "key": key, "title": request.title,
              "since": now - timedelta(days=settings.duplicate_window_days), "district": request.district_id,
              "grid": request.grid_id, "street": request.street_id, "label": label_key}
    pool_of_batch: BatchPool | None = session.info.get(POOL)
    if pool_of_batch is not None and request.id in pool_of_batch.requests:
        room = {"same_text": MAX_SAME_TEXT + len(pool_of_batch.requests),
                "limit": MAX_CANDIDATES + len(pool_of_batch.requests)}
        found = [tuple(row) for row in session.execute(_own_statement(**shape), {**params, **room})
                 if row[0] not in pool_of_batch.requests]
        found += pool_of_batch.own(request, params, label=label)
        shared = [m for m in place_members(grid=shape["grid"], street=shape["street"], label=label) if m in SHARED]
        found += pool_of_batch.members(session, request, params, shared)
    else:
        found = [tuple(row) for row in session.execute(candidate_statement(**shape), params)]
    # SQLite keeps UTC without a zone (core.db.UTCDateTime); one row per request
    rows = {row[0]: (row[0], _aware(row[1]), *row[2:]) for row in found}.values()
    pool: list[duplicates.Candidate] = []
    missing: dict[int, tuple[Any, ...]] = {}
    cache = _candidates
    for row in rows:
        cached = cache.get((database, *row))
        if cached is not None:
            pool.append(cached)
        else:
            missing[row[0]] = row
    ids = list(missing)
    for start in range(0, len(ids), 1000):
        for row_id, title, description in session.execute(_TEXTS, {"ids": ids[start:start + 1000]}).all():
            rid, created_at, district_id, street_id, grid_id, place_key, master_id, _ = missing[row_id]
            candidate = duplicates.Candidate(
                id=rid, title="", detail="", created_at=created_at, district_id=district_id, street_id=street_id,
                grid_id=grid_id, place_label=place_key, master_id=master_id,
                title_key=duplicates.normalise_field(title), body_key=duplicates.normalise_field(description))
            remember(database, missing[row_id], candidate)
            pool.append(candidate)
    match = duplicates.find_master(new, pool, window_days=settings.duplicate_window_days,
                                   threshold=settings.duplicate_threshold, now=now) if pool else None
    # the request as later checks will read it (if it stays open: else the entry is never looked up)
    if request.id is not None:
        remember(database, (request.id, request.created_at, request.district_id, request.street_id,
                            request.grid_id, label_key, request.duplicate_of_id, key), new)
    return match


# --- second and third level -------------------------------------------------------------------------


@dataclass(frozen=True)
class RefinedCategory:
    """The deployment's category for a first-level label: as deep as the text makes sure."""

    id: int
    path: str
    confidence: str


_LEVELS: dict[tuple[str, int, int], tuple[LevelPredictor | None, dict[str, int]]] = {}


def _predictor(session: Session) -> tuple[LevelPredictor | None, dict[str, int]]:
    """Return the level predictor fitted on the category tree (``None`` for a tree of one level) and
    the category ids by path; cached per database until the tree changes (``catalog.service.tree_version``)."""
    memo = transaction_memo(session, "levels")
    assert memo is not None
    if "version" not in memo:  # once per transaction: a batch of deferred intake reads it once
        memo["version"] = tree_version(session)
    bind = session.get_bind()
    key = (str(getattr(bind, "url", id(bind))), *memo["version"])
    cached = _LEVELS.get(key)
    if cached is None:
        categories = list_categories(session)
        ids = {c.path: c.id for c in categories}
        parents = {c.parent_id for c in categories}
        paths = [tuple(c.path.split("/")) for c in categories if c.level >= 2 and c.id not in parents]
        predictor = LevelPredictor().fit(paths) if paths else None
        _LEVELS.clear()
        cached = _LEVELS[key] = (predictor, ids)
    return cached


def levels_of(session: Session) -> tuple[LevelPredictor | None, dict[str, int]]:
    """Return what :func:`refine_category` reads of the category tree (the level predictor and the
    category ids by path), to be passed to it when one request refines several labels: the tree's
    version is then read once (one query) instead of once per label."""
    return _predictor(session)


def refine_category(session: Session, *, label: str, title: str, detail: str,
                    levels: tuple[LevelPredictor | None, dict[str, int]] | None = None) -> RefinedCategory | None:
    """Return the deployment's category for the classifier's first-level ``label``: its level-2 and
    level-3 child when ``intelligence.levels`` is sure enough (band high), else the level-1
    node itself. ``None`` when the tree has no first-level category of that name. ``levels``: the
    tree as :func:`levels_of` returned it for this request (default: read now)."""
    predictor, ids = levels if levels is not None else _predictor(session)
    if label not in ids:
        return None
    if predictor is None:
        return RefinedCategory(id=ids[label], path=label, confidence="")
    prediction = predictor.predict(title, detail, label)
    path, bands = [label], []
    for choice in (prediction.level2, prediction.level3):
        if choice.name is None or choice.confidence not in SURE_LEVELS:
            break
        candidate = "/".join([*path, choice.name])
        if candidate not in ids:
            break
        path.append(choice.name)
        bands.append(choice.confidence)
    key = "/".join(path)
    return RefinedCategory(id=ids[key], path=key, confidence="/".join(bands))
