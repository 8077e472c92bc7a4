"""HTTP routes of the ``catalog`` domain: the category tree, its deadline tiers and the routing table."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict

from civicloop.catalog import routing, service
from civicloop.catalog.models import DeadlineTier
from civicloop.catalog.schemas import CategoryOut, RouteOut, RoutingRuleIn, RoutingRuleOut
from civicloop.core.http import Caller, DbSession, Lang, allow
from civicloop.core.i18n import translate
from civicloop.core.roles import STAFF, Role
from civicloop.core.timeutil import utcnow
from civicloop.core.validation import MAX_ID

router = APIRouter(prefix="/api/v1", tags=["categories (诉求分类)"])


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    deadline_tier: DeadlineTier


@router.get("/categories", response_model=list[CategoryOut], summary="诉求分类 Category tree")
def list_categories(session: DbSession, level: Annotated[int | None, Query(ge=1, le=3)] = None) -> list[CategoryOut]:
    """Return the category tree ordered by path, optionally one level (1–3)."""
    return [CategoryOut.of(c) for c in service.list_categories(session, level=level)]


@router.put("/categories/{category_id}/tier", response_model=CategoryOut, summary="设置时限 Set deadline tier")
def set_tier(
    category_id: Annotated[int, Path(ge=1, le=MAX_ID)],
    body: TierIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "set_tier")],
) -> CategoryOut:
    """Set a category's deadline tier (admin). New work orders use it; existing ones keep theirs."""
    return CategoryOut.of(service.set_tier(session, category_id=category_id, tier=body.deadline_tier,
                                              actor=caller.name))


RuleId = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


def _input(body: RoutingRuleIn) -> routing.RuleInput:
    data = body.model_dump()
    data["assisting_unit_ids"] = tuple(data["assisting_unit_ids"])
    return routing.RuleInput(**data)


@router.get("/routing-rules", response_model=list[RoutingRuleOut], summary="分拨规则 Routing table")
def list_rules(
    session: DbSession, caller: Annotated[Caller, allow(STAFF, "read_routing_rules")], category_id: OptionalId = None,
    active: Annotated[bool | None, Query()] = None,
) -> list[RoutingRuleOut]:
    """Return the routing table (category × place → lead and assisting units) ordered by id,
    optionally the rules on one ``category_id`` or only active/inactive ones. Staff only."""
    return [RoutingRuleOut.of(r) for r in routing.list_rules(session, category_id=category_id, active=active)]


@router.get("/routing-rules/resolve", response_model=RouteOut, summary="试算分拨 Which rule fires")
def resolve(
    session: DbSession,
    lang: Lang,
    caller: Annotated[Caller, allow(STAFF, "read_routing_rules")],
    category_id: OptionalId = None,
    district_id: OptionalId = None,
    street_id: OptionalId = None, community_id: OptionalId = None,
) -> RouteOut:
    """Return which rule would route a request of ``category_id`` at the given place, and to whom,
    without filing anything (``rule_id`` null when none applies). 422 for an unknown category, a district
    or street id that names no district or street, or a street outside the district (as for a rule).
    Staff only."""
    if category_id is not None:
        service.require_category(session, category_id=category_id)
    routing.check_place(session, district_id=district_id, street_id=street_id)
    place = routing.RoutePlace(district_id=district_id, street_id=street_id, community_id=community_id)
    found = routing.route(session, category_id=category_id, place=place)
    if found is None:
        return RouteOut(rule_id=None, lead_unit_id=None, assisting_unit_ids=[], why=translate("triage.no_rule", lang))
    return RouteOut(rule_id=found.rule_id, lead_unit_id=found.lead_unit_id,
                    assisting_unit_ids=list(found.assisting_unit_ids), why=found.why)


@router.get("/routing-rules/{rule_id}", response_model=RoutingRuleOut, summary="规则详情 One rule")
def read_rule(
    rule_id: RuleId,
    session: DbSession,
    caller: Annotated[Caller, allow(STAFF, "read_routing_rules")],
) -> RoutingRuleOut:
    """Return one routing rule; 404 when there is none. Staff only."""
    return RoutingRuleOut.of(routing.get_rule(session, rule_id=rule_id))


@router.post("/routing-rules", response_model=RoutingRuleOut, status_code=201, summary="新增规则 Add a rule")
def create_rule(
    body: RoutingRuleIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "create_routing_rule")],
) -> RoutingRuleOut:
    """Add a routing rule (admin). 422 with the field named for an unknown category or unit, a
    street outside the district, a fixed lead without a unit or a territorial lead with one."""
    rule = routing.save_rule(session, data=_input(body), actor=caller.name, now=utcnow())
    return RoutingRuleOut.of(rule)


@router.put("/routing-rules/{rule_id}", response_model=RoutingRuleOut, summary="修改规则 Change a rule")
def replace_rule(
    rule_id: RuleId,
    body: RoutingRuleIn,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "update_routing_rule")],
) -> RoutingRuleOut:
    """Change routing rule ``rule_id`` (admin): the fields given replace the rule's, the fields left out
    keep their values (so ``{"lead_target": "street"}`` does not widen a rule to every category; send
    ``"category_id": null`` to mean any category). Same checks as creating one, 404 for an unknown id.
    Requests already routed keep their units; the next request uses the new rule."""
    current = routing.get_rule(session, rule_id=rule_id)
    values = {name: getattr(current, name) for name in RoutingRuleIn.model_fields}
    values.update(body.model_dump(include=body.model_fields_set))
    merged = RoutingRuleIn.model_validate(values)
    rule = routing.save_rule(session, data=_input(merged), actor=caller.name, now=utcnow(), rule_id=rule_id)
    return RoutingRuleOut.of(rule)


@router.delete("/routing-rules/{rule_id}", status_code=204, summary="删除规则 Delete a rule")
def delete_rule(
    rule_id: RuleId,
    session: DbSession,
    caller: Annotated[Caller, allow(Role.ADMIN, "delete_routing_rule")],
) -> None:
    """Delete routing rule ``rule_id`` (admin); 404 for an unknown id. To pause a rule, set
    ``active`` false instead: its history stays readable."""
    routing.delete_rule(session, rule_id=rule_id, actor=caller.name)
