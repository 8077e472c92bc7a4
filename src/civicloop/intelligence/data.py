"""Labelled citizen messages for the category classifier: loading, de-duplication and the split.

The Teddy Cup 2020 problem C data (``teddy2020c/``, see ``../shared/data/README.md``) come as three
overlapping files: whole messages (title + body), bodies alone (cleaned by a contestant) and titles
alone. The same message can appear in all three, sometimes with small edits (characters swapped by
the anonymisation, ``_x000D_`` residue of Excel, a body truncated or prefixed with its title). To
measure on messages the model never saw, every row is put in a *group* with every row it shares a
text with: the same normalised title or body, or a near-duplicate one (most of the shorter text's
character n-grams found in the other, see ``NEAR_RULES``). Groups, not rows, are split.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LABELS: tuple[str, ...] = ("城乡建设", "环境保护", "交通运输", "教育文体", "劳动和社会保障", "商贸旅游", "卫生计生")
DATASET = "teddy2020c"
MESSAGE, TITLE, DETAIL = "message", "title", "detail"

# Near-duplicate rules per field: shingle size (characters), shortest text considered (normalised
# characters; "详见附件" is matched exactly only), share of the shorter text's shingles that must occur
# in the other, and the document frequency above which a shingle is boilerplate.
NEAR_RULES: dict[str, tuple[int, int, float, float]] = {
    DETAIL: (5, 20, 0.5, 0.005),
    TITLE: (2, 8, 0.65, 0.01),
}
MIN_SHINGLES = 3

_EXCEL_CR = re.compile(r"_?x000d_?", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff]+")


class DataNotFound(FileNotFoundError):
    """The shared data folder (or one of its files) is not where it was looked for."""


@dataclass(frozen=True)
class Sample:
    """One labelled text: a whole message (``source="message"``), a title or a body alone.

    ``group`` is the id of its de-duplication group (``-1`` before grouping)."""

    title: str
    detail: str
    label: str
    source: str
    group: int = -1

    @property
    def text(self) -> str:
        """The model's input: title and body joined by a newline (either may be empty)."""
        return join_text(self.title, self.detail)


@dataclass(frozen=True)
class Split:
    """A train/test split by group. ``test`` holds whole messages only (the unit the target is set on);
    ``train`` holds every row of the other groups (messages, titles and bodies alone)."""

    train: list[Sample]
    test: list[Sample]
    seed: int
    test_size: float
    stats: dict[str, int] = field(default_factory=dict)


def clean(text: str | None) -> str:
    """Return ``text`` without Excel's ``_x000D_`` residue and with runs of whitespace made one space.

    Takes any string (``None`` is ``""``); returns the cleaned string. Used for the model's input."""
    text = text or ""
    if "x000" in text or "X000" in text:
        text = _EXCEL_CR.sub(" ", text)
    return " ".join(text.split())


def join_text(title: str | None, detail: str | None) -> str:
    """Join a title and a body into the single text the classifier reads (``"title\\nbody"``).

    Takes two strings (either may be empty or ``None``); returns the cleaned, joined text."""
    parts = [clean(title), clean(detail)]
    return "\n".join(part for part in parts if part)


def normalise(text: str | None) -> str:
    """Return the key used to match texts: lower case, Han characters, latin letters and digits only.

    Takes any string; returns the key (``""`` for a text with none of those characters). Punctuation,
    spaces and the ``_x000D_`` residue differ between the three files for the same message."""
    return _NOT_WORD.sub("", _EXCEL_CR.sub("", (text or "").lower()))


def shared_data_dir() -> Path | None:
    """Return the shared data folder (the one holding ``teddy2020c/``), or ``None`` when not found.

    Looks, in order, at ``$CIVICLOOP_SHARED_DATA``, ``../shared/data`` from the current directory, then
    ``../shared/data`` from the repository root (the folder holding ``pyproject.toml`` above this file)."""
    candidates: list[Path] = []
    env = os.environ.get("CIVICLOOP_SHARED_DATA")
    if env:
        candidates.append(Path(env))
    candidates.append(Path.cwd() / ".." / "shared" / "data")
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            candidates.append(parent / ".." / "shared" / "data")
            break
    for candidate in candidates:
        if (candidate / DATASET).is_dir():
            return candidate.resolve()
    return None


def dataset_dir(data: Path | None = None) -> Path:
    """Return the ``teddy2020c`` folder: ``data`` itself when it holds ``messages_labelled.csv``,
    ``data/teddy2020c`` when that does, else the one found by :func:`shared_data_dir`.

    Raises :class:`DataNotFound` when none of them holds the labelled files."""
    if data is not None:
        for folder in (Path(data), Path(data) / DATASET):
            if (folder / "messages_labelled.csv").is_file():
                return folder
        raise DataNotFound(f"no {DATASET} labelled files in {data}")
    root = shared_data_dir()
    if root is None:
        raise DataNotFound(f"no {DATASET}/ folder: set CIVICLOOP_SHARED_DATA or place ../shared/data")
    return root / DATASET


