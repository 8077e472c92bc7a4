"""Intelligent intake (智能分拨): classify, locate, check duplicates, route; or queue for a person.

For a newly filed request, in one transaction (the caller's):

1. **Place**: the grid from coordinates or the one given, else the places its address and text
   name, matched against the gazetteer (``intelligence.places``); the request gets the district,
   street and grid found.
2. **Duplicate** (重复件): an open request of the last ``duplicate_window_days`` at the same place
   with near-identical text (``intelligence.duplicates``) makes this one a duplicate: it is
   rejected with reason ``duplicate``, linked to that master (whose support count rises) and
   answered by the master's reply (:func:`civicloop.requests.handling.reply`).
3. **Category**: the classifier's calibrated top 3 first-level labels, each refined to the second
   and third level of the deployment's tree where that is sure (``intelligence.levels``).
4. **Route**: the routing table (``catalog.routing``) gives each suggestion its lead and assisting
   units.
5. **Decide**: when the top label's probability reaches ``auto_dispatch_threshold`` and a rule
   routes it, the request is accepted and dispatched by the system, with nobody in between;
   otherwise it waits in the dispatcher's queue with the three suggestions and the reasons.

Every step's findings are kept in a :class:`~civicloop.requests.models.Triage` row, and the
dispatcher's later choice next to them (training data for the next model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from civicloop.catalog import routing
from civicloop.catalog.service import find_category, require_category
from civicloop.core.errors import FieldError, Forbidden
from civicloop.core.settings import Settings
from civicloop.core.validation import mask_phones_in_text
from civicloop.intelligence import duplicates, model_store
from civicloop.intelligence.classifier import Prediction
from civicloop.org.models import UnitKind
from civicloop.org.service import GridPlace, ancestor_of_kind, find_grid, find_unit, grid_place, require_unit
from civicloop.requests import intake, triage_steps
from civicloop.requests.models import (
    RejectReason,
    ServiceRequest,
    Triage,
    TriageOutcome,
)
from civicloop.requests.rules import REQUEST_RULES, Action
from civicloop.requests.service import SYSTEM, Actor, get_request, now_or

logger = logging.getLogger(__name__)

QUEUE_REASONS = ("no_model", "low_confidence", "label_not_in_tree", "no_rule", "triage_failed")
"""Why a request waits for a person (texts: ``triage.<code>`` in ``core.i18n``)."""


@dataclass
class Suggestion:
    """One candidate category with its probability and, where a rule applies, its units."""

    label: str
    probability: float
    category_id: int | None = None
    path: str = ""
    level_confidence: str = ""
    lead_unit_id: int | None = None
    lead_unit_name: str = ""
    assisting_unit_ids: list[int] = field(default_factory=list)
    rule_id: int | None = None
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "probability": round(self.probability, 4), "category_id": self.category_id,
            "path": self.path, "level_confidence": self.level_confidence, "lead_unit_id": self.lead_unit_id,
            "lead_unit_name": self.lead_unit_name, "assisting_unit_ids": self.assisting_unit_ids,
            "rule_id": self.rule_id, "why": self.why,
        }


def model_path(settings: Settings) -> Path:
    """Return the classifier's model file for ``settings`` (``model_path`` or the default)."""
    return Path(settings.model_path) if settings.model_path else model_store.default_model_path()


