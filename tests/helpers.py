"""Small explicit helpers that build test data through the real services."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.intelligence.data import shared_data_dir
from civicloop.requests import closing, handling, intake
from civicloop.requests.models import Channel, Satisfaction, ServiceRequest
from civicloop.requests.service import Actor

CLASSIFIER_TESTS = [
    pytest.mark.skipif(
        shared_data_dir() is None,
        reason="shared data folder teddy2020c/ not found (set CIVICLOOP_SHARED_DATA or place ../shared/data)",
    ),
    pytest.mark.xdist_group("classifier"),
]
"""``pytestmark`` of the modules that use the trained classifier: skipped without the shared data, and kept on
one xdist worker (``--dist loadgroup``), which trains the model once (``conftest.trained_classifier``)."""
CLI = str(Path(sys.executable).with_name("civicloop"))
"""The ``civicloop`` command of this environment."""


def run_cli(*args: str, db: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``civicloop ARGS`` as a user does: a real process on the SQLite file ``db`` (in ``cwd``, default
    ``db``'s folder), with ``env`` added to the environment; returns the finished process (text output)."""
    full = {**os.environ, "CIVICLOOP_DATABASE_URL": f"sqlite:///{db}", "COLUMNS": "120", **(env or {})}
    return subprocess.run([CLI, *args], cwd=cwd or db.parent, env=full, capture_output=True, text=True,
                          timeout=timeout)


UNIT_OF_LABEL = {"交通运输": "DEP-JT", "教育文体": "DEP-JY", "劳动和社会保障": "DEP-RS", "卫生计生": "DEP-WJ",
                 "商贸旅游": "DEP-SW"}
"""The sample city's routing table (``importers.sample_city.build_routes``) sends these first-level labels
to a fixed city department (tests of intelligent intake)."""

OPERATOR = Actor("operator-1", Role.OPERATOR)
DISPATCHER = Actor("dispatcher-1", Role.DISPATCHER)
HANDLER = Actor("handler-1", Role.HANDLER)
SUPERVISOR = Actor("supervisor-1", Role.SUPERVISOR)


def make_request(session: Session, *, now: datetime | None = None, **overrides: Any) -> ServiceRequest:
    """Submit a request with plausible defaults; ``overrides`` replace any ``NewRequest`` field."""
    fields: dict[str, Any] = {
        "channel": Channel.HOTLINE, "title": "小区路灯不亮", "description": "三号楼前路灯坏了一周，夜里很黑。",
        "citizen_name": "张三", "citizen_phone": "13812341234", "address": "望湖街道第一社区三号楼",
    }
    fields.update(overrides)
    return intake.submit(session, data=intake.NewRequest(**fields), actor=OPERATOR, now=now)


def dispatched(
    session: Session, settings: Settings, *, unit_id: int, now: datetime | None = None,
    assisting: tuple[int, ...] = (), **overrides: Any,
) -> ServiceRequest:
    """A request submitted, accepted and dispatched to ``unit_id``."""
    request = make_request(session, now=now, **overrides)
    intake.accept(session, request_id=request.id, actor=OPERATOR, now=now)
    return intake.dispatch(session, request_id=request.id, actor=DISPATCHER, lead_unit_id=unit_id,
                           assisting_unit_ids=assisting, settings=settings, now=now)


def replied(
    session: Session, settings: Settings, *, unit_id: int, now: datetime | None = None, **overrides: Any
) -> ServiceRequest:
    """A request driven up to the lead unit's reply."""
    request = dispatched(session, settings, unit_id=unit_id, now=now, **overrides)
    order = request.work_orders[-1]
    handling.acknowledge(session, work_order_id=order.id, actor=HANDLER, settings=settings, now=now)
    handling.reply(session, work_order_id=order.id, actor=HANDLER, text="已修复路灯。", now=now)
    return request


def closed(
    session: Session, settings: Settings, *, unit_id: int, resolved: bool = True,
    satisfaction: Satisfaction = Satisfaction.SATISFIED, now: datetime | None = None, **overrides: Any,
) -> ServiceRequest:
    """A request driven through callback."""
    request = replied(session, settings, unit_id=unit_id, now=now, **overrides)
    return closing.callback(session, request_id=request.id, actor=OPERATOR, resolved=resolved,
                            satisfaction=satisfaction, settings=settings, now=now)


@contextmanager
def serving(cli: str, home: Path, env: dict[str, str], workers: int = 1) -> Iterator[str]:
    """Run ``civicloop serve --workers N`` (the ``cli`` executable) on a free port in ``home`` with ``env``
    until the block ends; yields its root URL once ``/healthz`` answers (fails the test after 120 s)."""
    import socket
    import subprocess
    import time

    import httpx
    import pytest

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (home / "serve.log").open("w")
    process = subprocess.Popen([cli, "serve", "--port", str(port), "--workers", str(workers)], cwd=home, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{root}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"civicloop serve did not start: {(home / 'serve.log').read_text()}")
            time.sleep(0.3)
        yield root
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