def _rows(path: Path) -> Iterable[dict[str, str]]:
    if not path.is_file():
        raise DataNotFound(f"missing {path}")
    with path.open(encoding="utf-8-sig", newline="") as handle:
        yield from csv.DictReader(handle)


def load_labelled(folder: Path) -> list[Sample]:
    """Read the three labelled files of ``folder`` (a ``teddy2020c`` folder) into ungrouped samples.

    Returns messages, then titles alone, then bodies alone. Rows whose label is not one of the 7
    :data:`LABELS` (two bodies carry two labels, ``"a|b"``) or whose text is empty are left out.
    Raises :class:`DataNotFound` for a missing file. Source: Teddy Cup 2020 problem C, 附件2."""
    samples: list[Sample] = []
    for row in _rows(folder / "messages_labelled.csv"):
        label = (row.get("label") or "").strip()
        samples.append(Sample(row.get("title") or "", row.get("detail") or "", label, MESSAGE))
    for row in _rows(folder / "titles_labelled.csv"):
        samples.append(Sample(row.get("title") or "", "", (row.get("label") or "").strip(), TITLE))
    for row in _rows(folder / "details_labelled.csv"):
        samples.append(Sample("", row.get("detail") or "", (row.get("label") or "").strip(), DETAIL))
    return [s for s in samples if s.label in LABELS and (normalise(s.title) or normalise(s.detail))]


def read_csv(path: Path) -> list[Sample]:
    """Read an evaluation CSV with columns ``title``, ``detail`` and ``label`` (others are ignored).

    Returns one message sample per row with a non-empty text. Raises :class:`DataNotFound` for a
    missing file and ``ValueError`` when the header lacks ``label`` or both text columns."""
    samples = []
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = set(reader.fieldnames or ())
        if "label" not in header or not header & {"title", "detail"}:
            raise ValueError(f"{path}: need columns title, detail, label; found {sorted(header)}")
        for row in reader:
            sample = Sample(row.get("title") or "", row.get("detail") or "", (row.get("label") or "").strip(), MESSAGE)
            if sample.text:
                samples.append(sample)
    return samples


class _UnionFind:
    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _near_duplicate_pairs(
    texts: Sequence[str], *, shingle: int, containment: float, max_df: float, chunk: int = 512
) -> Iterable[tuple[int, int]]:
    """Yield index pairs ``(i, j)``, ``i < j``, of texts where at least ``containment`` of the shorter
    text's distinct character ``shingle``-grams occur in the other (containment, so a truncated body or
    one prefixed with its title still matches; Broder 1997, "On the resemblance and containment of
    documents"). Shingles found in more than ``max_df`` of the texts are ignored; a text with fewer than
    :data:`MIN_SHINGLES` others left matches none."""
    from sklearn.feature_extraction.text import HashingVectorizer

    if len(texts) < 2:
        return
    # Hashed, not counted: a vocabulary of millions of 5-grams costs more to sort than to compare.
    shingles = HashingVectorizer(
        analyzer="char",
        ngram_range=(shingle, shingle),
        n_features=2**24,
        binary=True,
        norm=None,
        alternate_sign=False,
        dtype=np.float32,
    )
    matrix = shingles.transform(texts).tocsr()
    # Boilerplate shingles ("尊敬的领导", "请有关部门", "a市") say nothing about identity and make the
    # product dense: they are dropped, and a text needs a few informative shingles left to match at all.
    frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
    matrix = matrix[:, np.flatnonzero(frequency <= max(max_df * len(texts), 2))].tocsr()
    sizes = np.diff(matrix.indptr)
    transposed = matrix.T.tocsr()
    for start in range(0, matrix.shape[0], chunk):
        block = (matrix[start : start + chunk] @ transposed).tocoo()
        rows, cols, shared = block.row + start, block.col, block.data
        keep = rows < cols
        rows, cols, shared = rows[keep], cols[keep], shared[keep]
        smaller = np.minimum(sizes[rows], sizes[cols])
        hit = (smaller >= MIN_SHINGLES) & (shared >= containment * smaller)
        yield from zip(rows[hit].tolist(), cols[hit].tolist(), strict=True)


