"""Second and third level of the category tree (``intelligence/levels.py``): pure tests, no database.

The first part runs on a small hand-made tree; the second on the publisher's tree and the 60 messages
judged by hand (``tests/data/levels_sample.csv``: message id, level 2, level 3 only; the texts are read
from the shared data and skipped when it is absent). The thresholds are the figures measured in
docs/intelligence.md minus a margin of about one standard error."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from civicloop.intelligence.data import shared_data_dir
from civicloop.intelligence.levels import (
    HIGH,
    NONE,
    OTHER,
    LevelPredictor,
    band,
    read_paths,
)

SMALL = [
    ("城乡建设", "市政设施", "道路破损"),
    ("城乡建设", "市政设施", "路灯不亮"),
    ("城乡建设", "住房与物业", "物业服务"),
    ("城乡建设", "住房与物业", "电梯故障"),
    ("城乡建设", "其他", "其他"),
    ("环境保护", "噪声污染", "施工噪声"),
    ("环境保护", "噪声污染", "其他"),
]
SAMPLE = Path(__file__).parent / "data" / "levels_sample.csv"
BUILTIN = Path(__file__).parents[1] / "src" / "civicloop" / "catalog" / "data" / "categories_builtin.csv"
SEVEN_LABELS = ["交通运输", "劳动和社会保障", "卫生计生", "商贸旅游", "城乡建设", "教育文体", "环境保护"]


@pytest.fixture(scope="module")
def small() -> LevelPredictor:
    return LevelPredictor().fit(SMALL)


def test_exact_name_in_title_wins(small: LevelPredictor) -> None:
    got = small.predict("小区电梯故障三天没人修", "物业说在等配件。", "城乡建设")
    assert got.level2.name == "住房与物业"
    assert got.level3.name == "电梯故障"
    assert got.level3.score == pytest.approx(1.0)
    assert "电梯故障" in got.level3.why
    assert got.path == ("城乡建设", "住房与物业", "电梯故障")
    assert got.reason is None


def test_child_names_help_level_two() -> None:
    # neither 市政 nor 设施 is in the text: only the child's name 路灯不亮 points at 市政设施
    text = ("晚上出门一片漆黑", "我家门口的路灯不亮已经一个月了")
    with_children = LevelPredictor().fit(SMALL).predict(*text, "城乡建设")
    assert with_children.level2.name == "市政设施"
    assert with_children.level3.name == "路灯不亮"
    assert "路灯不亮" in with_children.level2.why
    without = LevelPredictor(child_weight=0.0).fit(SMALL).predict(*text, "城乡建设")
    assert without.level2.name != "市政设施"


def test_title_counts_more_than_body(small: LevelPredictor) -> None:
    in_title = small.predict("道路破损", "", "城乡建设").level3.score
    in_body = small.predict("", "道路破损", "城乡建设").level3.score
    assert in_title == pytest.approx(1.0)
    assert 0 < in_body < in_title


def test_unknown_level_one_gives_no_prediction(small: LevelPredictor) -> None:
    got = small.predict("小区电梯故障", "", "不存在的类")
    assert got.level2.name is None and got.level3.name is None
    assert got.level2.confidence == NONE and got.level2.confidence_zh == "无"
    assert got.reason is not None and "not in the category tree" in got.reason
    assert got.path == ("不存在的类",)


@pytest.mark.parametrize("title, detail", [("", ""), (None, None), ("   ", "_x000D_ ")])
def test_empty_text_gives_no_prediction(small: LevelPredictor, title: str | None, detail: str | None) -> None:
    got = small.predict(title, detail, "城乡建设")
    assert got.level2.name is None and got.level3.name is None
    assert got.reason == "empty text"
    assert got.level2.alternatives == ()


def test_nothing_matching_says_so_and_never_guesses_other(small: LevelPredictor) -> None:
    got = small.predict("今天天气很好", "", "城乡建设")
    assert got.level2.name is None
    assert got.level2.confidence == NONE
    assert got.level2.reason is not None
    # 其他 is a catch-all: even the word itself does not make it a match
    other = small.predict("其他问题", "其他其他", "城乡建设")
    assert other.level2.name != OTHER


def test_scores_alternatives_and_dict(small: LevelPredictor) -> None:
    got = small.predict("电梯故障，路灯也不亮，道路破损", "物业服务差", "城乡建设", top=2)
    for choice in (got.level2, got.level3):
        assert 0 < choice.score <= 1
        assert 0 <= choice.margin <= choice.score
        assert len(choice.alternatives) <= 2
        scores = [c.score for c in choice.alternatives]
        assert scores == sorted(scores, reverse=True)
        assert choice.alternatives[0].name == choice.name
        assert all(c.name != OTHER for c in choice.alternatives)
    assert got.as_dict()["level2"]["name"] == got.level2.name


def test_band_thresholds() -> None:
    assert band(0.5, 0.0) == NONE
    assert band(0.3, 0.9) == HIGH
    assert band(0.15, 0.9) == "medium"
    assert band(0.01, 0.9) == "low"


def test_fit_and_predict_errors() -> None:
    with pytest.raises(ValueError):
        LevelPredictor().fit([])
    with pytest.raises(ValueError):
        LevelPredictor().fit([("", "a", "b")])
    with pytest.raises(ValueError):
        LevelPredictor(body_weight=2.0)
    with pytest.raises(ValueError):
        LevelPredictor(features="trigram").fit(SMALL)
    with pytest.raises(RuntimeError):
        LevelPredictor().predict("a", "b", "城乡建设")


def test_works_on_the_builtin_tree() -> None:
    predictor = LevelPredictor().fit(read_paths(BUILTIN))
    got = predictor.predict("家里暖气不热", "室温只有十二度", "城乡建设")
    assert got.path == ("城乡建设", "供暖燃气", "暖气不热")


# --- the publisher's tree and the hand-judged sample ---------------------------------------------------

DATA = shared_data_dir()
needs_data = pytest.mark.skipif(DATA is None, reason="shared Teddy Cup data not found")


@pytest.fixture(scope="module")
def teddy() -> LevelPredictor:
    assert DATA is not None
    return LevelPredictor().fit(read_paths(DATA / "teddy2020c" / "categories.csv"))


def _listed(choice, k: int) -> list[str]:
    """The top-k names with the catch-all 其他 as the implicit last suggestion."""
    names = [c.name for c in choice.alternatives] if choice.name else []
    return [*names, OTHER][:k]


def score_sample(predictor: LevelPredictor) -> dict[str, float]:
    """Top-1 / top-3 accuracy at level 2 and 3 and level-2 accuracy of the 高 band, on the judged sample.

    A missing prediction counts as 其他 (the catch-all a dispatcher would file it under); a level 3 is
    right only under the right level 2."""
    assert DATA is not None
    with open(DATA / "teddy2020c" / "messages_labelled.csv", encoding="utf-8") as handle:
        messages = {row["message_id"]: row for row in csv.DictReader(handle)}
    with open(SAMPLE, encoding="utf-8") as handle:
        gold = list(csv.DictReader(handle))
    hits = dict.fromkeys(["l2_top1", "l2_top3", "l3_top1", "l3_top3"], 0)
    high = [0, 0]
    for row in gold:
        message = messages[row["message_id"]]
        got = predictor.predict(message["title"], message["detail"], message["label"])
        level2, level3 = _listed(got.level2, 3), _listed(got.level3, 3)
        right2 = level2[0] == row["level2"]
        hits["l2_top1"] += right2
        hits["l2_top3"] += row["level2"] in level2
        if row["level2"] == OTHER:
            hits["l3_top1"] += right2
            hits["l3_top3"] += row["level2"] in level2
        else:
            hits["l3_top1"] += right2 and level3[0] == row["level3"]
            hits["l3_top3"] += right2 and row["level3"] in level3
        if got.level2.confidence == HIGH:
            high[0] += 1
            high[1] += right2
    result = {key: value / len(gold) for key, value in hits.items()}
    result["high_share"] = high[0] / len(gold)
    result["high_accuracy"] = high[1] / high[0] if high[0] else 0.0
    return result


def test_sample_holds_ids_and_labels_only() -> None:
    with open(SAMPLE, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 60
    assert list(rows[0]) == ["message_id", "level2", "level3"]
    assert len({row["message_id"] for row in rows}) == 60


@needs_data
def test_seven_labels_are_level_one_names(teddy: LevelPredictor) -> None:
    assert len(teddy.level1_names) == 15
    assert set(SEVEN_LABELS) <= set(teddy.level1_names)


@needs_data
def test_sample_labels_are_paths_of_the_tree() -> None:
    assert DATA is not None
    tree = set(read_paths(DATA / "teddy2020c" / "categories.csv"))
    with open(DATA / "teddy2020c" / "messages_labelled.csv", encoding="utf-8") as handle:
        label = {row["message_id"]: row["label"] for row in csv.DictReader(handle)}
    with open(SAMPLE, encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            assert (label[row["message_id"]], row["level2"], row["level3"]) in tree


@needs_data
def test_accuracy_on_the_judged_sample(teddy: LevelPredictor) -> None:
    # measured: level 2 top-1 0.60, top-3 0.88; level 3 top-1 0.43, top-3 0.50; 高 band 18 of 60, all right
    got = score_sample(teddy)
    assert got["l2_top1"] >= 0.52
    assert got["l2_top3"] >= 0.80
    assert got["l3_top1"] >= 0.35
    assert got["l3_top3"] >= 0.42
    assert got["high_share"] >= 0.2 and got["high_accuracy"] >= 0.9


@needs_data
def test_beats_the_first_child_baseline(teddy: LevelPredictor) -> None:
    # the trivial baseline (first level-2 child in tree order) gets 7 of 60 at level 2
    assert score_sample(teddy)["l2_top1"] >= 2 * 7 / 60
