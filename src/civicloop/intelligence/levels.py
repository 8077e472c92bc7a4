"""Second and third level of the category tree (二三级分类), by similarity to the tree's own names.

The first-level label of a request is known (from the citizen's choice or from ``classifier.py``); this
module picks the level-2 node under it and the level-3 node under that, with a score, a confidence and
the words that matched. It needs no labelled level-2/3 data (there is none): it reads only the tree,
given as a list of paths ``(level1, level2, level3)``, so it works on the publisher's 517-row Teddy Cup
tree and on a deployment's own tree (``catalog.service.load_tree``) alike.

Method (choices measured on a hand-judged sample of 60 messages, docs/intelligence.md):

* Every name is cut into **terms**: the whole name, its character bigrams and its single characters
  (jieba words of the name are an option, ``features="word"`` / ``"both"``: measured no better). A term
  weighs its inverse document frequency over the tree's distinct names (``管理`` weighs little, ``物价``
  much); a single character weighs ``unigram_weight`` (0.4) of its idf, so ``价格`` still touches
  ``物价监督`` and ``供暖`` touches ``冬季采暖``.
* A name's **match** with a request is the weighted share of its terms found in the text (substring
  look-up; a term in the title counts 1, in the body ``body_weight``): a score in [0, 1] that is 1 when
  the whole name occurs in the title. Substring look-up is what a jieba segmentation of the text with
  the tree names as user dictionary would find, without its cost or its segmentation errors.
* A **level-2** node scores ``1 - (1 - own) * (1 - child_weight * best_child)`` (noisy-or of its own
  name and its best child's name), so a child's name helps its parent.
* A **level-3** node is picked among the children of the chosen level-2 node.
* Nodes named ``其他`` ("other") are catch-alls: never matched, never predicted; when nothing matches
  the prediction says so (``confidence == "none"``) and a dispatcher may file the request under 其他.
* **Confidence** comes from the margin between the best and the second-best score (``high`` /
  ``medium`` / ``low`` = 高 / 中 / 低, thresholds in ``MARGIN_HIGH`` / ``MARGIN_MEDIUM``).
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from civicloop.intelligence.data import clean

OTHER = "其他"
"""The tree's catch-all name: never matched, never predicted."""

HIGH, MEDIUM, LOW, NONE = "high", "medium", "low", "none"
CONFIDENCE_ZH = {HIGH: "高", MEDIUM: "中", LOW: "低", NONE: "无"}
"""Chinese display names of the confidence bands."""

MARGIN_HIGH = 0.25
MARGIN_MEDIUM = 0.10
"""Margins (best score minus second best, both in [0, 1]) of the confidence bands; chosen on the judged
sample (docs/intelligence.md, "Second and third level")."""

Path3 = tuple[str, str, str]


@dataclass(frozen=True)
class Candidate:
    """One scored node: ``path`` is ``(level1, level2)`` or ``(level1, level2, level3)``; ``score`` in
    [0, 1]; ``why`` the parts of the tree's names found in the text (longest first)."""

    name: str
    path: tuple[str, ...]
    score: float
    why: tuple[str, ...] = ()


@dataclass(frozen=True)
class LevelChoice:
    """The choice at one level. ``name`` is ``None`` when nothing matched (``confidence == "none"``).

    ``score`` in [0, 1] (the best candidate's), ``margin`` in [0, 1] (best minus second best; the best
    score when it has no rival), ``confidence`` one of ``high`` / ``medium`` / ``low`` / ``none``,
    ``alternatives`` the top candidates with a score above 0 (best first, the choice included), ``why``
    the matched words of the choice, ``reason`` why there is no choice."""

    name: str | None
    score: float = 0.0
    margin: float = 0.0
    confidence: str = NONE
    alternatives: tuple[Candidate, ...] = ()
    why: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def confidence_zh(self) -> str:
        """The confidence band in Chinese (高 / 中 / 低 / 无)."""
        return CONFIDENCE_ZH[self.confidence]

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict of this choice (alternatives as ``{"name", "score", "why"}``)."""
        return {
            "name": self.name,
            "score": round(self.score, 4),
            "margin": round(self.margin, 4),
            "confidence": self.confidence,
            "confidence_zh": self.confidence_zh,
            "why": list(self.why),
            "alternatives": [
                {"name": c.name, "score": round(c.score, 4), "why": list(c.why)} for c in self.alternatives
            ],
            "reason": self.reason,
        }


@dataclass(frozen=True)
class LevelPrediction:
    """Level 2 and level 3 of one request under ``level1``. ``level3`` lies under ``level2.name``; when
    ``level2.name`` is ``None`` so is ``level3.name``. ``reason`` explains a missing prediction."""

    level1: str
    level2: LevelChoice
    level3: LevelChoice
    reason: str | None = None

    @property
    def path(self) -> tuple[str, ...]:
        """The predicted path ``(level1[, level2[, level3]])``, as far as it was predicted."""
        parts = [self.level1]
        for choice in (self.level2, self.level3):
            if choice.name is None:
                break
            parts.append(choice.name)
        return tuple(parts)

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict: ``level1``, ``level2``, ``level3`` (see ``LevelChoice.as_dict``)."""
        return {
            "level1": self.level1,
            "level2": self.level2.as_dict(),
            "level3": self.level3.as_dict(),
            "reason": self.reason,
        }


