"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (issue #6, "bad input").

schemathesis (4.x) reads ``/openapi.json`` from the application in-process (ASGI, no socket) and
calls every operation with a bounded number of generated requests, valid and invalid, each
checked for: no 5xx, a documented status code, a documented content type, a body that matches the
documented schema, documented response headers. Runs on SQLite only: a fresh database with the
sample city, shared by the operations of this module (state builds up as it would in use).

Seeded and deterministic (``generation.deterministic``, a fixed ``seed``), so a failure repeats.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from sqlalchemy import select

from civicloop.app import create_app
from civicloop.catalog.service import BUILTIN_TREE, load_tree
from civicloop.core.db import make_engine, session_factory
from civicloop.core.migrate import upgrade
from civicloop.core.settings import Settings
from civicloop.importers.sample_city import build, build_routes
from civicloop.org.models import OrgUnit
from tests.conftest import wire
from tests.helpers import dispatched, make_request

MAX_EXAMPLES = 20
"""Generated requests per operation in the fuzzing phase. With the examples and coverage phases
(boundary values, missing and wrong-typed parameters) about 6,000 requests for 62 operations,
under a minute on one core."""

CONFIG = schemathesis.Config.from_dict({
    "seed": 20260601,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
})


CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
]
"""No 5xx, and every answer documented: its status, content type, body and headers. Not run:
``negative_data_rejection`` (pydantic's lax parsing accepts e.g. ``0.5`` for a date-time as a Unix
time, harmless, and the test would break on each such coercion a schema change brings in) and
``unsupported_method`` (``PUT /routing-rules/resolve`` is ``PUT /routing-rules/{rule_id}`` with a
bad id: 422, not 405). Invalid requests are still generated and sent: their answers must be
documented 4xx. tests/test_bad_input.py checks 405's ``Allow`` header, which this run found missing."""


@pytest.fixture
def caller_headers(role: str) -> dict[str, str]:
    """Who the fuzzer is: ``role`` (an admin, so no operation is refused for its role), named by the
    headers the test settings trust. The one place to change for logins (``{"Authorization":
    "Bearer …"}`` of a user with that role)."""
    return {"X-Civicloop-Actor": "schemathesis", "X-Civicloop-Role": role}


APP = create_app()  # at import: schemathesis reads the schema when the tests are collected
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG)


@pytest.fixture(scope="module", autouse=True)
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Wire ``APP`` to a fresh SQLite database with the sample city, its routing rules and two
    requests (so generated ids sometimes exist); intelligent intake on, without a model."""
    home = tmp_path_factory.mktemp("schemathesis")
    url = f"sqlite:///{home / 'api.db'}"
    upgrade(url)
    engine = make_engine(url)
    test_settings = Settings(_env_file=None, triage_on_intake=True, trust_role_headers=True,  # type: ignore[call-arg]
                             model_path=str(home / "no-model"), rate_limit_intake="100000/minute",
                             rate_limit_login="100000/minute")
    with session_factory(engine)() as s:
        build(s)
        load_tree(s, csv_path=BUILTIN_TREE)
        build_routes(s)
        s.flush()
        unit = s.scalars(select(OrgUnit).order_by(OrgUnit.id)).first()
        assert unit is not None
        make_request(s)
        dispatched(s, test_settings, unit_id=unit.id)
        s.commit()

    wire(APP, engine, test_settings)
    yield
    APP.dependency_overrides.clear()
    engine.dispose()


@schema.parametrize()
@pytest.mark.parametrize("role", ["admin"])  # also gives each operation its own test id (see below)
@settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_every_operation_conforms(case: schemathesis.Case, role: str, caller_headers: dict[str, str]) -> None:
    """Every operation, as ``role``: no 5xx, every answer as documented (``CHECKS``).

    The ``role`` parameter is also what makes the test ids unique under pytest 9 (schemathesis
    4.32 names each operation's item ``…[GET /path]`` but, unparametrized, pytest 9 gives them all
    one node id, and ``make test``'s ``--dist loadgroup`` then runs only one of them)."""
    case.call_and_validate(headers=as_caller(case, caller_headers), checks=CHECKS)


def as_caller(case: schemathesis.Case, caller_headers: dict[str, str]) -> dict[str, str]:
    """The caller's headers to send with ``case``: all of them, except those the case sets itself
    when its headers are the invalid part of a negative case (the app must see those and refuse)."""
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        own = {name.lower() for name in case.headers or {}}
        return {k: v for k, v in caller_headers.items() if k.lower() not in own}
    return caller_headers
