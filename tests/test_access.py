"""Who may see and do what (issue #6): every role × every endpoint × a record inside and outside
the caller's scope → the expected status, with real logins (API tokens) and the role headers off.

Two requests: IN lies in grid D01-S01-C01-G1 of district D01, was filed by the resident, is
dispatched to street D01-S01 and under supervision; OUT lies in district D02, dispatched to street
D02-S01. The users: an operator, a dispatcher, an analyst and an admin (city-wide), a handler of
D01-S01, a grid worker of grid IN, a supervisor of district D01 and the resident. Outside one's
scope a record is 404 (its existence is not revealed); a role that may not act is 403; the
anonymous public is 401 except on public reference data and on filing a request.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select

from civicloop.core import auth
from civicloop.core.db import session_factory
from civicloop.core.roles import Role
from civicloop.core.settings import Settings, get_settings
from civicloop.core.timeutil import utcnow
from civicloop.org.models import Grid
from civicloop.requests import closing
from civicloop.requests.models import ServiceRequest
from tests.helpers import SUPERVISOR, dispatched

API = "/api/v1"
PASSWORD = "correct horse battery"
ANON = "anonymous"
CITY_WIDE = {"operator", "dispatcher", "analyst", "admin"}
LIMITED = {"handler", "grid_worker", "supervisor", "resident"}
ROLES = sorted(CITY_WIDE | LIMITED)
LOGIN = set(ROLES)
STAFF = LOGIN - {"resident"}
PUBLIC = LOGIN | {ANON}


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # with {request_id}, {work_order_id}, {supervision_id}: filled for IN and OUT
    allowed: frozenset[str]
    scoped: bool = False  # a record of IN or OUT: outside a limited role's scope it is 404
    mutates: bool = False  # an allowed caller may meet 409/422 (state, body): only "not denied" is checked
    body: dict | None = None
    params: dict | None = None


def ep(method: str, path: str, allowed: set[str], **kw: object) -> Endpoint:
    return Endpoint(method, path, frozenset(allowed), **kw)  # type: ignore[arg-type]


R, W, S = "/requests/{request_id}", "/work-orders/{work_order_id}", "/supervisions/{supervision_id}"
ENDPOINTS = [
    ep("POST", "/requests", PUBLIC, mutates=True, body={"title": "路灯不亮", "description": "三号楼前路灯坏了"}),
    ep("GET", "/requests", LOGIN),
    ep("GET", R, LOGIN, scoped=True),
    ep("GET", R + "/events", LOGIN, scoped=True),
    ep("POST", R + "/contact", {"operator", "dispatcher", "handler", "supervisor", "admin"}, scoped=True,
       body={"purpose": "回访"}),
    ep("POST", R + "/accept", {"operator", "dispatcher", "admin"}, scoped=True, mutates=True, body={}),
    ep("POST", R + "/reject", {"operator", "dispatcher", "admin"}, scoped=True, mutates=True,
       body={"reason": "out_of_scope"}),
    ep("POST", R + "/dispatch", {"dispatcher", "admin"}, scoped=True, mutates=True, body={"lead_unit_id": 1}),
    ep("POST", R + "/callback", {"operator", "supervisor", "resident", "admin"}, scoped=True, mutates=True,
       body={"resolved": True, "satisfaction": "satisfied"}),
    ep("POST", R + "/close-unrated", {"operator", "supervisor", "admin"}, scoped=True, mutates=True,
       body={"reason": "三次联系不上"}),
    ep("POST", R + "/reopen", {"supervisor", "admin"}, scoped=True, mutates=True, body={"reason": "再办"}),
    ep("POST", R + "/supervise", {"supervisor", "admin"}, scoped=True, mutates=True, body={"note": "请加快"}),
    ep("GET", R + "/triage", {"operator", "dispatcher", "supervisor", "analyst", "admin"}, scoped=True,
       mutates=True),  # no intake record here: an allowed caller meets 404 even inside its scope
    ep("POST", R + "/decide", {"dispatcher", "admin"}, scoped=True, mutates=True, body={"category_id": 1}),
    ep("GET", "/work-orders", LOGIN),
    ep("GET", W, LOGIN, scoped=True),
    ep("POST", W + "/acknowledge", {"handler", "admin"}, scoped=True, mutates=True),
    ep("POST", W + "/return", {"handler", "admin"}, scoped=True, mutates=True, body={"reason": "不归我们管"}),
    ep("POST", W + "/extension", {"handler", "admin"}, scoped=True, mutates=True,
       body={"extra_working_days": 3, "reason": "等待材料"}),
    ep("POST", W + "/extension/decision", {"supervisor", "admin"}, scoped=True, mutates=True,
       body={"approve": True}),
    ep("POST", W + "/reply", {"handler", "admin"}, scoped=True, mutates=True, body={"text": "已修好"}),
    ep("GET", "/supervisions", STAFF - {"grid_worker"}),
    ep("POST", S + "/close", {"supervisor", "admin"}, scoped=True, mutates=True, body={"note": "已办结"}),
    ep("GET", "/calendar", STAFF),
    ep("PUT", "/calendar/years/2031", {"admin"}, mutates=True, body={"days": [], "source": "test"}),
    ep("GET", "/dispatch-queue", {"operator", "dispatcher", "supervisor", "analyst", "admin"}),
    ep("GET", "/triage/stats", {"operator", "dispatcher", "supervisor", "analyst", "admin"}),
    ep("GET", "/triage/decisions.csv", {"analyst", "admin"}),
    ep("GET", "/units", LOGIN),
    ep("POST", "/units", {"admin"}, mutates=True, body={"code": "X-1", "name": "新单位", "kind": "department"}),
    ep("GET", "/units/1", LOGIN),
    ep("GET", "/grids", PUBLIC),
    ep("GET", "/places", PUBLIC),
    ep("POST", "/places", {"admin"}, mutates=True, body={"name": "丽发新城", "kind": "estate"}),
    ep("GET", "/places/999999", PUBLIC, mutates=True),
    ep("PUT", "/places/999999", {"admin"}, mutates=True, body={"name": "丽发新城", "kind": "estate"}),
    ep("DELETE", "/places/999999", {"admin"}, mutates=True),
    ep("GET", "/categories", PUBLIC),
    ep("PUT", "/categories/1/tier", {"admin"}, mutates=True, body={"deadline_tier": "3d"}),
    ep("GET", "/routing-rules", STAFF),
    ep("POST", "/routing-rules", {"admin"}, mutates=True, body={}),
    ep("GET", "/routing-rules/resolve", STAFF),
    ep("GET", "/routing-rules/999999", STAFF, mutates=True),
    ep("PUT", "/routing-rules/999999", {"admin"}, mutates=True, body={}),
    ep("DELETE", "/routing-rules/999999", {"admin"}, mutates=True),
    ep("GET", "/ledger", STAFF),
    ep("GET", "/ledger/export", STAFF),
    ep("GET", "/metrics", STAFF, params={"month": "2026-11"}),
    ep("GET", "/dashboard", STAFF),
    ep("GET", "/analytics/findings", {"analyst", "supervisor", "dispatcher", "admin"}),
    ep("GET", "/analytics/findings/999999", {"analyst", "supervisor", "dispatcher", "admin"}, mutates=True),
    ep("POST", "/analytics/findings/999999/accept", {"analyst", "supervisor", "admin"}, mutates=True),
    ep("POST", "/analytics/findings/999999/dismiss", {"analyst", "supervisor", "admin"}, mutates=True),
    ep("GET", "/auth/me", LOGIN),
    ep("GET", "/users", {"admin"}),
    ep("POST", "/users", {"admin"}, mutates=True, body={"username": "x", "password": "short", "role": "analyst"}),
]
# reached without a login by design, or with a key of their own: tested in their own files
ELSEWHERE = {
    ("POST", "/api/v1/auth/tokens"),  # the login itself (tests below)
    ("DELETE", "/api/v1/auth/tokens/current"),  # log out (tests below)
}


@pytest.fixture
def world(client, db, city):
    """Users with API tokens, the two requests and the switch to real logins; returns ids and tokens."""
    settings = Settings(_env_file=None, triage_on_intake=False, trust_role_headers=False)  # type: ignore[call-arg]
    client.app.dependency_overrides[get_settings] = lambda: settings
    now = utcnow()
    with session_factory(db)() as s:
        grids = {g.code: g.id for g in s.scalars(select(Grid))}
        units = {"handler": city["D01-S01"], "supervisor": city["D01"]}
        tokens, users = {}, {}
        for role in ROLES:
            user = auth.create_user(s, username=f"{role}-1", password=PASSWORD, role=Role(role),
                                    unit_id=units.get(role), actor="test", now=now,
                                    grid_ids=(grids["D01-S01-C01-G1"],) if role == "grid_worker" else ())
            tokens[role], _ = auth.issue_token(s, user=user, kind=auth.API, now=now, hours=1)
            users[role] = user.id
        inside = dispatched(s, settings, unit_id=city["D01-S01"], grid_id=grids["D01-S01-C01-G1"],
                            submitted_by_user_id=users["resident"])
        outside = dispatched(s, settings, unit_id=city["D02-S01"], grid_id=grids["D02-S01-C01-G1"])
        case = closing.supervise(s, request_id=inside.id, actor=SUPERVISOR, note="督办", redo=False,
                                 settings=settings)
        out_case = closing.supervise(s, request_id=outside.id, actor=SUPERVISOR, note="督办", redo=False,
                                     settings=settings)
        ids = {
            "in": {"request_id": inside.id, "work_order_id": inside.work_orders[-1].id, "supervision_id": case.id},
            "out": {"request_id": outside.id, "work_order_id": outside.work_orders[-1].id,
                    "supervision_id": out_case.id},
        }
        s.commit()
    return {"tokens": tokens, "ids": ids, "users": users}


def call(client, world, endpoint: Endpoint, role: str, where: str):
    headers = {} if role == ANON else {"Authorization": f"Bearer {world['tokens'][role]}"}
    path = API + endpoint.path.format(**world["ids"][where])
    return client.request(endpoint.method, path, headers=headers, json=endpoint.body, params=endpoint.params)


def expected(endpoint: Endpoint, role: str, where: str) -> set[int] | None:
    """The acceptable statuses, or ``None`` for "allowed: anything but 401, 403, 404 and 5xx"."""
    outside = endpoint.scoped and where == "out" and role in LIMITED
    if role not in endpoint.allowed:
        if role == ANON:
            return {401}
        # outside: 404 where the scope is checked first (transitions), 403 where the endpoint is closed to the
        # role whatever the id (a dependency): neither tells whether the record exists
        return {403, 404} if outside else {403}
    if outside:
        return {404}
    return None


@pytest.mark.parametrize("role", [*ROLES, ANON])
def test_every_role_on_every_endpoint_inside_and_outside_its_scope(client, world, role):
    failures = []
    for endpoint in ENDPOINTS:
        for where in ("in", "out") if endpoint.scoped else ("in",):
            response = call(client, world, endpoint, role, where)
            want = expected(endpoint, role, where)
            if want is None:
                denied = {401, 403} | (set() if endpoint.mutates and not endpoint.scoped else {404})
                if endpoint.path.endswith("/triage"):
                    denied -= {404}  # no intake record: see ENDPOINTS
                good = response.status_code < 500 and response.status_code not in denied
            else:
                good = response.status_code in want
            if not good:
                failures.append(f"{endpoint.method} {endpoint.path} [{where}] → {response.status_code} "
                                f"(want {sorted(want) if want else 'allowed'}): {response.text[:120]}")
    assert not failures, "\n".join(failures)


def test_the_matrix_names_every_endpoint(client):
    """A new endpoint must be placed in the matrix (or, with a reason, in ELSEWHERE)."""
    listed = {(e.method, API + e.path.split("?")[0]) for e in ENDPOINTS} | ELSEWHERE
    schema = client.app.openapi()["paths"]
    missing = []
    for path, operations in schema.items():
        if not path.startswith(API):
            continue  # Open311 (its own keys: tests/test_open311.py) and the health probe
        for method in operations:
            concrete = {(m, p) for m, p in listed if m == method.upper() and _same(p, path)}
            if not concrete:
                missing.append(f"{method.upper()} {path}")
    assert not missing, missing


def _same(concrete: str, template: str) -> bool:
    a, b = concrete.strip("/").split("/"), template.strip("/").split("/")
    return len(a) == len(b) and all(x == y or y.startswith("{") or x.startswith("{") for x, y in zip(a, b, strict=True))


def test_lists_hold_only_what_is_in_scope(client, world):
    """Lists and the ledger filter in the query: a limited role's list holds IN and never OUT."""
    inside, outside = world["ids"]["in"]["request_id"], world["ids"]["out"]["request_id"]
    for role in ROLES:
        headers = {"Authorization": f"Bearer {world['tokens'][role]}"}
        requests = {r["id"] for r in client.get(f"{API}/requests", headers=headers).json()}
        orders = {o["request_id"] for o in client.get(f"{API}/work-orders", headers=headers).json()}
        want = {inside, outside} if role in CITY_WIDE else {inside}
        assert requests == want, role
        assert orders == want, role
        if role in STAFF:
            ledger = {row["id"] for row in client.get(f"{API}/ledger", headers=headers).json()}
            assert ledger == want, role
            text = client.get(f"{API}/ledger/export", params={"format": "csv"}, headers=headers).text
            lines = [line.split(",")[0] for line in text.splitlines()[1:]]
            assert sorted(int(x) for x in lines) == sorted(want), role
        if role in STAFF - {"grid_worker"}:
            cases = {c["request_id"] for c in client.get(f"{API}/supervisions", headers=headers).json()}
            assert cases == want, role


