"""The category classifier on the real Teddy Cup messages (``teddy2020c/`` of the shared data, read by path).

One model is trained once for the module (about half a minute); the tests then check the split for
leaks, the held-out figures, the model file and the CLI commands. Skipped, saying why, when the shared
data folder is absent.
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from civicloop.intelligence import classifier, model_store
from civicloop.intelligence.data import (
    LABELS,
    MESSAGE,
    Sample,
    Split,
    fingerprint,
    group_samples,
    load_split,
    normalise,
)
from tests.helpers import CLASSIFIER_TESTS

# Measured on the fixed split (seed 2020, 30 % of message groups held out): macro-F1 0.90, weakest class
# 0.83 (docs/intelligence.md). The thresholds leave a small margin for BLAS/scikit-learn differences.
MIN_MACRO_F1 = 0.87
MIN_ACCURACY = 0.87
# Weakest class: 0.83 (商贸旅游) on the split, 0.86 ± 0.04 in group cross-validation; issue 4's target (0.90)
# is not met, this guards against falling further.
MIN_WEAKEST_CLASS = 0.78

pytestmark = CLASSIFIER_TESTS


@pytest.fixture(scope="module")
def split() -> Split:
    return load_split()


@pytest.fixture(scope="module")
def model(trained_classifier: classifier.TextClassifier) -> classifier.TextClassifier:
    return trained_classifier


@pytest.fixture(scope="module")
def metrics(model: classifier.TextClassifier, split: Split) -> dict:
    return classifier.evaluate(model, split.test)


def test_split_shares_no_text_between_train_and_test(split: Split) -> None:
    train_titles = {normalise(s.title) for s in split.train} - {""}
    train_bodies = {normalise(s.detail) for s in split.train} - {""}
    assert split.test and all(s.source == MESSAGE for s in split.test)
    assert not {normalise(s.title) for s in split.test} & train_titles
    assert not {normalise(s.detail) for s in split.test} & train_bodies
    assert not {s.group for s in split.test} & {s.group for s in split.train}
    assert {s.label for s in split.test} == set(LABELS)


def test_grouping_links_a_body_edited_by_the_anonymisation() -> None:
    body = "小区门口的路灯坏了三个月，晚上出行很不方便，老人小孩容易摔倒，请有关部门尽快修复路灯。"
    edited = body.replace("路灯", "灯路", 1) + "_x000D_谢谢"
    samples = [
        Sample("路灯坏了", body, "城乡建设", MESSAGE),
        Sample("", edited, "城乡建设", "detail"),
        Sample("学校食堂饭菜质量差", "", "教育文体", "title"),
    ]
    groups = [s.group for s in group_samples(samples)]
    assert groups[0] == groups[1] != groups[2]


def test_held_out_figures(metrics: dict, split: Split) -> None:
    assert metrics["n"] == len(split.test)
    assert metrics["macro_f1"] >= MIN_MACRO_F1
    assert metrics["accuracy"] >= MIN_ACCURACY
    assert set(metrics["per_class"]) == set(LABELS)
    assert min(metrics["per_class"].values()) >= MIN_WEAKEST_CLASS
    assert np.array(metrics["confusion"]).sum() == metrics["n"]
    # Calibrated: the confidence is close to the accuracy it promises.
    assert metrics["ece"] < 0.08


def test_prediction_gives_three_labels_with_probabilities(model: classifier.TextClassifier, split: Split) -> None:
    for sample in split.test[:20]:
        prediction = model.predict(sample.title, sample.detail)
        labels = [label for label, _ in prediction.top3]
        probabilities = [p for _, p in prediction.top3]
        assert len(set(labels)) == 3 and set(labels) <= set(LABELS)
        assert prediction.category == labels[0] and prediction.confidence == probabilities[0]
        assert probabilities == sorted(probabilities, reverse=True)
        assert all(0.0 <= p <= 1.0 for p in probabilities) and sum(probabilities) <= 1.0 + 1e-9
    assert model.predict("").category in LABELS


def test_model_round_trips_with_its_metadata(
    model: classifier.TextClassifier, split: Split, metrics: dict, tmp_path: Path
) -> None:
    metadata = model_store.make_metadata(model, fingerprint=fingerprint(split.train), metrics=metrics)
    path = model_store.save(model, metadata, tmp_path / "models" / "m.joblib")
    stored = model_store.load(path)
    assert stored.metadata["data_fingerprint"] == fingerprint(split.train)
    assert len(stored.metadata["data_fingerprint"]) == 64
    assert stored.metadata["metrics"]["macro_f1"] == metrics["macro_f1"]
    assert stored.metadata["version"].startswith("ours-")
    assert datetime.fromisoformat(stored.metadata["created_at"]).tzinfo is not None
    docs = classifier.docs_of(split.test[:50])
    assert np.allclose(stored.model.probabilities(docs), model.probabilities(docs))
    with pytest.raises(model_store.ModelNotFound):
        model_store.load(tmp_path / "absent.joblib")
    (tmp_path / "junk.joblib").write_bytes(b"not a model")
    with pytest.raises(model_store.ModelFileInvalid):
        model_store.load(tmp_path / "junk.joblib")
    with pytest.raises(ValueError):
        model_store.make_metadata(model, fingerprint="0" * 64, metrics={}, now=datetime(2026, 1, 1))
    assert model_store.make_metadata(model, fingerprint="0" * 64, metrics={}, now=datetime(2026, 1, 1, tzinfo=UTC))


def test_default_model_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CIVICLOOP_MODEL_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert model_store.default_model_path() == tmp_path / "models" / "classifier.joblib"
    monkeypatch.setenv("CIVICLOOP_MODEL_PATH", str(tmp_path / "x.joblib"))
    assert model_store.default_model_path() == tmp_path / "x.joblib"


def test_cli_evaluate_and_classify(
    model: classifier.TextClassifier, split: Split, metrics: dict, tmp_path: Path
) -> None:
    import typer

    from civicloop.cli.model import app, classify

    path = model_store.save(
        model,
        model_store.make_metadata(model, fingerprint=fingerprint(split.train), metrics=metrics),
        tmp_path / "m.joblib",
    )
    held_out = tmp_path / "held_out.csv"
    with held_out.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["message_id", "title", "detail", "label"])
        for number, sample in enumerate(split.test):
            writer.writerow([number, sample.title, sample.detail, sample.label])
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--data", str(held_out), "--model", str(path)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["n"] == len(split.test)
    assert figures["macro_f1"] == pytest.approx(metrics["macro_f1"], abs=1e-4)
    assert set(figures["per_class"]) == set(LABELS) and 0 < figures["accuracy"] <= 1

    single = typer.Typer()
    single.command()(classify)
    result = runner.invoke(
        single, ["小区垃圾堆积如山无人清理\n臭气熏天，蚊蝇滋生，请环卫部门尽快处理", "--model", str(path)]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["category"] in LABELS and len(answer["top3"]) == 3
    assert answer["confidence"] == answer["top3"][0]["probability"]
    result = runner.invoke(single, ["路灯坏了", "--model", str(tmp_path / "absent.joblib")])
    assert result.exit_code == 2
