"""The two transition tables and their guard, without a database.

The expected tables below are written out by hand from the Beijing flow described in
``docs/architecture.md``, so a slip in ``requests/rules.py`` shows up as a difference.
"""

from __future__ import annotations

import pytest

from civicloop.core.errors import Forbidden, IllegalTransition
from civicloop.core.roles import Role
from civicloop.requests.models import RequestStatus as RS
from civicloop.requests.models import WorkOrderStatus as WS
from civicloop.requests.rules import (
    ACTIVE_ORDER,
    REQUEST_ALLOWED,
    REQUEST_RULES,
    WORK_ORDER_ALLOWED,
    WORK_ORDER_RULES,
    Action,
    Rule,
    check,
)

A = Action
R = Role
STAY: frozenset[str] = frozenset()

# action: (sources, targets (empty: stays), roles besides admin)
EXPECTED_REQUEST: dict[Action, tuple[set[str], set[str], set[Role]]] = {
    A.ACCEPT: ({RS.SUBMITTED}, {RS.ACCEPTED}, {R.OPERATOR, R.DISPATCHER, R.SYSTEM}),
    A.REJECT: ({RS.SUBMITTED}, {RS.REJECTED}, {R.OPERATOR, R.DISPATCHER, R.SYSTEM}),
    A.DISPATCH: ({RS.ACCEPTED}, {RS.DISPATCHED}, {R.DISPATCHER, R.SYSTEM}),
    A.ACKNOWLEDGE: ({RS.DISPATCHED}, {RS.IN_PROGRESS}, {R.HANDLER}),
    A.RETURN: ({RS.DISPATCHED}, {RS.ACCEPTED}, {R.HANDLER}),
    A.FALLBACK: ({RS.ACCEPTED}, {RS.DISPATCHED}, {R.DISPATCHER, R.SYSTEM}),
    A.REQUEST_EXTENSION: ({RS.IN_PROGRESS}, set(), {R.HANDLER}),
    A.DECIDE_EXTENSION: ({RS.IN_PROGRESS}, set(), {R.SUPERVISOR}),
    A.REPLY: ({RS.IN_PROGRESS}, {RS.REPLIED}, {R.HANDLER}),
    A.CALLBACK: ({RS.REPLIED}, {RS.CLOSED, RS.DISPATCHED}, {R.OPERATOR, R.SUPERVISOR, R.SYSTEM, R.RESIDENT}),
    A.CLOSE_UNRATED: ({RS.REPLIED}, {RS.CLOSED}, {R.OPERATOR, R.SUPERVISOR, R.SYSTEM}),
    A.REOPEN: ({RS.REPLIED, RS.CLOSED}, {RS.DISPATCHED}, {R.SUPERVISOR}),
    A.SUPERVISE: (
        {RS.ACCEPTED, RS.DISPATCHED, RS.IN_PROGRESS, RS.REPLIED, RS.CLOSED}, set(), {R.SUPERVISOR, R.SYSTEM},
    ),
    A.MARK_OVERDUE: ({RS.DISPATCHED, RS.IN_PROGRESS}, set(), {R.SYSTEM}),
}

ACTIVE = {WS.PENDING, WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED, WS.REPLIED}
EXPECTED_ORDER: dict[Action, tuple[set[str], set[str], set[Role]]] = {
    A.ACKNOWLEDGE: ({WS.PENDING}, {WS.ACKNOWLEDGED}, {R.HANDLER}),
    A.RETURN: ({WS.PENDING}, {WS.RETURNED}, {R.HANDLER}),
    A.REQUEST_EXTENSION: ({WS.ACKNOWLEDGED}, {WS.EXTENSION_REQUESTED}, {R.HANDLER}),
    A.DECIDE_EXTENSION: ({WS.EXTENSION_REQUESTED}, {WS.ACKNOWLEDGED}, {R.SUPERVISOR}),
    A.REPLY: ({WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED}, {WS.REPLIED}, {R.HANDLER}),
    A.CLOSE: (ACTIVE, {WS.CLOSED}, {R.OPERATOR, R.SUPERVISOR, R.SYSTEM, R.RESIDENT}),
    A.REOPEN: ({WS.REPLIED, WS.CLOSED}, {WS.REOPENED}, {R.OPERATOR, R.SUPERVISOR, R.SYSTEM, R.RESIDENT}),
    A.CANCEL: (ACTIVE, {WS.CANCELLED}, {R.HANDLER, R.DISPATCHER, R.SYSTEM}),
    A.MARK_OVERDUE: ({WS.PENDING, WS.ACKNOWLEDGED, WS.EXTENSION_REQUESTED}, set(), {R.SYSTEM}),
}

