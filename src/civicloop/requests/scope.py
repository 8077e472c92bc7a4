"""Who may see which request and work order: the data scope, enforced in the queries (issue #6).

Each role's scope is a SQL condition added to every query that reads requests, work orders,
supervision cases or ledger rows, so a record outside it is simply not found (404, never 403: its
existence is not revealed). The rule, after the 接诉即办 division of labour (北京市接诉即办工作条例
§§ 16–22: the hotline takes and dispatches, units handle their own orders, districts supervise
theirs):

| role | sees |
|---|---|
| operator, dispatcher, analyst, admin, system | every request (they take calls and dispatch city-wide) |
| handler | requests with a work order for their unit (lead or assisting, any round) |
| supervisor | of a district or street: the requests located there; of a community: its grids'; of a |
|  | department or company: that unit's, as a handler; city-level (no unit): all |
| grid worker | requests located in the grids they cover |
| resident | the requests they filed while logged in |
| the anonymous public | none |

Header callers (``trust_role_headers``, tests and development only) without a unit see what
their role sees city-wide.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, false, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import True_

from civicloop.core.errors import NotFound
from civicloop.core.http import Caller
from civicloop.core.roles import Role
from civicloop.org import service as org
from civicloop.org.models import UnitKind
from civicloop.requests.models import ServiceRequest, Supervision, WorkOrder

CITY_WIDE = frozenset({Role.OPERATOR, Role.DISPATCHER, Role.ANALYST, Role.ADMIN, Role.SYSTEM})


def _unit_orders(unit_id: int) -> ColumnElement[bool]:
    return exists().where(WorkOrder.request_id == ServiceRequest.id, WorkOrder.unit_id == unit_id) \
        .correlate(ServiceRequest)


def request_condition(session: Session, caller: Caller) -> ColumnElement[bool]:
    """Return the SQL condition on ``ServiceRequest`` of the requests ``caller`` may see
    (``true()`` for city-wide roles, ``false()`` for the anonymous public)."""
    if not caller.authenticated:
        return false()
    role, unit_id = caller.role, caller.unit_id
    if role in CITY_WIDE:
        return true()
    if role == Role.RESIDENT:
        return ServiceRequest.submitted_by_user_id == caller.user_id if caller.user_id is not None else false()
    if role == Role.GRID_WORKER:
        if caller.via == "header" and not caller.grid_ids:
            return true()
        return ServiceRequest.grid_id.in_(caller.grid_ids) if caller.grid_ids else false()
    if unit_id is None:  # a city-level supervisor; a handler named by headers without a unit
        return true() if role == Role.SUPERVISOR or caller.via == "header" else false()
    if role == Role.SUPERVISOR:
        unit = org.find_unit(session, unit_id)
        if unit is not None and unit.kind == UnitKind.DISTRICT:
            return ServiceRequest.district_id == unit_id
        if unit is not None and unit.kind == UnitKind.STREET:
            return ServiceRequest.street_id == unit_id
        if unit is not None and unit.kind == UnitKind.COMMUNITY:
            grids = [g.id for g in unit.grids]
            return or_(ServiceRequest.grid_id.in_(grids), _unit_orders(unit_id)) if grids else _unit_orders(unit_id)
    return _unit_orders(unit_id)  # a handler, or the supervisor of a department or company


def work_order_condition(session: Session, caller: Caller) -> ColumnElement[bool]:
    """Return the SQL condition on ``WorkOrder`` of the orders ``caller`` may see: a handler its
    unit's own orders only (not the other units' orders of a shared request), everyone else the
    orders of the requests they may see."""
    if caller.authenticated and caller.role == Role.HANDLER and caller.unit_id is not None:
        return WorkOrder.unit_id == caller.unit_id
    condition = request_condition(session, caller)
    if isinstance(condition, True_):
        return condition
    return WorkOrder.request_id.in_(select(ServiceRequest.id).where(condition))


def visible_request(session: Session, caller: Caller, request_id: int) -> ServiceRequest:
    """Return request ``request_id`` if ``caller`` may see it; raises ``NotFound`` (404) when it does
    not exist or lies outside the caller's scope (the two are not told apart)."""
    found = session.scalar(select(ServiceRequest).where(ServiceRequest.id == request_id,
                                                        request_condition(session, caller)))
    if found is None:
        raise NotFound("ServiceRequest", request_id)
    return found


def visible_work_order(session: Session, caller: Caller, work_order_id: int) -> WorkOrder:
    """Return work order ``work_order_id`` if ``caller`` may see it; raises ``NotFound`` (404)."""
    found = session.scalar(select(WorkOrder).where(WorkOrder.id == work_order_id,
                                                   work_order_condition(session, caller)))
    if found is None:
        raise NotFound("WorkOrder", work_order_id)
    return found


def supervision_condition(session: Session, caller: Caller) -> ColumnElement[bool]:
    """Return the SQL condition on ``Supervision`` of the cases ``caller`` may see (those of the
    requests they may see)."""
    condition = request_condition(session, caller)
    if isinstance(condition, True_):
        return condition
    return Supervision.request_id.in_(select(ServiceRequest.id).where(condition))


def visible_supervision(session: Session, caller: Caller, supervision_id: int) -> Supervision:
    """Return supervision case ``supervision_id`` if ``caller`` may see it; raises ``NotFound``."""
    found = session.scalar(select(Supervision).where(Supervision.id == supervision_id,
                                                     supervision_condition(session, caller)))
    if found is None:
        raise NotFound("Supervision", supervision_id)
    return found