def triage(
    session: Session, *, request: ServiceRequest, settings: Settings, started: float | None = None,
    now: datetime | None = None, predicted: Predicted | None = None, flush: bool = True,
) -> Triage:
    """Run intelligent intake on a request just filed (status ``submitted``) and return its record.

    ``started`` is the ``time.perf_counter()`` reading when the request arrived, so
    ``latency_seconds`` of an automatic dispatch covers filing, classification and routing (default:
    from this call). Raises nothing for a request it cannot place, classify or route: those go to the
    queue. ``predicted``: the classifier's answer for this request when the caller classified a batch at
    once (:func:`predict_batch`). ``flush=False``: what it found and decided is left in the session for
    the caller to flush (a batch flushes once: ``triage_queue.run_batch``). Raises ``IllegalTransition``
    only if the request is no longer ``submitted``."""
    started = time.perf_counter() if started is None else started
    now = now_or(now)
    record = Triage(request_id=request.id, outcome=TriageOutcome.QUEUED, queued=False, triaged_at=now,
                    suggestions=[], place={}, reasons=[])
    record.place = locate(session, request, flush=flush)
    duplicate = triage_steps.find_duplicate(session, request=request, settings=settings,
                                            place_label=record.place.get("label") or None, now=now)
    suggestions, reasons, stored = classify(session, request=request, settings=settings, predicted=predicted)
    record.model_version = stored.metadata.get("version", "") if stored else ""
    record.suggestions = [s.as_dict() for s in suggestions]
    if suggestions:
        record.label, record.confidence = suggestions[0].label, suggestions[0].probability
        record.category_id = suggestions[0].category_id
        record.rule_id = suggestions[0].rule_id
    # the record joins the session last, so it is inserted once with its outcome (not inserted by an
    # autoflush, then updated); the request is in no dispatcher's queue yet (``in_queue=False``)
    if duplicate is not None:
        record.outcome, record.queued = TriageOutcome.DUPLICATE, False
        record.duplicate_of_id, record.duplicate_score = duplicate.master_id, duplicate.score
        intake.reject(session, request_id=request.id, actor=SYSTEM, reason=RejectReason.DUPLICATE,
                      duplicate_of_id=duplicate.master_id, note=duplicate.why, now=now, in_queue=False)
        record.routed_at = now
        record.latency_seconds = time.perf_counter() - started
        session.add(record)
        if flush:
            session.flush()
        return record
    top = suggestions[0] if suggestions else None
    if not reasons and (top is None or top.category_id is None or top.lead_unit_id is None):
        reasons = ["no_rule"]  # never dispatch without a category and a unit, whatever the caller said
    if not reasons and top is not None and top.category_id is not None and top.lead_unit_id is not None:
        intake.accept(session, request_id=request.id, actor=SYSTEM, category_id=top.category_id,
                      note=f"智能分类 {top.path}（{top.probability:.0%}）", now=now)
        intake.dispatch(session, request_id=request.id, actor=SYSTEM, lead_unit_id=top.lead_unit_id,
                        assisting_unit_ids=top.assisting_unit_ids, settings=settings, note=top.why, now=now,
                        in_queue=False)
        record.outcome, record.queued = TriageOutcome.AUTO_DISPATCHED, False
        record.routed_at = now
        record.latency_seconds = time.perf_counter() - started
    record.reasons, record.queued = reasons, bool(reasons)
    session.add(record)
    if flush:
        session.flush()
    return record


def locate(session: Session, request: ServiceRequest, *, flush: bool = True) -> dict[str, Any]:
    """Find where ``request`` lies and store it on the request; return what was found.

    A grid (given or from coordinates, set at filing) wins; else the gazetteer match of the address
    and text. Returns ``{"district_id", "street_id", "grid_id", "label", "why", "source",
    "mentions"}`` (ids ``None`` where unknown). The label's key (``duplicates.place_key``) is stored as
    ``place_key``, where later duplicate checks look for requests at the same place."""
    if request.grid_id is not None:
        grid = grid_place(session, request.grid_id) or _grid_place(session, request.grid_id)
        assert grid is not None
        label_key = duplicates.place_key(grid.name)
        if request.place_key != label_key:  # set at filing (intake.submit) unless the grid changed since
            request.place_key = label_key
        return {"district_id": request.district_id, "street_id": request.street_id, "grid_id": grid.id,
                "label": grid.name, "why": "网格（坐标或指定）", "source": "grid", "mentions": []}
    found = triage_steps.find_place(session, request)
    if found["grid_id"] is not None:
        place = grid_place(session, found["grid_id"]) or _grid_place(session, found["grid_id"])
        if place is not None:
            request.grid_id = place.id
            found["street_id"] = found["street_id"] or place.street_id
    if found["street_id"] is not None and found["district_id"] is None:
        street = find_unit(session, found["street_id"])
        district = ancestor_of_kind(street, UnitKind.DISTRICT) if street else None
        found["district_id"] = district.id if district else None
    if found["street_id"] is not None:
        request.street_id = found["street_id"]
    if found["district_id"] is not None:
        request.district_id = found["district_id"]
    request.place_key = duplicates.place_key(found["label"] or None)
    if flush:  # else the caller flushes (a batch: triage_queue.run_batch)
        session.flush()
    return found


