"""Deferred intake (``triage_mode = "deferred"``): answer the filing first, triage right after.

With inline intake (the default) ``POST /api/v1/requests`` locates, checks, classifies, routes and
dispatches a request before it answers, so a hotline's answer waits for all of it (docs/benchmarks.md:
about three quarters of the server's CPU per filing). Deferred, the filing's transaction stores the
request and a :class:`~civicloop.requests.models.TriageQueueEntry` and commits: the 201 means both are
durable. A :class:`TriageRunner` thread in each ``civicloop serve`` worker, woken by every commit of
its process that queued a request (and at least every ``triage_poll_seconds``), then takes up to
``triage_batch_size`` entries in one transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
several workers share the queue without taking the same request), runs the same pipeline as inline
intake (:func:`civicloop.requests.triage.triage`) on each and deletes the entries. The triage
record's ``latency_seconds`` then runs from the filing (``created_at``) to the routed work order,
the wait in the queue included. The queue is bounded (``triage_backlog_limit``): a hotline filing
faster than intake routes gets its answers at intake's pace, so that wait stays short.

A request whose triage fails is never lost: it goes to the dispatcher's queue with the reason
``triage_failed``; one that left ``submitted`` meanwhile (a person took it) is only taken off the
queue. ``civicloop intake drain`` empties the queue from the command line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, selectinload

from civicloop.core.db import session_scope
from civicloop.core.settings import Settings
from civicloop.core.timeutil import utcnow
from civicloop.requests import triage
from civicloop.requests.models import RequestStatus, ServiceRequest, Triage, TriageOutcome, TriageQueueEntry
from civicloop.requests.service import now_or

log = logging.getLogger(__name__)

WAKE = "civicloop.triage_queue.wake"
"""Key in ``Session.info``: this transaction queued a request; wake the runners when it commits."""
FAILED = "triage_failed"
"""The queue reason of a request whose deferred triage raised (text ``triage.triage_failed``)."""


def on_filing(
    session: Session, *, request: ServiceRequest, settings: Settings, started: float | None = None,
    now: datetime | None = None,
) -> Triage | None:
    """Intake for a request just filed, as ``settings`` say: ``None`` when ``triage_on_intake`` is off;
    inline, the triage record (:func:`civicloop.requests.triage.triage`, same arguments); deferred, the
    request is queued (:func:`enqueue`) and ``None`` is returned. The one entry point of every HTTP
    filing path (the API, Open311, the web forms, an accepted finding)."""
    if not settings.triage_on_intake:
        return None
    if settings.triage_mode == "deferred":
        enqueue(session, request_id=request.id, now=request.created_at)
        return None
    return triage.triage(session, request=request, settings=settings, started=started, now=now)


def enqueue(session: Session, *, request_id: int, now: datetime | None = None) -> None:
    """Queue request ``request_id`` for deferred intake in the caller's transaction; the runners of
    this process are woken when it commits."""
    session.add(TriageQueueEntry(request_id=request_id, enqueued_at=now_or(now)))
    session.info[WAKE] = True


def is_pending(session: Session, *, request_id: int) -> bool:
    """Whether request ``request_id`` waits in the deferred intake queue."""
    return session.get(TriageQueueEntry, request_id) is not None


def backlog(session: Session) -> dict[str, float | int | None]:
    """Return the queue's length and the age in seconds of its oldest entry: ``{"waiting", "oldest_seconds"}``
    (``oldest_seconds`` ``None`` when empty). For the intake figures and monitoring."""
    waiting, oldest = session.execute(select(func.count(), func.min(TriageQueueEntry.enqueued_at))).one()
    if oldest is not None and oldest.tzinfo is None:  # SQLite's aggregate comes back naive UTC
        oldest = oldest.replace(tzinfo=utcnow().tzinfo)
    age = round((utcnow() - oldest).total_seconds(), 3) if oldest is not None else None
    return {"waiting": int(waiting), "oldest_seconds": age}


@dataclass
class BatchReport:
    """What one :func:`run_batch` did: the request ids triaged, those it only took off the queue
    (already handled, or gone) and those whose triage failed (queued for a person)."""

    triaged: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)

    @property
    def taken(self) -> int:
        return len(self.triaged) + len(self.skipped) + len(self.failed)


def run_batch(session: Session, *, settings: Settings, limit: int | None = None) -> BatchReport:
    """Triage up to ``limit`` (default ``triage_batch_size``) queued requests, oldest first, in the
    caller's transaction; each entry is deleted. Entries another transaction holds are skipped
    (PostgreSQL). A request's failure is contained in a savepoint and leaves it in the dispatcher's
    queue with reason ``triage_failed``. Does not commit."""
    query = (select(TriageQueueEntry).order_by(TriageQueueEntry.request_id)
             .limit(limit or settings.triage_batch_size).with_for_update(skip_locked=True))
    report = BatchReport()
    entries = session.scalars(query).all()
    ids = [entry.request_id for entry in entries]
    # the batch's requests with their work orders, and which have a record already, in two queries
    requests = {r.id: r for r in session.scalars(select(ServiceRequest).where(ServiceRequest.id.in_(ids))
                                                 .options(selectinload(ServiceRequest.work_orders)))}
    triaged = set(session.scalars(select(Triage.request_id).where(Triage.request_id.in_(ids))))
    for entry in entries:
        request = requests.get(entry.request_id)
        if request is None or request.status != RequestStatus.SUBMITTED or request.id in triaged:
            report.skipped.append(entry.request_id)
        else:
            now = utcnow()
            waited = max(0.0, (now - request.created_at).total_seconds())
            try:
                with session.begin_nested():
                    triage.triage(session, request=request, settings=settings,
                                  started=time.perf_counter() - waited, now=now)
                report.triaged.append(request.id)
            except Exception:
                log.exception("deferred intake of request %s failed: it waits for a person", request.id)
                _queue_for_person(session, request_id=request.id, now=now)
                report.failed.append(request.id)
    if ids:  # one statement for the batch; the rows are locked by this transaction since the claim
        session.execute(delete(TriageQueueEntry).where(TriageQueueEntry.request_id.in_(ids))
                        .execution_options(synchronize_session=False))
        for entry in entries:
            session.expunge(entry)
    session.flush()
    return report


def _queue_for_person(session: Session, *, request_id: int, now: datetime) -> None:
    session.add(Triage(request_id=request_id, outcome=TriageOutcome.QUEUED, queued=True, triaged_at=now,
                       suggestions=[], place={}, reasons=[FAILED]))
    session.flush()


def drain(settings: Settings, *, engine: Engine | None = None, stop: threading.Event | None = None,
          seen: Callable[[int], None] | None = None) -> int:
    """Run batches, one transaction each, until the queue is empty (or ``stop`` is set); return how
    many entries were taken. ``seen`` is told how many entries still wait after each batch. Used by
    the runner and ``civicloop intake drain``."""
    total = 0
    while stop is None or not stop.is_set():
        with session_scope(engine) as session:
            report = run_batch(session, settings=settings)
            waiting = session.scalar(select(func.count()).select_from(TriageQueueEntry)) if seen else 0
        total += report.taken
        if seen is not None:
            seen(int(waiting or 0))
        if report.taken == 0:
            break
    return total


class TriageRunner:
    """A daemon thread that drains the deferred intake queue: woken by :meth:`wake` (each commit of this
    process that queued a request) or every ``triage_poll_seconds``. Errors are logged and retried at
    the next wake; :meth:`stop` ends the thread after its current batch.

    The queue is bounded: while more than ``triage_backlog_limit`` requests wait (as this runner last
    counted them, plus what this process filed since), a filing's answer waits for the runner to catch
    up (:meth:`hold`, at most ``triage_backlog_wait_seconds``): the request is stored either way, but a
    hotline that files faster than intake can route is slowed to intake's pace instead of letting the
    time from filing to work order grow without end (issue 9: 5–13 s p99 at 64 connections without it).
    """

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._room = threading.Condition()
        self._thread: threading.Thread | None = None
        self.taken = 0
        self.waiting = 0

    def start(self) -> TriageRunner:
        """Start the thread; its first round drains what is already queued (left by a stopped server)."""
        _RUNNERS.add(self)
        self._wake.set()
        self._thread = threading.Thread(target=self._loop, name="civicloop-triage", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A request was queued by this process: count it and run a round now."""
        with self._room:
            self.waiting += 1
        self._wake.set()

    def hold(self) -> None:
        """Wait while the queue is over its limit (see the class), at most ``triage_backlog_wait_seconds``."""
        with self._room:
            self._room.wait_for(lambda: self.waiting <= self.settings.triage_backlog_limit or self._stop.is_set(),
                                timeout=self.settings.triage_backlog_wait_seconds)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._room:
            self._room.notify_all()
        _RUNNERS.discard(self)
        if self._thread is not None:
            self._thread.join(timeout)

    def _seen(self, waiting: int) -> None:
        with self._room:
            self.waiting = waiting
            self._room.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.triage_poll_seconds)
            self._wake.clear()
            try:
                self.taken += drain(self.settings, engine=self.engine, stop=self._stop, seen=self._seen)
            except Exception:  # the database away, a deadlock: logged, tried again at the next wake
                log.exception("the deferred intake runner failed a round; it tries again")
                self._stop.wait(1.0)


_RUNNERS: set[TriageRunner] = set()


@event.listens_for(Session, "after_commit")
def _wake_runners(session: Session) -> None:
    """After a commit that queued a request: wake this process's runners, then hold the answer while
    the queue is over its limit (:meth:`TriageRunner.hold`)."""
    if session.info.pop(WAKE, False):
        runners = list(_RUNNERS)
        for runner in runners:
            runner.wake()
        for runner in runners:
            runner.hold()
