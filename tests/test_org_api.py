"""Handling units over HTTP: creation by an admin, and its bad input."""

from __future__ import annotations

from sqlalchemy import func, select

from civicloop.org.models import OrgUnit

ADMIN = {"X-Civicloop-Role": "admin"}


def test_admin_creates_a_unit_under_a_parent(client, city, session):
    body = {"code": "DEP-XF", "name": "消防救援支队", "kind": "department", "parent_id": city["D01"]}
    response = client.post("/api/v1/units", json=body, headers=ADMIN)
    assert response.status_code == 201
    assert (response.json()["name"], response.json()["parent_id"]) == ("消防救援支队", city["D01"])


def test_a_taken_code_is_a_field_error_in_both_languages(client, city, session):
    before = session.scalar(select(func.count()).select_from(OrgUnit))
    session.rollback()  # an SQLite transaction holds the write lock (BEGIN IMMEDIATE): release it
    body = {"code": "D01-S01-C02", "name": "重名", "kind": "community"}
    zh = client.post("/api/v1/units", json=body, headers=ADMIN)
    en = client.post("/api/v1/units", json=body, headers={**ADMIN, "Accept-Language": "en"})
    assert (zh.status_code, en.status_code) == (422, 422)
    assert zh.json()["error"]["fields"] == [
        {"field": "code", "type": "v.code_taken", "message": "编码已被使用：D01-S01-C02"}]
    assert en.json()["error"]["fields"][0]["message"] == "Code already in use: D01-S01-C02"
    assert session.scalar(select(func.count()).select_from(OrgUnit)) == before


def test_only_an_admin_creates_units(client, city):
    body = {"code": "DEP-YY", "name": "某局", "kind": "department"}
    assert client.post("/api/v1/units", json=body, headers={"X-Civicloop-Role": "dispatcher"}).status_code == 403
    unknown_parent = client.post("/api/v1/units", json={**body, "parent_id": 999999}, headers=ADMIN)
    assert unknown_parent.status_code == 422
    assert unknown_parent.json()["error"]["fields"][0]["field"] == "parent_id"