def _grid_place(session: Session, grid_id: int) -> GridPlace | None:
    """The grid from the table, for an id the cached index does not know (yet)."""
    grid = find_grid(session, grid_id)
    return intake.grid_place_of(grid) if grid is not None else None


Predicted = tuple[model_store.StoredModel, Prediction]
"""A model and its prediction for one request."""


def current_model(settings: Settings) -> model_store.StoredModel | None:
    """Return the classifier in use (``model_store.current``), or ``None`` when there is no model file or it
    cannot be read (logged: its requests go to the queue with reason ``no_model``)."""
    try:
        return model_store.current(model_path(settings))
    except model_store.ModelFileInvalid:
        logger.exception("the classifier's model file cannot be read: requests go to the queue")
        return None


def predict_batch(requests: Sequence[ServiceRequest], settings: Settings) -> dict[int, Predicted]:
    """Classify the requests of a batch that intake will classify (no category given) in one call of the
    model: ``{request id: (model, prediction)}`` for :func:`triage`'s ``predicted`` (empty without a
    model). The answers are those of one call per request; a batch of 32 costs ~0.3 ms of CPU a request
    instead of ~0.75 (the vectorizers' and the linear model's work in whole arrays; issue 9)."""
    todo = [r for r in requests if r.category_id is None]
    stored = current_model(settings) if todo else None
    if stored is None:
        return {}
    predictions = stored.model.predict_many([(r.title, r.description) for r in todo])
    return {r.id: (stored, p) for r, p in zip(todo, predictions, strict=True)}


def route_place(session: Session, request: ServiceRequest) -> routing.RoutePlace:
    """Return the request's place as the routing table sees it (district, street, community ids)."""
    community_id = None
    if request.grid_id is not None:
        grid = grid_place(session, request.grid_id) or _grid_place(session, request.grid_id)
        community_id = grid.community_id if grid else None
    return routing.RoutePlace(district_id=request.district_id, street_id=request.street_id,
                              community_id=community_id)


def classify(
    session: Session, *, request: ServiceRequest, settings: Settings, predicted: Predicted | None = None
) -> tuple[list[Suggestion], list[str], model_store.StoredModel | None]:
    """Return the request's top 3 suggestions (best first), the reasons it cannot be dispatched
    automatically (empty when it can) and the model used (``None`` without a model file).
    ``predicted``: the model and its prediction for this request, when already made for its batch."""
    place = route_place(session, request)
    if request.category_id is not None:  # chosen by the operator who filed it: only route it
        given = given_category(session, request, place)
        return [given], ([] if given.lead_unit_id is not None else ["no_rule"]), None
    if predicted is not None:
        stored, prediction = predicted
    else:
        stored = current_model(settings)
        if stored is None:
            return [], ["no_model"], None
        prediction = stored.model.predict(request.title, request.description)
    rules = routing.active_rules(session)  # once for the three suggestions, as the category tree
    levels = triage_steps.levels_of(session)
    suggestions: list[Suggestion] = []
    for label, probability in prediction.top3:
        suggestion = Suggestion(label=label, probability=probability)
        category = triage_steps.refine_category(session, label=label, title=request.title,
                                                detail=request.description, levels=levels)
        if category is not None:
            suggestion.category_id, suggestion.path = category.id, category.path
            suggestion.level_confidence = category.confidence
            add_route(session, suggestion, place, rules)
        suggestions.append(suggestion)
    reasons: list[str] = []
    top = suggestions[0]
    if top.probability < settings.auto_dispatch_threshold:
        reasons.append("low_confidence")
    if top.category_id is None:
        reasons.append("label_not_in_tree")
    elif top.lead_unit_id is None:
        reasons.append("no_rule")
    return suggestions, reasons, stored


