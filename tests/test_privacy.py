"""Citizens' personal data (issue #6, the Personal Information Protection Law): encrypted at rest,
masked everywhere, revealed only to a role that needs it with an audit entry, erased after the
retention period, re-encrypted when keys rotate; and a sweep of every page of the API, every
export and every log line for the unmasked numbers."""

from __future__ import annotations

import io
import logging
import re
import zipfile
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from civicloop.core import crypto
from civicloop.core.db import session_factory
from civicloop.core.models import AuditEntry
from civicloop.core.settings import Settings, get_settings
from civicloop.core.timeutil import utcnow
from civicloop.requests import privacy
from civicloop.requests.models import ServiceRequest
from tests.helpers import closed

API = "/api/v1"
PHONE, ID_NUMBER, NAME = "13912345678", "11010519491231002X", "欧阳明月"
ADMIN = {"X-Civicloop-Actor": "admin-1", "X-Civicloop-Role": "admin"}


def handler(unit: int) -> dict[str, str]:
    return {"X-Civicloop-Actor": "handler-1", "X-Civicloop-Role": "handler", "X-Civicloop-Unit": str(unit)}


def file(client, **extra) -> dict:
    body = {"title": "楼下垃圾没人清", "description": "三号楼下垃圾堆了一周", "citizen_name": NAME,
            "citizen_phone": PHONE, "citizen_id_number": ID_NUMBER, **extra}
    response = client.post(f"{API}/requests", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_contact_is_encrypted_at_rest_and_masked_in_answers(client, db):
    filed = file(client)
    assert (filed["citizen_name"], filed["citizen_phone"], filed["citizen_id_number"]) == (
        "欧***", "139****5678", "110***********002X")
    with db.connect() as conn:
        name, phone, number, key = conn.execute(text(
            "SELECT citizen_name, citizen_phone, citizen_id_number, citizen_key FROM service_requests")).one()
    for stored in (name, phone, number):
        assert stored.startswith(crypto.TOKEN_PREFIX) and PHONE not in stored and NAME not in stored
    assert key == crypto.citizen_key("+86 139-1234-5678") and len(key) == 16
    with session_factory(db)() as s:  # the ORM reads it back in clear for the code that may
        assert s.get(ServiceRequest, filed["id"]).citizen_phone == PHONE


def test_the_sqlite_file_holds_no_contact_in_clear(client, db):
    if db.dialect.name != "sqlite":
        pytest.skip("a file-level check of the embedded database")
    file(client, description="急！请回电13912345678，身份证11010519491231002X")
    from pathlib import Path

    raw = b"".join(Path(f"{db.url.database}{suffix}").read_bytes() for suffix in ("", "-wal")
                   if Path(f"{db.url.database}{suffix}").exists())  # the database and its write-ahead log
    for secret in (PHONE, ID_NUMBER, NAME):
        assert secret.encode() not in raw


def test_a_number_typed_into_the_text_becomes_the_encrypted_contact(client, db):
    body = {"title": "噪音扰民", "description": "晚上施工太吵，请联系我 139 1234 5678"}
    filed = client.post(f"{API}/requests", json=body).json()
    assert filed["description"] == "晚上施工太吵，请联系我 139****5678"
    with session_factory(db)() as s:
        stored = s.get(ServiceRequest, filed["id"])
        assert stored.citizen_phone == PHONE and PHONE not in stored.description


@pytest.mark.parametrize(("number", "kind"), [("11010519491231002Y", "v.id_number"),
                                              ("110105194912310021", "v.id_number_check"),
                                              ("1101051949", "v.id_number")])
def test_a_malformed_identity_number_is_refused(client, db, number, kind):
    response = client.post(f"{API}/requests", json={"title": "t", "description": "d", "citizen_id_number": number},
                           headers={"Accept-Language": "en"})
    assert response.status_code == 422
    field = response.json()["error"]["fields"][0]
    assert (field["field"], f"v.{field['type']}") == ("citizen_id_number", kind)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM service_requests")).scalar() == 0


def test_reveal_is_for_roles_that_need_it_and_is_audited(client, db, city, settings):
    with session_factory(db)() as s:
        request = closed(s, settings, unit_id=city["D01-S01"], citizen_phone=PHONE, citizen_name=NAME)
        s.commit()
        rid = request.id
    shown = client.post(f"{API}/requests/{rid}/contact", json={"purpose": "回访核实"}, headers=handler(city["D01-S01"]))
    assert shown.status_code == 200, shown.text
    assert (shown.json()["citizen_phone"], shown.json()["citizen_name"]) == (PHONE, NAME)
    analyst = client.post(f"{API}/requests/{rid}/contact", json={"purpose": "好奇"},
                          headers={"X-Civicloop-Role": "analyst"})
    assert analyst.status_code == 403
    other_unit = client.post(f"{API}/requests/{rid}/contact", json={"purpose": "回访"},
                             headers=handler(city["D02-S01"]))
    assert other_unit.status_code == 404
    no_purpose = client.post(f"{API}/requests/{rid}/contact", json={"purpose": " "}, headers=ADMIN)
    assert no_purpose.status_code == 422
    with session_factory(db)() as s:
        reveals = s.scalars(select(AuditEntry).where(AuditEntry.action == "contact_revealed")).all()
    assert [(e.actor, e.subject, e.data["purpose"]) for e in reveals] == [("handler-1", f"request:{rid}", "回访核实")]
    assert PHONE not in str(reveals[0].data) and NAME not in str(reveals[0].data)


def test_contacts_are_erased_after_the_retention_period_and_statistics_stay(client, db, city, settings):
    now = utcnow()
    with session_factory(db)() as s:
        old = closed(s, settings, unit_id=city["D01-S01"], now=now - timedelta(days=200), citizen_phone=PHONE)
        recent = closed(s, settings, unit_id=city["D01-S01"], now=now - timedelta(days=10), citizen_phone=PHONE)
        s.commit()
        erased = privacy.erase_expired(s, settings=settings, now=now)
        assert erased == [old.id]
        assert privacy.erase_expired(s, settings=settings, now=now) == []  # nothing twice
        s.commit()
    with session_factory(db)() as s:
        gone, kept = s.get(ServiceRequest, old.id), s.get(ServiceRequest, recent.id)
        assert (gone.citizen_phone, gone.citizen_name, gone.citizen_key) == ("", "", None)
        assert gone.contact_erased_at is not None and gone.status == "closed"
        assert gone.work_orders[-1].satisfaction == "satisfied"  # the rating, and so the rates, survive
        assert kept.citizen_phone == PHONE
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "contacts_erased")).one()
        assert entry.data["count"] == 1
    shown = client.post(f"{API}/requests/{old.id}/contact", json={"purpose": "回访"}, headers=ADMIN).json()
    assert shown["erased"] is True and shown["citizen_phone"] == ""


