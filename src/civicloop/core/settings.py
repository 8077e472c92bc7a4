"""Settings read from the environment (prefix ``CIVICLOOP_``) and an optional ``.env`` file.

Every knob of the loop that a city may want to change lives here, with the unit in its name or
docstring: durations are seconds, deadlines in days are working days.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """civicloop's configuration. Read once per process by :func:`get_settings`."""

    model_config = SettingsConfigDict(env_prefix="CIVICLOOP_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./civicloop.db"
    """SQLAlchemy URL. SQLite (WAL mode) by default; ``postgresql+psycopg://...`` in production."""
    timezone: str = "Asia/Shanghai"
    """Zone in which times are shown to users and working days are counted. Times are stored in UTC."""
    default_language: str = "zh"
    """Language of messages when the client does not ask for another (``zh`` or ``en``)."""

    max_returns: int = Field(2, ge=1, le=20)
    """Returns (退单) after which a request falls back (兜底) to its district."""
    max_reopens: int = Field(1, ge=0, le=10)
    """Reopens (重办) after an unresolved or dissatisfied callback before the request is closed anyway
    (and put under supervision)."""

    response_seconds_urgent: int = Field(2 * 3600, gt=0)
    """Time to acknowledge (签收) an urgent work order, in seconds of clock time."""
    response_seconds_default: int = Field(24 * 3600, gt=0)
    """Time to acknowledge any other work order, in seconds of clock time."""

    basic_satisfaction_weight: float = Field(0.8, ge=0.0, le=1.0)
    """Weight of a 'basically satisfied' (基本满意) rating in the satisfaction rate."""
    weight_response: float = Field(0.10, ge=0.0)
    weight_resolution: float = Field(0.45, ge=0.0)
    weight_satisfaction: float = Field(0.45, ge=0.0)
    """Weights of the three rates in the composite score (normalised to sum 1)."""

    auto_dispatch_threshold: float = Field(0.9, ge=0.0, le=1.0)
    """Intelligent intake (智能分拨) dispatches a request without a person only when the classifier's
    calibrated probability of its category is at least this (0–1) and a routing rule applies; any
    other request goes to the dispatcher's queue with the top 3 suggestions. At 0.9 the shipped model
    routes about two thirds of the Teddy Cup messages at about 97 % accuracy (docs/intelligence.md)."""
    triage_on_intake: bool = True
    """Run intelligent intake on every new request (``False``: every request waits for a person)."""
    triage_mode: Literal["inline", "deferred"] = "inline"
    """When intake runs for a request filed over HTTP (API, Open311, web forms, an accepted finding):
    ``inline`` in the filing's own transaction (the 201 carries the routed work order or the queue's
    reasons); ``deferred`` after it (the 201 means the request is stored and queued for intake; a
    runner in each ``civicloop serve`` worker triages the queue in batches within about a second,
    ``requests.triage_queue``). Deferred answers a busy hotline faster (docs/benchmarks.md)."""
    triage_batch_size: int = Field(16, ge=1, le=1000)
    """At most this many queued requests are triaged in one transaction by the deferred runner."""
    triage_backlog_limit: int = Field(16, ge=1, le=100_000)
    """Deferred intake's queue is bounded: while this many requests wait (or are being filed), a new
    filing waits for room before it is stored, so the time from filing to work order stays about
    ``(limit + batch) ÷ intake's rate`` however fast requests come in (16 + 16 at ~60 a second: about
    half a second)."""
    triage_backlog_wait_seconds: float = Field(10.0, gt=0, le=300)
    """The longest a filing waits for room in the queue (seconds); then it is filed anyway."""
    triage_poll_seconds: float = Field(1.0, gt=0, le=60)
    """The deferred runner looks at the queue at least this often (seconds), besides being woken by
    each filing of its own process (requests filed by another process wait at most this long)."""
    duplicate_window_days: int = Field(30, ge=0, le=365)
    """A new request repeats (重复件) only an open request filed at most this many calendar days before."""
    duplicate_threshold: float = Field(0.6, ge=0.0, le=1.0)
    """Text similarity (0–1, ``intelligence.duplicates.similarity``) from which a request at the same
    place counts as a duplicate and is linked without a person. On the judged Teddy Cup sample 0.6 linked
    49 of 49 correctly (0.5 links 15 % more at 58/60; docs/intelligence.md): intake closes a linked
    request, so it takes the stricter one."""
    model_path: str | None = None
    """The classifier's model file (``CIVICLOOP_MODEL_PATH``); default ``models/classifier.joblib``
    under the working directory (``intelligence.model_store.default_model_path``)."""

    # trust the X-Civicloop-Role/-Actor/-Unit headers (development and tests only: anyone could claim admin)
    trust_role_headers: bool = False
    # hours a web login stays valid
    session_hours: float = Field(12.0, gt=0, le=24 * 90)
    # send the session cookie only over HTTPS (turn on behind a TLS reverse proxy)
    secure_cookies: bool = False
    # personal data at rest (core.crypto): Fernet keys, the first encrypts (comma-separated; rotation)
    data_keys: str = ""
    # the key of the citizens' blind index (core.crypto.citizen_key); never rotated with the data keys
    data_index_key: str = ""
    # where the keys are kept when the two settings above are empty (default: beside the SQLite file)
    key_file: str = ""
    # days after a request is closed or rejected before the citizen's contact is erased (PIPL §19)
    contact_retention_days: int = Field(180, ge=1, le=3650)
    worker_interval_seconds: int = Field(60, ge=1)
    """Seconds between two rounds of periodic jobs in ``civicloop worker``."""

    db_pool_size: int = Field(10, ge=1, le=1000)
    """PostgreSQL connections each server process keeps open (SQLAlchemy's ``pool_size``)."""
    db_max_overflow: int = Field(30, ge=0, le=1000)
    """Connections a process may open beyond ``db_pool_size`` under load (``max_overflow``). A request
    holds its connection from its caller's lookup to its commit while it waits for the threads of the
    other steps (``core.http``), so with fewer connections than requests in flight a process can stall
    until the pool's 30 s timeout (issue 9: 64 connections on one process did, with 5 + 10). Keep
    (``db_pool_size`` + ``db_max_overflow``) × processes below PostgreSQL's ``max_connections`` (100 by
    default: two processes of 40)."""

    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Largest request body accepted, in bytes (default 1 MiB); a larger one is refused with 413
    before it is read (``core.bodylimit``). The largest valid intake body is about 30 KB."""
    rate_limit_intake: str = "60/minute"
    """Submissions one client may make (``POST /api/v1/requests``, Open311 ``POST requests``), in
    the notation of the ``limits`` library: ``N/second|minute|hour|day``, a moving window
    (``core.ratelimit``)."""
    rate_limit_login: str = "10/minute"
    """Login attempts one client may make, same notation (``core.ratelimit``)."""
    rate_limit_storage_uri: str = "memory://"
    """Where the counts live: ``memory://`` counts per process (each of N workers allows the full
    rate); ``redis://host:6379`` shares them between workers and servers."""

    @field_validator("rate_limit_intake", "rate_limit_login")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # raises ValueError for a malformed rate, so a typo fails at start-up
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        ZoneInfo(value)  # raises for an unknown zone, so a typo fails at start-up
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The users' time zone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
