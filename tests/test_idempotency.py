"""Idempotent intake (issue #6): a retry with the same ``Idempotency-Key`` gets the same request,
never two; the same key with another body, or a malformed key, is a 422 naming the header."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi import Response
from sqlalchemy import func, select

from civicloop.core import audit
from civicloop.core.db import session_factory
from civicloop.core.errors import FieldError
from civicloop.core.http import Caller
from civicloop.core.roles import Role
from civicloop.requests import idempotency
from civicloop.requests.models import IdempotencyKey, ServiceRequest
from civicloop.requests.routes import create_request
from civicloop.requests.schemas import RequestCreate

BODY = {"title": "小区路灯不亮", "description": "三号楼前路灯坏了一周。", "citizen_phone": "13812341234"}


def count(db, model) -> int:
    with session_factory(db)() as s:
        return s.scalar(select(func.count()).select_from(model))


def post(client, body, key: str | bytes | None = None, **headers):
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/api/v1/requests", content=json.dumps(body, ensure_ascii=False).encode(),
                       headers={"Content-Type": "application/json", **headers})


def test_a_retry_with_the_same_key_gets_the_same_request(client, db):
    first = post(client, BODY, "8e03978e-40d5-43e8-bc93-6894a57f9324")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    reordered = dict(reversed(list(BODY.items())))  # same content, other key order and quoting
    again = post(client, {**reordered, "channel": "hotline"}, '"8e03978e-40d5-43e8-bc93-6894a57f9324"')
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["citizen_phone"] == first.json()["citizen_phone"] != BODY["citizen_phone"]  # still masked
    assert count(db, ServiceRequest) == 1 and count(db, IdempotencyKey) == 1
    with session_factory(db)() as s:
        assert audit.verify(s).checked == 1  # one submission, one audit entry


def test_without_a_key_two_posts_file_two_requests(client, db):
    assert post(client, BODY).status_code == 201 and post(client, BODY).status_code == 201
    assert count(db, ServiceRequest) == 2 and count(db, IdempotencyKey) == 0


def test_the_same_key_with_another_body_is_refused(client, db):
    assert post(client, BODY, "k-1").status_code == 201
    other = post(client, {**BODY, "title": "另一件事"}, "k-1", **{"Accept-Language": "en"})
    assert other.status_code == 422
    error = other.json()["error"]
    assert error["fields"][0]["field"] == "Idempotency-Key"
    assert "different submission" in error["fields"][0]["message"]
    zh = post(client, {**BODY, "title": "另一件事"}, "k-1")
    assert "已用于内容不同" in zh.json()["error"]["fields"][0]["message"]
    assert count(db, ServiceRequest) == 1


@pytest.mark.parametrize("key", ["", "  ", "x" * 201, "键".encode(), "a b", '""'])
def test_a_malformed_key_is_a_422_naming_the_header(client, db, key):
    answer = post(client, BODY, key, **{"Accept-Language": "en"})
    assert answer.status_code == 422, answer.text
    field = answer.json()["error"]["fields"][0]
    assert field["field"] == "Idempotency-Key" and "visible ASCII" in field["message"]
    assert count(db, ServiceRequest) == 0


def test_parse_key_takes_the_sf_string_form_and_the_bare_form():
    assert idempotency.parse_key('"abc"') == idempotency.parse_key("abc") == "abc"
    assert idempotency.parse_key(None) is None
    assert idempotency.parse_key("x" * 200) == "x" * 200
    with pytest.raises(FieldError):
        idempotency.parse_key("a\tb")


def test_a_bad_body_with_a_key_stores_nothing_and_leaves_the_key_free(client, db):
    bad = post(client, {"title": "", "description": "x"}, "k-2")
    assert bad.status_code == 422
    assert count(db, IdempotencyKey) == 0
    assert post(client, BODY, "k-2").status_code == 201


def test_two_concurrent_submissions_with_one_key_file_one_request(db, settings):
    """Both start together; whoever claims the key first holds its transaction open a moment. On
    PostgreSQL the other's INSERT waits on the unique index and, once the first commits, replays
    its request; on SQLite the second transaction waits at BEGIN IMMEDIATE and finds the key."""
    barrier = threading.Barrier(2)
    caller = Caller("operator-1", Role.OPERATOR, None)

    def submit(_: int) -> tuple[int, bool]:
        session = session_factory(db)()
        response = Response()
        try:
            barrier.wait(timeout=30)
            out = create_request(RequestCreate(**BODY), session, caller, settings, "zh", response,
                                 idempotency_key="race-1")
            time.sleep(0.3)
            session.commit()
            return out.id, response.headers.get("idempotent-replayed") == "true"
        finally:
            session.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [f.result(timeout=120) for f in [pool.submit(submit, i) for i in range(2)]]
    assert results[0][0] == results[1][0]
    assert sorted(replayed for _, replayed in results) == [False, True]
    assert count(db, ServiceRequest) == 1 and count(db, IdempotencyKey) == 1
    with session_factory(db)() as s:
        assert audit.verify(s).ok and audit.verify(s).checked == 1
