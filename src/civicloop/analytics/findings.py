"""What every finder of 未诉先办 returns: a :class:`Finding`, a problem worth acting on before the next
call, with the evidence a person needs to accept it as work."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

KINDS = ("hotspot", "surge", "cooccurrence", "asset", "topic")


@dataclass(frozen=True)
class Finding:
    """One finding.

    ``kind``: one of :data:`KINDS`. ``key``: a stable fingerprint of *what* was found (kind, place,
    matter, period; see :func:`finding_key`) so that a finding accepted or dismissed once is not
    proposed again when the finders run again. ``rank``: 1 = most urgent within its kind. ``score``: the
    finder's own measure (heat index, z-score, …; documented by each finder, higher = more urgent).
    ``summary``: a title a person would write, in Chinese. ``start``/``end``: local times of the first
    and last request of the evidence. ``request_ids``: the evidence. ``people``: distinct citizens (or
    requests when citizens are unknown). ``details``: finder-specific facts (JSON-serialisable)."""

    kind: str
    key: str
    rank: int
    score: float
    summary: str
    place: str | None
    start: datetime
    end: datetime
    request_ids: tuple[int, ...]
    people: int
    category: str | None = None
    district: str | None = None
    street: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        """Return the finding as a flat dict for CSV/XLSX (``request_ids`` joined by spaces)."""
        return {
            "kind": self.kind, "rank": self.rank, "score": round(self.score, 4), "summary": self.summary,
            "place": self.place or "", "category": self.category or "", "district": self.district or "",
            "street": self.street or "", "start": self.start.isoformat(sep=" ", timespec="seconds"),
            "end": self.end.isoformat(sep=" ", timespec="seconds"), "request_count": len(self.request_ids),
            "people": self.people, "request_ids": " ".join(str(i) for i in self.request_ids), "key": self.key,
        }


def finding_key(kind: str, *parts: object) -> str:
    """Return a stable 16-hex-digit fingerprint of a finding from its kind and identifying parts (place,
    matter words, period such as ``2019-07``), so re-running a finder recognises what it found before."""
    text = "\x1f".join([kind, *("" if p is None else str(p) for p in parts)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
