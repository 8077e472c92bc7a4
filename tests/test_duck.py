"""DuckDB reads the operational database (SQLite or PostgreSQL) attached read-only as ``ops``."""

from __future__ import annotations

import duckdb
import pytest
from sqlalchemy import Engine

from civicloop.analytics.duck import AnalyticsUnavailable, attach_clause, connect
from civicloop.core.db import session_factory
from tests.helpers import make_request


def test_duckdb_sees_what_the_loop_stored(db: Engine, city: dict[str, int]) -> None:
    with session_factory(db)() as s:
        for title in ("路灯不亮", "噪声扰民", "路灯不亮"):
            make_request(s, title=title)
        s.commit()
    conn = connect(db.url.render_as_string(hide_password=False))
    rows = conn.execute("SELECT title, count(*) FROM ops.service_requests GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("噪声扰民", 1), ("路灯不亮", 2)]
    with pytest.raises(duckdb.Error):  # read-only: analytics never write to the operational tables
        conn.execute("DELETE FROM ops.service_requests")


def test_unsupported_databases_are_refused() -> None:
    with pytest.raises(AnalyticsUnavailable):
        attach_clause("mysql://root@localhost/test")
    with pytest.raises(AnalyticsUnavailable):
        attach_clause("sqlite:///:memory:")
    assert attach_clause("postgresql://u:p@h:5433/d")[1] == (
        "ATTACH 'dbname=d host=h port=5433 user=u password=p' AS ops (TYPE postgres, READ_ONLY)")