def test_keys_rotate_without_losing_a_value():
    key_a, key_b, index = crypto.new_key(), crypto.new_key(), crypto.new_key()
    only_a = Settings(_env_file=None, data_keys=key_a, data_index_key=index)  # type: ignore[call-arg]
    both = Settings(_env_file=None, data_keys=f"{key_b},{key_a}", data_index_key=index)  # type: ignore[call-arg]
    only_b = Settings(_env_file=None, data_keys=key_b, data_index_key=index)  # type: ignore[call-arg]
    token = crypto.encrypt(PHONE, only_a)
    assert crypto.decrypt(token, both) == PHONE  # old values still read during the rotation
    rotated = crypto.rotate(token, both)
    assert rotated != token and crypto.decrypt(rotated, only_b) == PHONE
    assert crypto.decrypt(token, only_b) == crypto.UNREADABLE  # a lost key: unreadable, never a crash
    assert crypto.citizen_key(PHONE, only_a) == crypto.citizen_key(PHONE, only_b)  # the index does not rotate


def test_rotate_rewrites_every_stored_contact_under_the_new_key(db, monkeypatch, settings, city):
    with session_factory(db)() as s:
        closed(s, settings, unit_id=city["D01-S01"], citizen_phone=PHONE)
        s.commit()
    old = get_settings().data_keys
    new = crypto.new_key()
    monkeypatch.setenv("CIVICLOOP_DATA_KEYS", f"{new},{old}")
    get_settings.cache_clear()
    try:
        with session_factory(db)() as s:
            assert privacy.rotate_keys(s) == 1
            s.commit()
        monkeypatch.setenv("CIVICLOOP_DATA_KEYS", new)
        get_settings.cache_clear()
        with session_factory(db)() as s:
            assert s.scalars(select(ServiceRequest.citizen_phone)).one() == PHONE
    finally:
        monkeypatch.setenv("CIVICLOOP_DATA_KEYS", old)
        get_settings.cache_clear()


def _fill(path: str, ids: dict[str, int]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(ids.get(m.group(1), 1)), path)


