"""The routing table (分拨规则): which unit leads, and which assist, for a category at a place.

Like the contacts table of FixMyStreet (category × body → e-mail) or the route filters of Netflix
Dispatch, but with the territorial rule of 接诉即办 built in: a rule can name a fixed unit (a
department, a utility) or say "the street office of the place" (属地), so one line routes a whole
first-level category in every street of the city.

Which rule fires is a pure function (:func:`choose_rule`); the rest of this module loads and edits
the table. The caller owns the transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category, LeadTarget, RoutingRule
from civicloop.catalog.service import find_category, require_category
from civicloop.core import audit
from civicloop.core.db import transaction_memo
from civicloop.core.errors import FieldError, NotFound
from civicloop.org.models import OrgUnit, UnitKind
from civicloop.org.service import get_unit, require_unit


@dataclass(frozen=True)
class RoutePlace:
    """Where a request lies, as far as intake knows: ids of org units, ``None`` where unknown."""

    district_id: int | None = None
    street_id: int | None = None
    community_id: int | None = None


@dataclass(frozen=True)
class Route:
    """A rule's answer for one request: the lead unit (and its name), the assisting units and why."""

    rule_id: int
    lead_unit_id: int
    assisting_unit_ids: tuple[int, ...]
    why: str
    lead_unit_name: str = ""


def applies(rule: RoutingRule, *, category_chain: Sequence[int], place: RoutePlace) -> bool:
    """Return whether ``rule`` covers a request of a category whose ids from itself up to the root
    are ``category_chain`` (empty: no category known) at ``place``.

    A rule with a category covers that category and everything below it; a rule with a district or
    street covers only requests known to lie there; a territorial lead needs that level of the
    place to be known (a rule "lead: the street" cannot fire for a request with no street)."""
    if not rule.active:
        return False
    if rule.category_id is not None and rule.category_id not in category_chain:
        return False
    if rule.district_id is not None and rule.district_id != place.district_id:
        return False
    if rule.street_id is not None and rule.street_id != place.street_id:
        return False
    return target_unit(rule, place) is not None


def specificity(rule: RoutingRule, category_chain: Sequence[int]) -> tuple[int, int]:
    """Return how specific an applicable rule is: (category depth, place depth). A rule on the
    request's own leaf category is deeper than one on its first level; a street rule is deeper than a
    district rule, which is deeper than a rule for anywhere."""
    if rule.category_id is None:
        depth = 0
    else:
        depth = len(category_chain) - category_chain.index(rule.category_id)
    place_depth = 2 if rule.street_id is not None else 1 if rule.district_id is not None else 0
    return depth, place_depth


def choose_rule(
    rules: Iterable[RoutingRule], *, category_chain: Sequence[int], place: RoutePlace
) -> RoutingRule | None:
    """Return the rule that routes a request, or ``None`` when no rule applies.

    Order: highest ``priority``, then most specific (:func:`specificity`), then lowest id, so the
    choice is deterministic. ``category_chain`` lists the request's category id first and its
    ancestors after it."""
    candidates = [r for r in rules if applies(r, category_chain=category_chain, place=place)]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (-r.priority, *(-d for d in specificity(r, category_chain)), r.id))


def target_unit(rule: RoutingRule, place: RoutePlace) -> int | None:
    """Return the id of the unit that leads under ``rule`` at ``place`` (``None`` when the rule is
    territorial and that level of the place is unknown)."""
    if rule.lead_target == LeadTarget.UNIT:
        return rule.lead_unit_id
    if rule.lead_target == LeadTarget.STREET:
        return place.street_id
    if rule.lead_target == LeadTarget.DISTRICT:
        return place.district_id
    return place.community_id


def category_chain(session: Session, category_id: int | None) -> list[int]:
    """Return the ids from category ``category_id`` up to its root (empty for ``None``)."""
    chain: list[int] = []
    node = find_category(session, category_id)
    while node is not None and node.id not in chain:
        chain.append(node.id)
        node = node.parent
    return chain


def _memo(session: Session) -> dict[Any, Any]:
    """The routes and active rules already found in this transaction (``core.db.transaction_memo``).

    Deferred intake triages a batch of requests in one transaction, many of the same category at
    the same place; each route costs queries and a walk up the tree (issue 9). Kept per
    transaction, so a rule or unit changed by another is seen by the next, and dropped by a flush of
    this session that writes a rule, a unit or a category (a change made with a bare SQL ``UPDATE``
    in the same transaction is not seen)."""
    memo = transaction_memo(session, "routing")
    assert memo is not None
    return memo


def forget_routes(session: Session) -> None:
    """Drop what :func:`route` remembered in this transaction (after an edit of rules or units)."""
    memo = transaction_memo(session, "routing", create=False)
    if memo:
        memo.clear()


