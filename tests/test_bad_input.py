"""Bad input on intake (issue #6): an oversized body, invalid UTF-8, control characters, script and
SQL payloads. Each gets a clear 4xx naming the field, or is stored harmlessly as the text it is;
a refused submission stores nothing. Also the 405 answer's ``Allow`` header (found by the
schemathesis run, tests/test_schemathesis.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import pytest
import uvicorn
from sqlalchemy import func, select, text

from civicloop.core.db import session_factory
from civicloop.requests.models import ServiceRequest

API = "/api/v1/requests"
OPERATOR = {"X-Civicloop-Actor": "operator-1", "X-Civicloop-Role": "operator"}
JSON = {**OPERATOR, "Content-Type": "application/json"}
BODY = {"title": "小区路灯不亮", "description": "三号楼前路灯坏了一周。"}
MIB = 1024 * 1024


def count(db) -> int:
    with session_factory(db)() as s:
        return s.scalar(select(func.count()).select_from(ServiceRequest))


def padded(size: int) -> bytes:
    """A valid intake body of exactly ``size`` bytes (JSON allows any run of blanks after it)."""
    raw = json.dumps(BODY, ensure_ascii=False).encode()
    return raw + b" " * (size - len(raw))


def test_a_body_over_the_limit_is_413_before_it_is_read(client, db):
    before = count(db)
    refused = client.post(API, content=padded(MIB + 1), headers=JSON)
    assert refused.status_code == 413
    assert refused.json() == {"error": {"code": "too_large", "message": "请求体过大：超过 1048576 字节的上限",
                                        "fields": []}}
    assert refused.headers["connection"] == "close"
    english = client.post(API, content=padded(MIB + 1), headers={**JSON, "Accept-Language": "en"})
    assert english.json()["error"]["message"] == "The request body is too large: the limit is 1048576 bytes"
    assert count(db) == before
    assert client.post(API, content=padded(MIB), headers=JSON).status_code == 201  # the limit itself is allowed


def test_a_chunked_body_is_cut_off_as_it_passes_the_limit(client, db):
    """Without ``Content-Length`` the middleware counts what is read: the app stops being fed at the
    first chunk past 1 MiB, and the answer is the same 413."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b" " * 65536, "more_body": pulled < 64}  # 4 MiB offered

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": API, "raw_path": API.encode(), "query_string": b"", "root_path": "", "server": ("test", 80),
             "client": ("192.0.2.1", 5000), "state": {},
             "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked"),
                         *((k.lower().encode(), v.encode()) for k, v in OPERATOR.items())]}
    asyncio.run(client.app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"]["code"] == "too_large"
    assert pulled == 17  # 16 chunks are exactly 1 MiB; the 17th passes it, and nothing more is read
    streamed = client.post(API, content=(b" " * 65536 for _ in range(32)), headers=JSON)  # via the test client
    assert streamed.status_code == 413
    assert count(db) == 0


def test_over_a_real_socket_the_client_reads_the_413(client, db):
    """uvicorn on a loopback port: a client still sending a 20 MiB body, or a chunked one without
    end, gets the 413 (the server answers early and closes; no reset before the answer)."""
    requests = pytest.importorskip("requests")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}{API}"
        declared = requests.post(url, data=b" " * (20 * MIB), headers=JSON, timeout=30)
        chunked = requests.post(url, data=(b" " * 65536 for _ in range(1024)), headers=JSON, timeout=30)
        for answer in (declared, chunked):
            assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert count(db) == 0


def test_invalid_utf8_is_400_naming_the_body(client, db):
    refused = client.post(API, content=b'{"title": "\xff\xfe\xfd", "description": "x"}', headers=JSON)
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == [
        {"field": "body", "type": "bad_json", "message": "请求体不是有效的 UTF-8 JSON"}]
    assert count(db) == 0


def test_control_characters_are_422_naming_the_field(client, db):
    refused = client.post(API, json={**BODY, "title": "路灯\x00不亮"}, headers=OPERATOR)
    assert refused.status_code == 422
    assert refused.json()["error"]["fields"] == [
        {"field": "title", "type": "control_chars", "message": "含有不可见的控制字符"}]
    assert count(db) == 0


def test_a_script_payload_is_stored_as_text_and_returned_as_a_json_string(client, db):
    """The API stores and returns the characters as they came; it is the pages' job to escape them
    on output (Jinja2's autoescape; docs/security.md), as Open311's XML already does."""
    script = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    filed = client.post(API, json={"title": script, "description": f"描述 {script} &amp; </textarea>"},
                        headers=OPERATOR)
    assert filed.status_code == 201 and filed.headers["content-type"] == "application/json"
    rid = filed.json()["id"]
    assert filed.json()["title"] == script
    assert b"<script>" in filed.content  # a JSON string: the client's renderer must escape it, not the API
    read = client.get(f"{API}/{rid}", headers=OPERATOR).json()
    assert (read["title"], read["description"]) == (script, f"描述 {script} &amp; </textarea>")
    xml = client.get(f"/open311/v2/requests/{rid}.xml").content.decode()
    assert "<script>" not in xml and "&lt;script&gt;" in xml


def test_sql_metacharacters_are_stored_harmlessly_and_read_back_byte_equal(client, db):
    title = "'; DROP TABLE service_requests; --"
    description = "\" OR 1=1 -- ; DELETE FROM audit_log; /* 50% _off_ */ \\' \\\\ `x` $$ $1 %s {0}"
    filed = client.post(API, json={"title": title, "description": description, "address": "1' OR '1'='1"},
                        headers=OPERATOR)
    assert filed.status_code == 201, filed.text
    rid = filed.json()["id"]
    read = client.get(f"{API}/{rid}", headers=OPERATOR).json()
    assert (read["title"], read["description"], read["address"]) == (title, description, "1' OR '1'='1")
    with session_factory(db)() as s:  # and in the table itself, which still exists
        stored = s.execute(text("SELECT title, description FROM service_requests WHERE id = :id"),
                           {"id": rid}).one()
        assert (stored.title.encode(), stored.description.encode()) == (title.encode(), description.encode())
    assert count(db) == 1


def test_a_405_names_every_method_of_the_path(client):
    """RFC 9110 §15.5.6: a 405 carries ``Allow``. It was missing (the error handler dropped it), and
    Starlette named only the first route on the path (``POST`` for ``/api/v1/requests``)."""
    refused = client.delete(API, headers={**OPERATOR, "Accept-Language": "en"})
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"
    assert refused.json()["error"] == {"code": "method", "message": "This address does not support the method DELETE",
                                       "fields": []}
    assert client.patch("/api/v1/places/1", headers=OPERATOR).headers["allow"] == "GET, PUT, DELETE"
    open311 = client.delete("/open311/v2/requests.json")
    assert (open311.status_code, open311.headers["allow"]) == (405, "GET, POST")
    assert open311.json()[0]["code"] == 405


def test_the_decisions_export_is_documented_as_csv(client):
    """The schemathesis run found ``text/csv`` answered where the schema said JSON."""
    documented = client.get("/openapi.json").json()["paths"]["/api/v1/triage/decisions.csv"]["get"]
    assert list(documented["responses"]["200"]["content"]) == ["text/csv"]
    answer = client.get("/api/v1/triage/decisions.csv", headers={"X-Civicloop-Role": "admin"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