def test_a_handler_sees_only_its_own_units_orders_of_a_shared_request(client, world, db, city):
    with session_factory(db)() as s:
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        shared = dispatched(s, settings, unit_id=city["D01-S01"], assisting=(city["DEP-CG"],))
        s.commit()
        lead, assisting = shared.work_orders[0].id, shared.work_orders[1].id
    headers = {"Authorization": f"Bearer {world['tokens']['handler']}"}
    assert client.get(f"{API}/work-orders/{lead}", headers=headers).status_code == 200
    assert client.get(f"{API}/work-orders/{assisting}", headers=headers).status_code == 404


def test_a_resident_files_through_the_web_and_follows_only_their_own(client, world, db):
    headers = {"Authorization": f"Bearer {world['tokens']['resident']}"}
    body = {"channel": "hotline", "title": "楼道灯坏了", "description": "五号楼楼道灯不亮", "deadline_tier": "2h",
            "support_count": 999}
    filed = client.post(f"{API}/requests", json=body, headers=headers)
    assert filed.status_code == 201, filed.text
    rid = filed.json()["id"]
    with session_factory(db)() as s:
        stored = s.get(ServiceRequest, rid)
        assert (stored.channel, stored.deadline_tier, stored.support_count) == ("web", "7wd", 0)
        assert stored.submitted_by_user_id == world["users"]["resident"]
    assert client.get(f"{API}/requests/{rid}", headers=headers).status_code == 200
    anonymous = client.post(f"{API}/requests", json=body)
    assert anonymous.status_code == 201
    assert client.get(f"{API}/requests/{anonymous.json()['id']}", headers=headers).status_code == 404
    assert client.get(f"{API}/requests/{anonymous.json()['id']}").status_code == 401


