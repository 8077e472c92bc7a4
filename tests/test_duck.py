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


def test_reqs_view_over_the_loop_has_local_times_places_and_no_phone(db: Engine, city: dict[str, int]) -> None:
    from datetime import UTC, datetime

    from civicloop.analytics.sources import COLUMNS, from_operational

    with session_factory(db)() as s:
        make_request(s, lat=39.905, lon=116.405, now=datetime(2026, 7, 1, 16, 30, tzinfo=UTC))
        s.commit()
    conn = connect(db.url.render_as_string(hide_password=False))
    from_operational(conn)
    row = dict(zip(COLUMNS, conn.execute(f"SELECT {', '.join(COLUMNS)} FROM reqs").fetchone(), strict=True))
    assert row["created_at"] == datetime(2026, 7, 2, 0, 30)  # 16:30 UTC is half past midnight in Beijing
    assert row["street"] == "望湖街道" and row["district"] == "云河区" and row["place"] == row["grid"]
    assert row["citizen"] is not None and "1381234" not in row["citizen"]
    assert row["status"] == "submitted" and row["replied_at"] is None


def test_reqs_from_a_teddy_file() -> None:
    from civicloop.analytics.sources import from_teddy_csv
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "teddy2020c" / "messages_with_replies.csv"
    if not path.is_file():
        pytest.skip("shared data not found")
    conn = duckdb.connect()
    assert from_teddy_csv(conn, path) == 2815  # 2,816 rows, one id twice
    replied, named = conn.execute("SELECT count(replied_at), count(lead_unit) FROM reqs").fetchone()
    assert replied == 2815 and named == 796  # the importer's count of replies that name their unit