TABLES = [
    pytest.param(REQUEST_RULES, EXPECTED_REQUEST, list(RS), id="request"),
    pytest.param(WORK_ORDER_RULES, EXPECTED_ORDER, list(WS), id="work_order"),
]


def _cases(expected: dict[Action, tuple[set[str], set[str], set[Role]]]) -> list[tuple[Action, str, str]]:
    """(action, source, target) for every allowed move; a 'stay' action targets its source."""
    return [(action, source, target)
            for action, (sources, targets, _) in expected.items()
            for source in sorted(sources)
            for target in sorted(targets or {source})]


def _a_role(roles: set[Role]) -> Role:
    return sorted(roles)[0]


@pytest.mark.parametrize(("rules", "expected", "statuses"), TABLES)
def test_tables_are_exactly_the_documented_flow(rules, expected, statuses):
    assert set(rules) == set(expected)
    for action, (sources, targets, roles) in expected.items():
        assert rules[action] == Rule(frozenset(sources), frozenset(targets), frozenset(roles | {R.ADMIN})), action


@pytest.mark.parametrize(("action", "source", "target"), _cases(EXPECTED_REQUEST))
def test_every_request_move_gives_its_target(action, source, target):
    roles = EXPECTED_REQUEST[action][2]
    for role in sorted(roles | {R.ADMIN}):
        explicit = target if len(EXPECTED_REQUEST[action][1]) > 1 else None
        assert check(REQUEST_RULES, action, current=source, target=explicit, role=role) == target
        assert check(REQUEST_RULES, action, current=source, target=target, role=role) == target


@pytest.mark.parametrize(("action", "source", "target"), _cases(EXPECTED_ORDER))
def test_every_work_order_move_gives_its_target(action, source, target):
    roles = EXPECTED_ORDER[action][2]
    for role in sorted(roles | {R.ADMIN}):
        assert check(WORK_ORDER_RULES, action, current=source, role=role) == target
        assert check(WORK_ORDER_RULES, action, current=source, target=target, role=role) == target


@pytest.mark.parametrize(("rules", "expected", "statuses"), TABLES)
def test_every_pair_outside_the_table_is_illegal_for_every_role(rules, expected, statuses):
    refused = 0
    for action in Action:
        sources = expected.get(action, (set(), set(), set()))[0]
        for status in statuses:
            if status in sources:
                continue
            for role in Role:  # even an admin cannot break the table
                roles = expected.get(action, (set(), set(), set()))[2] | {R.ADMIN}
                if action in rules and role not in roles:
                    # a role that may never fire the action is told so, whatever the status (403)
                    with pytest.raises(Forbidden):
                        check(rules, action, current=status, role=role)
                    refused += 1
                    continue
                with pytest.raises(IllegalTransition) as info:
                    check(rules, action, current=status, role=role)
                assert (info.value.action, info.value.status) == (action.value, str(status))
                assert info.value.status_code == 409
                refused += 1
    allowed = sum(len(sources) for sources, _, _ in expected.values())
    assert refused == (len(Action) * len(statuses) - allowed) * len(Role)


@pytest.mark.parametrize(("rules", "expected", "statuses"), TABLES)
def test_roles_outside_a_rule_are_forbidden(rules, expected, statuses):
    forbidden = 0
    for action, (sources, _, roles) in expected.items():
        for role in set(Role) - roles - {R.ADMIN}:
            for source in sources:
                with pytest.raises(Forbidden) as info:
                    check(rules, action, current=source, role=role)
                assert info.value.params == {"role": role.value, "action": action.value}
                assert info.value.status_code == 403
                forbidden += 1
    assert forbidden > 0


def test_a_handler_cannot_accept_and_an_operator_cannot_acknowledge():
    with pytest.raises(Forbidden):
        check(REQUEST_RULES, A.ACCEPT, current=RS.SUBMITTED, role=R.HANDLER)
    with pytest.raises(Forbidden):
        check(WORK_ORDER_RULES, A.ACKNOWLEDGE, current=WS.PENDING, role=R.OPERATOR)
    with pytest.raises(Forbidden):
        check(REQUEST_RULES, A.REOPEN, current=RS.CLOSED, role=R.OPERATOR)
    with pytest.raises(Forbidden):  # only the system marks overdue
        check(WORK_ORDER_RULES, A.MARK_OVERDUE, current=WS.PENDING, role=R.SUPERVISOR)


