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
the wait in the queue included. The queue is bounded (``triage_backlog_limit``, :func:`admitted`):
a hotline filing faster than intake routes is admitted at intake's pace, so that wait stays short.

A request whose triage fails is never lost: it goes to the dispatcher's queue with the reason
``triage_failed``; one that left ``submitted`` meanwhile (a person took it) is only taken off the
queue. ``civicloop intake drain`` empties the queue from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, selectinload

from civicloop.core.db import session_scope
from civicloop.core.settings import Settings
from civicloop.core.timeutil import utcnow
from civicloop.requests import triage, triage_steps
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
        """How many queue entries the batch took (and deleted)."""
        return len(self.triaged) + len(self.skipped) + len(self.failed)


def run_batch(session: Session, *, settings: Settings, limit: int | None = None,
              claimed: Callable[[int], None] | None = None, request_ids: Sequence[int] | None = None) -> BatchReport:
    """Triage up to ``limit`` (default ``triage_batch_size``) queued requests, oldest first, in the
    caller's transaction; each entry is deleted. Entries another transaction holds are skipped
    (PostgreSQL). The batch runs in one savepoint; when a request fails, it is rolled back and run again
    with a savepoint for each request, so the failing one alone is left in the dispatcher's queue with
    reason ``triage_failed``. ``claimed`` is told how many entries the batch took, as soon as
    it took them. ``request_ids``: take only these requests' entries (``civicloop intake replay``, so that
    replays running side by side, or a server's runners, triage only their own). Does not commit."""
    query = (select(TriageQueueEntry).order_by(TriageQueueEntry.request_id)
             .limit(limit or settings.triage_batch_size).with_for_update(skip_locked=True))
    if request_ids is not None:
        query = query.where(TriageQueueEntry.request_id.in_(list(request_ids)))
    report = BatchReport()
    entries = session.scalars(query).all()
    ids = [entry.request_id for entry in entries]
    if claimed is not None:
        claimed(len(ids))
    # the batch's requests with their work orders, and which have a record already, in two queries
    requests = {r.id: r for r in session.scalars(select(ServiceRequest).where(ServiceRequest.id.in_(ids))
                                                 .options(selectinload(ServiceRequest.work_orders)))}
    triaged = set(session.scalars(select(Triage.request_id).where(Triage.request_id.in_(ids))))
    due: list[ServiceRequest] = []
    for entry in entries:
        request = requests.get(entry.request_id)
        if request is None or request.status != RequestStatus.SUBMITTED or request.id in triaged:
            report.skipped.append(entry.request_id)
        else:
            due.append(request)
    try:
        predicted = triage.predict_batch(due, settings)
    except Exception:  # the per-request path classifies (or fails) each on its own
        log.exception("classifying deferred intake's batch at once failed: one by one")
        predicted = {}
    try:
        # one savepoint for the batch (two statements, not two a request); the duplicate check reads the
        # open requests of a street once for the batch (triage_steps.BatchPool), and the batch's places,
        # records and events are written together at its end (no autoflush: a few statements, not six a
        # request; the pool knows the batch's requests as the session has them)
        with session.begin_nested(), triage_steps.batch_pool(session, due) as pool, session.no_autoflush:
            for request in due:
                _triage_one(session, request, settings, predicted, flush=False)
                pool.update(request)
            session.flush()
        report.triaged = [request.id for request in due]
    except Exception:
        # one of them failed: the batch's work is undone and done again request by request, each in its
        # own savepoint, so that only the failing one is left to a person
        log.warning("a request of deferred intake's batch failed: the batch again, one request at a time",
                    exc_info=True)
        for request in due:
            try:
                with session.begin_nested():
                    _triage_one(session, request, settings, predicted)
                report.triaged.append(request.id)
            except Exception:
                log.exception("deferred intake of request %s failed: it waits for a person", request.id)
                _queue_for_person(session, request_id=request.id, now=utcnow())
                report.failed.append(request.id)
    if ids:  # one statement for the batch; the rows are locked by this transaction since the claim
        session.execute(delete(TriageQueueEntry).where(TriageQueueEntry.request_id.in_(ids))
                        .execution_options(synchronize_session=False))
        for entry in entries:
            session.expunge(entry)
    session.flush()
    return report


def _triage_one(session: Session, request: ServiceRequest, settings: Settings,
                predicted: dict[int, triage.Predicted], *, flush: bool = True) -> None:
    """Triage one request of a batch; its latency counts from its filing (the wait in the queue too).
    ``flush=False``: the caller flushes the batch at its end."""
    now = utcnow()
    waited = max(0.0, (now - request.created_at).total_seconds())
    triage.triage(session, request=request, settings=settings, started=time.perf_counter() - waited, now=now,
                  predicted=predicted.get(request.id), flush=flush)


def _queue_for_person(session: Session, *, request_id: int, now: datetime) -> None:
    session.add(Triage(request_id=request_id, outcome=TriageOutcome.QUEUED, queued=True, triaged_at=now,
                       suggestions=[], place={}, reasons=[FAILED]))
    session.flush()