def group_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Assign every sample a de-duplication group and return the samples with ``group`` set.

    Two samples are in one group when they share a normalised title or a normalised body, or when
    their titles or bodies are near-duplicates under :data:`NEAR_RULES` (:func:`_near_duplicate_pairs`),
    transitively (union-find). Group ids are 0..n-1 in order of first row."""
    union = _UnionFind(len(samples))
    first: dict[tuple[str, str], int] = {}
    for index, sample in enumerate(samples):
        for kind, key in ((TITLE, normalise(sample.title)), (DETAIL, normalise(sample.detail))):
            if not key:
                continue
            seen = first.setdefault((kind, key), index)
            union.union(seen, index)
    for kind, (shingle, min_chars, containment, max_df) in NEAR_RULES.items():
        keyed = [(index, key) for (field_, key), index in first.items() if field_ == kind and len(key) >= min_chars]
        texts = [key for _, key in keyed]
        for a, b in _near_duplicate_pairs(texts, shingle=shingle, containment=containment, max_df=max_df):
            union.union(keyed[a][0], keyed[b][0])
    ids: dict[int, int] = {}
    grouped = []
    for index, sample in enumerate(samples):
        group = ids.setdefault(union.find(index), len(ids))
        grouped.append(Sample(sample.title, sample.detail, sample.label, sample.source, group))
    return grouped


def split_groups(samples: Sequence[Sample], *, test_size: float = 0.3, seed: int = 2020) -> Split:
    """Split grouped samples: ``test_size`` of the groups that hold a whole message go to test.

    Takes samples from :func:`group_samples`; the split is stratified by each group's majority label
    (scikit-learn ``StratifiedShuffleSplit``, fixed ``seed``). Test keeps only the whole messages of
    its groups, deduplicated by normalised title + body; train keeps every row of every other group,
    exact repeats (same source, text and label) removed. Raises ``ValueError`` on ungrouped samples."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if any(sample.group < 0 for sample in samples):
        raise ValueError("split_groups needs samples from group_samples")
    votes: dict[int, Counter[str]] = {}
    with_message: set[int] = set()
    for sample in samples:
        votes.setdefault(sample.group, Counter())[sample.label] += 1
        if sample.source == MESSAGE:
            with_message.add(sample.group)
    candidates = sorted(with_message)
    strata = [votes[group].most_common(1)[0][0] for group in candidates]
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    _, test_index = next(splitter.split(np.zeros(len(candidates)), strata))
    test_groups = {candidates[i] for i in test_index}
    train: list[Sample] = []
    test: list[Sample] = []
    seen: set[tuple[str, str, str, str]] = set()
    for sample in samples:
        in_test = sample.group in test_groups
        if in_test and sample.source != MESSAGE:
            continue
        # A repeated test message is one test case; a training row repeated verbatim adds no information.
        title, detail = normalise(sample.title), normalise(sample.detail)
        key = ("test", title, detail, "") if in_test else (sample.source, title, detail, sample.label)
        if key in seen:
            continue
        seen.add(key)
        (test if in_test else train).append(sample)
    stats = {
        "rows": len(samples),
        "groups": len(votes),
        "groups_with_message": len(candidates),
        "groups_mixed_labels": sum(len(counter) > 1 for counter in votes.values()),
        "train": len(train),
        "test": len(test),
    }
    return Split(train=train, test=test, seed=seed, test_size=test_size, stats=stats)


def load_split(data: Path | None = None, *, test_size: float = 0.3, seed: int = 2020) -> Split:
    """Load, group and split the labelled data of ``data`` (see :func:`dataset_dir`).

    Returns the :class:`Split`. Raises :class:`DataNotFound` when the data are not found."""
    return split_groups(group_samples(load_labelled(dataset_dir(data))), test_size=test_size, seed=seed)


def fingerprint(samples: Iterable[Sample]) -> str:
    """Return the sha256 (hex) of the samples' texts and labels, in order: the training data's identity.

    Each sample contributes ``text + "\\t" + label + "\\n"`` in UTF-8."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(f"{sample.text}\t{sample.label}\n".encode())
    return digest.hexdigest()


def category_words(folder: Path | None = None) -> list[str]:
    """Return the distinct names of the category tree's three levels (``categories.csv``), longest first.

    Used as jieba's user dictionary so "劳动和社会保障", "城市建设和市政管理" or "医疗纠纷" stay one word;
    names joined by "、" or "和"/"与" are also added part by part. Returns ``[]`` when the file is absent.
    Source: the Teddy Cup 2020 problem C category tree (附件1)."""
    folder = folder if folder is not None else (shared_data_dir() or Path()) / DATASET
    path = folder / "categories.csv"
    if not path.is_file():
        return []
    words: set[str] = set()
    for row in _rows(path):
        for level in ("level1", "level2", "level3"):
            name = (row.get(level) or "").strip()
            if not name:
                continue
            words.add(name)
            words.update(part for part in re.split(r"[、，,/（）()及与和]", name) if len(part) >= 2)
    return sorted(words, key=lambda word: (-len(word), word))