def add_route(session: Session, suggestion: Suggestion, place: routing.RoutePlace,
              rules: Sequence[Any] | None = None) -> None:
    """Fill in the lead and assisting units the routing table gives ``suggestion``'s category at ``place``
    (``rules``: the active rules, when already loaded for this request)."""
    assert suggestion.category_id is not None
    found = routing.route(session, category_id=suggestion.category_id, place=place, rules=rules)
    if found is not None:
        suggestion.lead_unit_id, suggestion.rule_id = found.lead_unit_id, found.rule_id
        suggestion.assisting_unit_ids = list(found.assisting_unit_ids)
        suggestion.lead_unit_name = found.lead_unit_name or routing.unit_name(session, found.lead_unit_id)
        suggestion.why = found.why


def given_category(session: Session, request: ServiceRequest, place: routing.RoutePlace) -> Suggestion:
    """Return the suggestion for a request filed with a category: that category, probability 1."""
    category = find_category(session, request.category_id)
    assert category is not None
    suggestion = Suggestion(label=category.path.split("/")[0], probability=1.0, category_id=category.id,
                            path=category.path, level_confidence="given")
    add_route(session, suggestion, place)
    return suggestion


# --- the dispatcher's queue ---------------------------------------------------------------------


TIER_ORDER = {"2h": 0, "24h": 1, "7wd": 2, "15wd": 3}
"""Queue order by the deadline tier of the category intake suggests: a gas leak (2 h) before a pothole."""
QUEUE_SCAN = 5000
"""At most this many queued requests (the oldest) are ordered by urgency; a longer queue is a backlog
to be worked oldest first anyway."""


def queue(session: Session, *, limit: int = 50, offset: int = 0) -> Sequence[Triage]:
    """Return the requests waiting in the dispatcher's queue: the most urgent first (the deadline tier of
    the top suggestion's category: 2 h, 24 h, 7 and 15 working days; none known counts as 7 working
    days), then oldest first (first in, first out). Found by a user trial: a gas leak waited behind 33
    ordinary requests."""
    records = session.scalars(select(Triage).where(Triage.queued.is_(True))
                              .order_by(Triage.triaged_at, Triage.id).limit(QUEUE_SCAN)).all()
    tiers: dict[int | None, int] = {None: TIER_ORDER["7wd"]}
    for record in records:
        if record.category_id not in tiers:
            category = find_category(session, record.category_id)
            tiers[record.category_id] = TIER_ORDER.get(str(category.deadline_tier), 2) if category else 2
    ordered = sorted(records, key=lambda r: (tiers[r.category_id], r.triaged_at, r.id))
    return ordered[offset:offset + limit]


def get_triage(session: Session, *, request_id: int) -> Triage | None:
    """Return the triage record of request ``request_id``, or ``None`` if it never went through intake."""
    return session.scalar(select(Triage).where(Triage.request_id == request_id))


