"""Reply quality (答复评价): hand-made ``reqs`` rows with known sub-scores, and the real Teddy replies
against the hand-judged sample (tests/data/replies_sample.csv: message id and verdict only)."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path
from statistics import mean
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from scipy.stats import spearmanr

from civicloop.analytics import replies as R
from civicloop.analytics.sources import COLUMNS, from_teddy_csv
from civicloop.core.calendar import WorkCalendar
from tests.conftest import SHARED_DATA

REPLIES_CSV = SHARED_DATA / "teddy2020c" / "messages_with_replies.csv"
SAMPLE = Path(__file__).parent / "data" / "replies_sample.csv"

TYPES = {"id": pa.int64(), "created_at": pa.timestamp("us"), "replied_at": pa.timestamp("us"),
         "district_id": pa.int64(), "street_id": pa.int64(), "grid_id": pa.int64(), "support_count": pa.int32()}

TITLE = "A3区丽发新城小区路灯不亮"
BODY = "A3区洋湖街道丽发新城小区3栋门口的路灯坏了一个多月，晚上一片漆黑，老人小孩出行很不安全，请尽快维修路灯。"
COMPLETE_REPLY = (
    "网友“UU001”您好！您的留言已收悉。现将有关情况回复如下：经核实，丽发新城小区3栋门口路灯因线路老化损坏。"
    "我局已安排维修人员更换线路和灯具，并责令物业公司加强日常巡查，将于2019年10月31日前完成小区其他路灯的整改。"
    "根据《城市道路照明设施管理规定》第十条，小区内路灯由物业负责维护。如有疑问请联系，联系电话：0731-0000-********。"
    "感谢您对我们工作的支持、理解与监督！2019年10月9日"
)
BOILERPLATE_REPLY = (
    "网友“UU002”您好！您反映的“A3区丽发新城小区路灯不亮”的问题已收悉。已转交A3区洋湖街道调查处理。"
    "感谢您对我们工作的关心与支持！2019年10月9日"
)


def make_req(**overrides: Any) -> dict[str, Any]:
    """One ``reqs`` row with every column of ``sources.COLUMNS``; ``overrides`` replace defaults."""
    row: dict[str, Any] = {name: None for name in COLUMNS}
    row.update(id=1, title=TITLE, description=BODY, created_at=datetime(2019, 9, 29, 10, 0),
               district="A3区", street="洋湖街道", place="丽发新城", status="replied", lead_unit="A3区城管局",
               replied_at=datetime(2019, 10, 9, 16, 0), reply_text=COMPLETE_REPLY, channel="web", support_count=0)
    row.update(overrides)
    return row


def reqs_conn(rows: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a table ``reqs`` holding ``rows``."""
    table = pa.table({c: pa.array([r[c] for r in rows], type=TYPES.get(c, pa.string())) for c in COLUMNS})
    conn = duckdb.connect()
    conn.register("rows_arrow", table)
    conn.execute("CREATE TABLE reqs AS SELECT * FROM rows_arrow")
    return conn


def by_id(table: pa.Table) -> dict[int, dict[str, Any]]:
    return {row["id"]: row for row in table.to_pylist()}


# --- working days and timeliness ---------------------------------------------------------------------

def test_working_days_across_national_day_2019_follow_the_official_schedule():
    # 2019: 1–7 Oct holiday; Sunday 29 Sep and Saturday 12 Oct were working days (国办发明电〔2018〕15号).
    # Counted (29 Sep, 9 Oct]: 30 Sep, 8 Oct, 9 Oct.
    assert R.working_days_taken(datetime(2019, 9, 29, 10), datetime(2019, 10, 9, 16)) == 3
    assert R.working_days_taken(datetime(2019, 9, 30, 23, 59), datetime(2019, 10, 7, 9)) == 0
    assert R.working_days_taken(datetime(2019, 10, 11, 9), datetime(2019, 10, 12, 9)) == 1  # adjusted Saturday
    assert R.working_days_taken(datetime(2019, 10, 9, 8), datetime(2019, 10, 9, 18)) == 0  # same day
    # the calendar passed in is used (an override makes 8 Oct a holiday)
    calendar = WorkCalendar(overrides={date(2019, 10, 8): False})
    assert R.working_days_taken(datetime(2019, 9, 29), datetime(2019, 10, 9), calendar) == 2


