"""No answered request lost (issue #6).

* Crash test, PostgreSQL only: a real ``civicloop serve`` takes a stream of submissions from four
  client threads and is killed with SIGKILL in the middle; after a restart, every submission that
  was answered 2xx is in the database as it was answered (request, triage record, history, audit
  entry: one transaction), no stored request is half-written, the audit chain is intact, and the
  server answers again. Its database is one of its own (``CREATE DATABASE``), dropped afterwards,
  so the other tests' database is not disturbed.
* On both backends: the 201 leaves only after the commit (what the crash test first caught).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from civicloop.core import audit
from civicloop.core.db import make_engine, session_factory
from civicloop.core.models import AuditEntry
from civicloop.requests.models import RequestEvent, ServiceRequest, Triage
from tests.conftest import PG_URL, drop_database, own_database

requests = pytest.importorskip("requests")

CLI = str(Path(sys.executable).with_name("civicloop"))
OPERATOR = {"X-Civicloop-Actor": "operator-1", "X-Civicloop-Role": "operator"}
THREADS = 4
KILL_AFTER = 40
"""Answered submissions before the kill (about 2 s of load); the threads keep sending through it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own; yields its URL, drops it afterwards."""
    assert PG_URL
    url = own_database(PG_URL, suffix="_crash")
    yield url
    drop_database(PG_URL, url)


class Server:
    """``civicloop serve`` as a child process on ``port`` against ``env``'s database."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home, self.env, self.port = home, env, port
        self.root = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server and wait (up to 120 s) until ``/healthz`` answers."""
        log = (self.home / "serve.log").open("ab")
        self.process = subprocess.Popen([CLI, "serve", "--port", str(self.port)], cwd=self.home, env=self.env,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{self.root}/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"civicloop serve did not start: {(self.home / 'serve.log').read_text()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no rollback by the server itself."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def submit_until_refused(root: str, prefix: str, acked: dict[str, dict], lock: threading.Lock,
                         stop: threading.Event) -> None:
    """POST distinct submissions until the server stops answering; record each 201's answer by title."""
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        title = f"{prefix}-{n} 路灯不亮"
        try:
            response = session.post(f"{root}/api/v1/requests", headers=OPERATOR, timeout=10, json={
                "title": title, "description": f"{title}：三号楼前路灯坏了一周，夜里很黑。", "channel": "app"})
        except requests.RequestException:
            return  # killed mid-request: this submission's fate is unknown, and may go either way
        assert response.status_code == 201, response.text
        with lock:
            acked[title] = response.json()


def test_a_2xx_is_sent_only_after_the_commit(client, db):
    """The answer's first byte leaves after the transaction is committed: at that moment another
    connection already sees the request (both backends). FastAPI ran ``get_session``'s commit after
    sending until ``DbSession`` asked for ``scope="function"``; this caught it, as the crash test did."""
    seen_at_answer: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 201
            with session_factory(db)() as other:
                seen_at_answer.append(len(other.scalars(select(ServiceRequest.id)).all()))

    body = json.dumps({"title": "小区路灯不亮", "description": "三号楼前路灯坏了一周。"}).encode()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/api/v1/requests", "raw_path": b"/api/v1/requests", "query_string": b"", "root_path": "",
             "server": ("test", 80), "client": ("192.0.2.1", 5000), "state": {},
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *((k.lower().encode(), v.encode()) for k, v in OPERATOR.items())]}
    asyncio.run(client.app(scope, receive, send))
    assert seen_at_answer == [1]


@pytest.mark.skipif(not PG_URL, reason="the crash test needs CIVICLOOP_TEST_POSTGRES_URL")
def test_no_answered_submission_is_lost_when_the_server_is_killed(database, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVICLOOP_")}
    env.update(CIVICLOOP_DATABASE_URL=database, CIVICLOOP_MODEL_PATH=str(tmp_path / "no-model"),
               CIVICLOOP_TRUST_ROLE_HEADERS="true", CIVICLOOP_RATE_LIMIT_INTAKE="100000/minute")
    subprocess.run([CLI, "init"], cwd=tmp_path, env=env, capture_output=True, timeout=300, check=True)
    server = Server(tmp_path, env, free_port())
    acked: dict[str, dict] = {}
    lock, stop = threading.Lock(), threading.Event()
    try:
        server.start()
        threads = [threading.Thread(target=submit_until_refused, args=(server.root, f"t{i}", acked, lock, stop))
                   for i in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(acked) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # with requests of every thread in flight
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(acked) >= KILL_AFTER

        server.start()  # the same database, after the crash
        again = requests.post(f"{server.root}/api/v1/requests", headers=OPERATOR, timeout=30,
                              json={"title": "重启后的诉求", "description": "服务重启后提交。"})
        assert again.status_code == 201, again.text
    finally:
        server.stop()

    engine = make_engine(database)
    try:
        with session_factory(engine)() as s:
            stored = {r.id: r for r in s.scalars(select(ServiceRequest))}
            triaged = {t.request_id: t for t in s.scalars(select(Triage))}
            submitted = {e.request_id for e in s.scalars(select(RequestEvent).where(RequestEvent.action == "submit"))}
            for title, answer in acked.items():  # every answered submission, as it was answered
                request, record = stored[answer["id"]], triaged[answer["id"]]
                assert (request.title, request.description, request.channel, request.status) == (
                    title, f"{title}：三号楼前路灯坏了一周，夜里很黑。", "app", answer["status"])
                assert (record.outcome, record.queued, record.reasons, record.duplicate_of_id) == (
                    answer["triage"]["outcome"], answer["triage"]["queued"], answer["triage"]["reasons"],
                    answer["triage"]["duplicate_of_id"])
            for rid in stored:  # and nothing half-written, answered or not
                assert rid in submitted and rid in triaged, f"request {rid} stored without its history or triage"
            assert len(stored) >= len(acked) + 1
            assert audit.verify(s).ok  # the log's chain is unbroken, and it names every stored submission
            audited = set(s.scalars(select(AuditEntry.subject).where(AuditEntry.action == "submit")))
            assert audited == {f"request:{rid}" for rid in stored}
    finally:
        engine.dispose()