def drain(settings: Settings, *, engine: Engine | None = None, stop: threading.Event | None = None,
          seen: Callable[[int], None] | None = None, claimed: Callable[[int], None] | None = None) -> int:
    """Run batches, one transaction each, until the queue is empty (or ``stop`` is set); return how
    many entries were taken. ``claimed`` is told how many entries each batch took when it took them,
    ``seen`` how many still wait after it. Used by the runner and ``civicloop intake drain``."""
    total = 0
    while stop is None or not stop.is_set():
        with session_scope(engine) as session:
            report = run_batch(session, settings=settings, claimed=claimed)
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

    The queue is bounded: a filing is admitted (:meth:`admit`, before its transaction begins) only while
    fewer than ``triage_backlog_limit`` requests wait — as this runner last counted the queue, plus
    what this process filed since and is filing now — else it waits for the runner to catch up (at
    most ``triage_backlog_wait_seconds``, then it goes ahead). A hotline that files faster than intake
    can route is so slowed to intake's pace, and the time from filing to work order stays about
    ``limit ÷ intake's rate`` instead of growing without end (issue 9: 5–13 s p99 at 64 connections
    without the bound, about 2 s when the answer rather than the filing waited).
    """

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._room = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread: threading.Thread | None = None
        self.taken = 0
        self.counted = 0  # entries in the queue at the runner's last count
        self.filed = 0  # requests this process queued since that count
        self.filing = 0  # filings admitted and not finished yet
        self._tickets = 0  # filings are admitted first come, first served: the next ticket to give
        self._head = 0  # the ticket whose turn it is
        self._abandoned: set[int] = set()  # tickets that stopped waiting before their turn

    def start(self) -> TriageRunner:
        """Start the thread; its first round drains what is already queued (left by a stopped server)."""
        _RUNNERS.add(self)
        self._wake.set()
        self._thread = threading.Thread(target=self._loop, name="civicloop-triage", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """A request was queued by this process (its filing committed): count it and run a round now."""
        with self._room:
            self.filed += 1
        self._wake.set()

    @property
    def waiting(self) -> int:
        """The requests waiting or about to wait, as far as this process knows."""
        return self.counted + self.filed + self.filing

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a filing until the queue has room (see the class), first come first served, then count it
        as filing until the block ends (its commit has then woken the runner, :meth:`wake`). Waits on
        the event loop, not in a thread: 64 filings waiting on a worker of 40 threads would leave none
        for the filings admitted (measured: 5 requests/s, p50 10.7 s, when the wait took a thread)."""
        limit = self.settings.triage_backlog_limit
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.triage_backlog_wait_seconds
        with self._room:
            ticket, self._tickets = self._tickets, self._tickets + 1
        while True:
            with self._room:
                left = deadline - loop.time()
                if self._stop.is_set() or left <= 0 or (ticket == self._head and self.waiting < limit):
                    break
                turn: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, turn))
            self._wake.set()  # the count may be stale (another process's runner took the entries): look
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn, timeout=min(left, 0.25))
        with self._room:
            if ticket == self._head:
                self._head += 1
                while self._head in self._abandoned:
                    self._abandoned.discard(self._head)
                    self._head += 1
            else:  # waited its longest before its turn: goes ahead, and the line skips its ticket
                self._abandoned.add(ticket)
            self.filing += 1
            self._notify()
        try:
            yield
        finally:
            with self._room:
                self.filing -= 1
                self._notify()

    def _notify(self) -> None:
        """Tell every waiting filing to look again (called with ``_room`` held, from any thread)."""
        waiters, self._waiters = self._waiters, []
        for loop, turn in waiters:
            with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody waits there
                loop.call_soon_threadsafe(_resolve, turn)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current batch (waiting at most ``timeout`` seconds for it); filings
        waiting for room go ahead."""
        self._stop.set()
        self._wake.set()
        with self._room:
            self._notify()
        _RUNNERS.discard(self)
        if self._thread is not None:
            self._thread.join(timeout)

    def _seen(self, waiting: int) -> None:
        with self._room:
            self.counted, self.filed = waiting, 0
            self._notify()

    def _claimed(self, taken: int) -> None:
        """A batch took ``taken`` entries: they no longer wait (room for filings while it works)."""
        with self._room:
            self.counted, self.filed = max(0, self.counted + self.filed - taken), 0
            self._notify()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.triage_poll_seconds)
            self._wake.clear()
            try:
                self.taken += drain(self.settings, engine=self.engine, stop=self._stop, seen=self._seen,
                                    claimed=self._claimed)
            except Exception:  # the database away, a deadlock: logged, tried again at the next wake
                log.exception("the deferred intake runner failed a round; it tries again")
                self._stop.wait(1.0)


_RUNNERS: set[TriageRunner] = set()


def _resolve(turn: asyncio.Future[None]) -> None:
    if not turn.done():
        turn.set_result(None)


async def admitted() -> AsyncIterator[None]:
    """FastAPI dependency of every filing route, listed before any that reads the database: admit one
    filing into deferred intake (:meth:`TriageRunner.admit` of this process's runner; no wait without
    one: inline intake, or a process that runs none), before the filing's transaction begins (an
    SQLite transaction holds the write lock the runner needs)."""
    runner = next(iter(_RUNNERS), None)
    if runner is None:
        yield
        return
    async with runner.admit():
        yield


@event.listens_for(Session, "after_commit")
def _wake_runners(session: Session) -> None:
    """After a commit that queued a request: wake this process's runners."""
    if session.info.pop(WAKE, False):
        for runner in list(_RUNNERS):
            runner.wake()
