"""``civicloop analyze`` as a user runs it: on a real Teddy Cup file, and on the loop's own database
(where the findings are kept for the API)."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest
from openpyxl import load_workbook

from civicloop.analytics.report import HOTSPOT_COLUMNS, VENDOR
from tests.conftest import SHARED_DATA
from tests.test_cli import run

VOTES = SHARED_DATA / "teddy2020c" / "messages_with_votes.csv"


@pytest.mark.skipif(not VOTES.is_file(), reason="shared data not found")
def test_analyze_a_teddy_file_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = run("analyze", "--data", str(VOTES), "--out", str(out), db=tmp_path / "unused.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "丽发新城" in result.stdout  # the hottest issue of the file (docs/analytics.md)
    names = {p.name for p in out.iterdir()}
    assert names >= {"hotspots.csv", "surges.csv", "cooccurrence.csv", "asset_alerts.csv", "reply_quality.csv",
                     "report.html", "report.xlsx"}
    with (out / "hotspots.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == HOTSPOT_COLUMNS
    assert [r["rank"] for r in rows[:3]] == ["1", "2", "3"] and float(rows[0]["heat"]) >= float(rows[1]["heat"])
    assert len(rows[0]["request_ids"].split()) == int(rows[0]["request_count"])
    html = (out / "report.html").read_text(encoding="utf-8")
    assert rows[0]["summary"] in html
    if (VENDOR / "echarts.min.js").is_file():  # vendored by make: the report draws offline
        assert "echarts.init" in html and "cdn" not in html.lower()
    assert load_workbook(out / "report.xlsx").sheetnames[0] == "热点"
    assert not (tmp_path / "unused.db").exists()  # a file source touches no database


def test_analyze_the_loop_keeps_findings_and_refuses_bad_options(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    assert run("init", db=db, cwd=tmp_path).returncode == 0
    bad = run("analyze", "--out", str(tmp_path / "o"), "--since", "2026-13-01", db=db, cwd=tmp_path)
    assert bad.returncode == 2 and "--since" in bad.stderr
    order = run("analyze", "--out", str(tmp_path / "o"), "--since", "2026-02-01", "--until", "2026-01-01",
                db=db, cwd=tmp_path)
    assert order.returncode == 2 and "--until" in order.stderr
    missing = run("analyze", "--out", str(tmp_path / "o"), "--data", str(tmp_path / "none.csv"), db=db, cwd=tmp_path)
    assert missing.returncode == 2 and "--data" in missing.stderr
    generated = run("generate", "--requests", "3000", "--seed", "3", "--append", db=db, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    result = run("analyze", "--out", str(tmp_path / "o"), db=db, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "findings kept" in result.stdout
    with sqlite3.connect(db) as conn:
        kept = conn.execute("SELECT count(*), min(status), max(status) FROM findings").fetchone()
    with (tmp_path / "o" / "hotspots.csv").open(encoding="utf-8-sig") as handle:
        hotspots = list(csv.DictReader(handle))
    assert hotspots and kept[0] >= len(hotspots) and kept[1:] == ("proposed", "proposed")
    again = run("analyze", "--out", str(tmp_path / "o"), db=db, cwd=tmp_path)
    assert again.returncode == 0 and "0 new" in again.stdout  # the same findings are recognised by key


def test_analyze_names_the_bad_file_or_folder(tmp_path: Path) -> None:
    # found by a user trial: wrong columns gave an empty report with exit 0, GBK and an unwritable --out a traceback
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n", encoding="utf-8")
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes("message_id,title,created_at,detail\n1,测试,2019/1/1 10:00:00,x\n".encode("gbk"))
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    db = tmp_path / "c.db"
    for data, words in [(wrong, "message_id"), (gbk, "UTF-8")]:
        result = run("analyze", "--data", str(data), "--out", str(tmp_path / "o"), db=db, cwd=tmp_path)
        assert result.returncode == 2 and "--data" in result.stderr and words in result.stderr, result.stderr
    if VOTES.is_file():
        result = run("analyze", "--data", str(VOTES), "--out", str(blocked), db=db, cwd=tmp_path)
        assert result.returncode == 2 and "--out" in result.stderr and "Traceback" not in result.stderr
