"""The first-level category classifier (7 labels) of a citizen request, from its title and body.

Two methods, trained and measured in the same run (``civicloop model train``):

* ``baseline`` — the honest baseline of the issue: TF-IDF of the character 1–3-grams of title + body
  and a linear SVM (scikit-learn ``LinearSVC``, default ``C=1``). Its "confidence" is a softmax of the
  SVM's scores: it ranks the labels but is no probability.
* ``ours`` — three TF-IDF blocks (sublinear tf, n-grams seen in at least two training texts): the
  character 1–3-grams of title + body, the character 1–3-grams of the title alone, and the jieba word
  1–2-grams of the title (user dictionary: the category tree's names); a linear SVM (``C=0.5``) whose
  scores are calibrated into probabilities on group-aware 3-fold cross-validation
  (``CalibratedClassifierCV``), so ``confidence`` can be compared with a routing threshold.

Each choice was made by 4-fold group cross-validation on the training part (docs/intelligence.md).

Training uses scikit-learn; a trained model keeps only what inference needs — each block's vocabulary
and idf, the SVM's weights and the calibration's parameters — and computes a prediction with a few
dictionary look-ups and one sparse product, well under a millisecond plus tokenisation, where going
through scikit-learn's input validation for every single message costs several.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.svm import LinearSVC

from civicloop.intelligence.data import Sample, category_words, clean, join_text

BASELINE, OURS = "baseline", "ours"
METHODS = (BASELINE, OURS)
CALIBRATION = "sigmoid"
CALIBRATION_FOLDS = 3
OURS_C = 0.5
# liblinear's default tolerance (1e-4) costs a third more time for no measurable change in the scores.
OURS_TOL = 1e-3

Doc = tuple[str, str]
"""A message as the classifier reads it: ``(title, body)``; either may be empty."""


class Block(ABC):
    """TF-IDF of the n-grams of one field of ``(title, body)`` docs: ``"text"`` (title + body) or ``"title"``.

    Keeps the n-grams found in at least ``min_df`` training texts; idf is scikit-learn's smoothed
    ``ln((1 + n) / (1 + df)) + 1``; tf is raw or ``1 + ln(tf)`` (``sublinear_tf``); rows are l2-normalised
    (Manning, Raghavan & Schütze 2008, ch. 6). Subclasses say what an n-gram is."""

    def __init__(self, field: str, ngram_range: tuple[int, int], *, min_df: int = 1, sublinear_tf: bool = False):
        if field not in ("text", "title"):
            raise ValueError(f"field must be text or title, not {field!r}")
        self.field = field
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.idf = np.zeros(0)

    @property
    def size(self) -> int:
        """The number of features (kept n-grams) of this block."""
        return len(self.idf)

    def _texts(self, docs: Iterable[Doc]) -> list[str]:
        if self.field == "text":
            return [join_text(title, body).lower() for title, body in docs]
        return [clean(title).lower() for title, _ in docs]

    def _weigh(self, rows: np.ndarray, cols: np.ndarray, tf: np.ndarray, n_rows: int) -> np.ndarray:
        """Return the TF-IDF values of distinct ``(row, col)`` cells with term counts ``tf``."""
        values = (np.log(tf) + 1.0) if self.sublinear_tf else tf.astype(np.float64)
        values *= self.idf[cols]
        norms = np.sqrt(np.bincount(rows, weights=values**2, minlength=n_rows))
        return values / norms[rows]

    def _tally(self, rows: np.ndarray, cols: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the distinct ``(row, col)`` cells of the occurrences ``rows``, ``cols`` and their counts."""
        width = max(width, 1)
        cells, tf = np.unique(rows * width + cols, return_counts=True)
        return cells // width, cells % width, tf

    def _fit(self, rows: np.ndarray, ids: np.ndarray, n_ids: int, n_rows: int) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Fit idf on occurrences (``rows``: doc index, ``ids``: n-gram id in 0..n_ids-1); return the TF-IDF
        matrix of the kept n-grams and the kept ids (sorted)."""
        rows, ids, tf = self._tally(rows, ids, n_ids)
        frequency = np.bincount(ids, minlength=n_ids)
        kept = np.flatnonzero(frequency >= self.min_df)
        renumber = np.full(n_ids, -1, dtype=np.int64)
        renumber[kept] = np.arange(len(kept))
        cols = renumber[ids]
        keep = cols >= 0
        rows, cols, tf = rows[keep], cols[keep], tf[keep]
        self.idf = np.log((1.0 + n_rows) / (1.0 + frequency[kept])) + 1.0
        values = self._weigh(rows, cols, tf, n_rows)
        return sparse.csr_matrix((values, (rows, cols)), shape=(n_rows, len(kept))), kept

    @abstractmethod
    def _tallied(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(rows, cols, tf)``: the distinct (doc, known n-gram column) cells and their counts."""

    @abstractmethod
    def fit_transform(self, docs: Sequence[Doc]) -> sparse.csr_matrix:
        """Learn the vocabulary and idf from ``docs``; return their TF-IDF matrix (n × kept n-grams)."""

    def cells(self, docs: Sequence[Doc]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the TF-IDF of ``docs`` as ``(rows, cols, values)`` arrays of its non-zero cells (n-grams
        outside the vocabulary are ignored); no sparse matrix is built, so one message costs little."""
        rows, cols, tf = self._tallied(self._texts(docs))
        return rows, cols, self._weigh(rows, cols, tf, len(docs))

    def transform(self, docs: Sequence[Doc]) -> sparse.csr_matrix:
        """Return the TF-IDF matrix of ``docs`` (n × this block's features)."""
        rows, cols, values = self.cells(docs)
        return sparse.csr_matrix((values, (rows, cols)), shape=(len(docs), self.size))


class CharBlock(Block):
    """Character n-grams, each coded as one integer (21 bits per code point, so 1-, 2- and 3-grams never
    share a code): counting and look-up are numpy sorts and binary searches instead of a Python dict of a
    million strings, which makes a 3,000-character message cost well under a millisecond."""

    def __init__(self, field: str, ngram_range: tuple[int, int] = (1, 3), **options: Any) -> None:
        super().__init__(field, ngram_range, **options)
        if not 1 <= self.ngram_range[0] <= self.ngram_range[1] <= 3:
            raise ValueError("character n-grams are coded for 1 ≤ n ≤ 3")
        self.keys = np.zeros(0, dtype=np.int64)

    def _codes(self, text: str) -> np.ndarray:
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        points = points[points > 0]
        low, high = self.ngram_range
        parts = []
        for n in range(low, high + 1):
            if len(points) < n:
                break
            code = points[: len(points) - n + 1].copy()
            for j in range(1, n):
                code = (code << 21) | points[j : len(points) - n + 1 + j]
            parts.append(code)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def _all_codes(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        codes = [self._codes(text) for text in texts]
        rows = np.repeat(np.arange(len(codes)), [len(c) for c in codes])
        return rows, (np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64))

    def fit_transform(self, docs: Sequence[Doc]) -> sparse.csr_matrix:
        """Learn the vocabulary and idf from ``docs``; return their TF-IDF matrix (n × kept n-grams)."""
        rows, codes = self._all_codes(self._texts(docs))
        distinct, ids = np.unique(codes, return_inverse=True)
        matrix, kept = self._fit(rows, ids.ravel(), len(distinct), len(docs))
        self.keys = distinct[kept]
        return matrix

    def _tallied(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Count first, then look the distinct codes up in sorted order: fewer and cache-friendlier searches.
        rows, cols, counts = [], [], []
        for row, text in enumerate(texts):
            codes, tf = np.unique(self._codes(text), return_counts=True)
            if not len(self.keys) or not len(codes):
                continue
            position = np.minimum(np.searchsorted(self.keys, codes), len(self.keys) - 1)
            hit = self.keys[position] == codes
            rows.append(np.full(int(hit.sum()), row, dtype=np.int64))
            cols.append(position[hit])
            counts.append(tf[hit])
        if not rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(counts)


class WordBlock(Block):
    """jieba word n-grams (joined by a space) with a user dictionary ``words``.

    Picklable: the jieba tokenizer (its prefix dictionary holds some 350,000 words) is built on first use
    and left out of the model file. Source: jieba 0.42.1 (``jieba.Tokenizer``, ``add_word``), default
    dictionary, HMM off (faster, and no worse here)."""

    def __init__(self, field: str, ngram_range: tuple[int, int] = (1, 2), words: Sequence[str] = (), **options: Any):
        super().__init__(field, ngram_range, **options)
        self.words = list(words)
        self.vocabulary: dict[str, int] = {}
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_tokenizer"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._tokenizer = None

    def _jieba(self) -> Any:
        if self._tokenizer is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            for word in self.words:
                tokenizer.add_word(word, freq=2000)
            self._tokenizer = tokenizer
        return self._tokenizer

    def grams(self, text: str) -> list[str]:
        """Return the word n-grams of ``text`` for every n in ``ngram_range``."""
        tokens = [token for token in self._jieba().lcut(text, HMM=False) if token.strip()]
        low, high = self.ngram_range
        return [" ".join(tokens[i : i + n]) for n in range(low, high + 1) for i in range(len(tokens) - n + 1)]

    def fit_transform(self, docs: Sequence[Doc]) -> sparse.csr_matrix:
        """Learn the vocabulary and idf from ``docs``; return their TF-IDF matrix (n × kept n-grams)."""
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        ids: list[int] = []
        for row, text in enumerate(self._texts(docs)):
            found = [vocabulary.setdefault(gram, len(vocabulary)) for gram in self.grams(text)]
            ids.extend(found)
            rows.extend([row] * len(found))
        occurrences = np.array(rows, dtype=np.int64), np.array(ids, dtype=np.int64)
        matrix, kept = self._fit(*occurrences, len(vocabulary), len(docs))
        renumber = {int(old): new for new, old in enumerate(kept)}
        self.vocabulary = {gram: renumber[i] for gram, i in vocabulary.items() if i in renumber}
        return matrix

    def _tallied(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lookup = self.vocabulary.get
        rows: list[int] = []
        cols: list[int] = []
        for row, text in enumerate(texts):
            found = [column for column in map(lookup, self.grams(text)) if column is not None]
            cols.extend(found)
            rows.extend([row] * len(found))
        return self._tally(np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), self.size)


def make_blocks(method: str, words: Sequence[str] = ()) -> list[Block]:
    """Return the unfitted feature blocks of ``method`` (see the module's docstring).

    Raises ``ValueError`` for an unknown method."""
    if method == BASELINE:
        return [CharBlock("text", (1, 3))]
    if method == OURS:
        return [
            CharBlock("text", (1, 3), min_df=2, sublinear_tf=True),
            CharBlock("title", (1, 3), min_df=2, sublinear_tf=True),
            WordBlock("title", (1, 2), words, min_df=2, sublinear_tf=True),
        ]
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


@dataclass(frozen=True)
class Prediction:
    """A classification: the top label, its probability and the three most probable labels."""

    category: str
    confidence: float
    top3: list[tuple[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """Return ``{"category", "confidence", "top3": [{"label", "probability"}, …]}`` (4 decimals)."""
        return {
            "category": self.category,
            "confidence": round(self.confidence, 4),
            "top3": [{"label": label, "probability": round(p, 4)} for label, p in self.top3],
        }


@dataclass
class TextClassifier:
    """A trained classifier: what a model file holds (no scikit-learn object in it).

    ``weights`` is ``features × len(labels)`` (float32, the SVM's ``coef_`` transposed, C-ordered so the
    product with a sparse row touches only that row's features), ``calibration`` is ``None`` (softmax of the scores),
    ``{"method": "sigmoid", "a": [...], "b": [...]}`` (Platt 1999, one-vs-rest, then normalised) or
    ``{"method": "temperature", "beta": x}`` (Guo et al. 2017)."""

    method: str
    labels: list[str]
    blocks: list[Block]
    weights: np.ndarray
    intercept: np.ndarray
    calibration: dict[str, Any] | None = None
    train_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def features(self, docs: Sequence[Doc]) -> sparse.csr_matrix:
        """Return the feature matrix of ``(title, body)`` docs (n × the blocks' features side by side)."""
        return sparse.hstack([block.transform(docs) for block in self.blocks], format="csr")

    def scores(self, docs: Sequence[Doc]) -> np.ndarray:
        """Return the SVM's decision scores, ``n × len(labels)``: a gather of the weights of each doc's
        features, summed per doc (no sparse product, which would copy the weights to float64)."""
        n = len(docs)
        scores = np.tile(self.intercept, (n, 1))
        offset = 0
        for block in self.blocks:
            rows, cols, values = block.cells(docs)
            contributions = self.weights[cols + offset] * values[:, None]
            if n == 1:
                scores[0] += contributions.sum(axis=0)
            else:
                for k in range(scores.shape[1]):
                    scores[:, k] += np.bincount(rows, weights=contributions[:, k], minlength=n)
            offset += block.size
        return scores

    def probabilities(self, docs: Sequence[Doc]) -> np.ndarray:
        """Return ``n × len(labels)`` class probabilities for ``(title, body)`` docs; rows sum to 1."""
        return calibrate(self.scores(docs), self.calibration)

    def warm_up(self) -> None:
        """Load what the first prediction would (jieba's dictionary, about 2 s): call once at start-up."""
        self.predict("预热", "")

    def predict(self, title: str, detail: str = "") -> Prediction:
        """Classify one request. Takes its title and body (either may be empty; a free text can be given
        as ``title``). Returns a :class:`Prediction` whose top-3 probabilities sum to at most 1."""
        return self.predict_many([(title, detail)])[0]

    def predict_many(self, docs: Sequence[Doc]) -> list[Prediction]:
        """Classify many ``(title, body)`` docs at once; returns one :class:`Prediction` each."""
        out = []
        for row in self.probabilities(docs):
            order = np.argsort(-row, kind="stable")[:3]
            top3 = [(self.labels[i], float(row[i])) for i in order]
            out.append(Prediction(category=top3[0][0], confidence=top3[0][1], top3=top3))
        return out


def calibrate(scores: np.ndarray, calibration: dict[str, Any] | None) -> np.ndarray:
    """Turn SVM scores (``n × k``) into probabilities with a calibration's parameters (see
    :class:`TextClassifier`); reproduces scikit-learn's ``CalibratedClassifierCV.predict_proba``."""
    if calibration is None or calibration["method"] == "temperature":
        beta = 1.0 if calibration is None else float(calibration["beta"])
        z = beta * scores
        z = z - z.max(axis=1, keepdims=True)
        exp = np.exp(z)
        return exp / exp.sum(axis=1, keepdims=True)
    a, b = np.asarray(calibration["a"]), np.asarray(calibration["b"])
    proba = 1.0 / (1.0 + np.exp(a * scores + b))
    total = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, total, out=np.full_like(proba, 1.0 / proba.shape[1]), where=total != 0)


def split_text(text: str, *, title_max: int = 60) -> Doc:
    """Turn one free text into a ``(title, body)`` doc: a text with line breaks is its first line (title)
    and the rest (body); a single line of at most ``title_max`` characters is a title, a longer one a body
    (the training data hold titles alone and bodies alone, so either reads like something seen)."""
    text = (text or "").strip()
    if "\n" in text:
        title, body = text.split("\n", 1)
        return title.strip(), body.strip()
    return (text, "") if len(text) <= title_max else ("", text)


def docs_of(samples: Iterable[Sample]) -> list[Doc]:
    """Return the ``(title, body)`` docs of samples, in order."""
    return [(sample.title, sample.detail) for sample in samples]


def _folds(labels: Sequence[str], groups: Sequence[int] | None) -> list[tuple[np.ndarray, np.ndarray]]:
    index = np.zeros(len(labels))
    if groups is not None and all(group >= 0 for group in groups):
        return list(GroupKFold(CALIBRATION_FOLDS).split(index, labels, groups=np.asarray(groups)))
    return list(StratifiedKFold(CALIBRATION_FOLDS, shuffle=True, random_state=0).split(index, labels))


def fit_matrix(
    method: str,
    matrix: sparse.csr_matrix,
    labels: Sequence[str],
    *,
    groups: Sequence[int] | None = None,
    calibration: str = CALIBRATION,
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Fit the linear part of ``method`` on a feature matrix; return ``(labels, weights, intercept,
    calibration)`` with ``weights`` as in :class:`TextClassifier`. ``ours`` is calibrated (``calibration``:
    ``"sigmoid"`` or ``"temperature"``) on group-aware folds when ``groups`` are given (a message and its
    near-copy never calibrate each other).

    Raises ``RuntimeError`` if the extracted parameters do not reproduce scikit-learn's probabilities."""
    if method == BASELINE:
        svm = LinearSVC(random_state=0).fit(matrix, labels)
        weights = np.ascontiguousarray(svm.coef_.T, dtype=np.float32)
        return [str(c) for c in svm.classes_], weights, svm.intercept_.copy(), None
    calibrated = CalibratedClassifierCV(
        LinearSVC(C=OURS_C, tol=OURS_TOL, random_state=0), method=calibration, cv=_folds(labels, groups), ensemble=False
    ).fit(matrix, labels)
    inner = calibrated.calibrated_classifiers_[0]
    svm = inner.estimator
    if calibration == "temperature":
        params: dict[str, Any] = {"method": "temperature", "beta": float(inner.calibrators[0].beta_)}
    else:
        params = {
            "method": "sigmoid",
            "a": [float(c.a_) for c in inner.calibrators],
            "b": [float(c.b_) for c in inner.calibrators],
        }
    weights, intercept = np.ascontiguousarray(svm.coef_.T, dtype=np.float32), svm.intercept_.copy()
    probe = matrix[: min(64, matrix.shape[0])]
    ours = calibrate(np.asarray(probe @ weights, dtype=np.float64) + intercept, params)
    if not np.allclose(ours, calibrated.predict_proba(probe), atol=1e-4):
        raise RuntimeError("calibration parameters do not reproduce CalibratedClassifierCV; check scikit-learn")
    return [str(c) for c in calibrated.classes_], weights, intercept, params


def train(
    samples: Sequence[Sample],
    *,
    method: str = OURS,
    words: Sequence[str] | None = None,
    calibration: str = CALIBRATION,
) -> TextClassifier:
    """Train a classifier of ``method`` (``"baseline"`` or ``"ours"``) on labelled samples.

    Grouped samples (from :func:`~civicloop.intelligence.data.group_samples`) make calibration folds
    group-aware. ``words`` (jieba's user dictionary) defaults to the category tree's names from the shared
    data (none when absent). Returns the fitted :class:`TextClassifier`. Raises ``ValueError`` on fewer
    than two labels or an unknown method."""
    labels = [sample.label for sample in samples]
    if len(set(labels)) < 2:
        raise ValueError("training needs at least two labels")
    started = time.perf_counter()
    blocks = make_blocks(method, category_words() if words is None else words)
    docs = docs_of(samples)
    matrix = sparse.hstack([block.fit_transform(docs) for block in blocks], format="csr")
    classes, weights, intercept, params = fit_matrix(
        method, matrix, labels, groups=[sample.group for sample in samples], calibration=calibration
    )
    return TextClassifier(
        method=method,
        labels=classes,
        blocks=blocks,
        weights=weights,
        intercept=intercept,
        calibration=params,
        train_seconds=round(time.perf_counter() - started, 1),
        info={"train_rows": len(samples), "features": int(matrix.shape[1])},
    )


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Return the expected calibration error: the support-weighted mean gap between confidence and
    accuracy over ``bins`` equal-width confidence bins (Guo et al. 2017, "On calibration of modern
    neural networks"). Takes two arrays of equal length; returns a number in [0, 1]."""
    if len(confidence) == 0:
        return 0.0
    which = np.clip(np.digitize(confidence, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.sum() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(total / len(confidence))


def evaluate(
    model: TextClassifier, samples: Sequence[Sample], *, thresholds: Sequence[float] = (0.5, 0.7, 0.9)
) -> dict[str, Any]:
    """Measure ``model`` on labelled samples.

    Returns a JSON-ready dict: ``n``, ``macro_f1``, ``accuracy``, ``per_class`` (label → F1), ``precision``,
    ``recall`` and ``support`` per label, ``top3_accuracy`` (true label among the top 3), ``labels`` and
    ``confusion`` (rows: true label, columns: predicted, in ``labels`` order), ``ece`` (expected
    calibration error of ``confidence``) and ``by_confidence`` (per threshold: the share of messages at or
    above it, the accuracy on them, and the top-3 accuracy on those below it: what a routing threshold
    trades). Macro-F1 averages the labels present in ``samples``; a label the
    model does not know counts as an error. Raises ``ValueError`` when ``samples`` is empty."""
    if not samples:
        raise ValueError("nothing to evaluate")
    truth = [sample.label for sample in samples]
    predictions = model.predict_many(docs_of(samples))
    predicted = [p.category for p in predictions]
    labels = list(model.labels) + sorted(set(truth) - set(model.labels))
    present = [label for label in labels if label in set(truth)]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=present, zero_division=0.0
    )
    confidence = np.array([p.confidence for p in predictions])
    correct = np.array([p == t for p, t in zip(predicted, truth, strict=True)], dtype=float)
    in_top3 = np.array([t in {label for label, _ in p.top3} for p, t in zip(predictions, truth, strict=True)])
    by_confidence = {}
    for threshold in thresholds:
        mask = confidence >= threshold
        by_confidence[f"{threshold:g}"] = {
            "coverage": round(float(mask.mean()), 4),
            "accuracy": round(float(correct[mask].mean()), 4) if mask.any() else None,
            "top3_accuracy_below": round(float(in_top3[~mask].mean()), 4) if (~mask).any() else None,
        }
    macro = f1_score(truth, predicted, labels=present, average="macro", zero_division=0.0)
    return {
        "n": len(samples),
        "macro_f1": round(float(macro), 4),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "top3_accuracy": round(float(np.mean(in_top3)), 4),
        "per_class": {label: round(float(f1[i]), 4) for i, label in enumerate(present)},
        "precision": {label: round(float(precision[i]), 4) for i, label in enumerate(present)},
        "recall": {label: round(float(recall[i]), 4) for i, label in enumerate(present)},
        "support": {label: int(support[i]) for i, label in enumerate(present)},
        "labels": labels,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "ece": round(expected_calibration_error(confidence, correct), 4),
        "by_confidence": by_confidence,
    }


def latency(model: TextClassifier, samples: Sequence[Sample], *, limit: int = 600) -> dict[str, float]:
    """Time :meth:`TextClassifier.predict`, one message at a time, on one thread (BLAS limited to one).

    Takes up to ``limit`` samples, after one warm-up call (which also loads jieba). Returns milliseconds
    per message: wall-clock ``p50``, ``p99``, ``max``, ``mean``, and the same for the thread's CPU time
    (``cpu_p50`` …), which leaves out the time the process waited for a core on a busy machine; and ``n``.
    Raises ``ValueError`` on no samples."""
    from threadpoolctl import threadpool_limits

    chosen = list(samples)[:limit]
    if not chosen:
        raise ValueError("nothing to time")
    model.predict(chosen[0].title, chosen[0].detail)
    wall, cpu = [], []
    with threadpool_limits(limits=1):
        for sample in chosen:
            started, started_cpu = time.perf_counter_ns(), time.thread_time_ns()
            model.predict(sample.title, sample.detail)
            cpu.append((time.thread_time_ns() - started_cpu) / 1e6)
            wall.append((time.perf_counter_ns() - started) / 1e6)
    out: dict[str, float] = {"n": len(chosen)}
    for prefix, values in (("", np.array(wall)), ("cpu_", np.array(cpu))):
        out[f"{prefix}p50"] = round(float(np.percentile(values, 50)), 3)
        out[f"{prefix}p99"] = round(float(np.percentile(values, 99)), 3)
        out[f"{prefix}max"] = round(float(values.max()), 3)
        out[f"{prefix}mean"] = round(float(values.mean()), 3)
    return out