def test_role_headers_are_ignored_unless_trusted(client, world):
    claim = {"X-Civicloop-Role": "admin", "X-Civicloop-Actor": "mallory"}
    assert client.get(f"{API}/users", headers=claim).status_code == 401
    assert client.get(f"{API}/requests", headers=claim).status_code == 401


def test_login_gives_a_token_that_works_until_logout(client, world):
    bad = client.post(f"{API}/auth/tokens", json={"username": "analyst-1", "password": "wrong password"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "login_failed"
    unknown = client.post(f"{API}/auth/tokens", json={"username": "nobody", "password": "wrong password"},
                          headers={"Accept-Language": "en"})
    assert unknown.status_code == 401 and unknown.json()["error"]["message"] == "Wrong user name or password"
    good = client.post(f"{API}/auth/tokens", json={"username": "analyst-1", "password": PASSWORD, "hours": 2})
    assert good.status_code == 201, good.text
    token = good.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    me = client.get(f"{API}/auth/me", headers=headers).json()
    assert (me["username"], me["role"], me["via"]) == ("analyst-1", "analyst", "api")
    assert client.delete(f"{API}/auth/tokens/current", headers=headers).status_code == 204
    again = client.get(f"{API}/auth/me", headers=headers)
    assert again.status_code == 401 and again.json()["error"]["code"] == "token_invalid"
    assert client.get(f"{API}/auth/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_an_expired_token_and_a_deactivated_user_are_refused(client, world, db):
    from datetime import timedelta

    from civicloop.core.models import AuthToken, User

    headers = {"Authorization": f"Bearer {world['tokens']['operator']}"}
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 200
    with session_factory(db)() as s:
        token = s.scalars(select(AuthToken).where(AuthToken.user_id == world["users"]["operator"])).one()
        token.expires_at = utcnow() - timedelta(seconds=1)
        s.commit()
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 401
    headers = {"Authorization": f"Bearer {world['tokens']['dispatcher']}"}
    with session_factory(db)() as s:
        s.get(User, world["users"]["dispatcher"]).active = False
        s.commit()
    assert client.get(f"{API}/auth/me", headers=headers).status_code == 401


def test_passwords_are_argon2_and_only_token_hashes_are_stored(client, world, db):
    from civicloop.core.models import AuthToken, User

    with session_factory(db)() as s:
        user = s.scalars(select(User).where(User.username == "admin-1")).one()
        assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
        stored = {t.token_hash for t in s.scalars(select(AuthToken))}
    assert not set(world["tokens"].values()) & stored
    assert all(len(h) == 64 for h in stored)


def test_admin_creates_users_with_field_errors_in_the_callers_language(client, world, city):
    headers = {"Authorization": f"Bearer {world['tokens']['admin']}", "Accept-Language": "en"}
    weak = client.post(f"{API}/users", json={"username": "h2", "password": "aaaaaaaa", "role": "handler",
                                             "unit_id": city["D01-S01"]}, headers=headers)
    assert weak.status_code == 422 and weak.json()["error"]["fields"][0]["field"] == "password"
    no_unit = client.post(f"{API}/users", json={"username": "h2", "password": PASSWORD, "role": "handler"},
                          headers=headers)
    assert no_unit.status_code == 422 and no_unit.json()["error"]["fields"][0] == {
        "field": "unit_id", "type": "user_unit_required", "message": "Role 'handler' needs a unit"}
    taken = client.post(f"{API}/users", json={"username": "admin-1", "password": PASSWORD, "role": "analyst"},
                        headers=headers)
    assert taken.status_code == 422 and taken.json()["error"]["fields"][0]["field"] == "username"
    made = client.post(f"{API}/users", json={"username": "h2", "password": PASSWORD, "role": "handler",
                                             "unit_id": city["D01-S01"]}, headers=headers)
    assert made.status_code == 201 and "password" not in made.text and "hash" not in made.text
    login = client.post(f"{API}/auth/tokens", json={"username": "h2", "password": PASSWORD})
    assert login.status_code == 201 and login.json()["unit_id"] == city["D01-S01"]


def test_password_guessing_is_rate_limited_per_address(client, world):
    limited = Settings(_env_file=None, trust_role_headers=False, rate_limit_login="3/minute")  # type: ignore[call-arg]
    client.app.dependency_overrides[get_settings] = lambda: limited
    answers = [client.post(f"{API}/auth/tokens", json={"username": "admin-1", "password": f"guess {i}"}).status_code
               for i in range(4)]
    assert answers == [401, 401, 401, 429]
