"""Intake of a batch in one transaction (deferred intake's runner, ``civicloop intake replay --batch``)
reads less and gives the answers of one request at a time (issue 9, third round):

* the classifier is called once for the batch (``triage.predict_batch``; tested in ``test_triage_deferred``);
* the gazetteer's version is read once per transaction, and again after this session wrote a place;
* the units a route names are read once per transaction, and a unit deactivated in it is not routed to;
* a batch given its requests (``run_batch(request_ids=…)``) takes only those off the queue;
* a duplicate's master is checked by its id: an unknown one is still a field error.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from civicloop.core.errors import FieldError
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.org import service as org
from civicloop.org.models import OrgUnit, Place, PlaceKind
from civicloop.requests import intake, triage_queue
from civicloop.requests.models import Channel, RejectReason, ServiceRequest, Triage, TriageQueueEntry
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
