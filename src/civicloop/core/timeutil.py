"""Time helpers: everything stored is timezone-aware UTC; users see their own zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    SQLite gives back naive datetimes for stored UTC values; those are read as UTC. An aware value
    from any zone is converted.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M",
                "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S")


def parse_time(text: str, tz: ZoneInfo) -> datetime:
    """Parse a local time of a public data set (``2019/4/25 9:32:09``, ``2019-04-25 09:32:09``,
    NYC's ``03/01/2011 02:27:57 PM``) into an aware datetime in ``tz``. Raises ``ValueError``."""
    value = text.strip()
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(f"unreadable time {value!r}")
