"""The web app's pages with FastAPI's TestClient, on SQLite and PostgreSQL: who may open which page
(200 for the right role, the login page for a visitor, 403 for another role, 404 for a record outside
one's scope), the login itself (cookie flags, one message for a wrong name or password, logout revokes,
rate limit), CSRF refusal, escaping of what citizens type, the English switch, error pages.

The end-to-end story in a real browser is tests/test_web_e2e.py; the actions of each role are in
tests/test_web_flows.py.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from civicloop.core.db import session_factory
from civicloop.core.http import SESSION_COOKIE
from civicloop.core.settings import Settings
from tests.conftest import wire
from tests.helpers import dispatched
from tests.web_helpers import PASSWORD, csrf_of, login, make_users, web_settings

PAGES = {
    "/operator": {"op", "admin"},
    "/dispatch": {"disp", "admin"},
    "/unit": {"street1", "admin"},
    "/supervise": {"sup", "admin"},
    "/analysis": {"ana", "sup", "disp", "admin"},
    "/ledger": {"op", "disp", "street1", "sup", "ana", "admin", "grid"},
    "/resident": {"res"},
}
"""Each page and the users (of :data:`tests.web_helpers.USERS`) whose role may open it."""
HOMES = {"op": "/operator", "disp": "/dispatch", "street1": "/unit", "sup": "/supervise", "ana": "/analysis",
         "res": "/resident", "grid": "/ledger", "admin": "/supervise"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The web tests' settings (``web_helpers.web_settings``), in place of conftest's."""
    return web_settings(tmp_path)


def app_client(db: Engine, settings: Settings) -> TestClient:
    """A client on a fresh app with ``settings`` (for tests that need other settings than the fixture's)."""
    from civicloop.app import create_app

    app = create_app()
    wire(app, db, settings)
    return TestClient(app, raise_server_exceptions=False)


