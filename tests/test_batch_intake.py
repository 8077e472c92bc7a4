"""Intake of a batch in one transaction (deferred intake's runner, ``civicloop intake replay --batch``)
reads less and gives the answers of one request at a time (issue 9, third round):

* the classifier is called once for the batch (``triage.predict_batch``; tested in ``test_triage_deferred``);
* the gazetteer's version is read once per transaction, and again after this session wrote a place;
* the units a route names are read once per transaction, and a unit deactivated in it is not routed to;
* a batch given its requests (``run_batch(request_ids=…)``) takes only those off the queue;
* a duplicate's master is checked by its id: an unknown one is still a field error;
* the duplicate check reads the open requests of a place once for the batch, and finds what a query
  for each request finds.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from civicloop.core.errors import FieldError
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.org import service as org
from civicloop.org.models import OrgUnit, Place, PlaceKind
from civicloop.requests import intake, triage_queue, triage_steps
from civicloop.requests.models import (
    Channel,
    RejectReason,
    RequestEvent,
    ServiceRequest,
    Triage,
    TriageQueueEntry,
)
from civicloop.requests.service import Actor

OPERATOR = Actor("operator-7", Role.OPERATOR)


class Statements:
    """Counts the SQL queries (not ``BEGIN`` and the like) a session's engine runs in the ``with`` block."""

    def __init__(self, session: Session) -> None:
        self.engine = session.get_bind()
        self.count = 0

    def _seen(self, _conn: object, _cursor: object, statement: str, *_args: object) -> None:
        self.count += statement.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"))

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def _file(session: Session, title: str, body: str = "", address: str = "") -> ServiceRequest:
    return intake.submit(session, actor=OPERATOR, data=intake.NewRequest(
        channel=Channel.HOTLINE, title=title, description=body or title, address=address))


def test_the_gazetteer_version_is_read_once_per_transaction_and_again_after_a_write(session, city) -> None:
    first = org.gazetteer_version(session)
    with Statements(session) as seen:
        assert org.gazetteer_version(session) == first
    assert seen.count == 0
    district = session.scalar(select(OrgUnit).where(OrgUnit.kind == "district"))
    session.add(Place(name="测试花园", kind=PlaceKind.ESTATE, district_id=district.id, aliases=[], source="test"))
    session.flush()
    with Statements(session) as seen:
        after = org.gazetteer_version(session)
    assert seen.count == 1 and after[0] == first[0] + 1  # one more place
    session.rollback()
    with Statements(session) as seen:  # a new transaction reads it again
        assert org.gazetteer_version(session) == first
    assert seen.count == 1


def test_a_unit_deactivated_in_the_transaction_is_not_routed_to(session, routed_city) -> None:
    from civicloop.catalog.routing import RoutePlace, route

    category = routed_city["cat:交通运输/道路交通/违章停车"]
    first = route(session, category_id=category, place=RoutePlace())
    assert first is not None and first.lead_unit_id == routed_city["DEP-JT"]
    with Statements(session) as seen:
        assert route(session, category_id=category, place=RoutePlace()) is first
    assert seen.count == 0
    session.get(OrgUnit, routed_city["DEP-JT"]).active = False
    session.flush()
    again = route(session, category_id=category, place=RoutePlace())
    assert again is None or again.lead_unit_id != routed_city["DEP-JT"]


def test_a_batch_given_its_requests_takes_only_those(session, city, tmp_path) -> None:
    settings = Settings(_env_file=None, model_path=str(tmp_path / "no-model.joblib"))  # type: ignore[call-arg]
    filed = [_file(session, f"第{i}号楼门前积水") for i in range(3)]
    for request in filed:
        triage_queue.enqueue(session, request_id=request.id)
    session.commit()
    report = triage_queue.run_batch(session, settings=settings, request_ids=[filed[1].id])
    session.commit()
    assert report.triaged == [filed[1].id]
    assert set(session.scalars(select(TriageQueueEntry.request_id))) == {filed[0].id, filed[2].id}
    record = session.scalar(select(Triage).where(Triage.request_id == filed[1].id))
    assert record is not None and record.reasons == ["no_model"]
    assert session.scalar(select(Triage).where(Triage.request_id == filed[0].id)) is None


def test_a_duplicate_of_an_unknown_request_is_a_field_error_and_changes_nothing(session, city) -> None:
    request = _file(session, "楼道灯坏了")
    session.commit()
    with pytest.raises(FieldError) as info:
        intake.reject(session, request_id=request.id, actor=OPERATOR, reason=RejectReason.DUPLICATE,
                      duplicate_of_id=request.id + 1000)
    assert (info.value.field, info.value.code) == (("duplicate_of_id",), "not_found")
    session.rollback()
    assert session.get(ServiceRequest, request.id).status == "submitted"


