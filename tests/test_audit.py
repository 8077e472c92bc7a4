"""The tamper-evident audit log (issue #6): the loop and admin changes write a hash chain that
``verify`` re-computes; editing, deleting, inserting or reordering an entry is named by its seq."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text

from civicloop.core import audit
from civicloop.core.db import make_engine, session_factory
from civicloop.core.migrate import upgrade
from civicloop.core.models import AuditEntry
from civicloop.requests.models import RequestEvent
from tests.helpers import closed

T0 = datetime(2025, 9, 30, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
CLI = str(Path(sys.executable).with_name("civicloop"))
ADMIN = {"X-Civicloop-Actor": "admin-li", "X-Civicloop-Role": "admin"}


def entries(db) -> list[AuditEntry]:
    with session_factory(db)() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def verify(db, **kwargs) -> audit.VerifyResult:
    with session_factory(db)() as s:
        return audit.verify(s, **kwargs)


def loop_run(db, settings, city) -> int:
    """One request driven from submission to close; returns the number of audit entries."""
    with session_factory(db)() as s:
        closed(s, settings, unit_id=city["D01-S01"], now=T0)
        s.commit()
    return len(entries(db))


def run_sql(db, sql: str, **params) -> None:
    with db.begin() as conn:
        conn.execute(text(sql), params)


# --- the rule ----------------------------------------------------------------------------------


def test_hash_is_sha256_over_prev_hash_and_the_canonical_encoding():
    at = datetime(2026, 5, 1, 8, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    got = audit.entry_hash(seq=1, at=at, actor="张三", role="admin", action="x", subject="request:1",
                           data={"b": 1, "a": [1, "é"]}, prev_hash=audit.GENESIS)
    body = ('{"action":"x","actor":"张三","at":"2026-05-01T00:30:00.000000Z","data":{"a":[1,"é"],"b":1},'
            f'"prev_hash":"{audit.GENESIS}","role":"admin","seq":1,"subject":"request:1"}}')
    assert got == hashlib.sha256((audit.GENESIS + body).encode("utf-8")).hexdigest()


# --- what is written ---------------------------------------------------------------------------


def test_a_loop_run_writes_one_entry_per_transition_in_one_valid_chain(db, settings, city):
    count = loop_run(db, settings, city)
    rows = entries(db)
    with session_factory(db)() as s:
        events = list(s.scalars(select(RequestEvent).order_by(RequestEvent.id)))
    assert count == len(events) >= 6
    assert [r.seq for r in rows] == list(range(1, count + 1))
    assert rows[0].prev_hash == audit.GENESIS
    assert [r.action for r in rows] == [e.action for e in events]
    assert {r.subject for r in rows} == {f"request:{events[0].request_id}"}
    assert rows[0].data["to"] == "submitted" and rows[-1].data["to"] == "closed"
    assert rows[0].actor == "operator-1" and rows[0].role == "operator"
    result = verify(db)
    assert result.ok and result.checked == count and result.last_hash == rows[-1].hash


def test_admin_changes_are_audited_with_the_caller(client, db, city):
    rule = client.post("/api/v1/routing-rules", headers=ADMIN,
                       json={"lead_target": "unit", "lead_unit_id": city["D01-S01"], "category_id": None})
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["id"]
    assert client.delete(f"/api/v1/routing-rules/{rule_id}", headers=ADMIN).status_code == 204
    category = next(v for k, v in city.items() if k.startswith("cat:"))
    assert client.put(f"/api/v1/categories/{category}/tier", headers=ADMIN,
                      json={"deadline_tier": "24h"}).status_code == 200
    unit = client.post("/api/v1/units", headers=ADMIN, json={"code": "X9", "name": "测试物业", "kind": "property"})
    assert unit.status_code == 201, unit.text
    place = client.post("/api/v1/places", headers=ADMIN, json={"name": "翠湖花园", "kind": "estate",
                                                               "district_id": city["D01"]})
    assert place.status_code == 201, place.text
    place_id = place.json()["id"]
    assert client.put(f"/api/v1/places/{place_id}", headers=ADMIN,
                      json={"name": "翠湖名苑", "kind": "estate", "district_id": city["D01"]}).status_code == 200
    assert client.delete(f"/api/v1/places/{place_id}", headers=ADMIN).status_code == 204
    assert client.put("/api/v1/calendar/years/2031", headers=ADMIN,
                      json={"days": [{"date": "2031-01-01", "working": False, "name": "元旦"}]}).status_code == 200
    rows = entries(db)
    assert [(r.action, r.subject) for r in rows] == [
        ("create_routing_rule", f"routing_rule:{rule_id}"), ("delete_routing_rule", f"routing_rule:{rule_id}"),
        ("set_tier", f"category:{category}"), ("create_unit", f"unit:{unit.json()['id']}"),
        ("create_place", f"place:{place_id}"), ("update_place", f"place:{place_id}"),
        ("delete_place", f"place:{place_id}"), ("enter_calendar", "calendar:2031"),
    ]
    assert {(r.actor, r.role) for r in rows} == {("admin-li", "admin")}
    assert rows[2].data["to"] == "24h" and rows[6].data["name"] == "翠湖名苑"


def test_a_refused_transition_or_a_rolled_back_savepoint_leaves_no_entry(db, settings, city):
    with session_factory(db)() as s:
        audit.enqueue(s, actor="a", role="admin", action="kept", subject="x:1")
        try:
            with s.begin_nested():
                audit.enqueue(s, actor="a", role="admin", action="undone", subject="x:2")
                raise RuntimeError
        except RuntimeError:
            pass
        with s.begin_nested():
            audit.enqueue(s, actor="a", role="admin", action="released", subject="x:3")
        assert audit.pending(s) == 2
        s.commit()
    with session_factory(db)() as s:
        audit.enqueue(s, actor="a", role="admin", action="rolled_back", subject="x:4")
        s.rollback()
        assert audit.pending(s) == 0
    assert [r.action for r in entries(db)] == ["kept", "released"]


# --- tampering ---------------------------------------------------------------------------------


def test_editing_a_data_field_is_named(db, settings, city):
    loop_run(db, settings, city)
    forged = json.dumps({"from": "accepted", "to": "closed"})
    cast = "CAST(:d AS json)" if db.dialect.name == "postgresql" else ":d"
    run_sql(db, f"UPDATE audit_log SET data = {cast} WHERE seq = 3", d=forged)
    result = verify(db)
    assert not result.ok and (result.first_bad_seq, result.problem) == (3, "edited")


def test_editing_the_actor_is_named(db, settings, city):
    loop_run(db, settings, city)
    run_sql(db, "UPDATE audit_log SET actor = 'someone-else' WHERE seq = 5")
    assert (verify(db).first_bad_seq, verify(db).problem) == (5, "edited")


def test_deleting_an_entry_is_named(db, settings, city):
    loop_run(db, settings, city)
    run_sql(db, "DELETE FROM audit_log WHERE seq = 3")
    result = verify(db)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, "deleted")


def test_inserting_a_forged_entry_is_named(db, settings, city):
    """The forger renumbers the tail to make room and links the forgery correctly to its
    predecessor; the next entry still points past it."""
    loop_run(db, settings, city)
    run_sql(db, "UPDATE audit_log SET seq = -seq - 1 WHERE seq >= 3")
    run_sql(db, "UPDATE audit_log SET seq = -seq WHERE seq < 0")
    prev = next(r for r in entries(db) if r.seq == 2)
    at = datetime(2025, 9, 30, 2, 0, tzinfo=UTC)
    fields = {"seq": 3, "at": at, "actor": "forger", "role": "admin", "action": "reject", "subject": prev.subject,
              "data": {"to": "rejected"}, "prev_hash": prev.hash}
    digest = audit.entry_hash(**fields)
    cast = "CAST(:data AS json)" if db.dialect.name == "postgresql" else ":data"
    run_sql(db, "INSERT INTO audit_log (seq, at, actor, role, action, subject, data, prev_hash, hash) "
                f"VALUES (:seq, :at, :actor, :role, :action, :subject, {cast}, :prev_hash, :hash)",
            **{**fields, "at": at if db.dialect.name == "postgresql" else at.replace(tzinfo=None),
               "data": json.dumps(fields["data"]), "hash": digest})
    result = verify(db)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, "inserted")


def test_swapping_two_entries_is_named(db, settings, city):
    loop_run(db, settings, city)
    run_sql(db, "UPDATE audit_log SET seq = -1 WHERE seq = 3")
    run_sql(db, "UPDATE audit_log SET seq = 3 WHERE seq = 4")
    run_sql(db, "UPDATE audit_log SET seq = 4 WHERE seq = -1")
    result = verify(db)
    assert (result.ok, result.first_bad_seq, result.problem) == (False, 3, "reordered")


def test_a_rehashed_edit_breaks_the_link_to_the_next_entry(db, settings, city):
    loop_run(db, settings, city)
    row = next(r for r in entries(db) if r.seq == 2)
    digest = audit.entry_hash(seq=2, at=row.at, actor="forger", role=row.role, action=row.action,
                              subject=row.subject, data=row.data, prev_hash=row.prev_hash)
    run_sql(db, "UPDATE audit_log SET actor = 'forger', hash = :h WHERE seq = 2", h=digest)
    result = verify(db)
    assert not result.ok and result.first_bad_seq == 3 and result.problem == "broken_link"


def test_a_cut_tail_is_found_against_the_published_head(db, settings, city):
    count = loop_run(db, settings, city)
    head = entries(db)[-1]
    run_sql(db, "DELETE FROM audit_log WHERE seq = :s", s=count)
    assert verify(db).ok  # the chain alone cannot see its own end cut off
    result = verify(db, anchors={head.seq: head.hash})
    assert (result.ok, result.first_bad_seq, result.problem) == (False, count, "deleted")


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_appends_leave_one_unbroken_chain(db):
    """Two threads append 20 entries each, one transaction per entry, released together. On
    PostgreSQL the advisory lock orders them, on SQLite ``BEGIN IMMEDIATE`` does."""
    barrier = threading.Barrier(2)

    def writer(name: str) -> int:
        barrier.wait(timeout=30)
        for i in range(20):
            with session_factory(db)() as s:
                audit.enqueue(s, actor=name, role="system", action="tick", subject=f"{name}:{i}")
                s.commit()
        return 20

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert sum(f.result(timeout=120) for f in [pool.submit(writer, n) for n in ("a", "b")]) == 40
    rows = entries(db)
    assert [r.seq for r in rows] == list(range(1, 41))
    assert {r.actor for r in rows} == {"a", "b"}
    result = verify(db)
    assert result.ok and result.checked == 40


# --- publishing and the command ----------------------------------------------------------------


def test_day_hash_is_the_last_entry_of_the_local_day(db):
    shanghai = ZoneInfo("Asia/Shanghai")
    with session_factory(db)() as s:
        for hour in (1, 23):  # 01:00 and 23:00 local on 1 May; 23:00 local is 15:00 UTC
            audit.append(s, actor="a", role="admin", action="x", subject="x:1",
                         now=datetime(2026, 5, 1, hour, tzinfo=shanghai))
        audit.append(s, actor="a", role="admin", action="x", subject="x:1",
                     now=datetime(2026, 5, 2, 0, 30, tzinfo=shanghai))
        s.commit()
        first, second = audit.day_hash(s, day=date(2026, 5, 1)), audit.day_hash(s, day=date(2026, 5, 2))
        empty = audit.day_hash(s, day=date(2026, 5, 3))
    rows = entries(db)
    assert (first.entries, first.first_seq, first.last_seq, first.last_hash) == (2, 1, 2, rows[1].hash)
    assert (second.entries, second.last_seq) == (1, 3)
    assert (empty.entries, empty.last_hash) == (0, None)


def _cli(*args: str, db: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.run([CLI, "audit", *args], env=env, capture_output=True, text=True, timeout=120)


def test_cli_verifies_exports_and_names_the_tampered_entry(tmp_path):
    path = tmp_path / "audit.db"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    with session_factory(engine)() as s:
        for i in range(5):
            audit.append(s, actor="cli-test", role="admin", action="x", subject=f"x:{i}",
                         now=datetime(2026, 5, 1, 2, i, tzinfo=UTC))
        s.commit()
    ok = _cli("verify", db=path)
    assert ok.returncode == 0, ok.stderr
    assert "审计日志完整" in ok.stdout and "Audit log intact: 5 entries" in ok.stdout
    exported = _cli("export", "--day", "2026-05-01", db=path)
    assert exported.returncode == 0, exported.stderr
    head = json.loads(exported.stdout)
    assert head["entries"] == 5 and head["last_seq"] == 5 and len(head["last_hash"]) == 64
    assert _cli("verify", "--anchor", f"5:{head['last_hash']}", db=path).returncode == 0
    assert _cli("export", "--day", "2026-13-01", db=path).returncode == 2
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET subject = 'x:99' WHERE seq = 4"))
    engine.dispose()
    bad = _cli("verify", db=path)
    assert bad.returncode == 1
    assert "审计日志第 4 条被篡改" in bad.stderr and "Audit entry #4 was edited" in bad.stderr
    assert json.loads(bad.stdout)["first_bad_seq"] == 4


def test_entries_count_matches_events_after_api_run(client, db, city):
    """Through HTTP too: one committed submission, one entry."""
    made = client.post("/api/v1/requests", json={"title": "路灯不亮", "description": "三号楼前路灯坏了。"})
    assert made.status_code == 201, made.text
    with session_factory(db)() as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
    assert verify(db).ok
