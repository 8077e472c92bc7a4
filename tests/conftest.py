"""Test fixtures: a real database built by the migrations, on SQLite and (when
``CIVICLOOP_TEST_POSTGRES_URL`` is set) on PostgreSQL; tables are emptied after every test.

Every test that asks for ``engine`` (or anything built on it) runs once per backend.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from civicloop.catalog.service import BUILTIN_TREE, load_tree
from civicloop.core.db import Base, make_engine, session_factory
from civicloop.core.http import get_session
from civicloop.core.migrate import upgrade
from civicloop.core.registry import metadata
from civicloop.core.settings import Settings, get_settings
from civicloop.importers.sample_city import build

PG_URL = os.environ.get("CIVICLOOP_TEST_POSTGRES_URL")
# fixed test keys for the citizen's contact at rest (core.crypto), so no key file is written by the tests
os.environ.setdefault("CIVICLOOP_DATA_KEYS", "dGVzdC1rZXktb2YtY2l2aWNsb29wLXRlc3RzLTMyYiE=")
os.environ.setdefault("CIVICLOOP_DATA_INDEX_KEY", "aW5kZXgta2V5LW9mLWNpdmljbG9vcC10ZXN0cy0zMmI=")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


def own_database(url: str, suffix: str = "") -> str:
    """Create a database of this test process's own and return its URL, so parallel workers (and
    parallel runs) never truncate each other's tables. Dropped again by :func:`drop_database`."""
    base, _, name = url.rpartition("/")
    own = f"{name}{suffix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{own}"'))
        conn.execute(text(f'CREATE DATABASE "{own}"'))
    admin.dispose()
    return f"{base}/{own}"


def drop_database(admin_url: str, url: str) -> None:
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """An engine on a schema freshly built by ``alembic upgrade head``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    else:
        assert PG_URL
        url = own_database(PG_URL)
    upgrade(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()
    if request.param == "postgresql":
        assert PG_URL
        drop_database(PG_URL, url)


def empty_tables(engine: Engine) -> None:
    """Delete every row of every table (TRUNCATE … RESTART IDENTITY on PostgreSQL)."""
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))


@pytest.fixture
def db(engine: Engine) -> Iterator[Engine]:
    """The engine, with every table emptied after the test."""
    yield engine
    empty_tables(engine)


@pytest.fixture
def settings() -> Settings:
    """Default settings, except that intelligent intake is off: these tests drive the loop by hand
    (tests/test_triage.py switches it on, with a model of its own), and callers name their role with
    headers (tests/test_access.py turns that off and logs in). Rate limits are far above what any
    test sends (tests/test_ratelimit.py sets its own), so no test is refused for its pace."""
    return Settings(_env_file=None, triage_on_intake=False, trust_role_headers=True,  # type: ignore[call-arg]
                    rate_limit_intake="100000/minute", rate_limit_login="100000/minute")


@pytest.fixture(scope="session")
def trained_classifier() -> object:
    """The shipped classifier trained once per test process on the training part of the fixed split
    (about 40 s). Tests that use it share the xdist group ``classifier``, so one worker trains it."""
    from civicloop.intelligence import classifier
    from civicloop.intelligence.data import load_split, shared_data_dir

    if shared_data_dir() is None:
        pytest.skip("shared data folder teddy2020c/ not found")
    return classifier.train(load_split().train, method=classifier.OURS)


@pytest.fixture(scope="module")
def model_file(trained_classifier: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared classifier (:func:`trained_classifier`) saved as a model file, once per test module."""
    from civicloop.intelligence import model_store

    path = tmp_path_factory.mktemp("model") / "classifier.joblib"
    metadata = model_store.make_metadata(trained_classifier, fingerprint="0" * 64, metrics={})  # type: ignore[arg-type]
    return model_store.save(trained_classifier, metadata, path)  # type: ignore[arg-type]


@pytest.fixture
def session(db: Engine) -> Iterator[Session]:
    """A session on the test database; the test decides whether to commit."""
    s = session_factory(db)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def city(db: Engine) -> dict[str, int]:
    """The sample city and the built-in category tree, committed. Returns ids by unit code, plus
    ``cat:<path>`` for categories."""
    from sqlalchemy import select

    from civicloop.catalog.models import Category
    from civicloop.org.models import OrgUnit

    with session_factory(db)() as s:
        build(s)
        load_tree(s, csv_path=BUILTIN_TREE)
        s.commit()
        ids = {u.code: u.id for u in s.scalars(select(OrgUnit))}
        ids.update({f"cat:{c.path}": c.id for c in s.scalars(select(Category))})
    return ids


@pytest.fixture
def routed_city(city: dict[str, int], db: Engine) -> dict[str, int]:
    """The sample city with its routing table (``importers.sample_city.build_routes``), committed."""
    from civicloop.importers.sample_city import build_routes

    with session_factory(db)() as s:
        assert build_routes(s) > 0
        s.commit()
    return city


@pytest.fixture
def client(db: Engine, settings: Settings) -> Iterator[TestClient]:
    """An HTTP client on the app, wired to the test database."""
    from civicloop.app import create_app

    app = create_app()
    wire(app, db, settings)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def wire(app: object, engine: Engine, settings: Settings) -> None:
    """Point ``app``'s request sessions at ``engine`` (commit at the end, roll back on error, as
    ``core.http.get_session`` does) and its settings at ``settings``."""

    def _session() -> Iterator[Session]:
        s = session_factory(engine)()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    app.dependency_overrides[get_session] = _session  # type: ignore[attr-defined]
    app.dependency_overrides[get_settings] = lambda: settings  # type: ignore[attr-defined]


SHARED_DATA = Path(os.environ.get("CIVICLOOP_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


__all__ = ["SHARED_DATA", "Base"]
