"""What every importer shares: the summary it prints (and, re-exported, ``parse_time`` for times of
public data sets, which lives in ``core.timeutil``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from civicloop.core.timeutil import TIME_FORMATS, parse_time

__all__ = ["TIME_FORMATS", "ImportSummary", "parse_time"]


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
