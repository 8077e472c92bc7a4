"""Tables of the ``open311`` adapter: the API keys of client applications, and what a request filed
through Open311 carried that the loop's own tables have no place for (token, media URL, address id,
attributes, the submitter's e-mail and account)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from civicloop.core.db import Base, UTCDateTime


class ApiKey(Base):
    """An API key of one client application (GeoReport v2: POST requests requires one).

    The key is ``o311_<prefix>_<secret>``; only the public ``prefix`` (to find the row) and
    ``sha256(salt || secret)`` are stored, so the database never holds a usable key.
    """

    __tablename__ = "open311_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    salt: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Submission(Base):
    """One request filed through Open311: its token (GET tokens/{token}), the client's key, and the
    fields of the POST the loop's ``service_requests`` row does not hold. ``email`` and
    ``account_id`` are the submitter's and are never returned by a GET."""

    __tablename__ = "open311_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("service_requests.id"), unique=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("open311_api_keys.id"), index=True)
    service_code: Mapped[str] = mapped_column(String(40))
    address_id: Mapped[str | None] = mapped_column(String(40))
    media_url: Mapped[str | None] = mapped_column(String(2000))
    device_id: Mapped[str | None] = mapped_column(String(100))
    account_id: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(254))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
