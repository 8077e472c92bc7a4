"""The floor of the HTTP benchmark: what FastAPI itself does on this machine (issue 9).

A minimal FastAPI application with the server options of ``civicloop serve`` (uvicorn, ``workers=N``,
the default loop and HTTP implementation: asyncio and h11 unless uvloop/httptools are installed, access
log at ``info``) that files the body ``benchmarks/http_intake.py`` sends to ``POST /api/v1/requests``
(channel, title, description, address, lat, lon), validated by a small pydantic model, into the table
``bench_ref`` of the pgbench reference (``service_requests``' text columns), durably (a 201 answer
means the row is committed under PostgreSQL's ``synchronous_commit``), and answers ``{"id": N}``:

* ``POST /plain`` — a sync ``def`` endpoint (run in the thread pool): one INSERT + commit per request
  on a connection of a small per-process pool (``FLOOR_POOL_SIZE``, default 20; ``psycopg_pool`` is not
  a dependency): "plain FastAPI + one INSERT".
* ``POST /batched`` — an ``async def`` endpoint that hands its row to the process's writer task, which
  collects rows for up to ``FLOOR_BATCH_WINDOW_MS`` (default 2) milliseconds or ``FLOOR_BATCH_MAX``
  (default 64) rows, inserts them in one pipeline (``executemany`` with ``RETURNING``) on a psycopg
  ``AsyncConnection`` and commits once, then answers every waiter: group commit.

``--nodelay`` (with ``--workers`` > 1): the listening socket bound here as ``IPPROTO_TCP`` and handed to
uvicorn's multi-worker supervisor, so that asyncio sets ``TCP_NODELAY`` on accepted connections; uvicorn's
own socket (``Config.bind_socket``, the path of ``uvicorn.run(workers=N)`` and so of ``civicloop serve``)
has ``proto`` 0 and leaves Nagle on: each keep-alive answer's body then waits ~40 ms for the client's
delayed ACK (Kludex/uvicorn#3149).

``FLOOR_DSN``: libpq connection string of the database (required). Run:
``FLOOR_DSN="host=127.0.0.1 user=postgres dbname=x" python benchmarks/floor_app.py --workers 2 --port 8001``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

TABLE = """CREATE TABLE IF NOT EXISTS bench_ref (
    id serial PRIMARY KEY, channel varchar(20) NOT NULL, title varchar(200) NOT NULL, description text NOT NULL,
    address varchar(500) NOT NULL, deadline_tier varchar(8) NOT NULL, status varchar(20) NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"""
"""The pgbench reference's table (``http_intake.REFERENCE_TABLE``), created when absent."""
INSERT = ("INSERT INTO bench_ref (channel, title, description, address, deadline_tier, status, created_at,"
          " updated_at) VALUES (%s, %s, %s, %s, '7wd', 'submitted', now(), now()) RETURNING id")


class Submission(BaseModel):
    """The body of ``POST /api/v1/requests`` as the benchmark sends it."""

    channel: str = Field("hotline", max_length=20)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=4000)
    address: str = Field("", max_length=500)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)

    def row(self) -> tuple[str, str, str, str]:
        return self.channel, self.title, self.description, self.address


class Pool:
    """At most ``size`` connections, reused last in first out; a caller waits when all are lent."""

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn, self.size = dsn, size
        self.idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self.opened = 0
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self) -> Any:
        try:
            conn = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                grow = self.opened < self.size
                self.opened += grow
            conn = psycopg.connect(self.dsn) if grow else self.idle.get()
        try:
            yield conn
        except BaseException:
            try:
                if conn.closed:  # lost: a new one takes its place, so a waiter is not left waiting
                    conn = psycopg.connect(self.dsn)
                else:
                    conn.rollback()
            except psycopg.Error:
                with self.lock:
                    self.opened -= 1
                raise
            self.idle.put(conn)
            raise
        self.idle.put(conn)

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().close()


