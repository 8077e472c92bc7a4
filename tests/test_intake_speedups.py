"""The cheaper intake of issue 9 gives the answers of the plain one.

* the duplicate check reads only the open requests that can match (``requests.triage_steps``: keys
  stored per request, migration 0009, and a per-process cache of candidates) and finds what
  ``find_master`` over every open request of the window finds;
* ``duplicates.similarities`` scores a batch as ``duplicates.similarity`` scores each pair;
* the grids' cached spatial index (``org.service.locate_grid_place``) answers as the scan of every
  polygon did, and sees a grid added after it was built;
* one query for an API token's principal (``core.auth.principal_for``) keeps its grids and its
  once-a-minute use mark.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from shapely.geometry import Point, shape
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from civicloop.core import auth
from civicloop.core.db import make_engine, session_factory
from civicloop.core.models import AuthToken, UserGrid
from civicloop.core.roles import Role
from civicloop.core.settings import Settings
from civicloop.intelligence import duplicates
from civicloop.org import service as org
from civicloop.org.models import Grid, OrgUnit, UnitKind
from civicloop.requests import triage_steps
from civicloop.requests.models import RequestStatus, ServiceRequest, Triage, TriageOutcome
from tests.conftest import BACKENDS, PG_URL, drop_database, own_database

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
BASE = [
    ("小区路灯不亮", "三号楼前路灯坏了一周，夜里很黑，老人出门不方便，请尽快维修。"),
    ("餐馆油烟扰民", "临街门面一楼开了好几家餐馆，每天晚上油烟直排，噪音和油烟严重影响楼上居民休息。"),
    ("电梯频繁故障", "小区3栋的两部电梯这个月已经坏了五次，有老人被困在电梯里半个小时，请督促维修。"),
    ("道路破损", "道路破损"),
    ("", "学校门口的人行道被占用，孩子上学只能走机动车道，非常危险，请相关部门处理。"),
]


def _variant(rng: random.Random, title: str, body: str) -> tuple[str, str]:
    """The same text, a near copy (a sentence cut, a word changed, punctuation) or another text."""
    roll = rng.random()
    if roll < 0.3:
        return title, body
    if roll < 0.45:
        return title + "！", body.replace("，", " ")
    if roll < 0.7:
        return title, body[: max(4, int(len(body) * rng.uniform(0.55, 0.95)))]
    if roll < 0.85:
        return title.replace("小区", "园区"), body.replace("维修", "修理") + "谢谢。"
    return rng.choice(BASE)


def _grids(session: Session) -> list[tuple[int, int, int]]:
    """(grid, street, district) of the sample city's grids."""
    out = []
    for grid in session.scalars(select(Grid).order_by(Grid.id)):
        street = org.ancestor_of_kind(grid.community, UnitKind.STREET)
        district = org.ancestor_of_kind(grid.community, UnitKind.DISTRICT)
        assert street is not None and district is not None
        out.append((grid.id, street.id, district.id))
    return out


def _fill(session: Session, rng: random.Random, count: int) -> list[tuple[ServiceRequest, str | None]]:
    """Store ``count`` requests with mixed places, texts, statuses and times; return each with its label."""
    grids = _grids(session)
    labels = ["丽发新城", "望湖花园", "望湖 花园", "潇楚南路", "？"]
    made = []
    for index in range(count):
        title, body = _variant(rng, *rng.choice(BASE))
        grid, street, district = rng.choice(grids[:6])  # a few grids, so that places repeat
        place = rng.random()
        values: dict[str, object] = {}
        label: str | None = None
        if place < 0.35:
            values = {"grid_id": grid, "street_id": street, "district_id": district}
        elif place < 0.55:
            values = {"street_id": street, "district_id": district}
        elif place < 0.8:
            label = rng.choice(labels)
            values = {"district_id": district if rng.random() < 0.5 else None}
        status = rng.choice([RequestStatus.SUBMITTED, RequestStatus.DISPATCHED, RequestStatus.CLOSED,
                             RequestStatus.REJECTED])
        created = NOW - timedelta(days=rng.uniform(0, 45), minutes=index)
        request = ServiceRequest(channel="hotline", title=title or "", description=body, deadline_tier="7wd",
                                 status=status, created_at=created, updated_at=created,
                                 place_key=duplicates.place_key(label), **values)
        session.add(request)
        made.append((request, label))
    session.flush()
    for request, label in made:
        if label is not None:  # the label as intake keeps it, for the reference below
            session.add(Triage(request_id=request.id, outcome=TriageOutcome.QUEUED, queued=False, triaged_at=NOW,
                               suggestions=[], place={"label": label}, reasons=[]))
    session.flush()
    return made