def _place_of(rng: random.Random, grids: list[tuple[int, int, int]]) -> dict[str, object]:
    """A filing's place: a grid, a building of a sample-city street (the gazetteer finds the street), a
    place name the gazetteer does not know (a label only), or none."""
    roll = rng.random()
    if roll < 0.3:
        return {"grid_id": rng.choice(grids[:3])[0]}
    if roll < 0.6:
        street = rng.choice(["云河区望湖街道", "云河区东桥街道"])
        return {"address": f"{street}第一社区{rng.randint(1, 3)}号楼"}
    if roll < 0.85:
        return {"address": rng.choice(["丽发新城", "潇楚南路"])}
    return {}


def test_a_batch_reads_the_open_requests_of_a_place_once_and_finds_the_duplicates_one_by_one_finds(
        session, city, tmp_path, monkeypatch, request: pytest.FixtureRequest) -> None:
    """The batch's duplicate check (``triage_steps.BatchPool``) and its one flush at the end against the
    same batch checked request by request, a query and a flush each: the same outcomes, masters, places,
    support counts and events, in far fewer statements. The candidate limit is cut to 4, so that which
    requests are the newest of a place (the batch's own, once rejected, are not open any more) decides."""
    from tests.test_intake_speedups import BASE, _grids, _variant

    monkeypatch.setattr(triage_steps, "MAX_CANDIDATES", 4)
    triage_steps.candidate_statement.cache_clear()  # built with the limit in it: again with 4, and after
    request.addfinalizer(triage_steps.candidate_statement.cache_clear)
    settings = Settings(_env_file=None, model_path=str(tmp_path / "no-model.joblib"))  # type: ignore[call-arg]
    rng = random.Random(11)
    grids = _grids(session)
    filed = []
    for _ in range(70):
        title, body = _variant(rng, *rng.choice(BASE[:3]))
        filed.append(intake.submit(session, actor=OPERATOR, data=intake.NewRequest(
            channel=Channel.HOTLINE, title=title or "（无标题）", description=body, **_place_of(rng, grids))))
    for filing in filed:
        triage_queue.enqueue(session, request_id=filing.id)
    session.commit()
    ids = [r.id for r in filed]

    def outcomes() -> dict[int, tuple[object, ...]]:
        """Each request as stored: status, master, place, support, version, its record and its events."""
        session.expire_all()
        events = dict(session.execute(select(RequestEvent.request_id, func.count()).where(
            RequestEvent.request_id.in_(ids)).group_by(RequestEvent.request_id)).all())
        rows = session.execute(select(ServiceRequest.id, ServiceRequest.status, ServiceRequest.duplicate_of_id,
                                      ServiceRequest.street_id, ServiceRequest.district_id, ServiceRequest.grid_id,
                                      ServiceRequest.place_key, ServiceRequest.support_count, ServiceRequest.version,
                                      Triage.outcome, Triage.reasons, Triage.duplicate_of_id)
                               .join(Triage, Triage.request_id == ServiceRequest.id)
                               .where(ServiceRequest.id.in_(ids)))
        return {row[0]: (*row[1:], events.get(row[0])) for row in rows}

    class NoPool:
        def update(self, _request: ServiceRequest) -> None:
            pass

    @contextlib.contextmanager
    def no_pool(_session: Session, _requests: object) -> Iterator[NoPool]:
        yield NoPool()

    def each_flushed(s: Session, request: ServiceRequest, settings: Settings, predicted: object, *,
                     flush: bool = True) -> None:
        real_one(s, request, settings, predicted, flush=True)

    real_one = triage_queue._triage_one
    with monkeypatch.context() as one_by_one:  # the reference: a query and a flush of its own for each
        one_by_one.setattr(triage_steps, "batch_pool", no_pool)
        one_by_one.setattr(triage_queue, "_triage_one", each_flushed)
        triage_steps.clear_candidate_cache()
        with Statements(session) as plain:
            triage_queue.run_batch(session, settings=settings, limit=len(ids))
        expected = outcomes()
    session.rollback()
    triage_steps.clear_candidate_cache()
    pools: list[triage_steps.BatchPool] = []
    real_pool = triage_steps.batch_pool

    @contextlib.contextmanager
    def kept(s: Session, requests: list[ServiceRequest]) -> Iterator[triage_steps.BatchPool]:
        with real_pool(s, requests) as pool:
            pools.append(pool)
            yield pool

    monkeypatch.setattr(triage_steps, "batch_pool", kept)
    with Statements(session) as pooled:
        report = triage_queue.run_batch(session, settings=settings, limit=len(ids))
    assert sorted(report.triaged) == sorted(ids)
    assert outcomes() == expected
    masters = [v[1] for v in expected.values() if v[1] is not None]
    assert len(masters) >= 15 and len(set(masters)) >= 4  # duplicates of several places, not one
    # each shared member (a grid, a street, the unplaced of a district) read once: a dozen, not 70 each
    assert len(pools) == 1 and 3 <= len(pools[0].read) <= 12
    assert pooled.count < plain.count  # on PostgreSQL the records and events go in a few multi-row INSERTs