def _none(reason: str) -> LevelChoice:
    return LevelChoice(name=None, reason=reason)


def band(margin: float, score: float) -> str:
    """Map a margin and a best score (both in [0, 1]) to ``high`` / ``medium`` / ``low`` / ``none``.

    ``none`` when the best score is 0 (nothing matched); otherwise by ``MARGIN_HIGH`` and
    ``MARGIN_MEDIUM`` (chosen on the judged sample, docs/intelligence.md)."""
    if score <= 0:
        return NONE
    if margin >= MARGIN_HIGH:
        return HIGH
    if margin >= MARGIN_MEDIUM:
        return MEDIUM
    return LOW


def read_paths(file: str | Path) -> list[Path3]:
    """Read a category CSV with columns ``level1, level2, level3`` (the Teddy Cup ``categories.csv``
    and ``catalog/data/categories_builtin.csv`` format) into a list of paths; blank cells become ``""``.

    Raises ``FileNotFoundError`` if the file is missing, ``KeyError`` if a column is missing."""
    with open(file, encoding="utf-8-sig", newline="") as handle:
        return [
            ((row["level1"] or "").strip(), (row["level2"] or "").strip(), (row["level3"] or "").strip())
            for row in csv.DictReader(handle)
        ]


class _Terms:
    """Cuts names into weighted terms (character bigrams, jieba words, the whole name)."""

    def __init__(self, names: Iterable[str], *, features: str, unigram_weight: float = 0.0) -> None:
        if features not in {"bigram", "word", "both"}:
            raise ValueError(f"features must be bigram, word or both, not {features!r}")
        self.features = features
        self.unigram_weight = unigram_weight
        self._tokenizer: Any = None
        distinct = sorted({name for name in names if name and name != OTHER})
        self.terms = {name: self._cut(name) for name in distinct}
        # idf over the distinct names: a term in many names ("管理") tells little
        df: dict[str, int] = {}
        for terms in self.terms.values():
            for term in terms:
                df[term] = df.get(term, 0) + 1
        n = len(distinct)
        self.idf = {term: math.log((1 + n) / (1 + count)) + 1.0 for term, count in df.items()}
        for term in self.idf:
            if len(term) == 1:
                self.idf[term] *= unigram_weight

    def _jieba(self) -> Any:
        if self._tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            self._tokenizer = jieba.Tokenizer()
        return self._tokenizer

    def _cut(self, name: str) -> frozenset[str]:
        terms = {name}
        if self.unigram_weight > 0:
            terms.update(name)
        if self.features in {"bigram", "both"}:
            terms.update(name[i : i + 2] for i in range(len(name) - 1))
        if self.features in {"word", "both"}:
            words = self._jieba().lcut(name, HMM=False)
            terms.update(word for word in words if len(word) >= 2)
        # punctuation inside names ("房产证登记、办理") is no evidence
        return frozenset(term for term in terms if not any(ch in "、，,/（）()“”" for ch in term) or term == name)

    def match(self, name: str, title: str, body: str, body_weight: float) -> tuple[float, tuple[str, ...]]:
        """Weighted share in [0, 1] of ``name``'s terms found in the text, and the words found."""
        terms = self.terms.get(name)
        if not terms:
            return 0.0, ()
        total = hit = 0.0
        found: list[str] = []
        for term in terms:
            weight = self.idf[term]
            total += weight
            if term in title:
                hit += weight
                found.append(term)
            elif term in body:
                hit += weight * body_weight
                found.append(term)
        return hit / total, _words(found)


def _words(found: list[str]) -> tuple[str, ...]:
    """The found terms without those inside a longer found term, longest first."""
    kept: list[str] = []
    for term in sorted(set(found), key=lambda t: (-len(t), t)):
        if not any(term in longer for longer in kept):
            kept.append(term)
    return tuple(kept)


@dataclass
class _Node2:
    name: str
    children: list[str] = field(default_factory=list)