def _reference(session: Session, new: ServiceRequest, label: str | None, settings: Settings) -> object:
    """``find_master`` over every open request (in the window or not, no cap), labels from the triage
    records as before issue 9: what the narrowed search must find."""
    labels = {rid: place.get("label") for rid, place in session.execute(select(Triage.request_id, Triage.place))}
    pool = [
        duplicates.Candidate(id=r.id, title=r.title, detail=r.description, created_at=r.created_at,
                             district_id=r.district_id, street_id=r.street_id, grid_id=r.grid_id,
                             place_label=labels.get(r.id), master_id=r.duplicate_of_id)
        for r in session.scalars(select(ServiceRequest).where(ServiceRequest.id != new.id,
                                                              ServiceRequest.status.in_(triage_steps.OPEN)))
    ]
    probe = duplicates.Candidate(id=new.id, title=new.title, detail=new.description, created_at=new.created_at,
                                 district_id=new.district_id, street_id=new.street_id, grid_id=new.grid_id,
                                 place_label=label)
    return duplicates.find_master(probe, pool, window_days=settings.duplicate_window_days,
                                  threshold=settings.duplicate_threshold, now=NOW)


def test_the_narrowed_duplicate_search_finds_what_the_whole_window_finds(session, city, settings) -> None:
    rng = random.Random(9)
    made = _fill(session, rng, 160)
    probes = [(r, label) for r, label in made if r.status == RequestStatus.SUBMITTED][:40]
    found = 0
    for attempt in ("database", "cache"):  # the second pass reads the candidates from the cache
        if attempt == "database":
            triage_steps.clear_candidate_cache()
        for request, label in probes:
            expected = _reference(session, request, label, settings)
            got = triage_steps.find_duplicate(session, request=request, settings=settings, place_label=label,
                                              now=NOW)
            assert got == expected, (attempt, request.id, request.title, label)
            found += got is not None
    assert found >= 10  # the data make matches of every kind, not only misses


PLACES = {  # of the two requests below: grid, street, district (indexes into the first grids), label
    "grid": (0, 0, 0, None), "other grid": (1, 0, 0, None), "street": (None, 0, 0, None),
    "label": (None, None, 0, "望湖花园"), "label again": (None, None, None, "望湖 花园"),
    "other label": (None, None, 0, "丽发新城"), "empty label": (None, None, 0, "？"),
    "nowhere": (None, None, None, None),
}


