"""Rate limits per client on intake (issue #6): the N+1-th call within the window is a 429 with
``Retry-After`` and the error shape in zh/en, stores nothing, and another client keeps its own
budget (another address, or another logged-in user behind the same address)."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import func, select

from civicloop.core import auth
from civicloop.core.db import session_factory
from civicloop.core.ratelimit import rate_limited
from civicloop.core.roles import Role
from civicloop.core.settings import Settings, get_settings
from civicloop.core.timeutil import utcnow
from civicloop.open311 import keys
from civicloop.requests.models import ServiceRequest

BODY = {"title": "小区路灯不亮", "description": "三号楼前路灯坏了一周。"}
OPERATOR = {"X-Civicloop-Actor": "operator-1", "X-Civicloop-Role": "operator"}


def count(db) -> int:
    with session_factory(db)() as s:
        return s.scalar(select(func.count()).select_from(ServiceRequest))


def limited(client: TestClient, settings: Settings, **rates: str) -> Settings:
    """Give ``client``'s app the test settings with ``rates`` (e.g. ``rate_limit_intake="3/minute"``)."""
    tight = settings.model_copy(update=rates)
    client.app.dependency_overrides[get_settings] = lambda: tight
    return tight


def test_the_call_over_the_rate_is_refused_and_stores_nothing(client, db, settings):
    limited(client, settings, rate_limit_intake="3/minute")
    for _ in range(3):
        assert client.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 201
    refused = client.post("/api/v1/requests", json=BODY, headers=OPERATOR)
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    error = refused.json()["error"]
    assert (error["code"], error["fields"]) == ("rate_limited", [])
    assert error["message"] == f"请求过于频繁，请 {refused.headers['retry-after']} 秒后再试"
    english = client.post("/api/v1/requests", json=BODY, headers={**OPERATOR, "Accept-Language": "en"})
    assert english.status_code == 429
    assert english.json()["error"]["message"].startswith("Too many requests; try again in ")
    assert count(db) == 3  # the refused calls stored nothing


def test_another_address_keeps_its_own_budget(client, db, settings):
    limited(client, settings, rate_limit_intake="2/minute")
    for _ in range(2):
        assert client.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 201
    assert client.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 429
    other = TestClient(client.app, client=("198.51.100.7", 50000))
    assert other.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 201
    assert count(db) == 3


def test_logged_in_users_behind_one_address_count_apart(client, db, settings):
    """Two operators of one call centre (one address) each have the whole rate."""
    limited(client, settings, rate_limit_intake="2/minute")
    tokens = []
    with session_factory(db)() as s:
        for name in ("op-a", "op-b"):
            user = auth.create_user(s, username=name, password="long enough secret", role=Role.OPERATOR,
                                    actor="test", now=utcnow())
            tokens.append(auth.issue_token(s, user=user, kind=auth.API, now=utcnow(), hours=None)[0])
        s.commit()
    first, second = ({"Authorization": f"Bearer {token}"} for token in tokens)
    assert [client.post("/api/v1/requests", json=BODY, headers=first).status_code for _ in range(3)] == [201, 201, 429]
    assert client.post("/api/v1/requests", json=BODY, headers=second).status_code == 201
    assert count(db) == 3


def test_open311_intake_is_limited_too_and_answers_in_its_format(client, db, city, settings):
    limited(client, settings, rate_limit_intake="1/minute")
    with session_factory(db)() as s:
        _, key = keys.create_key(s, name="test-app")
        s.commit()
    form = {"api_key": key, "service_code": str(city["cat:城乡建设/市政设施/路灯不亮"]), "lat": "39.905",
            "long": "116.405", "description": "三号楼前路灯坏了一周。"}
    assert client.post("/open311/v2/requests.json", data=form).status_code == 201
    refused = client.post("/open311/v2/requests.json", data=form, headers={"Accept-Language": "en"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    [error] = refused.json()  # GeoReport v2's errors list
    assert error["code"] == 429 and error["description"].startswith("Too many requests; try again in ")
    xml = client.post("/open311/v2/requests.xml", data=form)
    assert xml.status_code == 429 and xml.headers["content-type"].startswith("text/xml")
    assert count(db) == 1


def test_workers_share_counts_through_redis(client, db, settings):
    """Two apps (two workers) on one Redis: the second sees the first one's calls."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379", socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    shared = limited(client, settings, rate_limit_intake="2/minute", rate_limit_storage_uri="redis://127.0.0.1:6379")
    address = (f"203.0.113.{secrets.randbelow(250) + 1}-{secrets.token_hex(4)}", 50000)  # fresh key each run
    worker_a = TestClient(client.app, client=address)
    from civicloop.app import create_app

    other_app = create_app()
    other_app.dependency_overrides.update(client.app.dependency_overrides)
    other_app.dependency_overrides[get_settings] = lambda: shared
    worker_b = TestClient(other_app, client=address)
    assert worker_a.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 201
    assert worker_b.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 201
    assert worker_a.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 429
    assert worker_b.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code == 429
    assert count(db) == 2


def test_an_unreachable_store_lets_submissions_through(client, db, settings, caplog):
    """A citizen's request matters more than a limit: with the store down, intake still works."""
    limited(client, settings, rate_limit_intake="1/minute", rate_limit_storage_uri="redis://127.0.0.1:1")
    assert [client.post("/api/v1/requests", json=BODY, headers=OPERATOR).status_code for _ in range(2)] == [201, 201]
    assert "rate-limit storage redis://127.0.0.1:1 failed" in caplog.text
    assert count(db) == 2


def test_a_malformed_rate_fails_at_start_and_an_unknown_limit_at_import():
    with pytest.raises(ValidationError, match="rate_limit_intake"):
        Settings(_env_file=None, rate_limit_intake="sixty a minute")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown rate limit 'upload'"):
        rate_limited("upload")