@event.listens_for(Session, "after_flush")
def _forget_after_edits(session: Session, _context: Any) -> None:
    """A flush that writes a rule, a unit or a category through the ORM drops the memo (a unit
    deactivated in the same transaction must no longer be routed to)."""
    if transaction_memo(session, "routing", create=False) and any(
            isinstance(o, (RoutingRule, OrgUnit, Category))
            for o in itertools.chain(session.new, session.dirty, session.deleted)):
        forget_routes(session)


def active_rules(session: Session) -> list[RoutingRule]:
    """Return the active routing rules (read once per transaction)."""
    memo = _memo(session)
    if "rules" not in memo:
        memo["rules"] = list(session.scalars(select(RoutingRule).where(RoutingRule.active.is_(True))))
    return memo["rules"]  # type: ignore[no-any-return]


def route(session: Session, *, category_id: int | None, place: RoutePlace,
          rules: Sequence[RoutingRule] | None = None) -> Route | None:
    """Return the route of a request of ``category_id`` at ``place`` from the active rules (``rules``
    when the caller already loaded them with :func:`active_rules`), or ``None`` when no rule applies.
    Inactive units are never chosen: a rule whose lead unit has been deactivated does not fire.
    The answer for the same category and place is remembered for the rest of the transaction."""
    memo = _memo(session)
    key = ("route", category_id, place)
    if rules is None or rules is memo.get("rules"):
        if key not in memo:
            memo[key] = _route(session, category_id=category_id, place=place, rules=active_rules(session))
        return memo[key]  # type: ignore[no-any-return]
    return _route(session, category_id=category_id, place=place, rules=rules)


def _route(session: Session, *, category_id: int | None, place: RoutePlace,
           rules: Sequence[RoutingRule]) -> Route | None:
    chain = category_chain(session, category_id)
    rules = list(rules)
    while True:
        rule = choose_rule(rules, category_chain=chain, place=place)
        if rule is None:
            return None
        lead_id = target_unit(rule, place)
        units = _unit_states(session, [lead_id, *rule.assisting_unit_ids, rule.street_id, rule.district_id])
        lead = units.get(lead_id) if lead_id is not None else None
        if lead is not None and lead.active:
            assisting = tuple(u for u in rule.assisting_unit_ids if u != lead.id and u in units and units[u].active)
            return Route(rule_id=rule.id, lead_unit_id=lead.id, assisting_unit_ids=assisting,
                         why=_why(session, rule, lead.name, units), lead_unit_name=lead.name)
        rules = [r for r in rules if r.id != rule.id]


def _unit_states(session: Session, unit_ids: Iterable[int | None]) -> dict[int, Any]:
    """Return ``{id: (id, name, active)}`` of the units among ``unit_ids`` that exist, in one query of
    three columns: routing needs no more of a unit, and loading whole units (their parents joined and
    their grids with polygons) for each of intake's three suggestions was a fifth of intake's time
    (issue 9, docs/benchmarks.md). Remembered with the routes for the rest of the transaction (the same
    street office leads many routes of a batch)."""
    wanted = tuple(sorted({u for u in unit_ids if u is not None}))
    if not wanted:
        return {}
    memo = _memo(session)
    key = ("units", wanted)
    if key not in memo:
        rows = session.execute(select(OrgUnit.id, OrgUnit.name, OrgUnit.active).where(OrgUnit.id.in_(wanted)))
        memo[key] = {row.id: row for row in rows}
    return memo[key]  # type: ignore[no-any-return]


def describe(session: Session, rule: RoutingRule, lead: OrgUnit) -> str:
    """Return a one-line Chinese account of why ``rule`` sends a request to ``lead``, e.g.
    ``规则 #3：城乡建设，全市，属地街道 → 东桥街道``."""
    return _why(session, rule, lead.name, _unit_states(session, [rule.street_id, rule.district_id]))


def _why(session: Session, rule: RoutingRule, lead_name: str, units: dict[int, Any]) -> str:
    """:func:`describe` with the names of the rule's street and district already read (``units``)."""
    scope = "全市"
    for unit_id in (rule.street_id, rule.district_id):
        unit = units.get(unit_id) if unit_id is not None else None
        if unit is not None:
            scope = unit.name
            break
    category = find_category(session, rule.category_id)
    what = category.path if category is not None else "所有分类"
    how = {LeadTarget.UNIT: "指定单位", LeadTarget.STREET: "属地街道", LeadTarget.DISTRICT: "属地区",
           LeadTarget.COMMUNITY: "属地社区"}[LeadTarget(rule.lead_target)]
    return f"规则 #{rule.id}：{what}，{scope}，{how} → {lead_name}"


# --- editing the table -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleInput:
    """A routing rule as entered by an admin (all ids checked by :func:`save_rule`)."""

    lead_target: LeadTarget
    category_id: int | None = None
    district_id: int | None = None
    street_id: int | None = None
    lead_unit_id: int | None = None
    assisting_unit_ids: tuple[int, ...] = ()
    priority: int = 0
    active: bool = True
    note: str = ""


