"""Use cases of the ``catalog`` domain: load the category tree from CSV, look categories up."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from civicloop.catalog.models import Category, DeadlineTier
from civicloop.catalog.rules import default_tier, default_unit_kind
from civicloop.core import audit
from civicloop.core.db import keep
from civicloop.core.errors import FieldError

BUILTIN_TREE = Path(__file__).parent / "data" / "categories_builtin.csv"


def require_category(session: Session, *, category_id: int, field: str = "category_id") -> Category:
    """Return category ``category_id``; raises ``FieldError`` on input ``field`` (422)."""
    category = keep(session, session.get(Category, category_id))
    if category is None:
        raise FieldError(field, "v.unknown_category", id=category_id)
    return category


def find_category(session: Session, category_id: int | None) -> Category | None:
    """Return category ``category_id``, or ``None`` for ``None`` or an unknown id."""
    return keep(session, session.get(Category, category_id)) if category_id is not None else None


def find_category_by_path(session: Session, path: str | None) -> Category | None:
    """Return the category whose path (names from the root joined by '/') is ``path``, or ``None``."""
    if not path:
        return None
    return session.scalar(select(Category).where(Category.path == path))


def tree_version(session: Session) -> tuple[int, int]:
    """Return (number of categories, highest id): changes whenever a node is added or removed, so
    caches built from the tree know when to rebuild."""
    count, highest = session.execute(select(func.count(Category.id), func.max(Category.id))).one()
    return int(count or 0), int(highest or 0)


def list_categories(session: Session, *, level: int | None = None) -> Sequence[Category]:
    """Return categories ordered by path, optionally of one ``level`` (1–3)."""
    query = select(Category).order_by(Category.path)
    if level is not None:
        query = query.where(Category.level == level)
    return session.scalars(query).all()


def load_tree(session: Session, *, csv_path: Path) -> int:
    """Load a category tree from a CSV with columns level1, level2, level3 (UTF-8, header row).

    Shaped like the Teddy Cup 2020 C ``categories.csv``. Existing paths are kept (their tier may
    have been tuned by an admin); new nodes get the default tier and unit kind from
    ``catalog.rules``. Blank cells end a row's path. Returns the number of categories created.
    """
    existing = {c.path: c for c in session.scalars(select(Category))}
    created = 0
    with csv_path.open(encoding="utf-8-sig", newline="") as handle:
        for row in csv.DictReader(handle):
            names = [(row.get(f"level{i}") or "").strip() for i in (1, 2, 3)]
            parent: Category | None = None
            path: list[str] = []
            for level, name in enumerate(names, start=1):
                if not name:
                    break
                path.append(name)
                key = "/".join(path)
                node = existing.get(key)
                if node is None:
                    node = Category(
                        name=name, level=level, parent_id=parent.id if parent else None, path=key,
                        deadline_tier=default_tier(path), default_unit_kind=default_unit_kind(path),
                    )
                    session.add(node)
                    session.flush()
                    existing[key] = node
                    created += 1
                parent = node
    return created


def set_tier(session: Session, *, category_id: int, tier: DeadlineTier, actor: str = "system") -> Category:
    """Set the deadline tier of one category; raises ``FieldError`` if it does not exist. The change
    (old and new tier) goes to the audit log (``core.audit``)."""
    category = require_category(session, category_id=category_id)
    old = str(category.deadline_tier)
    category.deadline_tier = tier
    session.flush()
    audit.enqueue(session, actor=actor, role=audit.admin_role(actor), action="set_tier",
                  subject=f"category:{category.id}", data={"from": old, "to": str(tier)})
    return category