def test_timeliness_is_full_within_7_working_days_and_decays_after():
    assert R.timeliness_score(0) == R.timeliness_score(7) == 1.0
    assert R.timeliness_score(11) == pytest.approx(0.75)
    assert R.timeliness_score(15) == pytest.approx(0.5)
    assert R.timeliness_score(30) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        R.timeliness_score(-1)


def test_score_counts_working_days_with_the_calendar_and_its_overrides():
    conn = reqs_conn([make_req()])
    assert by_id(R.score_replies(conn))[1]["working_days"] == 3
    calendar = WorkCalendar(overrides={date(2019, 10, 9): False})
    assert by_id(R.score_replies(conn, calendar=calendar))[1]["working_days"] == 2


# --- relevance, completeness, policy -------------------------------------------------------------------

def test_boilerplate_forwarding_reply_scores_no_relevance_and_says_why():
    conn = reqs_conn([make_req(id=1), make_req(id=2, reply_text=BOILERPLATE_REPLY)])
    rows = by_id(R.score_replies(conn))
    good, bad = rows[1], rows[2]
    assert bad["forwarded"] is True and bad["substance_chars"] == 0
    assert bad["relevance"] == 0.0  # the quoted title does not count as an answer
    assert bad["why"][0] == "仅告知转办，未答复实质内容"
    assert good["forwarded"] is False
    assert good["relevance"] > 0.5
    assert good["overall"] > bad["overall"] + 0.4


def test_redirect_elsewhere_is_flagged_and_halves_relevance():
    reply = "网友您好！您反映的路灯问题不属于我局管辖范围，建议您咨询小区物业公司。2019年10月9日"
    row = by_id(R.score_replies(reqs_conn([make_req(reply_text=reply)])))[1]
    assert row["redirected"] is True
    assert row["why"][0] == "仅让诉求人另找他处，未实质答复"
    assert row["relevance"] < R.RELEVANCE_FLOOR


def test_complete_reply_has_every_part_and_cites_policy():
    row = by_id(R.score_replies(reqs_conn([make_req()])))[1]
    assert {p: row[p] for p in R.COMPLETENESS_PARTS} == {"facts": True, "measures": True, "contact": True,
                                                        "date": True}
    assert row["completeness"] == 1.0 and row["cites_policy"] is True
    assert row["place_named"] is True and row["coverage"] >= 0.75
    assert row["timeliness"] == 1.0
    assert row["why"] == []
    assert row["overall"] > 0.9


def test_each_completeness_part_is_found_or_missed_on_its_own():
    assert R.completeness_parts("经现场查看，该路段井盖缺失。") == {
        "facts": True, "measures": False, "contact": False, "date": False}
    assert R.completeness_parts("我局已责令施工单位限期整改。")["measures"] is True
    assert R.completeness_parts("我局将进一步加强管理。")["measures"] is False  # a bare promise
    assert R.completeness_parts("已转交县住建局核实、办复。") == {
        "facts": False, "measures": False, "contact": False, "date": False}
    assert R.completeness_parts("如有疑问请拨打0746—5276266。")["contact"] is True
    assert R.completeness_parts("详情可拨打12345热线咨询。")["contact"] is True
    assert R.completeness_parts("请你留下联系方式。")["contact"] is False
    assert R.completeness_parts("预计本月下旬开考。")["date"] is True
    # the signature date and the date the citizen wrote are not a date of action
    assert R.completeness_parts("您于2019年5月17日反映的问题，我们正在研究。2019年5月20日")["date"] is False


def test_policy_citation_needs_a_named_rule_not_the_platform():
    assert R.cites_policy("根据《西地省物业管理条例》第四十六条，业主委员会可以申请应急管理。")
    assert R.cites_policy("按照国家有关规定执行。")
    assert R.cites_policy("见发改价格〔2017〕1243号。")
    assert not R.cites_policy("您在《问政西地省》栏目的留言已收悉，我们将认真处理。")


def test_boilerplate_is_stripped_but_an_answer_after_a_forward_notice_is_kept():
    text, forwarded = R.substance(BOILERPLATE_REPLY, TITLE)
    assert text == "" and forwarded
    both = BOILERPLATE_REPLY + "网友您好！经查，该路灯因线路老化损坏，已于10月8日更换线路并修复。"
    text, forwarded = R.substance(both, TITLE)
    assert not forwarded and "已于10月8日更换线路并修复" in text