def decide(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    settings: Settings,
    category_id: int | None = None,
    lead_unit_id: int | None = None,
    assisting_unit_ids: Sequence[int] = (),
    note: str = "",
    now: datetime | None = None,
) -> Triage:
    """A dispatcher's decision on a queued request: accept it under ``category_id`` and dispatch it
    to ``lead_unit_id`` (or, without a unit, to the unit the routing table gives for the category at
    the request's place). Records the choice, whether it was among the suggestions (``decided_rank``
    1–3, 0 when not) and the latency from filing to this dispatch.

    Raises ``FieldError`` (422) when the request is not queued, neither category nor unit is given,
    an id is unknown, or no rule routes a category given without a unit; ``IllegalTransition`` (409)
    when the request moved on meanwhile; ``Forbidden`` (403) for a role that may not dispatch."""
    now = now_or(now)
    if actor.role not in REQUEST_RULES[Action.DISPATCH].roles:  # before the state: 403 whatever it is
        raise Forbidden(role=actor.role.value, action=Action.DISPATCH.value)
    request = get_request(session, request_id=request_id)
    record = get_triage(session, request_id=request_id)
    if record is None or not record.queued:
        raise FieldError("request_id", "v.not_in_queue", id=request_id)
    record.queued = False  # leaving the queue by this decision, not by intake.leave_queue
    if category_id is None and lead_unit_id is None:
        raise FieldError("category_id", "v.category_or_unit_required")
    category = require_category(session, category_id=category_id) if category_id is not None else None
    assisting = list(assisting_unit_ids)
    if lead_unit_id is None:
        assert category is not None
        found = routing.route(session, category_id=category.id, place=route_place(session, request))
        if found is None:
            raise FieldError("lead_unit_id", "v.no_route")
        lead_unit_id, assisting = found.lead_unit_id, assisting or list(found.assisting_unit_ids)
    require_unit(session, unit_id=lead_unit_id, field="lead_unit_id")
    intake.accept(session, request_id=request.id, actor=actor, category_id=category.id if category else None,
                  note=note, now=now)
    intake.dispatch(session, request_id=request.id, actor=actor, lead_unit_id=lead_unit_id,
                    assisting_unit_ids=assisting, settings=settings, note=note, now=now)
    record.outcome, record.queued = TriageOutcome.DECIDED, False
    record.decided_by, record.decided_at = actor.name, now
    record.decided_category_id = category.id if category else None
    record.decided_unit_id = lead_unit_id
    chain = routing.category_chain(session, record.decided_category_id)
    record.decided_rank = rank_of(record.suggestions, category_chain=chain, unit_id=lead_unit_id)
    record.routed_at = now
    record.latency_seconds = max(0.0, (now - request.created_at).total_seconds())
    session.flush()
    return record


def rank_of(suggestions: Sequence[dict[str, Any]], *, category_chain: Sequence[int], unit_id: int) -> int:
    """Return the rank (1–3) of the first suggestion the dispatcher's choice agrees with, 0 for none.

    ``category_chain`` is the chosen category's id and its ancestors' (empty: only a unit was chosen).
    A suggestion agrees when its lead unit is the chosen unit and its category is the chosen one or one
    of its ancestors (choosing 油烟扰民 agrees with a suggested 环境保护), or no category was chosen."""
    for rank, suggestion in enumerate(suggestions, start=1):
        same_unit = suggestion.get("lead_unit_id") == unit_id
        same_category = not category_chain or suggestion.get("category_id") in category_chain
        if same_unit and same_category:
            return rank
    return 0


def category_name(session: Session, category_id: int | None) -> str:
    """Return the path of a category (empty for ``None`` or an id that no longer exists)."""
    category = find_category(session, category_id)
    return category.path if category else ""


# --- figures and training data -------------------------------------------------------------------


def _window(query: Any, since: datetime | None, until: datetime | None) -> Any:
    if since is not None:
        query = query.where(Triage.triaged_at >= since)
    if until is not None:
        query = query.where(Triage.triaged_at < until)
    return query


def _spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Return ``{"n", "p50", "p95", "max"}`` of latencies in seconds (``None`` when empty)."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = np.sort(np.asarray(values, dtype=float))
    return {"n": len(ordered), "p50": round(float(np.percentile(ordered, 50)), 6),
            "p95": round(float(np.percentile(ordered, 95)), 6), "max": round(float(ordered[-1]), 6)}


