"""The state machine of the closed loop, as two transition tables and one guard.

One table for the service request, one for the work order. Each action names the statuses it may
start from, the statuses it may lead to, and the roles that may fire it. ``check`` is the only
guard; the service layer calls it before every conditional UPDATE. No I/O here: these rules are
tested without a database.

The flow follows the Beijing Regulations on Handling Citizens' Requests Immediately (北京市接诉即办
工作条例, in force 2021-09-24): acceptance or rejection with a reason, dispatch to a lead unit with
assisting units, return of a misdirected order and fallback to the district, deadlines and
extensions, reply, callback and rating, and supervision of overdue or unsatisfactory cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from civicloop.core.errors import Forbidden, IllegalTransition
from civicloop.core.roles import Role
from civicloop.requests.models import RequestStatus as RS
from civicloop.requests.models import WorkOrderStatus as WS


class Action(StrEnum):
    SUBMIT = "submit"  # 提交
    ACCEPT = "accept"  # 受理
    REJECT = "reject"  # 不予受理
    DISPATCH = "dispatch"  # 派单
    ACKNOWLEDGE = "acknowledge"  # 签收
    RETURN = "return"  # 退单
    FALLBACK = "fallback"  # 兜底
    REQUEST_EXTENSION = "request_extension"  # 申请延期
    DECIDE_EXTENSION = "decide_extension"  # 审批延期
    REPLY = "reply"  # 办结答复
    CALLBACK = "callback"  # 回访
    CLOSE_UNRATED = "close_unrated"  # 结案（未回访）: the citizen could not be asked, or an import knows no rating
    REOPEN = "reopen"  # 重办
    CLOSE = "close"  # 结案
    CANCEL = "cancel"  # 撤销
    SUPERVISE = "supervise"  # 督办
    MARK_OVERDUE = "mark_overdue"  # 超期
    ANSWER_DUPLICATE = "answer_duplicate"  # 重复件随主件答复 (an event only, no transition)


@dataclass(frozen=True)
class Rule:
    """Statuses an action may start from (``sources``), lead to (``targets``; empty means 'stays
    where it is'), and the roles that may fire it."""

    sources: frozenset[str]
    targets: frozenset[str]
    roles: frozenset[Role]


def _rule(sources: set[str], targets: set[str], roles: set[Role]) -> Rule:
    return Rule(frozenset(sources), frozenset(targets), frozenset(roles) | {Role.ADMIN})


INTAKE = {Role.OPERATOR, Role.DISPATCHER, Role.SYSTEM}
DISPATCHING = {Role.DISPATCHER, Role.SYSTEM}
UNIT = {Role.HANDLER}
SUPERVISING = {Role.SUPERVISOR}
CALLBACK_ROLES = {Role.OPERATOR, Role.SUPERVISOR, Role.SYSTEM, Role.RESIDENT}  # a resident rates their own
LIVE_REQUEST = {RS.ACCEPTED, RS.DISPATCHED, RS.IN_PROGRESS, RS.REPLIED, RS.CLOSED}

REQUEST_RULES: dict[Action, Rule] = {
    Action.ACCEPT: _rule({RS.SUBMITTED}, {RS.ACCEPTED}, INTAKE),
    Action.REJECT: _rule({RS.SUBMITTED}, {RS.REJECTED}, INTAKE),
    Action.DISPATCH: _rule({RS.ACCEPTED}, {RS.DISPATCHED}, DISPATCHING),
    Action.ACKNOWLEDGE: _rule({RS.DISPATCHED}, {RS.IN_PROGRESS}, UNIT),
    Action.RETURN: _rule({RS.DISPATCHED}, {RS.ACCEPTED}, UNIT),
    Action.FALLBACK: _rule({RS.ACCEPTED}, {RS.DISPATCHED}, DISPATCHING),
    Action.REQUEST_EXTENSION: _rule({RS.IN_PROGRESS}, set(), UNIT),
    Action.DECIDE_EXTENSION: _rule({RS.IN_PROGRESS}, set(), SUPERVISING),
    Action.REPLY: _rule({RS.IN_PROGRESS}, {RS.REPLIED}, UNIT),
    Action.CALLBACK: _rule({RS.REPLIED}, {RS.CLOSED, RS.DISPATCHED}, CALLBACK_ROLES),
    Action.CLOSE_UNRATED: _rule({RS.REPLIED}, {RS.CLOSED}, {Role.OPERATOR, Role.SUPERVISOR, Role.SYSTEM}),
    Action.REOPEN: _rule({RS.REPLIED, RS.CLOSED}, {RS.DISPATCHED}, SUPERVISING),
    Action.SUPERVISE: _rule(LIVE_REQUEST, set(), SUPERVISING | {Role.SYSTEM}),
    Action.MARK_OVERDUE: _rule({RS.DISPATCHED, RS.IN_PROGRESS}, set(), {Role.SYSTEM}),
}

ACTIVE_ORDER = {WS.PENDING, WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED, WS.REPLIED}
"""Work-order statuses in which the unit still owes something (or awaits the callback)."""

WORK_ORDER_RULES: dict[Action, Rule] = {
    Action.ACKNOWLEDGE: _rule({WS.PENDING}, {WS.ACKNOWLEDGED}, UNIT),
    Action.RETURN: _rule({WS.PENDING}, {WS.RETURNED}, UNIT),
    Action.REQUEST_EXTENSION: _rule({WS.ACKNOWLEDGED}, {WS.EXTENSION_REQUESTED}, UNIT),
    Action.DECIDE_EXTENSION: _rule({WS.EXTENSION_REQUESTED}, {WS.ACKNOWLEDGED}, SUPERVISING),
    Action.REPLY: _rule({WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED}, {WS.REPLIED}, UNIT),
    Action.CLOSE: _rule(ACTIVE_ORDER, {WS.CLOSED}, CALLBACK_ROLES | SUPERVISING),
    Action.REOPEN: _rule({WS.REPLIED, WS.CLOSED}, {WS.REOPENED}, CALLBACK_ROLES | SUPERVISING),
    Action.CANCEL: _rule(ACTIVE_ORDER, {WS.CANCELLED}, UNIT | DISPATCHING),
    Action.MARK_OVERDUE: _rule({WS.PENDING, WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED}, set(), {Role.SYSTEM}),
}


def _allowed(rules: dict[Action, Rule]) -> dict[str, frozenset[str]]:
    allowed: dict[str, set[str]] = {}
    for rule in rules.values():
        for source in rule.sources:
            allowed.setdefault(source, set()).update(rule.targets or {source})
    return {status: frozenset(targets) for status, targets in allowed.items()}


REQUEST_ALLOWED = _allowed(REQUEST_RULES)
"""Request status → the statuses it may move to (derived from ``REQUEST_RULES``)."""
WORK_ORDER_ALLOWED = _allowed(WORK_ORDER_RULES)
"""Work-order status → the statuses it may move to (derived from ``WORK_ORDER_RULES``)."""


def check(
    rules: dict[Action, Rule], action: Action, *, current: str, target: str | None = None, role: Role
) -> str:
    """Guard one transition and return the status to move to.

    ``target`` picks among several targets (callback: closed or reopened); it defaults to the
    only target, or to ``current`` for an action that leaves the status as it is.
    Raises ``Forbidden`` when ``role`` may not fire ``action`` (whatever the status), else
    ``IllegalTransition`` when the table does not allow it from ``current`` (or to ``target``).
    """
    rule = rules.get(action)
    if rule is not None and role not in rule.roles:  # a role that may never fire it learns nothing of the state
        raise Forbidden(role=role.value, action=action.value)
    if rule is None or current not in rule.sources:
        raise IllegalTransition(action.value, str(current))
    if not rule.targets:
        if target not in (None, current):
            raise IllegalTransition(action.value, str(current))
        return current
    if target is None:
        if len(rule.targets) != 1:
            raise ValueError(f"{action} needs an explicit target")
        (target,) = rule.targets
    if target not in rule.targets:
        raise IllegalTransition(action.value, str(current))
    return target