# --- the table and the units ---------------------------------------------------------------------------

def test_unsigned_units_are_bucketed_and_units_ranked_with_small_n_flag():
    rows = [make_req(id=i, lead_unit="A3区城管局") for i in range(1, 6)]
    rows += [make_req(id=10 + i, lead_unit=None, reply_text=BOILERPLATE_REPLY,
                      replied_at=datetime(2019, 11, 29, 9)) for i in range(3)]
    rows += [make_req(id=99, reply_text=None, replied_at=None, status="submitted")]  # not replied: left out
    scores = R.score_replies(reqs_conn(rows))
    assert scores.num_rows == 8
    assert scores.schema == R.SCHEMA
    units = {r["unit"]: r for r in R.unit_table(scores).to_pylist()}
    assert set(units) == {"A3区城管局", R.UNSIGNED}
    good, unsigned = units["A3区城管局"], units[R.UNSIGNED]
    assert good["rank"] == 1 and unsigned["rank"] == 2
    assert good["replies"] == 5 and not good["small_n"]
    assert unsigned["replies"] == 3 and unsigned["small_n"]
    assert good["median_working_days"] == 3 and good["within_7_share"] == 1.0
    assert unsigned["median_working_days"] == 41 and unsigned["within_7_share"] == 0.0
    assert unsigned["forwarded_share"] == 1.0 and good["policy_share"] == 1.0
    assert R.unit_table(scores, by="district").column("unit").to_pylist() == ["A3区"]
    with pytest.raises(KeyError):
        R.unit_table(scores, by="nope")


def test_since_until_filter_on_filing_time_and_empty_result_keeps_the_schema():
    rows = [make_req(id=1), make_req(id=2, created_at=datetime(2019, 12, 2, 9), replied_at=datetime(2019, 12, 3, 9))]
    conn = reqs_conn(rows)
    assert R.score_replies(conn, since=datetime(2019, 12, 1)).column("id").to_pylist() == [2]
    assert R.score_replies(conn, until=datetime(2019, 12, 1)).column("id").to_pylist() == [1]
    empty = R.score_replies(conn, since=datetime(2020, 1, 1))
    assert empty.num_rows == 0 and empty.schema == R.SCHEMA


# --- the real file -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_scores() -> pa.Table:
    if not REPLIES_CSV.is_file():
        pytest.skip(f"shared data not found at {REPLIES_CSV}")
    conn = duckdb.connect()
    from_teddy_csv(conn, REPLIES_CSV)
    return R.score_replies(conn)


def test_real_file_scores_every_distinct_replied_message(real_scores):
    ids = real_scores.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 2815
    for name in ("timeliness", "relevance", "completeness", "overall"):
        values = real_scores.column(name).to_pylist()
        assert all(0.0 <= v <= 1.0 for v in values), name
    units = R.unit_table(real_scores)
    assert sum(units.column("replies").to_pylist()) == 2815
    assert units.column("rank").to_pylist() == list(range(1, units.num_rows + 1))


def test_real_boilerplate_forwards_score_below_real_answers(real_scores):
    rows = real_scores.to_pylist()
    forwarded = [r["relevance"] for r in rows if r["forwarded"]]
    answers = [r["relevance"] for r in rows if not r["forwarded"] and r["substance_chars"] >= 100]
    assert len(forwarded) > 50
    assert mean(forwarded) < 0.05 < 0.4 < mean(answers)


def test_judged_sample_is_ordered_good_over_adequate_over_poor(real_scores):
    verdicts = {int(r["message_id"]): r["verdict"] for r in csv.DictReader(SAMPLE.open(encoding="utf-8"))}
    assert len(verdicts) == 40 and set(verdicts.values()) == {"good", "adequate", "poor"}
    overall = {r["id"]: r["overall"] for r in real_scores.to_pylist()}
    assert set(verdicts) <= set(overall)
    means = {v: mean(overall[i] for i, w in verdicts.items() if w == v) for v in ("good", "adequate", "poor")}
    assert means["good"] > means["adequate"] > means["poor"]
    order = {"poor": 0, "adequate": 1, "good": 2}
    ids = sorted(verdicts)
    rho = spearmanr([overall[i] for i in ids], [order[verdicts[i]] for i in ids]).statistic
    assert rho > 0.6