def statistics(session: Session, *, since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Return intake's figures for records triaged in [``since``, ``until``).

    ``{"total", "by_outcome": {outcome: n}, "auto_share", "queued_now", "latency_seconds": {"auto": spread,
    "decided": spread}, "decided_rank": {"1", "2", "3", "0": n}, "reasons": {code: n}}``, where a spread is
    ``{"n", "p50", "p95", "max"}`` in seconds from filing to the routed work order. ``auto_share`` is the
    share of non-duplicate requests dispatched without a person (``None`` when there are none)."""
    rows = session.execute(_window(
        select(Triage.outcome, Triage.queued, Triage.latency_seconds, Triage.decided_rank, Triage.reasons), since, until
    )).all()
    by_outcome = {str(o): 0 for o in TriageOutcome}
    latencies: dict[str, list[float]] = {"auto": [], "decided": []}
    ranks = {"1": 0, "2": 0, "3": 0, "0": 0}
    reasons: dict[str, int] = {}
    queued_now = 0
    for outcome, queued, latency, rank, codes in rows:
        by_outcome[str(outcome)] = by_outcome.get(str(outcome), 0) + 1
        queued_now += bool(queued)
        if latency is not None and outcome == TriageOutcome.AUTO_DISPATCHED:
            latencies["auto"].append(latency)
        elif latency is not None and outcome == TriageOutcome.DECIDED:
            latencies["decided"].append(latency)
        if rank is not None:
            ranks[str(rank)] = ranks.get(str(rank), 0) + 1
        for code in codes or []:
            reasons[code] = reasons.get(code, 0) + 1
    routable = len(rows) - by_outcome[TriageOutcome.DUPLICATE]
    return {
        "total": len(rows), "by_outcome": by_outcome,
        "auto_share": round(by_outcome[TriageOutcome.AUTO_DISPATCHED] / routable, 4) if routable else None,
        "queued_now": queued_now,
        "latency_seconds": {key: _spread(values) for key, values in latencies.items()},
        "decided_rank": ranks, "reasons": reasons,
    }


def decisions(session: Session, *, since: datetime | None = None) -> list[list[Any]]:
    """Return the dispatchers' decisions that chose a category as rows ``[request_id, title, detail, label,
    category_path, suggested_label, confidence, decided_rank, decided_at]`` (``label``: the first level of
    the chosen category), oldest first. Contact data in texts are masked."""
    query = select(Triage, ServiceRequest).join(ServiceRequest, ServiceRequest.id == Triage.request_id).where(
        Triage.decided_at.is_not(None), Triage.decided_category_id.is_not(None)).order_by(Triage.decided_at, Triage.id)
    if since is not None:
        query = query.where(Triage.decided_at >= since)
    out: list[list[Any]] = []
    for record, request in session.execute(query).all():
        path = category_name(session, record.decided_category_id)
        out.append([
            request.id, mask_phones_in_text(request.title), mask_phones_in_text(request.description),
            path.split("/")[0] if path else "", path, record.label,
            round(record.confidence, 4) if record.confidence is not None else "",
            record.decided_rank, record.decided_at.isoformat() if record.decided_at else "",
        ])
    return out


def preview(session: Session, *, title: str, detail: str, address: str, settings: Settings) -> dict[str, Any]:
    """Return what intake would do with a request of this text and address, storing nothing:
    ``{"category", "confidence", "top3": [suggestion…], "place": {…}, "suggested_units": [{"unit_id",
    "name", "role"}…], "auto_dispatch": bool, "reasons": [code…], "model_version"}`` (``category``
    ``None`` without a model). Used by ``civicloop classify``."""
    request = ServiceRequest(title=title, description=detail, address=address)
    place = locate(session, request)
    suggestions, reasons, stored = classify(session, request=request, settings=settings)
    units: list[dict[str, Any]] = []
    if suggestions and suggestions[0].lead_unit_id is not None:
        top = suggestions[0]
        units.append({"unit_id": top.lead_unit_id, "name": top.lead_unit_name, "role": "lead"})
        units += [{"unit_id": u, "name": routing.unit_name(session, u), "role": "assisting"}
                  for u in top.assisting_unit_ids]
    return {
        "category": suggestions[0].label if suggestions else None,
        "confidence": round(suggestions[0].probability, 4) if suggestions else None,
        "top3": [s.as_dict() for s in suggestions],
        "place": place, "suggested_units": units, "auto_dispatch": bool(suggestions) and not reasons,
        "reasons": reasons, "model_version": stored.metadata.get("version", "") if stored else "",
    }