def test_a_visitor_is_sent_to_the_login_page(client: TestClient) -> None:
    for path in [*PAGES, "/", "/case/1", "/unit/orders/1", "/resident/requests/1", "/supervise/units/1",
                 "/ledger/export.xlsx?status=closed"]:
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/login?next=" + quote(path, safe=""), path
    posted = client.post("/unit/orders/1/acknowledge", data={}, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"] == "/login?next=%2F"


def test_public_pages_open_without_a_login(client: TestClient) -> None:
    tokens = []
    for path in ("/login", "/submit"):
        page = client.get(path)
        assert page.status_code == 200
        assert '<html lang="zh-CN"' in page.text
        tokens.append(csrf_of(page.text))
    assert tokens[0] == tokens[1] == client.cookies.get("civicloop_csrf")  # the double-submit token, set once


def test_each_role_opens_its_pages_and_no_other(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city)
    for user, home in HOMES.items():
        login(client, user)
        assert client.get("/", follow_redirects=False).headers["location"] == home
        for path, users in PAGES.items():
            page = client.get(path)
            expected = 200 if user in users else 403
            assert page.status_code == expected, (user, path, page.status_code)
            if expected == 403:
                assert "无权访问" in page.text and 'role="alert"' in page.text


def test_the_top_bar_names_the_user_role_and_unit(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("street1",))
    login(client, "street1")
    page = client.get("/unit").text
    assert "street1" in page and "承办人员" in page and "望湖街道" in page
    assert 'aria-current="page"' in page and '<a class="skip" href="#main">' in page


def test_login_cookie_flags_wrong_password_and_logout(db: Engine, city: dict[str, int], settings: Settings) -> None:
    make_users(db, city, only=("op",))
    secure = app_client(db, settings.model_copy(update={"secure_cookies": True}))
    form = secure.get("/login")
    done = secure.post("/login", data={"username": "op", "password": PASSWORD, "csrf_token": csrf_of(form.text),
                                       "next": "/ledger"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/ledger"
    cookie = done.headers["set-cookie"].lower()
    assert f"{SESSION_COOKIE}=" in cookie and "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie

    plain = app_client(db, settings)
    token = csrf_of(plain.get("/login").text)
    for username, password in (("op", "wrong password!"), ("nobody", PASSWORD)):
        refused = plain.post("/login", data={"username": username, "password": password, "csrf_token": token})
        assert refused.status_code == 401
        assert "用户名或密码错误" in refused.text and SESSION_COOKIE not in refused.headers.get("set-cookie", "")
    offsite = plain.post("/login", data={"username": "op", "password": PASSWORD, "csrf_token": token,
                                         "next": "//evil.example/"}, follow_redirects=False)
    assert offsite.headers["location"] == "/operator"  # never to another site
    session_cookie = plain.cookies.get(SESSION_COOKIE)
    csrf = csrf_of(plain.get("/operator").text)
    out = plain.post("/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"].startswith("/login")
    plain.cookies.set(SESSION_COOKIE, session_cookie)  # a copied cookie opens nothing once logged out
    assert plain.get("/operator", follow_redirects=False).status_code == 303


def test_login_is_rate_limited(db: Engine, city: dict[str, int], settings: Settings) -> None:
    limited = app_client(db, settings.model_copy(update={"rate_limit_login": "2/minute"}))
    token = csrf_of(limited.get("/login").text)
    for _ in range(2):
        assert limited.post("/login", data={"username": "x", "password": "y", "csrf_token": token}).status_code == 401
    refused = limited.post("/login", data={"username": "x", "password": "y", "csrf_token": token})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "请求过于频繁" in refused.text and refused.headers["content-type"].startswith("text/html")


def test_every_form_needs_the_csrf_token(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("op",))
    token = login(client, "op")
    call = {"title": "路灯不亮", "description": "三号楼前路灯坏了"}
    for sent in ({}, {"csrf_token": "forged"}):
        refused = client.post("/operator/requests", data={**call, **sent})
        assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.post("/logout", data={}).status_code == 403
    # htmx sends the token as a header (hx-headers on <body>)
    assert client.post("/operator/suggest", data=call, headers={"X-CSRF-Token": token}).status_code == 200
    assert client.post("/operator/requests", data={**call, "csrf_token": token},
                       follow_redirects=False).status_code == 303
    # the public form: the double-submit cookie's token
    client.cookies.clear()
    assert client.post("/submit", data={**call, "csrf_token": "guess"}).status_code == 403
    assert client.post("/login", data={"username": "op", "password": PASSWORD}).status_code == 403


def test_what_a_citizen_types_is_shown_as_text(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("op", "ana"))
    token = login(client, "op")
    script = "<script>alert('x')</script>"
    filed = client.post("/operator/requests", data={
        "title": f"路灯{script}", "description": f"{script} 我的电话 13812345678", "citizen_phone": "13912345678",
        "citizen_name": "张三丰", "csrf_token": token}, follow_redirects=False)
    request_id = int(filed.headers["location"].split("id=")[1])
    for path in (f"/case/{request_id}", "/operator"):
        page = client.get(path).text
        assert script not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
        assert "13812345678" not in page and "13912345678" not in page and "张三丰" not in page
    assert "138****5678" in client.get(f"/case/{request_id}").text
    login(client, "ana")
    assert script not in client.get("/ledger").text


def test_english_by_the_switch(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("op",))
    login(client, "op")
    chinese = client.get("/operator").text
    assert '<html lang="zh-CN"' in chinese and "受理 · 登记来电" in chinese and 'href="/operator?lang=en"' in chinese
    english = client.get("/operator?lang=en")
    assert '<html lang="en"' in english.text and "Intake · take a call" in english.text
    assert "lang=en" in english.headers["set-cookie"]
    assert "Intake · take a call" in client.get("/operator").text  # the cookie keeps it
    bad = client.post("/operator/requests", data={"title": " ", "description": "",
                                                  "csrf_token": csrf_of(english.text)})
    assert bad.status_code == 422 and "Must not be blank" in bad.text
    assert "Not allowed" in client.get("/unit").text
    assert "受理 · 登记来电" in client.get("/operator?lang=zh").text


def test_the_browser_language_chooses_until_the_switch_does(client: TestClient, db: Engine) -> None:
    english_browser = {"Accept-Language": "en-US,en;q=0.9"}
    assert '<html lang="en"' in client.get("/login", headers=english_browser).text
    assert '<html lang="zh-CN"' in client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}).text
    assert '<html lang="zh-CN"' in client.get("/login", headers={"Accept-Language": "fr-FR"}).text  # neither: Chinese
    assert '<html lang="zh-CN"' in client.get("/login").text
    client.get("/login?lang=zh")  # the switch sets the cookie, which wins over the browser from then on
    assert '<html lang="zh-CN"' in client.get("/login", headers=english_browser).text


def test_dates_are_shown_in_shanghai_time(client: TestClient, db: Engine, city: dict[str, int],
                                         settings: Settings) -> None:
    from datetime import UTC, datetime

    make_users(db, city, only=("ana",))
    with session_factory(db)() as session:
        request = dispatched(session, settings, unit_id=city["D01-S01"], now=datetime(2026, 3, 1, 17, 30, tzinfo=UTC))
        session.commit()
    login(client, "ana")
    page = client.get(f"/case/{request.id}").text
    assert "2026-03-02 01:30" in page  # 17:30 UTC is 01:30 the next day in Asia/Shanghai


def test_error_pages_and_the_api_keeps_json(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    make_users(db, city, only=("ana",))
    login(client, "ana")
    missing = client.get("/case/999999")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "诉求不存在" in missing.text
    bad = client.get("/case/abc")
    assert bad.status_code == 422 and "应为整数" in bad.text
    assert client.get("/unit/nothing-here").status_code == 404
    api = client.get("/api/v1/requests/999999")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"


def test_static_files_and_no_pages_in_the_api_schema(client: TestClient) -> None:
    css = client.get("/static/web/app.css")
    assert css.status_code == 200 and "--pico-font-family" in css.text
    assert client.get("/static/web/app.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(path.startswith(("/operator", "/login", "/unit", "/case", "/submit")) for path in paths)


def test_bad_input_is_a_4xx_page_never_a_500(client: TestClient, db: Engine, city: dict[str, int]) -> None:
    """NUL and other control characters (PostgreSQL refuses them in text), huge ids, bad enums."""
    make_users(db, city, only=("op", "disp", "ana"))
    token = csrf_of(client.get("/login").text)
    login_nul = client.post("/login", data={"username": "op\x00", "password": "x\x00", "csrf_token": token,
                                            "next": "/ledger\x00"})
    assert login_nul.status_code == 401
    token = login(client, "op")
    assert client.post("/operator/suggest", data={"title": "路灯\x00", "description": "\x00坏了",
                                                  "csrf_token": token}).status_code == 200
    assert client.post("/operator/requests", data={"title": "路灯\x00", "description": "x",
                                                   "csrf_token": token}).status_code == 422
    assert client.post("/operator/requests/99999999999/accept", data={"csrf_token": token}).status_code == 422
    assert client.post("/operator/requests/1/reject", data={"reason": "lost", "csrf_token": token}).status_code == 404
    token = login(client, "disp")
    for data in ({"category": "城乡\x00建设"}, {"lead_unit": "望湖\x00街道 #99999999999"}, {"lead_unit_id": "1e9"}):
        answer = client.post("/dispatch/1/decide", data={**data, "csrf_token": token})
        assert answer.status_code in (404, 422), (data, answer.status_code)
    login(client, "ana")
    for query in ("category_id=99999999999", "status=%00", "start=%00", "unit_id=-1"):
        assert client.get(f"/ledger?{query}").status_code == 422, query
    assert client.get("/supervise?month=%00").status_code == 403  # an analyst: not their page, whatever the month
