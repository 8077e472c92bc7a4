"""The steps of intelligent intake that call into ``intelligence``: find the place, find an open
request this one repeats, refine a first-level label to the deployment's second and third level.

Each step turns database rows into the pure inputs of an ``intelligence`` module and its answer
back into ids. The matchers are cached per process and rebuilt when their source tables change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from civicloop.catalog.service import list_categories, tree_version
from civicloop.core.settings import Settings
from civicloop.intelligence import duplicates, places
from civicloop.intelligence.levels import LevelPredictor
from civicloop.requests.models import RequestStatus, ServiceRequest, Triage

OPEN = (RequestStatus.SUBMITTED, RequestStatus.ACCEPTED, RequestStatus.DISPATCHED, RequestStatus.IN_PROGRESS,
        RequestStatus.REPLIED)
"""Statuses of a request another can repeat: filed and not yet closed or rejected."""
MAX_CANDIDATES = 500
"""At most this many recent open requests (same district when known) are compared with a new one."""
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


def _candidate(request: ServiceRequest | Any, place_label: str | None = None) -> duplicates.Candidate:
    return duplicates.Candidate(
        id=request.id, title=request.title, detail=request.description, created_at=request.created_at,
        district_id=request.district_id, street_id=request.street_id, grid_id=request.grid_id,
        place_label=place_label, master_id=request.duplicate_of_id,
    )


def find_duplicate(
    session: Session, *, request: ServiceRequest, settings: Settings, place_label: str | None, now: datetime
) -> duplicates.DuplicateMatch | None:
    """Return the open request that ``request`` repeats (重复件), or ``None``.

    Compares it with open requests filed in the last ``duplicate_window_days`` (in its district when
    that is known; at most :data:`MAX_CANDIDATES`, newest first) and with open requests of the very
    same title at any time; :func:`civicloop.intelligence.duplicates.find_master` decides (same
    place and similar text, or the same text)."""
    columns = (ServiceRequest.id, ServiceRequest.title, ServiceRequest.description, ServiceRequest.created_at,
               ServiceRequest.district_id, ServiceRequest.street_id, ServiceRequest.grid_id,
               ServiceRequest.duplicate_of_id)
    since = now - timedelta(days=settings.duplicate_window_days)
    recent = select(*columns).where(ServiceRequest.id != request.id, ServiceRequest.status.in_(OPEN),
                                    ServiceRequest.created_at >= since)
    if request.district_id is not None:
        recent = recent.where(or_(ServiceRequest.district_id == request.district_id,
                                  ServiceRequest.district_id.is_(None)))
    recent = recent.order_by(ServiceRequest.created_at.desc()).limit(MAX_CANDIDATES)
    same_title = select(*columns).where(ServiceRequest.id != request.id, ServiceRequest.status.in_(OPEN),
                                        ServiceRequest.title == request.title).limit(50)
    rows = {row.id: row for query in (recent, same_title) for row in session.execute(query)}
    if not rows:
        return None
    # a label decides the place only for a pair without both grids and without both streets
    # (duplicates.same_place): don't read (and decode) the triage records of the others
    wanted = {row_id: row for row_id, row in rows.items()
              if not (request.grid_id is not None and row.grid_id is not None)
              and not (request.street_id is not None and row.street_id is not None)}
    labels = _place_labels(session, wanted) if wanted else {}
    new = _candidate(request, place_label)
    pool = [_candidate(row, labels.get(row.id)) for row in rows.values()]
    return duplicates.find_master(new, pool, window_days=settings.duplicate_window_days,
                                  threshold=settings.duplicate_threshold, now=now)


def _place_labels(session: Session, rows: dict[int, Any]) -> dict[int, str]:
    """Return the place label intake found for each of these requests (from their triage records)."""
    found = session.execute(select(Triage.request_id, Triage.place).where(Triage.request_id.in_(list(rows))))
    return {request_id: place.get("label") for request_id, place in found if place and place.get("label")}


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
    bind = session.get_bind()
    key = (str(getattr(bind, "url", id(bind))), *tree_version(session))
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


def refine_category(session: Session, *, label: str, title: str, detail: str) -> RefinedCategory | None:
    """Return the deployment's category for the classifier's first-level ``label``: its level-2 and
    level-3 child when ``intelligence.levels`` is sure enough (band high), else the level-1
    node itself. ``None`` when the tree has no first-level category of that name."""
    predictor, ids = _predictor(session)
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