@pytest.mark.parametrize("new_place", sorted(PLACES))
def test_every_kind_of_place_is_searched_as_the_whole_window_is(session, city, settings, new_place) -> None:
    """A near copy (not verbatim: the place decides) at each kind of place, against one at every other kind."""
    grids = _grids(session)
    same_street = [g for g in grids if g[1] == grids[0][1]]
    assert len(same_street) >= 2
    made = []
    for index, (name, (grid, street, district, label)) in enumerate(sorted(PLACES.items())):
        body = BASE[1][1] if name != new_place else BASE[1][1][:-6] + "请尽快处理。"
        request = ServiceRequest(
            channel="hotline", title=BASE[1][0], description=body, deadline_tier="7wd", status=RequestStatus.SUBMITTED,
            created_at=NOW - timedelta(days=1 if name != new_place else 0, minutes=index), updated_at=NOW,
            grid_id=same_street[grid][0] if grid is not None else None,
            street_id=same_street[street][1] if street is not None else None,
            district_id=same_street[district][2] if district is not None else None,
            place_key=duplicates.place_key(label))
        session.add(request)
        made.append((name, request, label))
    session.flush()
    for _, request, label in made:
        if label is not None:
            session.add(Triage(request_id=request.id, outcome=TriageOutcome.QUEUED, queued=False, triaged_at=NOW,
                               suggestions=[], place={"label": label}, reasons=[]))
    session.flush()
    (new, label), = [(r, lab) for name, r, lab in made if name == new_place]
    expected = _reference(session, new, label, settings)
    assert triage_steps.find_duplicate(session, request=new, settings=settings, place_label=label,
                                       now=NOW) == expected


def test_a_cached_candidate_is_read_again_when_its_row_changed(session, city, settings) -> None:
    grid, street, district = _grids(session)[0]
    place = {"grid_id": grid, "street_id": street, "district_id": district}
    old = ServiceRequest(channel="hotline", title=BASE[1][0], description=BASE[1][1], deadline_tier="7wd",
                         status=RequestStatus.SUBMITTED, created_at=NOW - timedelta(days=1),
                         updated_at=NOW, **place)
    new = ServiceRequest(channel="hotline", title=BASE[1][0], description=BASE[1][1] + "请处理。",
                         deadline_tier="7wd", status=RequestStatus.SUBMITTED, created_at=NOW, updated_at=NOW,
                         **place)
    session.add_all([old, new])
    session.flush()
    assert old.text_key == duplicates.text_key(old.title, old.description)  # filled at insert
    match = triage_steps.find_duplicate(session, request=new, settings=settings, place_label=None, now=NOW)
    assert match is not None and match.master_id == old.id  # and ``old`` is now cached
    other = BASE[2]
    session.execute(update(ServiceRequest).where(ServiceRequest.id == old.id).values(
        title=other[0], description=other[1], text_key=duplicates.text_key(*other)))
    assert triage_steps.find_duplicate(session, request=new, settings=settings, place_label=None, now=NOW) is None


def test_keys_stand_for_the_normalised_texts_and_labels() -> None:
    assert duplicates.text_key("路灯 不亮！", "三号楼_x000D_前") == duplicates.text_key("路灯不亮", "三号楼前")
    assert duplicates.text_key("路灯不亮", "") != duplicates.text_key("路灯不亮", "了")
    assert duplicates.text_key("！！", " ") is None and len(duplicates.text_key("a", "b") or "") == 16
    assert duplicates.place_key(None) is None and duplicates.place_key("") is None
    assert duplicates.place_key("？") == duplicates.PLACE_KEY_EMPTY
    assert duplicates.place_key("望湖 花园") == duplicates.place_key("望湖花园") != duplicates.place_key("丽发新城")
    labels = [None, "", "？", "·", "望湖花园", "望湖 花园", "丽发新城"]
    for a in labels:
        for b in labels:
            by_label = duplicates.same_place(
                duplicates.Candidate(id=1, title="", detail="", created_at=NOW, place_label=a),
                duplicates.Candidate(id=2, title="", detail="", created_at=NOW, place_label=b))
            by_key = duplicates.same_place(
                duplicates.Candidate(id=1, title="", detail="", created_at=NOW, place_label=duplicates.place_key(a)),
                duplicates.Candidate(id=2, title="", detail="", created_at=NOW, place_label=duplicates.place_key(b)))
            assert by_key == by_label, (a, b)
            has = duplicates.Candidate(id=1, title="", detail="", created_at=NOW, place_label=duplicates.place_key(a))
            assert has.has_place == bool(a), a