def test_a_target_outside_the_rule_is_illegal():
    with pytest.raises(IllegalTransition):
        check(REQUEST_RULES, A.CALLBACK, current=RS.REPLIED, target=RS.ACCEPTED, role=R.OPERATOR)
    with pytest.raises(IllegalTransition):
        check(REQUEST_RULES, A.ACCEPT, current=RS.SUBMITTED, target=RS.REJECTED, role=R.OPERATOR)
    with pytest.raises(IllegalTransition):  # an action that keeps the status cannot move it
        check(REQUEST_RULES, A.SUPERVISE, current=RS.IN_PROGRESS, target=RS.CLOSED, role=R.SUPERVISOR)
    with pytest.raises(IllegalTransition):
        check(WORK_ORDER_RULES, A.MARK_OVERDUE, current=WS.PENDING, target=WS.ACKNOWLEDGED, role=R.SYSTEM)
    assert check(REQUEST_RULES, A.SUPERVISE, current=RS.IN_PROGRESS, target=RS.IN_PROGRESS,
                 role=R.SUPERVISOR) == RS.IN_PROGRESS


def test_callback_needs_an_explicit_target():
    with pytest.raises(ValueError, match="explicit target"):
        check(REQUEST_RULES, A.CALLBACK, current=RS.REPLIED, role=R.OPERATOR)


def test_allowed_maps_are_derived_from_the_tables():
    assert REQUEST_ALLOWED == {
        RS.SUBMITTED: frozenset({RS.ACCEPTED, RS.REJECTED}),
        RS.ACCEPTED: frozenset({RS.DISPATCHED, RS.ACCEPTED}),
        RS.DISPATCHED: frozenset({RS.IN_PROGRESS, RS.ACCEPTED, RS.DISPATCHED}),
        RS.IN_PROGRESS: frozenset({RS.IN_PROGRESS, RS.REPLIED}),
        RS.REPLIED: frozenset({RS.CLOSED, RS.DISPATCHED, RS.REPLIED}),
        RS.CLOSED: frozenset({RS.DISPATCHED, RS.CLOSED}),
    }
    assert RS.REJECTED not in REQUEST_ALLOWED  # terminal
    assert WORK_ORDER_ALLOWED == {
        WS.PENDING: frozenset({WS.ACKNOWLEDGED, WS.RETURNED, WS.CLOSED, WS.CANCELLED, WS.PENDING}),
        WS.ACKNOWLEDGED: frozenset({WS.EXTENSION_REQUESTED, WS.REPLIED, WS.CLOSED, WS.CANCELLED, WS.ACKNOWLEDGED}),
        WS.EXTENSION_REQUESTED: frozenset(
            {WS.ACKNOWLEDGED, WS.REPLIED, WS.CLOSED, WS.CANCELLED, WS.EXTENSION_REQUESTED}),
        WS.REPLIED: frozenset({WS.CLOSED, WS.REOPENED, WS.CANCELLED}),
        WS.CLOSED: frozenset({WS.REOPENED}),
    }
    for terminal in (WS.RETURNED, WS.REOPENED, WS.CANCELLED):
        assert terminal not in WORK_ORDER_ALLOWED


@pytest.mark.parametrize(("rules", "allowed"), [(REQUEST_RULES, REQUEST_ALLOWED),
                                                (WORK_ORDER_RULES, WORK_ORDER_ALLOWED)])
def test_allowed_agrees_with_check(rules, allowed):
    """Every (status → target) the map allows is reachable through ``check``, and nothing else."""
    reachable: dict[str, set[str]] = {}
    for action, rule in rules.items():
        for source in rule.sources:
            for target in rule.targets or {source}:
                assert check(rules, action, current=source, target=target, role=R.ADMIN) == target
                reachable.setdefault(source, set()).add(target)
    assert {k: frozenset(v) for k, v in reachable.items()} == allowed


def test_active_order_statuses():
    assert frozenset(ACTIVE_ORDER) == frozenset(ACTIVE)
