"""The three rates (三率) of June 2019, computed by hand and through the real services.

The scenario (all times Asia/Shanghai; default response deadline 24 h after dispatch):

A = 望湖街道第一社区 (community of 望湖街道)
  a1  dispatched 06-03 09:00 (C assisting), acknowledged 10:00 (on time), callback 06-05: resolved, satisfied
  a2  dispatched 06-03 09:00, acknowledged 06-04 10:00 (25 h: late), callback 06-06: resolved, basically satisfied
  a3  dispatched 06-10 09:00, RETURNED 10:00 (not due), re-dispatched to B
  a4  dispatched 06-03 09:00, on time, callback 06-07: unresolved, dissatisfied -> reopened:
      round 2 dispatched 06-07 10:00, acknowledged 11:00, callback 06-09: resolved, satisfied
  a5  dispatched 07-01 00:30 local (still June in UTC!), acknowledged 00:40: July, not counted
B = 望湖街道第二社区 (community of 望湖街道)
  a3' dispatched 06-10 11:00, acknowledged 12:00, callback 06-12: resolved, satisfied
  b2  dispatched 06-28 09:00, never acknowledged; deadline 06-29 09:00 < now: due, not responded
  b3  dispatched 06-30 20:00, pending; deadline 07-01 20:00 > now: not yet due
  b4  dispatched 05-30 (May), callback 06-03 (June): resolved, basically satisfied
C = 城市管理委员会 (department): c1 dispatched 06-05, on time, replied, no callback yet
D = 东桥街道 (a street itself): d1 dispatched 06-04 09:00, acknowledged 06-05 09:00 (exactly 24 h: on time),
  callback 06-06: resolved, satisfied
E = 东桥街道第一社区: e1 dispatched 06-04 09:00, acknowledged 06-05 10:00 (late), callback: resolved, basically

now = 2019-07-01 09:00.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civicloop.analytics.metrics import Counts, composite, parse_month, satisfaction_rate, three_rates
from civicloop.core.errors import FieldError
from civicloop.core.settings import Settings
from civicloop.requests.models import Satisfaction
from tests.helpers_metrics import SHANGHAI, ack, answer, at, call_back, dispatch_at, full_loop, give_back, redispatch

NOW = at(7, 1, 9)
S, B, D = Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.DISSATISFIED


def build_june(session, settings, city) -> dict[str, int]:
    """Build the scenario of the module docstring; returns the unit ids by letter."""
    u = {"A": city["D01-S01-C01"], "B": city["D01-S01-C02"], "C": city["DEP-CG"], "D": city["D01-S02"],
         "E": city["D01-S02-C01"]}
    full_loop(session, settings, unit_id=u["A"], dispatched_at=at(6, 3, 9), acked_at=at(6, 3, 10),
              replied_at=at(6, 4, 10), called_at=at(6, 5, 10), assisting=(u["C"],))
    full_loop(session, settings, unit_id=u["A"], dispatched_at=at(6, 3, 9), acked_at=at(6, 4, 10),
              replied_at=at(6, 5, 10), called_at=at(6, 6, 10), satisfaction=B)
    a3 = dispatch_at(session, settings, unit_id=u["A"], when=at(6, 10, 9))
    give_back(session, settings, a3, at(6, 10, 10))
    redispatch(session, settings, a3, unit_id=u["B"], when=at(6, 10, 11))
    ack(session, settings, a3, at(6, 10, 12))
    answer(session, a3, at(6, 11, 10))
    call_back(session, settings, a3, at(6, 12, 10), resolved=True, satisfaction=S)
    a4 = full_loop(session, settings, unit_id=u["A"], dispatched_at=at(6, 3, 9), acked_at=at(6, 3, 9, 30),
                   replied_at=at(6, 4, 10), called_at=at(6, 7, 10), resolved=False, satisfaction=D)
    assert a4.reopen_count == 1  # round 2 was dispatched at the callback, 06-07 10:00
    ack(session, settings, a4, at(6, 7, 11))
    answer(session, a4, at(6, 8, 10))
    call_back(session, settings, a4, at(6, 9, 10), resolved=True, satisfaction=S)
    a5 = dispatch_at(session, settings, unit_id=u["A"], when=at(7, 1, 0, 30))
    ack(session, settings, a5, at(7, 1, 0, 40))

    dispatch_at(session, settings, unit_id=u["B"], when=at(6, 28, 9))
    dispatch_at(session, settings, unit_id=u["B"], when=at(6, 30, 20))
    full_loop(session, settings, unit_id=u["B"], dispatched_at=at(5, 30, 9), acked_at=at(5, 30, 10),
              replied_at=at(5, 31, 10), called_at=at(6, 3, 10), satisfaction=B)

    c1 = dispatch_at(session, settings, unit_id=u["C"], when=at(6, 5, 9))
    ack(session, settings, c1, at(6, 5, 9, 30))
    answer(session, c1, at(6, 6, 10))

    # acknowledged exactly at its response deadline: on time
    full_loop(session, settings, unit_id=u["D"], dispatched_at=at(6, 4, 9), acked_at=at(6, 5, 9),
              replied_at=at(6, 5, 10), called_at=at(6, 6, 10))
    full_loop(session, settings, unit_id=u["E"], dispatched_at=at(6, 4, 9), acked_at=at(6, 5, 10),
              replied_at=at(6, 6, 10), called_at=at(6, 7, 10), satisfaction=B)
    session.flush()
    return u


@pytest.fixture
def june(session, settings, city) -> dict[str, int]:
    return build_june(session, settings, city)


def by_name(rows):
    return {r.unit_name: r for r in rows}


def test_unit_rates_by_hand(session, settings, june):
    rows = three_rates(session, month="2019-06", level="unit", settings=settings, now=NOW)
    got = by_name(rows)

    a = got["望湖街道第一社区"]
    # due: a1, a2, a4 round 1, a4 round 2 (a3 returned, a5 in July); late: a2
    assert (a.due, a.responded) == (4, 3)
    assert a.response_rate == pytest.approx(3 / 4)
    # called back: a1 (R,S), a2 (R,B), a4 round 1 (U,D), a4 round 2 (R,S)
    assert (a.called_back, a.resolved, a.satisfied, a.basically_satisfied, a.dissatisfied) == (4, 3, 2, 1, 1)
    assert a.resolution_rate == pytest.approx(3 / 4)
    assert a.satisfaction_rate == pytest.approx((2 + 0.8) / 4)  # 0.7
    assert a.composite == pytest.approx(0.10 * 0.75 + 0.45 * 0.75 + 0.45 * 0.7)  # 0.7275

    b = got["望湖街道第二社区"]
    # due: a3' (on time), b2 (never acknowledged); b3 not yet due; b4 dispatched in May
    assert (b.due, b.responded) == (2, 1)
    assert b.response_rate == pytest.approx(1 / 2)
    # called back in June: a3' (R,S) and b4 (R,B), although b4 was dispatched in May
    assert (b.called_back, b.resolved, b.satisfied, b.basically_satisfied, b.dissatisfied) == (2, 2, 1, 1, 0)
    assert b.resolution_rate == pytest.approx(1.0)
    assert b.satisfaction_rate == pytest.approx((1 + 0.8) / 2)  # 0.9
    assert b.composite == pytest.approx(0.10 * 0.5 + 0.45 * 1.0 + 0.45 * 0.9)  # 0.905

    c = got["城市管理委员会"]
    # its assisting order on a1 does not count; no callback yet: only the response rate is defined
    assert (c.due, c.responded, c.called_back) == (1, 1, 0)
    assert c.resolution_rate is None and c.satisfaction_rate is None
    assert c.composite == pytest.approx(1.0)  # weights renormalised over the one defined rate

    e = got["东桥街道第一社区"]
    assert (e.due, e.responded, e.response_rate) == (1, 0, 0.0)
    assert e.satisfaction_rate == pytest.approx(0.8)
    assert e.composite == pytest.approx(0.10 * 0 + 0.45 * 1 + 0.45 * 0.8)  # 0.81


def test_unit_ranking(session, settings, june):
    rows = three_rates(session, month="2019-06", level="unit", settings=settings, now=NOW)
    # 东桥街道 and 城市管理委员会 both score 1.0: the tie goes by name (东 U+4E1C before 城 U+57CE)
    assert [(r.rank, r.unit_name) for r in rows] == [
        (1, "东桥街道"), (2, "城市管理委员会"), (3, "望湖街道第二社区"), (4, "东桥街道第一社区"),
        (5, "望湖街道第一社区"),
    ]
    assert [r.unit_kind for r in rows] == ["street", "department", "community", "community", "community"]


def test_street_roll_up(session, settings, june):
    rows = three_rates(session, month="2019-06", level="street", settings=settings, now=NOW)
    # 城市管理委员会 (a department) has no street and is left out
    assert [(r.rank, r.unit_name, r.unit_kind) for r in rows] == [(1, "东桥街道", "street"), (2, "望湖街道", "street")]
    dongqiao, wanghu = rows
    # 东桥街道 = itself (d1) + its community E (e1)
    assert (dongqiao.due, dongqiao.responded, dongqiao.called_back, dongqiao.resolved) == (2, 1, 2, 2)
    assert dongqiao.composite == pytest.approx(0.10 * 0.5 + 0.45 * 1.0 + 0.45 * (1 + 0.8) / 2)  # 0.905
    # 望湖街道 = A + B
    assert (wanghu.due, wanghu.responded) == (6, 4)
    assert (wanghu.called_back, wanghu.resolved, wanghu.satisfied, wanghu.basically_satisfied,
            wanghu.dissatisfied) == (6, 5, 3, 2, 1)
    assert wanghu.response_rate == pytest.approx(4 / 6)
    assert wanghu.resolution_rate == pytest.approx(5 / 6)
    assert wanghu.satisfaction_rate == pytest.approx((3 + 2 * 0.8) / 6)
    assert wanghu.composite == pytest.approx(0.10 * 4 / 6 + 0.45 * 5 / 6 + 0.45 * 4.6 / 6)


def test_pending_order_counts_only_once_its_response_deadline_passed(session, settings, june):
    # on 06-28 12:00, b2 (dispatched 06-28 09:00) still has until 06-29 09:00 to be acknowledged
    rows = by_name(three_rates(session, month="2019-06", level="unit", settings=settings, now=at(6, 28, 12)))
    b = rows["望湖街道第二社区"]
    assert (b.due, b.responded, b.response_rate) == (1, 1, 1.0)


def test_month_is_the_local_calendar_month(session, settings, june):
    # a5 was dispatched 2019-07-01 00:30 Shanghai time (2019-06-30 16:30 UTC): it belongs to July
    july = by_name(three_rates(session, month="2019-07", level="unit", settings=settings, now=NOW))
    assert (july["望湖街道第一社区"].due, july["望湖街道第一社区"].responded) == (1, 1)
    assert set(july) == {"望湖街道第一社区"}
    assert three_rates(session, month="2019-04", level="unit", settings=settings, now=NOW) == []


def test_settings_change_the_weights(session, city):
    tuned = Settings(_env_file=None, basic_satisfaction_weight=0.5, weight_response=0.2, weight_resolution=0.4,
                     weight_satisfaction=0.4)  # type: ignore[call-arg]
    build_june(session, tuned, city)
    a = by_name(three_rates(session, month="2019-06", level="unit", settings=tuned, now=NOW))["望湖街道第一社区"]
    assert a.satisfaction_rate == pytest.approx((2 + 0.5) / 4)  # 0.625
    assert a.composite == pytest.approx(0.2 * 0.75 + 0.4 * 0.75 + 0.4 * 0.625)  # 0.7


def test_weights_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CIVICLOOP_BASIC_SATISFACTION_WEIGHT", "0.6")
    monkeypatch.setenv("CIVICLOOP_WEIGHT_RESPONSE", "0.2")
    monkeypatch.setenv("CIVICLOOP_WEIGHT_RESOLUTION", "0.3")
    monkeypatch.setenv("CIVICLOOP_WEIGHT_SATISFACTION", "0.5")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.basic_satisfaction_weight, s.weight_response, s.weight_resolution, s.weight_satisfaction) == (
        0.6, 0.2, 0.3, 0.5)


# pure rules, no database


def test_composite_renormalises_over_defined_rates(settings):
    assert composite(0.5, None, None, settings) == pytest.approx(0.5)
    assert composite(None, 1.0, 0.5, settings) == pytest.approx((0.45 * 1.0 + 0.45 * 0.5) / 0.9)  # 0.75
    assert composite(1.0, 0.0, 0.0, settings) == pytest.approx(0.1)
    assert composite(None, None, None, settings) is None
    zero = Settings(_env_file=None, weight_response=0.0)  # type: ignore[call-arg]
    assert composite(1.0, None, None, zero) is None


def test_satisfaction_rate_weighs_basically_satisfied():
    counts = Counts(called_back=5, satisfied=2, basically_satisfied=2, dissatisfied=1)
    assert satisfaction_rate(counts, 0.8) == pytest.approx((2 + 1.6) / 5)  # 0.72
    assert satisfaction_rate(Counts(), 0.8) is None


def test_parse_month_gives_the_local_month_in_utc():
    assert parse_month("2019-06", SHANGHAI) == (datetime(2019, 5, 31, 16, tzinfo=UTC),
                                                datetime(2019, 6, 30, 16, tzinfo=UTC))
    assert parse_month("2019-12", SHANGHAI) == (datetime(2019, 11, 30, 16, tzinfo=UTC),
                                                datetime(2019, 12, 31, 16, tzinfo=UTC))


@pytest.mark.parametrize(("text", "code"), [
    ("2019-13", "v.month_range"), ("2019-00", "v.month_range"), ("2019-6x", "v.month"), ("2019-6", "v.month"),
    ("201906", "v.month"), ("2019/06", "v.month"), ("", "v.month"), ("19-06", "v.month"), ("2019-06-01", "v.month"),
    ("0000-01", "v.month_range"), ("0001-01", "v.month_range"), ("9999-12", "v.month_range"),
    ("1999-12", "v.month_range"), ("abcd-ef", "v.month"), ("２０１９-０６", "v.month"), ("2019-06\n1", "v.month"),
])
def test_parse_month_refuses(text, code):
    with pytest.raises(FieldError) as caught:
        parse_month(text, SHANGHAI)
    assert (caught.value.field, caught.value.code) == (("month",), code)


def test_unknown_level_is_a_field_error(session, settings):
    with pytest.raises(FieldError) as caught:
        three_rates(session, month="2019-06", level="district", settings=settings)  # type: ignore[arg-type]
    assert caught.value.field == ("level",)


# the API


def test_metrics_api(client, session, settings, june):
    session.commit()
    answer_ = client.get("/api/v1/metrics", params={"month": "2019-06", "level": "street"})
    assert answer_.status_code == 200, answer_.text
    body = answer_.json()
    assert (body["month"], body["level"]) == ("2019-06", "street")
    assert body["weights"] == {"response": 0.1, "resolution": 0.45, "satisfaction": 0.45, "basic_satisfaction": 0.8}
    assert body["period"]["start"].startswith("2019-06-01T00:00:00") and body["period"]["start"].endswith("+08:00")
    assert [(r["rank"], r["unit_name"]) for r in body["rows"]] == [(1, "东桥街道"), (2, "望湖街道")]
    wanghu = body["rows"][1]
    # the API's now is today: b3's response deadline (2019-07-01 20:00) has passed too, so 望湖 has 7 due
    assert (wanghu["due"], wanghu["responded"]) == (7, 4)
    assert wanghu["response_rate"] == pytest.approx(4 / 7)
    units = client.get("/api/v1/metrics", params={"month": "2019-06"}).json()
    assert units["level"] == "unit" and len(units["rows"]) == 5
    assert units["rows"][1]["resolution_rate"] is None  # 城市管理委员会: null, not 0


@pytest.mark.parametrize(("params", "field"), [
    ({"month": "2019-13"}, "month"),
    ({"month": "2019-6x", "level": "unit"}, "month"),
    ({}, "month"),
    ({"month": "2019-06", "level": "district"}, "level"),
])
def test_metrics_api_refuses_bad_input(client, params, field):
    answer_ = client.get("/api/v1/metrics", params=params)
    assert answer_.status_code == 422, answer_.text
    fields = answer_.json()["error"]["fields"]
    assert [f["field"] for f in fields] == [field]


def test_metrics_api_month_message_in_both_languages(client):
    zh = client.get("/api/v1/metrics", params={"month": "2019-6"}).json()
    assert zh["error"]["fields"][0]["message"] == "月份格式应为 YYYY-MM"
    en = client.get("/api/v1/metrics", params={"month": "2019-6"}, headers={"Accept-Language": "en"}).json()
    assert en["error"]["fields"][0]["message"] == "Month must be YYYY-MM"
    # well shaped but no such month: say what range is meant, not that the format is wrong
    zh = client.get("/api/v1/metrics", params={"month": "2019-13"}).json()
    assert zh["error"]["fields"][0]["message"] == "月份须在 2000-01 到 2100-12 之间"
    en = client.get("/api/v1/metrics", params={"month": "2019-13"}, headers={"Accept-Language": "en"}).json()
    assert en["error"]["fields"][0]["message"] == "The month must lie between 2000-01 and 2100-12"