class Writer:
    """The process's group commit: rows queued by the handlers, written by one task on one connection."""

    def __init__(self, dsn: str, window: float, most: int) -> None:
        self.dsn, self.window, self.most = dsn, window, most
        self.pending: list[tuple[tuple[str, str, str, str], asyncio.Future[int]]] = []
        self.arrived = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def add(self, row: tuple[str, str, str, str]) -> int:
        if self.task is None or self.task.done():  # the writer failed (see the log): answer 500, do not hang
            raise RuntimeError("the writer task is not running")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pending.append((row, future))
        self.arrived.set()
        return await future

    async def run(self) -> None:
        conn = await psycopg.AsyncConnection.connect(self.dsn)
        try:
            while True:
                await self.arrived.wait()
                if len(self.pending) < self.most and self.window > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.window):
                            while len(self.pending) < self.most:
                                self.arrived.clear()
                                await self.arrived.wait()
                batch, self.pending = self.pending[:self.most], self.pending[self.most:]
                if not self.pending:
                    self.arrived.clear()
                try:
                    async with conn.cursor() as cur:
                        await cur.executemany(INSERT, [row for row, _ in batch], returning=True)
                        ids = []
                        while True:
                            ids.append((await cur.fetchone() or (0,))[0])
                            if not cur.nextset():
                                break
                    await conn.commit()
                except Exception as exc:  # every waiter of the batch fails; the next batch tries again
                    if conn.closed:
                        conn = await psycopg.AsyncConnection.connect(self.dsn)
                    else:
                        await conn.rollback()
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), new_id in zip(batch, ids, strict=True):
                    if not future.done():
                        future.set_result(new_id)
        finally:
            await conn.close()


def create_app() -> FastAPI:
    dsn = os.environ["FLOOR_DSN"]
    pool = Pool(dsn, int(os.environ.get("FLOOR_POOL_SIZE", "20")))
    writer_box: dict[str, Writer] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.suppress(psycopg.errors.UniqueViolation), psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE)  # workers starting together may race: one wins, the others see it
        writer = Writer(dsn, float(os.environ.get("FLOOR_BATCH_WINDOW_MS", "2")) / 1000,
                        int(os.environ.get("FLOOR_BATCH_MAX", "64")))
        writer.task = asyncio.create_task(writer.run())
        writer_box["writer"] = writer
        yield
        writer.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer.task
        pool.close()

    app = FastAPI(title="floor", lifespan=lifespan)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/plain", status_code=201)
    def plain(submission: Submission) -> dict[str, int]:
        with pool.connection() as conn:
            row = conn.execute(INSERT, submission.row()).fetchone()
            conn.commit()
        if row is None:
            raise HTTPException(500, "no id")
        return {"id": row[0]}

    @app.post("/batched", status_code=201)
    async def batched(submission: Submission) -> dict[str, int]:
        return {"id": await writer_box["writer"].add(submission.row())}

    return app


def main() -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--nodelay", action="store_true",
                        help="with --workers > 1, bind the listening socket as IPPROTO_TCP so that asyncio sets"
                             " TCP_NODELAY on accepted connections (uvicorn's bind_socket leaves proto 0)")
    args = parser.parse_args()
    options: dict[str, Any] = dict(factory=True, host=args.host, port=args.port, workers=args.workers,
                                   log_level="info")
    if not (args.nodelay and args.workers > 1):
        # as `civicloop serve` (cli/main.py): uvicorn.run with an import string, factory, workers, log level
        uvicorn.run("floor_app:create_app", app_dir=str(Path(__file__).resolve().parent), **options)
        return
    # uvicorn.run's multi-worker path (Multiprocess over config.bind_socket()) with the socket bound here:
    # uvicorn's socket has proto 0, accepted sockets inherit it and asyncio then leaves Nagle on, so each
    # answer's body (h11 writes head and body apart) waits for the client's delayed ACK, ~40 ms on Linux
    # (Kludex/uvicorn#3149)
    import socket
    import sys

    from uvicorn.supervisors import Multiprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    config = uvicorn.Config("floor_app:create_app", **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    main()