def list_rules(
    session: Session, *, category_id: int | None = None, active: bool | None = None
) -> Sequence[RoutingRule]:
    """Return the routing rules ordered by id, optionally those on one category or of one state."""
    query = select(RoutingRule).order_by(RoutingRule.id)
    if category_id is not None:
        query = query.where(RoutingRule.category_id == category_id)
    if active is not None:
        query = query.where(RoutingRule.active.is_(active))
    return session.scalars(query).all()


def get_rule(session: Session, *, rule_id: int) -> RoutingRule:
    """Return rule ``rule_id``; raises ``NotFound`` (404)."""
    rule = session.get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound("RoutingRule", rule_id)
    return rule


def check_place(session: Session, *, district_id: int | None, street_id: int | None) -> None:
    """Raise ``FieldError`` (422) unless ``district_id`` names a district and ``street_id`` a street
    (inside that district when both are given); ``None`` means not given."""
    if district_id is not None:
        unit = require_unit(session, unit_id=district_id, field="district_id")
        if unit.kind != UnitKind.DISTRICT:
            raise FieldError("district_id", "v.unit_kind_expected", id=unit.id, kind="district")
    if street_id is not None:
        unit = require_unit(session, unit_id=street_id, field="street_id")
        if unit.kind != UnitKind.STREET:
            raise FieldError("street_id", "v.unit_kind_expected", id=unit.id, kind="street")
        if district_id is not None and unit.parent_id != district_id:
            raise FieldError("street_id", "v.street_not_in_district", id=unit.id, district=district_id)


def _check(session: Session, data: RuleInput) -> None:
    """Raise ``FieldError`` (422) for an id that names nothing or a rule that cannot route."""
    if data.category_id is not None:
        require_category(session, category_id=data.category_id)
    check_place(session, district_id=data.district_id, street_id=data.street_id)
    if data.lead_target == LeadTarget.UNIT:
        if data.lead_unit_id is None:
            raise FieldError("lead_unit_id", "v.lead_unit_required")
        require_unit(session, unit_id=data.lead_unit_id, field="lead_unit_id")
    elif data.lead_unit_id is not None:
        raise FieldError("lead_unit_id", "v.lead_unit_with_territorial", target=str(data.lead_target))
    for index, unit_id in enumerate(data.assisting_unit_ids):
        if unit_id == data.lead_unit_id:
            raise FieldError(("assisting_unit_ids", str(index)), "v.assisting_is_lead")
        require_unit(session, unit_id=unit_id, field=("assisting_unit_ids", str(index)))


def save_rule(
    session: Session, *, data: RuleInput, actor: str, now: datetime, rule_id: int | None = None
) -> RoutingRule:
    """Create a rule (``rule_id`` ``None``) or replace rule ``rule_id`` with ``data``; return it.

    Raises ``FieldError`` (422) for an unknown category or unit, a district that is no district, a
    street outside the rule's district, a fixed lead without ``lead_unit_id`` or a territorial lead
    with one, an assisting unit that is also the lead; ``NotFound`` (404) for an unknown ``rule_id``.
    The change is written to the audit log (``core.audit``) with the rule's new fields."""
    rule = get_rule(session, rule_id=rule_id) if rule_id is not None else RoutingRule()
    _check(session, data)
    rule.category_id = data.category_id
    rule.district_id = data.district_id
    rule.street_id = data.street_id
    rule.lead_target = data.lead_target
    rule.lead_unit_id = data.lead_unit_id
    rule.assisting_unit_ids = list(dict.fromkeys(data.assisting_unit_ids))
    rule.priority = data.priority
    rule.active = data.active
    rule.note = data.note
    rule.updated_by = actor
    rule.updated_at = now
    if rule_id is None:
        session.add(rule)
    session.flush()
    audit.enqueue(session, actor=actor, role=audit.admin_role(actor),
                  action="create_routing_rule" if rule_id is None else "update_routing_rule",
                  subject=f"routing_rule:{rule.id}", data=_rule_data(rule))
    return rule


def _rule_data(rule: RoutingRule) -> dict[str, object]:
    return {"category_id": rule.category_id, "district_id": rule.district_id, "street_id": rule.street_id,
            "lead_target": str(rule.lead_target), "lead_unit_id": rule.lead_unit_id,
            "assisting_unit_ids": list(rule.assisting_unit_ids), "priority": rule.priority, "active": rule.active}


def delete_rule(session: Session, *, rule_id: int, actor: str = "system") -> None:
    """Delete rule ``rule_id``; raises ``NotFound`` (404). Triage records keep the id they used.
    The audit log keeps what the rule said (``core.audit``)."""
    rule = get_rule(session, rule_id=rule_id)
    data = _rule_data(rule)
    session.delete(rule)
    session.flush()
    audit.enqueue(session, actor=actor, role=audit.admin_role(actor), action="delete_routing_rule",
                  subject=f"routing_rule:{rule_id}", data=data)


def unit_name(session: Session, unit_id: int) -> str:
    """Return the name of unit ``unit_id`` (raises ``NotFound`` for an unknown id)."""
    return get_unit(session, unit_id=unit_id).name