class LevelPredictor:
    """Predicts level 2 and level 3 of a request under a given level 1 (see the module docstring).

    ``features``: ``"bigram"`` (character bigrams of each name), ``"word"`` (its jieba words) or
    ``"both"``; ``body_weight`` in [0, 1]: the credit of a term found in the body rather than the title;
    ``child_weight`` in [0, 1]: how much a child's name counts for its level-2 parent;
    ``unigram_weight`` in [0, 1]: the weight of single characters relative to their idf (0: unused).
    The defaults are the variant chosen on the judged sample (docs/intelligence.md)."""

    def __init__(
        self,
        *,
        features: str = "bigram",
        body_weight: float = 0.6,
        child_weight: float = 1.0,
        unigram_weight: float = 0.4,
    ) -> None:
        if not all(0.0 <= w <= 1.0 for w in (body_weight, child_weight, unigram_weight)):
            raise ValueError("body_weight, child_weight and unigram_weight must lie in [0, 1]")
        self.features = features
        self.body_weight = body_weight
        self.child_weight = child_weight
        self.unigram_weight = unigram_weight
        self._tree: dict[str, dict[str, _Node2]] = {}
        self._terms: _Terms | None = None

    def fit(self, paths: Sequence[Sequence[str]]) -> LevelPredictor:
        """Build the representation of every level-2 and level-3 node of the tree.

        Takes paths ``(level1, level2, level3)`` (strings; a blank level 3 means a level-2 node without
        children; repeated paths are merged). Returns ``self``. Raises ``ValueError`` if a path has no
        level 1 or fewer than two parts, or if there is no path at all."""
        tree: dict[str, dict[str, _Node2]] = {}
        for path in paths:
            parts = [(part or "").strip() for part in path] + ["", ""]
            level1, level2, level3 = parts[0], parts[1], parts[2]
            if not level1 or (not level2 and level3):
                raise ValueError(f"a path needs a level 1 (and a level 2 under a level 3): {tuple(path)!r}")
            children = tree.setdefault(level1, {})
            if not level2:
                continue
            node = children.setdefault(level2, _Node2(level2))
            if level3 and level3 not in node.children:
                node.children.append(level3)
        if not tree:
            raise ValueError("the tree is empty")
        names = [n for nodes in tree.values() for node in nodes.values() for n in [node.name, *node.children]]
        self._tree = tree
        self._terms = _Terms(names, features=self.features, unigram_weight=self.unigram_weight)
        return self

    @property
    def level1_names(self) -> list[str]:
        """The first-level names of the fitted tree, in tree order."""
        return list(self._tree)

    def warm_up(self) -> None:
        """Load jieba's dictionary now (about 1 s), if ``fit`` has not: call once at start-up."""
        if self._terms is not None and self.features != "bigram":
            self._terms._jieba()

    def predict(self, title: str | None, detail: str | None, level1: str, top: int = 3) -> LevelPrediction:
        """Predict level 2 and level 3 of a request under ``level1``.

        Takes the title and body (either may be empty), the first-level name (from the request or from
        ``TextClassifier.predict``) and the number of alternatives to return. Returns a
        ``LevelPrediction``; its choices have ``name=None`` and ``confidence="none"`` with a ``reason``
        when ``level1`` is not in the tree, the text is empty or no name of the tree under ``level1``
        occurs in it. Raises ``RuntimeError`` if called before ``fit``."""
        if self._terms is None:
            raise RuntimeError("LevelPredictor.predict called before fit")
        level1 = (level1 or "").strip()
        if level1 not in self._tree:
            reason = f"level 1 {level1!r} is not in the category tree"
            return LevelPrediction(level1, _none(reason), _none(reason), reason)
        title_text, body_text = clean(title).lower(), clean(detail).lower()
        if not title_text and not body_text:
            reason = "empty text"
            return LevelPrediction(level1, _none(reason), _none(reason), reason)

        terms = self._terms
        scored2: list[tuple[Candidate, list[Candidate]]] = []
        for node in self._tree[level1].values():
            if node.name == OTHER:
                continue
            own, own_why = terms.match(node.name, title_text, body_text, self.body_weight)
            kids = []
            for child in node.children:
                if child == OTHER:
                    continue
                score, why = terms.match(child, title_text, body_text, self.body_weight)
                kids.append(Candidate(child, (level1, node.name, child), score, why))
            kids.sort(key=lambda c: -c.score)
            best_child = kids[0] if kids else None
            child_score = best_child.score if best_child else 0.0
            score = 1.0 - (1.0 - own) * (1.0 - self.child_weight * child_score)
            why = own_why + tuple(w for w in (best_child.why if best_child and child_score else ()) if w not in own_why)
            scored2.append((Candidate(node.name, (level1, node.name), score, why), kids))

        scored2.sort(key=lambda item: -item[0].score)
        level2 = _choose([c for c, _ in scored2], top, "no level-2 name under this level 1 occurs in the text")
        if level2.name is None:
            return LevelPrediction(level1, level2, _none("no level 2"), level2.reason)
        kids = next(k for c, k in scored2 if c.name == level2.name)
        level3 = _choose(kids, top, f"no level-3 name under {level2.name} occurs in the text")
        return LevelPrediction(level1, level2, level3)


def _choose(candidates: Sequence[Candidate], top: int, reason: str) -> LevelChoice:
    """The best of ``candidates`` (sorted, best first) with its margin and confidence band."""
    ranked = [c for c in candidates if c.score > 0]
    if not ranked:
        return _none(reason)
    best = ranked[0]
    second = ranked[1].score if len(ranked) > 1 else 0.0
    margin = best.score - second
    return LevelChoice(
        name=best.name,
        score=best.score,
        margin=margin,
        confidence=band(margin, best.score),
        alternatives=tuple(ranked[: max(top, 1)]),
        why=best.why,
    )
