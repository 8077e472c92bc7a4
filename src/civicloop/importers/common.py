"""What every importer shares: the summary it prints, and reading times of public data sets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

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


@dataclass
class ImportSummary:
    """What an import did: rows read, requests stored, rows already there, rows skipped and why."""

    read: int = 0
    stored: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, int, str]] = field(default_factory=list)
    """(file, line number, reason) of each malformed row."""
    notes: Counter[str] = field(default_factory=Counter)
    """Other counts worth telling (replies with a named unit, units created, …)."""

    def skip(self, file: str, line: int, reason: str) -> None:
        self.skipped.append((file, line, reason))

    def reasons(self) -> Counter[str]:
        """Return how many rows were skipped for each reason."""
        return Counter(reason for _, _, reason in self.skipped)
