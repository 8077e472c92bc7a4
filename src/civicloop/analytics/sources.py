"""The one shape every finder reads: a DuckDB view ``reqs`` with one row per request.

Finders (hotspots, surges, co-occurrence, asset alerts, reply quality) are SQL and numpy over
``reqs``, whatever the requests came from:

* :func:`from_operational` — the loop's own tables (``ops.*``, see ``analytics.duck.connect``);
* :func:`from_teddy_csv` — a Teddy Cup 2020 C file read by path (``messages_with_votes.csv``,
  ``messages_with_replies.csv``, ``messages_labelled.csv``), places found by the data set's name
  patterns (``intelligence.place_patterns``).

Columns of ``reqs`` (``NULL`` where the source does not know):

=================  =========  ==========================================================================
id                 BIGINT     request id (the message id for a Teddy file)
title, description VARCHAR
created_at         TIMESTAMP  local wall-clock time of filing (Asia/Shanghai by default), no zone
category           VARCHAR    category path (``城乡建设/市政设施/路灯不亮``); the label for Teddy files
category1          VARCHAR    its first level
district, street   VARCHAR    names
grid               VARCHAR    grid name (operational only)
district_id, street_id, grid_id  BIGINT   operational ids
place              VARCHAR    the finest place known: grid, else estate/road/street named in the text
                              (Teddy), else street, else district
support_count      INTEGER    upvotes / repeats counted on the request (≥ 0)
citizen            VARCHAR    a pseudonymous key for counting distinct people (user id, or the blind
                              index of the phone number, ``core.crypto.citizen_key``); never the phone
status             VARCHAR    loop status (``replied`` for a Teddy message with a reply, else ``submitted``)
lead_unit          VARCHAR    name of the lead unit (the unit a Teddy reply names)
replied_at         TIMESTAMP  local time of the lead unit's reply
reply_text         VARCHAR
channel            VARCHAR
=================  =========  ==========================================================================
"""

from __future__ import annotations

import csv
import hashlib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from civicloop.analytics.duck import has_table
from civicloop.core.timeutil import parse_time
from civicloop.intelligence.place_patterns import find_places, find_unit

COLUMNS = ("id", "title", "description", "created_at", "category", "category1", "district", "street", "grid",
           "district_id", "street_id", "grid_id", "place", "support_count", "citizen", "status", "lead_unit",
           "replied_at", "reply_text", "channel")


def from_operational(conn: duckdb.DuckDBPyConnection, *, timezone: str = "Asia/Shanghai") -> None:
    """Create the view ``reqs`` over the attached operational tables (schema ``ops``).

    Times are stored in UTC (naive on SQLite, ``timestamptz`` on PostgreSQL) and shown as local time in
    ``timezone``. ``citizen`` is the request's ``citizen_key`` (the phone's keyed blind index; no
    phone: ``NULL``). ``place`` is the grid name, else the place label intake found (``triages.place``), else the
    street, else the district (Parquet snapshots carry no triage records: no label there). Raises
    ``duckdb.Error`` when the tables are missing (run ``civicloop init``)."""
    zone = timezone.replace("'", "''")
    place_label = "nullif(json_extract_string(t.place, '$.label'), '')" if has_table(conn, "triages") else "NULL"
    triage_join = "LEFT JOIN ops.triages t ON t.request_id = r.id" if has_table(conn, "triages") else ""

    def local(column: str) -> str:
        return f"timezone('{zone}', CAST({column} AS TIMESTAMP) AT TIME ZONE 'UTC')"

    conn.execute(f"""
        CREATE OR REPLACE VIEW reqs AS
        WITH lead AS (
            SELECT request_id, max(replied_at) AS replied_at, max(reply_text) AS reply_text, max(unit_id) AS unit_id
            FROM ops.work_orders WHERE role = 'lead' AND replied_at IS NOT NULL GROUP BY request_id
        )
        SELECT r.id::BIGINT AS id, r.title, r.description, {local('r.created_at')} AS created_at,
               c.path AS category, split_part(c.path, '/', 1) AS category1,
               d.name AS district, s.name AS street, g.name AS grid,
               r.district_id::BIGINT AS district_id, r.street_id::BIGINT AS street_id, r.grid_id::BIGINT AS grid_id,
               coalesce(g.name, {place_label}, s.name, d.name) AS place,
               r.support_count::INTEGER AS support_count,
               r.citizen_key AS citizen,
               r.status, u.name AS lead_unit,
               CASE WHEN lead.replied_at IS NULL THEN NULL ELSE {local('lead.replied_at')} END AS replied_at,
               lead.reply_text, r.channel
        FROM ops.service_requests r
        LEFT JOIN ops.categories c ON c.id = r.category_id
        LEFT JOIN ops.org_units d ON d.id = r.district_id
        LEFT JOIN ops.org_units s ON s.id = r.street_id
        LEFT JOIN ops.grids g ON g.id = r.grid_id
        {triage_join}
        LEFT JOIN lead ON lead.request_id = r.id
        LEFT JOIN ops.org_units u ON u.id = coalesce(lead.unit_id, r.lead_unit_id)
    """)


