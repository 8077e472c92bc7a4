"""未诉先办 into the loop: findings are kept across runs, and one a person accepts becomes a proactive
request that intake routes and deadlines like any other; decided findings are not proposed again."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import select

from civicloop.analytics.findings import Finding, finding_key
from civicloop.analytics.models import StoredFinding
from civicloop.analytics.service import store_findings
from civicloop.core.db import session_factory
from civicloop.core.settings import Settings
from civicloop.importers.sample_city import build_routes
from civicloop.requests.models import ServiceRequest
from tests.helpers import make_request

API = "/api/v1/analytics"
ANALYST = {"X-Civicloop-Actor": "analyst-1", "X-Civicloop-Role": "analyst"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Intake on (no model: a finding with a known category is routed by the routing table)."""
    return Settings(_env_file=None, triage_on_intake=True, trust_role_headers=True,  # type: ignore[call-arg]
                    model_path=str(tmp_path / "none.joblib"))


def hotspot(key_words: str, ids: tuple[int, ...], *, rank: int = 1, category: str | None = None) -> Finding:
    place = "望湖街道第一社区1号网格"
    return Finding(kind="hotspot", key=finding_key("hotspot", place, key_words, "2026-07"),
                   rank=rank, score=12.5 - rank, summary=f"望湖街道第一社区{key_words}", place=place,
                   start=datetime(2026, 7, 1, 9), end=datetime(2026, 7, 9, 18), request_ids=ids, people=len(ids),
                   category=category, details={"upvotes": 3})


def test_findings_are_refreshed_and_decided_ones_not_proposed_again(db, city, settings) -> None:
    with session_factory(db)() as s:
        counts = store_findings(s, [hotspot("路灯", (1, 2, 3)), hotspot("噪声", (4, 5), rank=2)], settings=settings)
        assert counts == {"new": 2, "refreshed": 0, "skipped": 0}
        s.commit()
        lamp = s.scalar(select(StoredFinding).where(StoredFinding.summary.like("%路灯")))
        lamp.status = "dismissed"
        s.commit()
        counts = store_findings(s, [hotspot("路灯", (1, 2, 3, 6)), hotspot("噪声", (4, 5, 7), rank=1)],
                                settings=settings)
        assert counts == {"new": 0, "refreshed": 1, "skipped": 1}
        s.commit()
        noise = s.scalar(select(StoredFinding).where(StoredFinding.summary.like("%噪声")))
        assert noise.request_ids == [4, 5, 7] and noise.rank == 1 and noise.status == "proposed"
        assert noise.start_at.utcoffset().total_seconds() == 0 and noise.start_at.hour == 1  # 09:00 Beijing


def test_the_same_key_twice_in_one_run_is_stored_once(db, city, settings) -> None:
    """Found on a generated city: two findings of one run with the same key broke the unique index."""
    with session_factory(db)() as s:
        counts = store_findings(s, [hotspot("路灯", (1, 2, 3)), hotspot("路灯", (2, 3), rank=4)], settings=settings)
        assert counts == {"new": 1, "refreshed": 0, "skipped": 1}
        s.commit()
        (row,) = s.scalars(select(StoredFinding)).all()
        assert (row.rank, row.request_ids) == (1, [1, 2, 3])


def test_an_accepted_finding_becomes_a_routed_proactive_request(client, db, city) -> None:
    with session_factory(db)() as s:
        build_routes(s)
        evidence = [make_request(s, lat=39.905, lon=116.405).id for _ in range(3)]
        store_findings(s, [hotspot("路灯", tuple(evidence), category="城乡建设/市政设施/路灯不亮")],
                       settings=Settings(_env_file=None))  # type: ignore[call-arg]
        s.commit()
    listed = client.get(f"{API}/findings", params={"kind": "hotspot"}, headers=ANALYST).json()
    assert [f["status"] for f in listed] == ["proposed"]
    finding_id = listed[0]["id"]
    assert client.post(f"{API}/findings/{finding_id}/accept", json={},
                       headers={"X-Civicloop-Role": "handler"}).status_code == 403
    accepted = client.post(f"{API}/findings/{finding_id}/accept", json={"note": "列入本月整治"}, headers=ANALYST)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["status"] == "accepted" and body["decided_by"] == "analyst-1"
    request = client.get(f"/api/v1/requests/{body['request_id']}").json()
    assert request["channel"] == "proactive"
    assert request["status"] == "dispatched" and request["lead_unit_id"] == city["D01-S01"]  # 属地: 望湖街道
    assert request["category_id"] == city["cat:城乡建设/市政设施/路灯不亮"]
    assert all(f"#{i}" in request["description"] for i in evidence)
    again = client.post(f"{API}/findings/{finding_id}/accept", json={}, headers=ANALYST)
    assert again.status_code == 422 and again.json()["error"]["fields"][0]["field"] == "finding_id"
    assert client.post(f"{API}/findings/{finding_id}/dismiss", json={}, headers=ANALYST).status_code == 422
    assert client.post(f"{API}/findings/999999/accept", json={}, headers=ANALYST).status_code == 404
    assert client.post(f"{API}/findings/999999/dismiss", headers=ANALYST).status_code == 404  # no body needed
    with session_factory(db)() as s:
        assert s.scalar(select(ServiceRequest).where(ServiceRequest.channel == "proactive")).id == body["request_id"]


def test_findings_api_refuses_bad_input_and_residents(client, city) -> None:
    assert client.get(f"{API}/findings", headers={"X-Civicloop-Role": "resident"}).status_code == 403
    assert client.get(f"{API}/findings", params={"kind": "gossip"}, headers=ANALYST).status_code == 422
    assert client.get(f"{API}/findings", params={"status": "maybe"}, headers=ANALYST).status_code == 422
    assert client.post(f"{API}/findings/1/dismiss", json={"note": 5}, headers=ANALYST).status_code == 422