def test_scores_of_a_batch_are_the_scores_of_each_pair() -> None:
    rng = random.Random(4)
    texts = [_variant(rng, *rng.choice(BASE)) for _ in range(120)]
    texts += [(t, b[: len(b) // 2 + 3]) for t, b in BASE] + [("", ""), ("标题", ""), ("", "正文")]
    items = [duplicates.Candidate(id=i, title=t, detail=b, created_at=NOW) for i, (t, b) in enumerate(texts)]
    for new in items[:40]:
        cutoffs = [rng.choice([0.0, 0.3, 0.5, 0.8, 0.95, 1.2]) for _ in items]
        batch = duplicates.similarities(new, items, cutoffs)
        for other, cutoff, score in zip(items, cutoffs, batch, strict=True):
            one = duplicates.similarity(new, other, score_cutoff=cutoff)
            assert (score >= cutoff) == (one >= cutoff), (new.id, other.id)
            if one >= cutoff:
                assert score == one
    with pytest.raises(ValueError):
        duplicates.similarities(items[0], items[:2], [0.5])


def _scan(session: Session, lat: float, lon: float) -> int | None:
    """The grid of a point as found before issue 9: every polygon, lowest id first."""
    point = Point(lon, lat)
    for grid in session.scalars(select(Grid).order_by(Grid.id)):
        if shape(grid.geometry).covers(point):
            return grid.id
    return None


def test_the_grid_index_answers_as_the_scan_and_sees_a_new_grid(session, city) -> None:
    grids = session.scalars(select(Grid).order_by(Grid.id)).all()
    rings = [g.geometry["coordinates"][0] for g in grids]
    lons = [p[0] for ring in rings for p in ring]
    lats = [p[1] for ring in rings for p in ring]
    rng = random.Random(3)
    points = [(p[1], p[0]) for ring in rings for p in ring]  # corners: shared edges and corners
    points += [(rng.uniform(min(lats) - 0.01, max(lats) + 0.01), rng.uniform(min(lons) - 0.01, max(lons) + 0.01))
               for _ in range(300)]
    for lat, lon in points:
        place = org.locate_grid_place(session, lat=lat, lon=lon)
        assert (place.id if place else None) == _scan(session, lat, lon), (lat, lon)
        located = org.locate_grid(session, lat=lat, lon=lon)
        assert (located.id if located else None) == (place.id if place else None)
    first = grids[0]
    place = org.grid_place(session, first.id)
    street = org.ancestor_of_kind(first.community, UnitKind.STREET)
    district = org.ancestor_of_kind(first.community, UnitKind.DISTRICT)
    assert place is not None and (place.name, place.community_id, place.street_id, place.district_id) == (
        first.name, first.community_id, street.id if street else None, district.id if district else None)
    outside = (max(lats) + 1.0, max(lons) + 1.0)
    assert org.locate_grid_place(session, lat=outside[0], lon=outside[1]) is None
    box = [[outside[1] - 0.01, outside[0] - 0.01], [outside[1] + 0.01, outside[0] - 0.01],
           [outside[1] + 0.01, outside[0] + 0.01], [outside[1] - 0.01, outside[0] + 0.01]]
    added = Grid(code="far", name="远郊网格", community_id=first.community_id,
                 geometry={"type": "Polygon", "coordinates": [[*box, box[0]]]})
    session.add(added)
    session.flush()
    assert org.locate_grid_place(session, lat=outside[0], lon=outside[1]).id == added.id  # type: ignore[union-attr]
    session.commit()
    with session_factory(session.get_bind())() as other:  # another session sees it as well
        assert org.locate_grid_place(other, lat=outside[0], lon=outside[1]).id == added.id  # type: ignore[union-attr]
    session.execute(text("DELETE FROM grids WHERE code = 'far'"))
    session.commit()


def test_a_unit_read_does_not_load_its_grids_or_ancestors(session, city) -> None:
    community = session.scalars(select(OrgUnit).where(OrgUnit.kind == UnitKind.COMMUNITY)).first()
    assert community is not None
    session.expunge_all()
    unit = session.get(OrgUnit, community.id)
    assert unit is not None
    loaded = unit.__dict__
    assert "grids" not in loaded and "parent" not in loaded  # read when asked, in the session
    assert unit.parent is not None and unit.parent.kind == UnitKind.STREET and unit.grids


def test_a_token_principal_carries_its_grids_and_is_marked_used_once_a_minute(session, city) -> None:
    grids = [g for g, _, _ in _grids(session)][:3]
    user = auth.create_user(session, username="gw", password="Grid-worker-password-7", role=Role.GRID_WORKER,
                            actor="test", now=NOW)
    for grid_id in reversed(grids):
        session.add(UserGrid(user_id=user.id, grid_id=grid_id))
    secret, _ = auth.issue_token(session, user=user, kind=auth.API, now=NOW, hours=None, name="t")
    session.flush()
    principal = auth.principal_for(session, secret, kind=auth.API, now=NOW)
    assert principal is not None and principal.grid_ids == tuple(sorted(grids)) and principal.username == "gw"
    used = session.scalar(select(AuthToken.last_used_at).where(AuthToken.id == principal.token_id))
    assert used == NOW
    assert auth.principal_for(session, secret, kind=auth.API, now=NOW + timedelta(seconds=30)) is not None
    assert session.scalar(select(AuthToken.last_used_at).where(AuthToken.id == principal.token_id)) == NOW
    later = NOW + timedelta(minutes=2)
    assert auth.principal_for(session, secret, kind=auth.API, now=later) is not None
    assert session.scalar(select(AuthToken.last_used_at).where(AuthToken.id == principal.token_id)) == later
    assert auth.principal_for(session, secret + "x", kind=auth.API, now=later) is None
    assert auth.principal_for(session, secret, kind=auth.SESSION, now=later) is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_migrations_give_the_open_requests_their_keys_and_the_models_tables(tmp_path, backend: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    import civicloop.app  # noqa: F401  (every model on the metadata)
    from civicloop.core.migrate import alembic_config, upgrade
    from civicloop.core.models import Base

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        assert PG_URL
        url = own_database(PG_URL, "_mig")
    engine: Engine = make_engine(url)
    try:
        upgrade(url, "0008")
        insert = text(
            "INSERT INTO service_requests (id, channel, title, description, citizen_name, citizen_phone,"
            " citizen_id_number, address, deadline_tier, support_count, status, return_count, reopen_count,"
            " fallback, created_at, updated_at, version) VALUES (:id, 'hotline', :t, :d, '', '', '', '', '7wd', 0,"
            " :s, 0, 0, false, :at, :at, 1)")
        with engine.begin() as conn:
            conn.execute(insert, [{"id": 1, "t": "路灯不亮", "d": "三号楼前", "s": "submitted", "at": NOW},
                                  {"id": 2, "t": "噪音", "d": "夜里施工", "s": "dispatched", "at": NOW},
                                  {"id": 3, "t": "！", "d": "", "s": "submitted", "at": NOW},
                                  {"id": 4, "t": "旧事", "d": "早已办结", "s": "closed", "at": NOW}])
            conn.execute(text("INSERT INTO triages (request_id, outcome, queued, model_version, label, suggestions,"
                              " place, reasons, triaged_at) VALUES (1, 'queued', true, '', '', '[]', :p, '[]', :at)"),
                         {"p": '{"label": "望湖 花园"}', "at": NOW})
        engine.dispose()
        upgrade(url)
        with engine.connect() as conn:
            rows = dict(conn.execute(text("SELECT id, text_key || '/' || coalesce(place_key, '-none-')"
                                          " FROM service_requests WHERE text_key IS NOT NULL")).all())
            empty = conn.execute(text("SELECT text_key, place_key FROM service_requests WHERE id IN (3, 4)"
                                      " ORDER BY id")).all()
        assert rows == {1: f"{duplicates.text_key('路灯不亮', '三号楼前')}/{duplicates.place_key('望湖花园')}",
                        2: f"{duplicates.text_key('噪音', '夜里施工')}/-none-"}
        assert [tuple(r) for r in empty] == [(None, None), (None, None)]  # no text; closed
        # the duplicate check's indexes (0011) walk a place newest first; down and up again; the migrated
        # database is what the models describe
        with engine.connect() as conn:
            names = {index["name"] for index in inspect(conn).get_indexes("service_requests")}
        assert {"ix_service_requests_street_created", "ix_service_requests_grid_created",
                "ix_service_requests_text_key_status", "ix_service_requests_open_grid",
                "ix_service_requests_open_street", "ix_service_requests_open_place_key",
                "ix_service_requests_open_unplaced"} <= names
        assert "ix_service_requests_street_id" not in names
        command.downgrade(alembic_config(url), "0010")
        with engine.connect() as conn:
            assert "ix_service_requests_street_id" in {i["name"] for i in inspect(conn).get_indexes("service_requests")}
        engine.dispose()
        upgrade(url)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()
        if backend == "postgresql":
            assert PG_URL
            drop_database(PG_URL, url)


def test_a_route_is_remembered_for_its_transaction_only(db, city) -> None:
    """Deferred intake's batch routes many requests of one category and place in one transaction:
    the route is found once there, and a rule committed by another session is seen by the next."""
    from civicloop.catalog.models import RoutingRule
    from civicloop.catalog.routing import RoutePlace, route
    from civicloop.importers.sample_city import build_routes

    category = city["cat:交通运输/道路交通/违章停车"]
    with session_factory(db)() as s:
        build_routes(s)
        s.commit()
    with session_factory(db)() as reader, session_factory(db)() as editor:
        first = route(reader, category_id=category, place=RoutePlace())
        assert first is not None and first.lead_unit_id == city["DEP-JT"]
        assert route(reader, category_id=category, place=RoutePlace()) is first  # remembered
        reader.commit()
        editor.add(RoutingRule(category_id=category, lead_target="unit", lead_unit_id=city["DEP-CG"], priority=9,
                               assisting_unit_ids=[], active=True, note="", updated_by="",
                               updated_at=datetime.now(UTC)))
        editor.commit()
        again = route(reader, category_id=category, place=RoutePlace())
        assert again is not None and again.lead_unit_id == city["DEP-CG"]


def test_the_duplicate_check_walks_the_open_requests_of_the_place(db) -> None:
    """The candidates of a request with a street and a place label come from the partial indexes of the
    open requests (migration 0011), on both databases: their cost follows the open requests at the place,
    not its history (issue 9: a replay slowed from 77 to 49 requests/s when they read every request of
    the street)."""
    statement = triage_steps.candidate_statement(key=True, district=True, grid=True, street=True, label=True)
    params = {"request_id": 1, "key": "k", "title": "t", "since": NOW - timedelta(days=30), "district": 1,
              "grid": 3, "street": 8, "label": "x"}
    with db.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)
        values = compiled.construct_params(params)
        if conn.dialect.name == "sqlite":  # the driver's own EXPLAIN, with the values as SQLite stores them
            args: Any = tuple(str(values[k].replace(tzinfo=None)) if isinstance(values[k], datetime) else values[k]
                              for k in compiled.positiontup or ())
            plan = " ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args))
        else:
            plan = " ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {compiled}", values))
    # the place members (the same-text ones may take any index on an empty table: what a planner picks
    # there depends on the statistics the other tests left)
    for index in ("ix_service_requests_open_grid", "ix_service_requests_open_street",
                  "ix_service_requests_open_place_key"):
        assert index in plan, plan