def test_no_page_export_or_log_line_shows_an_unmasked_number(client, db, city, settings, caplog):
    """File requests with a phone, an identity number and a number typed into the text, drive one
    to a reply, then read every GET endpoint of the API (as an admin), both ledger exports, the
    Open311 requests and every log record: the numbers never appear in clear."""
    caplog.set_level(logging.DEBUG)
    filed = file(client, description="请回电 13912345678 或 010-62345678，身份证 11010519491231002X")
    with session_factory(db)() as s:
        replied = closed(s, settings, unit_id=city["D01-S01"], citizen_phone=PHONE, citizen_name=NAME,
                         citizen_id_number=ID_NUMBER)
        s.commit()
        ids = {"request_id": replied.id, "work_order_id": replied.work_orders[-1].id, "unit_id": city["D01-S01"],
               "supervision_id": 1, "place_id": 1, "rule_id": 1, "finding_id": 1, "category_id": 1}
    bodies = []
    for path, operations in client.app.openapi()["paths"].items():
        if "get" not in operations or not path.startswith(API):
            continue
        params = {"month": utcnow().strftime("%Y-%m")} if path.endswith("/metrics") else None
        response = client.get(_fill(path, ids), headers=ADMIN, params=params)
        assert response.status_code < 500, (path, response.text)
        bodies.append((path, response.content))
    for fmt in ("csv", "xlsx"):
        content = client.get(f"{API}/ledger/export", params={"format": fmt}, headers=ADMIN).content
        if fmt == "xlsx":
            with zipfile.ZipFile(io.BytesIO(content)) as book:
                content = b"".join(book.read(n) for n in book.namelist() if n.endswith(".xml"))
        bodies.append((f"ledger.{fmt}", content))
    bodies.append(("open311", client.get("/open311/v2/requests.json").content))
    bodies.append(("logs", "\n".join(r.getMessage() for r in caplog.records).encode()))
    assert filed["id"] and len(bodies) > 30
    for where, content in bodies:
        for secret in (PHONE, ID_NUMBER, NAME, "62345678"):
            assert secret.encode() not in content, f"{secret} in {where}"


def test_the_migration_encrypts_the_contacts_already_stored(tmp_path):
    from civicloop.core.db import make_engine
    from civicloop.core.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO service_requests (channel, title, description, citizen_name, citizen_phone, address,"
            " deadline_tier, support_count, status, return_count, reopen_count, fallback, created_at, updated_at,"
            " version) VALUES ('hotline', 't', 'd', :n, :p, '', '7wd', 0, 'submitted', 0, 0, 0,"
            " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', 1)"), {"n": NAME, "p": PHONE})
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as conn:
        name, phone, key = conn.execute(text(
            "SELECT citizen_name, citizen_phone, citizen_key FROM service_requests")).one()
    assert name.startswith(crypto.TOKEN_PREFIX) and phone.startswith(crypto.TOKEN_PREFIX)
    assert (crypto.decrypt(name), crypto.decrypt(phone), key) == (NAME, PHONE, crypto.citizen_key(PHONE))
    with session_factory(engine)() as s:
        assert s.scalars(select(ServiceRequest.citizen_phone)).one() == PHONE
    engine.dispose()


def test_no_web_page_shows_an_unmasked_number(client, db, city, tmp_path):
    """Every role's pages, the case pages of the request and the ledger's .xlsx, through a web login."""
    from tests.web_helpers import login, make_users, web_settings

    settings = web_settings(tmp_path)
    client.app.dependency_overrides[get_settings] = lambda: settings
    users = make_users(db, city)
    with session_factory(db)() as s:
        from civicloop.org.models import Grid

        grid = s.scalar(select(Grid.id).where(Grid.code == "D01-S01-C01-G1"))  # in the supervisor's district
        request = closed(s, settings, unit_id=city["D01-S01"], citizen_phone=PHONE, citizen_name=NAME, grid_id=grid,
                         citizen_id_number=ID_NUMBER, submitted_by_user_id=users["res"],
                         description="请回电 13912345678，身份证 11010519491231002X")
        s.commit()
        rid, oid = request.id, request.work_orders[-1].id
    pages = {
        "op": ["/operator", f"/case/{rid}", "/ledger"], "disp": ["/dispatch", f"/case/{rid}"],
        "street1": ["/unit", f"/unit/orders/{oid}", "/ledger", "/ledger/export.xlsx"],
        "sup": ["/supervise", f"/supervise/units/{city['D01-S01']}", f"/case/{rid}"],
        "ana": ["/analysis", "/analysis/replies", "/ledger"], "res": ["/resident", f"/resident/requests/{rid}"],
    }
    seen = 0
    for user, paths in pages.items():
        login(client, user)
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, (user, path, response.text[:200])
            content = response.content
            if path.endswith(".xlsx"):
                with zipfile.ZipFile(io.BytesIO(content)) as book:
                    content = b"".join(book.read(n) for n in book.namelist() if n.endswith(".xml"))
            for secret in (PHONE, ID_NUMBER, NAME):
                assert secret.encode() not in content, f"{secret} on {path} for {user}"
            seen += 1
    assert seen == sum(len(paths) for paths in pages.values()) == 17