def _local(text: str, tz: ZoneInfo) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    return parse_time(text, tz).replace(tzinfo=None)


def teddy_rows(path: Path, *, timezone: str = "Asia/Shanghai") -> pa.Table:
    """Read a Teddy Cup 2020 C message file into an Arrow table with the columns of ``reqs``.

    Reads ``message_id``, ``user_id``, ``title``, ``created_at``, ``detail`` and, where present,
    ``label``, ``upvotes``, ``reply``, ``replied_at``. Places come from the title and body
    (``find_places``: estate, else road, else street, else district, as ``place``); the lead unit is the
    unit the reply names (``find_unit``). Rows with an unreadable time are skipped. Raises
    ``FileNotFoundError`` for a missing file, ``ValueError`` when a needed column is missing and
    ``UnicodeDecodeError`` for a file that is not UTF-8."""
    tz = ZoneInfo(timezone)
    data: dict[str, list[object]] = {name: [] for name in COLUMNS}
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"message_id", "title", "created_at", "detail"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"not a Teddy Cup 2020 C message file: columns {sorted(missing)} are missing")
        for row in reader:
            try:
                created = _local(row.get("created_at", ""), tz)
                replied = _local(row.get("replied_at", ""), tz)
            except ValueError:
                continue
            if created is None:
                continue
            title, detail = row.get("title") or "", row.get("detail") or ""
            places = find_places(title, detail)
            reply = row.get("reply") or None
            label = (row.get("label") or "").strip() or None
            user = (row.get("user_id") or "").strip()
            values = {
                "id": int(row["message_id"]), "title": title, "description": detail, "created_at": created,
                "category": label, "category1": label, "district": places.district, "street": places.street,
                "grid": None, "district_id": None, "street_id": None, "grid_id": None,
                "place": places.estate or places.road or places.street or places.district,
                "support_count": int(row.get("upvotes") or 0),
                "citizen": hashlib.sha256(user.encode()).hexdigest()[:16] if user else None,
                "status": "replied" if reply else "submitted",
                "lead_unit": find_unit(reply, places) if reply else None,
                "replied_at": replied, "reply_text": reply, "channel": "web",
            }
            for name in COLUMNS:
                data[name].append(values[name])
    types = {"id": pa.int64(), "created_at": pa.timestamp("us"), "replied_at": pa.timestamp("us"),
             "district_id": pa.int64(), "street_id": pa.int64(), "grid_id": pa.int64(),
             "support_count": pa.int32()}
    return pa.table({name: pa.array(data[name], type=types.get(name, pa.string())) for name in COLUMNS})


def from_teddy_csv(conn: duckdb.DuckDBPyConnection, path: Path, *, timezone: str = "Asia/Shanghai") -> int:
    """Create the table ``reqs`` from a Teddy Cup 2020 C file (see :func:`teddy_rows`) and return its
    number of rows. A message repeated in the file with the same id keeps its first row."""
    table = teddy_rows(path, timezone=timezone)
    conn.register("teddy_rows_arrow", table)
    conn.execute("""
        CREATE OR REPLACE TABLE reqs AS
        SELECT * EXCLUDE (rn) FROM (
            SELECT *, row_number() OVER (PARTITION BY id ORDER BY created_at) AS rn FROM teddy_rows_arrow
        ) WHERE rn = 1
    """)
    conn.unregister("teddy_rows_arrow")
    return int(conn.execute("SELECT count(*) FROM reqs").fetchone()[0])  # type: ignore[index]
