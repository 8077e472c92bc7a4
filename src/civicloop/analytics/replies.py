"""Reply quality (答复评价): how fast, how much to the point and how complete each unit's replies are.

For every replied request of ``reqs`` (see ``analytics.sources``) :func:`score_replies` measures

* **timeliness** — working days (工作日, ``core.calendar.WorkCalendar``) from filing to reply, scored
  against the deadline tiers of Beijing's 接诉即办 practice (glossary 时限: a general request within 7
  days, a complex one within 15; civicloop counts both in working days, see ``requests.deadlines``;
  the time limits themselves are set under 《北京市接诉即办工作条例》, 2021);
* **relevance** — whether the reply speaks about what was asked, once the boilerplate (greetings,
  "您的留言已收悉", "感谢您对我们工作的支持", "已转…核处") and quotations of the request's own title are
  stripped: TF-IDF character n-gram cosine of request and reply, the share of the title's key words the
  reply takes up, and whether it names the request's place;
* **completeness** — four parts a citizen needs: facts found (经调查/经核实/现场查看…), measures taken
  or planned with a commitment (已安排/责令/整改/将于…), a contact (a telephone number, 联系人) and a
  concrete date or deadline (not the signature date);
* **cites_policy** — a named law, regulation or document (《…条例》, 第X条, 〔2017〕12号) or a rule the
  reply says it follows (根据/按照/依据 …规定/政策/文件);

and an **overall** score (:data:`WEIGHTS`), with ``why``: what the reply lacks, in Chinese.
:func:`unit_table` aggregates the scores per lead unit (or any other column). The rules are checked
against hand-judged real replies (tests/data/replies_sample.csv, docs/analytics-replies.md).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from functools import lru_cache
from statistics import median
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from civicloop.core.calendar import WorkCalendar

UNSIGNED = "未署名单位"
"""Bucket of replies whose unit could not be read (``lead_unit`` is ``NULL``)."""

UNKNOWN = "未知"
"""Bucket of rows whose grouping column is ``NULL`` when :func:`unit_table` groups by another column."""

GENERAL_DAYS = 7
"""Working days of the general tier (一般诉求): a reply within it scores timeliness 1.0."""
COMPLEX_DAYS = 15
"""Working days of the complex tier (较为复杂的诉求): a reply at it scores 0.5."""

WEIGHTS = {"timeliness": 0.15, "relevance": 0.40, "completeness": 0.35, "policy": 0.10}
"""Weights of the overall score (sum 1); see docs/analytics-replies.md for how they were chosen."""

COMPLETENESS_PARTS = ("facts", "measures", "contact", "date")
SMALL_N = 5
"""Units with fewer replies than this are kept in :func:`unit_table` but flagged ``small_n``."""

RELEVANCE_FLOOR = 0.35
"""Below this relevance the reply is reported as not addressing the request."""

# --- boilerplate -----------------------------------------------------------------------------------

_SENTENCE_SPLIT = re.compile(r"[。！!？?；;\n\r]+|(?<=[：:])|_x000D_")
_GREETING = re.compile(
    r"^[\s\"“”'‘’：:，,、]*(?:尊敬的|亲爱的)?(?:网友|网民|市民|群众|朋友|同志|先生|女士)?[\s“”\"]*"
    r"(?:[A-Za-z]{0,4}\d{3,}[A-Za-z\d]*|[^，,。！!：:“”\"]{0,12})?[\s“”\"]*[：:，,]?\s*(?:您|你)好[！!，,：:。\s]*"
)
_BOILER = re.compile(
    "|".join([
        r"(?:您|你)好", r"网友|网民|来信人", r"UU\d+", r"[“”\"]",
        r"(?:您|你)?的?(?:留言|来信|信件|帖文|帖子|网帖|问题|咨询|诉求|反映|情况|建议|意见)[^，,。]{0,40}?(?:已|我们已|我局已)?"
        r"(?:收悉|获悉|收到|知悉|阅办|已阅)",
        r"(?:收悉|获悉|知悉)", r"来信收悉", r"留言收悉",
        r"现(?:将|就)?(?:有关|相关|您关心的|你关心的|调查处理|核查|处理)?(?:的)?(?:问题|情况)?(?:作如下|作出以下|如下)?"
        r"(?:回复|答复|说明|反馈)(?:如下)?",
        r"(?:首先|再次|非常|十分)?感谢(?:您|你)?(?:对|的)[^。！!]{0,40}", r"谢谢(?:您|你)?的?(?:来信|关注|支持)?",
        r"欢迎(?:您|你)?(?:一如既往|继续)[^。！!]{0,30}", r"祝(?:您|你)[^。！!]{0,10}",
        r"(?:专此|特此)(?:回复|答复|函复)", r"敬请关注后续回复", r"办理情况我们将在第一时间回复",
        r"(?:并)?已将(?:您|你)?反映的(?:问题|情况)转交相关部门(?:进行)?处理",
        r"处理情况会向(?:您|你)反馈",
        r"[\s，,、：:！!。]+",
    ])
)
_FORWARD = re.compile(
    r"已?(?:转|转交|转至|转给|交由|交|转送|批转|上报给?)[^，,。]{0,25}?"
    r"(?:调查|核实|核查|处理|办复|核处|办理|研究|处置|答复|回复|部门|单位)"
)
"""A sentence that says only where the request was sent (已转交县住建局核实、办复)."""
_DATE = re.compile(
    r"(?:\d{4}\s*年\s*)?\d{1,2}\s*月\s*\d{1,2}\s*[日号]|\d{4}\s*年\s*\d{1,2}\s*月|\d{4}[.\-/]\d{1,2}[.\-/]\d{1,2}"
)
_SIGNATURE_DATE = re.compile(
    r"(?:\d{4}\s*年\s*\d{1,2}\s*[月日]\s*\d{1,2}\s*[日号]?|\d{4}[.\-/]\d{1,2}[.\-/]\d{1,2})"
    r"(?=\s*(?:$|[“\"]|网友|您的留言|UU|[A-Z]\d*[市区县]?[^，。]{0,20}(?:网友|您好)))"
)
_ECHO_DATE = re.compile(
    r"(?:您|你)?于?\s*(?:" + _DATE.pattern + r")\s*(?:在|通过|发表|反映|留言|来信|发帖|的留言)"
)

# --- completeness ----------------------------------------------------------------------------------

FACTS = re.compile(
    r"经(?:过)?(?:现场|实地|认真|深入|多方|详细|进一步|我局|我们)?(?:调查|核实|核查|查询|查实|查|了解|勘察|勘查|排查|检查|"
    r"走访|审核|核对|测量|检测|调阅|比对|联系|沟通|咨询)"
    r"|现场(?:查看|核实|勘察|检查|调查|核查|察看|踏勘)|实地(?:查看|调查|走访|核查|检查|察看|踏勘)|查明|调查发现|"
    r"调查了解|核实(?:发现|情况)|据(?:查|了解|核实|调查)|(?:进行|开展)了?(?:调查|核实|核查|走访|检查)|"
    r"(?:属实|不属实|基本属实)"
)
"""Facts found: the reply says what the unit looked into (source: the 办结 content a 12345 reply must carry)."""
MEASURES = re.compile(
    r"(?:已|已经)(?!收悉|获悉|转|阅|知悉|收到|将)[\u4e00-\u9fa5]{0,4}?(?:安排|组织|要求|责令|督促|完成|修复|整改|解决|"
    r"清理|清除|拆除|协调|落实|派|启动|开展|下发|更换|维修|恢复|开通|纳入|约谈|处罚|罚款|查处|立案|制定|出台|增加|调整|取消|"
    r"设置|施划|安装|实施|成立|申报|形成|印发|退还|补发|发放|退回|办理|到位|立项|批复|开工|竣工|疏通|联系上|对接|告知)"
    r"|将于|拟于|计划于|预计|力争|限期|责令|整改|停业|停工|罚款|处罚|立案|"
    r"正在(?:进行|办理|实施|施工|推进|调试|开展|准备|协调|研究|建设|整改|编制|组织|制定)|"
    r"下一步|(?:已|立即|及时|迅速)(?:安排|组织|派|赶赴|要求)|要求[^，。]{0,20}(?:尽快|立即|限期|及时|按时)"
)
"""Measures taken or planned with a commitment (已修复, 责令整改, 将于…, 正在施工); a bare promise such as
"我局将进一步加强管理" does not count."""
CONTACT = re.compile(
    r"(?<!\d)(?:0\d{2,3}|\d{4})[-—－\s]?(?:\d{3,4}[-—－]?)?[\d*＊]{7,8}(?![\d*])|1[3-9][\d*]{2}\*{4}\d{4}|"
    r"(?<!\d)1[3-9]\d{9}(?!\d)|\d{4}[-—－]\*{6,}|(?<!\d)(?:12345|12333|12315|12318|12358|12369|12320|12328)(?!\d)|"
    r"联系人[:：]|(?:电话|热线|手机|座机)[:：]?\s*[\d*＊]{5,}"
)
"""A way to reach the unit: a (masked) telephone number, a government service line, a contact person."""
DEADLINE = re.compile(
    r"\d{1,2}月(?:底|中旬|上旬|下旬|初|前|份)|年底|年内|月底前|春节前|汛期前|\d+个?(?:工作日|日|天|周|星期|月)内|"
    r"(?:本|下|这个)(?:月|周|星期)(?:底|内|初|中旬|下旬)?|(?:年|季度)(?:底|内)"
)
POLICY_NAMED = re.compile(
    r"《[^》]{2,60}?(?:法|条例|办法|规定|通知|意见|细则|规划|标准|决定|方案|公告|规则|制度|政策|纲要|释义|批复|规范|"
    r"指南|目录|须知|解释|文件|令)[^》]{0,12}》"
    r"|第[一二三四五六七八九十百零〇\d]+条|[〔\[【(（]\s*\d{4}\s*[〕\]】)）]\s*\d+\s*号|\[政府发文\]|[发文]\s*\d+号文件?"
)
POLICY_ANCHORED = re.compile(
    r"(?:根据|按照|依据|依照|遵照|参照|符合)[^，。；]{0,25}?(?:法律|法规|条例|办法|规定|政策|文件|标准|精神|细则)"
)


# --- working days ----------------------------------------------------------------------------------

class _DayIndex:
    """Prefix sums of working days over a date range, so each pair of dates costs O(1)."""

    def __init__(self, calendar: WorkCalendar, first: date, last: date) -> None:
        self.first = first
        days = (last - first).days + 1
        counts = np.zeros(days + 1, dtype=np.int64)
        for i in range(days):
            counts[i + 1] = counts[i] + int(calendar.day(first + timedelta(days=i)).working)
        self.counts = counts

    def between(self, start: date, end: date) -> int:
        if end <= start:
            return 0
        return int(self.counts[(end - self.first).days + 1] - self.counts[(start - self.first).days + 1])


def working_days_taken(created_at: datetime, replied_at: datetime, calendar: WorkCalendar | None = None) -> int:
    """Return the working days a reply took: those in the half-open range (filing day, reply day].

    Takes local wall-clock times (naive, as in ``reqs``, or aware in the same zone). The filing day is
    day 0 whatever the hour (自受理之日起: counting starts the next day, as
    ``WorkCalendar.add_working_days`` and the 7/15 working-day deadlines of ``requests.deadlines``
    do); the reply's day counts as a whole if it is a working day. So a reply the same day is 0, one on
    the next working day 1, and a reply on day ≤ 7 met the general deadline. Days come from
    ``calendar`` (default: the ``chinesecalendar`` library's official schedule with its 调休 days).
    Returns 0 when the reply is not after the filing day."""
    return (calendar or WorkCalendar()).working_days_between(created_at.date(), replied_at.date())


def timeliness_score(working_days: int) -> float:
    """Map working days taken (≥ 0) to a score in [0, 1].

    1.0 up to :data:`GENERAL_DAYS` (7, the general deadline), then falling linearly to 0.5 at
    :data:`COMPLEX_DAYS` (15, the complex deadline), then 0.5 × 15 / days (30 working days → 0.25,
    60 → 0.125). Tiers of Beijing's 接诉即办 practice (glossary 时限: general 7, complex 15), counted in
    working days as civicloop does. Raises ``ValueError`` for negative days."""
    if working_days < 0:
        raise ValueError("working_days must be >= 0")
    if working_days <= GENERAL_DAYS:
        return 1.0
    if working_days <= COMPLEX_DAYS:
        return 1.0 - 0.5 * (working_days - GENERAL_DAYS) / (COMPLEX_DAYS - GENERAL_DAYS)
    return 0.5 * COMPLEX_DAYS / working_days


# --- text rules ------------------------------------------------------------------------------------

def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text or "") if s and s.strip()]


def _is_boilerplate(sentence: str) -> bool:
    rest = _GREETING.sub("", sentence, count=1)
    rest = _BOILER.sub("", rest)
    return len(rest) < 4


def _strip_signature(text: str) -> str:
    return _SIGNATURE_DATE.sub("", text)


def substance(reply: str, title: str = "") -> tuple[str, bool]:
    """Return (the reply without boilerplate, whether it only said the request was forwarded).

    Drops greeting, acknowledgement, thanks and forwarding sentences (您好 / 您的留言已收悉 /
    现回复如下 / 感谢您对我们工作的支持 / 已转交…核处), signature dates, and quotations (“…”) that
    repeat the request's ``title`` (a reply that only echoes the title must not look relevant). The
    second value is true when a forwarding sentence was found and fewer than 15 characters of
    substance remain (转办 without an answer)."""
    from rapidfuzz import fuzz

    text = _strip_signature(reply or "")
    if title:
        def echo(match: re.Match[str]) -> str:
            quoted = match.group(1)
            return "" if len(quoted) >= 4 and fuzz.partial_ratio(quoted, title) >= 70 else match.group(0)

        text = re.sub(r"[“\"《]([^”\"》]{2,80})[”\"》]", echo, text)
    kept: list[str] = []
    forwarded = False
    for sentence in _sentences(text):
        if _FORWARD.search(sentence) and len(_BOILER.sub("", _FORWARD.sub("", sentence))) < 12:
            forwarded = True
            continue
        if not _is_boilerplate(sentence):
            kept.append(sentence.strip())
    body = "。".join(kept)
    return body, forwarded and len(re.sub(r"\W", "", body)) < 15


def completeness_parts(reply: str) -> dict[str, bool]:
    """Return which of :data:`COMPLETENESS_PARTS` a reply text has (each a bool).

    ``facts``: :data:`FACTS`; ``measures``: :data:`MEASURES`; ``contact``: :data:`CONTACT` (masked
    numbers such as ``0731-0000-********`` count); ``date``: a date that is neither the signature at the
    end nor the date the citizen wrote (您于5月17日…的留言), or a deadline (月底前, 15个工作日内).
    Source: what a 12345 办结 reply must tell the citizen — what was found, what was done, by when, whom
    to call."""
    text = reply or ""
    no_forward = _FORWARD.sub("", text)
    dated = _ECHO_DATE.sub("", _strip_signature(text))
    return {
        "facts": bool(FACTS.search(no_forward)),
        "measures": bool(MEASURES.search(no_forward)),
        "contact": bool(CONTACT.search(text)),
        "date": bool(_DATE.search(dated) or DEADLINE.search(dated)),
    }


def cites_policy(reply: str) -> bool:
    """True when a reply cites a rule: a named law/regulation/document (《…条例》, 《…办法》), an article
    (第三十条), a document number (〔2017〕1243号), or a rule it says it follows (根据/按照/依据 …规定,
    政策, 文件). The platform's own column names (《问政西地省》) do not count."""
    text = re.sub(r"《问政[^》]*》|《[^》]*(?:栏目|平台|信箱)》", "", reply or "")
    return bool(POLICY_NAMED.search(text) or POLICY_ANCHORED.search(text))


_TITLE_STOP = set(
    "请求 要求 反映 问题 咨询 投诉 举报 关于 建议 希望 何时 什么 为什么 能否 是否 请问 "
    "政府 领导 尊敬 书记 市长 县长 有关 相关 部门 情况 一下 怎么 如何 没有 不能 可以 "
    "解决 处理 尽快 恳请 恳求 强烈 呼吁 严重 市民 居民 群众 百姓 业主 我们 现在 还是 "
    "已经 哪里 多少 怎样 为何 这个 那个 进行 存在".split()
)


@lru_cache(maxsize=1)
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(60)
    return jieba


def key_words(title: str) -> list[str]:
    """Return the key words of a request title (jieba words of ≥ 2 characters, without request verbs
    such as 请求/反映/咨询, anonymised place codes like A5区, or digits), at most 8, in order.
    Remembered per title (many requests share one), so a million replies cost one cut per distinct title."""
    return list(_key_words(title or ""))


@functools.lru_cache(maxsize=200_000)
def _key_words(title: str) -> tuple[str, ...]:
    words: list[str] = []
    for word in _jieba().cut(re.sub(r"[A-Z]\d{0,2}[市区县]?", " ", title or "")):
        word = word.strip()
        if len(word) < 2 or word in _TITLE_STOP or re.fullmatch(r"[A-Za-z]?\d*[市区县]?|[\W\d_]+", word):
            continue
        if word in words:
            continue
        words.append(word)
    return tuple(words[:8])


def _cosines(requests: list[str], replies: list[str]) -> np.ndarray:
    """TF-IDF (character 1–2-grams, sublinear tf, idf over requests and replies) cosine of each request
    with its reply's substance."""
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    if not requests:
        return np.zeros(0)
    # hashed n-grams (2**20 buckets: collisions negligible for 1–2 character n-grams) instead of a
    # vocabulary dict: the same cosine, and a million pairs fit in time and memory
    hasher = HashingVectorizer(analyzer="char", ngram_range=NGRAMS, alternate_sign=False, norm=None,
                               n_features=2**20, dtype=np.float32)
    # Two passes over batches of COSINE_BATCH pairs: the document frequencies of all texts first, then
    # each batch's TF-IDF rows with those. The same numbers as one fit_transform over every text (each
    # row's weights depend only on the row and the idf), without holding the count matrix of all the
    # texts: 400,000 pairs (a month of replies at 10⁷ requests) made ~4 GB of it.
    df = np.zeros(hasher.n_features, dtype=np.int64)
    for start in range(0, len(requests), COSINE_BATCH):
        for texts in (requests[start:start + COSINE_BATCH], replies[start:start + COSINE_BATCH]):
            df += np.bincount(hasher.transform(texts).indices, minlength=hasher.n_features)
    transformer = TfidfTransformer(sublinear_tf=True).fit(hasher.transform(requests[:1]))
    # sklearn's own idf (smooth_idf: ln((1 + n) / (1 + df)) + 1, in the counts' float32)
    smoothed = df.astype(np.float32) + np.float32(1.0)
    idf = np.full_like(smoothed, fill_value=2 * len(requests) + 1, dtype=np.float32)
    idf /= smoothed
    np.log(idf, out=idf)
    idf += np.float32(1.0)
    transformer.idf_ = idf
    out = np.empty(len(requests))
    for start in range(0, len(requests), COSINE_BATCH):
        part = requests[start:start + COSINE_BATCH]
        matrix = transformer.transform(hasher.transform(part + replies[start:start + COSINE_BATCH]))
        a, b = matrix[: len(part)], matrix[len(part):]
        out[start:start + len(part)] = np.asarray(a.multiply(b).sum(axis=1)).ravel().astype(float)
    return out


COSINE_BATCH = 20_000
"""Request–reply pairs per batch of :func:`_cosines` (memory: about 10 kB per pair while it runs)."""


NGRAMS = (1, 2)
"""Character n-gram lengths of the relevance TF-IDF (Chinese words are mostly 1–2 characters)."""
COSINE_OFF = 0.05
"""TF-IDF cosine of a request with an *unrelated* reply: 90th percentile 0.056 on the real file (each
request paired with a random other reply), so at or below this a reply scores no topical overlap."""
COSINE_ON = 0.20
"""Cosine from which a reply counts as fully on topic (median of real request–reply pairs: 0.175; 75th
percentile 0.225)."""
SUBSTANCE_FULL = 60
"""Characters of substance (after boilerplate) from which length no longer limits relevance."""
REDIRECT = re.compile(
    r"不属于?(?:我|本)?(?:局|单位|办|部门|县|区|镇|乡|街道|中心)?的?(?:管辖|职责|职能|管理|业务)(?:范围)?|"
    r"(?:建议|请)(?:您|你)?(?:直接)?(?:咨询|致电|拨打|向|联系|前往)|(?:您|你)?可(?:以)?(?:直接)?(?:拨打|致电)|"
    r"留下联系方式|欢迎(?:您|你)?前来"
)
"""The reply sends the citizen elsewhere (not our remit / please call …) instead of answering."""
REDIRECT_MAX_CHARS = 100
"""A reply that redirects counts as a redirect only when its substance is shorter than this."""


def relevance_score(cosine: float, coverage: float | None, place_named: bool | None, substance_chars: int,
                    redirected: bool = False) -> float:
    """Combine the relevance signals into [0, 1].

    ``0.6 × topical + 0.3 × coverage + 0.1 × place_named``, where ``topical`` rises linearly from 0 at
    cosine :data:`COSINE_OFF` to 1 at :data:`COSINE_ON` and a signal that is unknown (``None``: no key
    words in the title, no place known) passes its weight to the others; times
    ``min(1, sqrt(substance_chars / SUBSTANCE_FULL))`` so that a reply with almost nothing beyond
    boilerplate cannot score high; halved when the reply only ``redirected`` the citizen elsewhere
    (推诿 runs against the first-responder rule, 首接负责, of 《北京市接诉即办工作条例》). Signal weights
    chosen by hand, see docs/analytics-replies.md."""
    topical = min(1.0, max(0.0, (cosine - COSINE_OFF) / (COSINE_ON - COSINE_OFF)))
    parts = [(0.6, topical)]
    if coverage is not None:
        parts.append((0.3, coverage))
    if place_named is not None:
        parts.append((0.1, 1.0 if place_named else 0.0))
    total = sum(w for w, _ in parts)
    value = sum(w * v for w, v in parts) / total
    value *= min(1.0, math.sqrt(max(substance_chars, 0) / SUBSTANCE_FULL))
    return value * (0.5 if redirected else 1.0)


def overall_score(timeliness: float, relevance: float, completeness: float, policy: bool) -> float:
    """Return the weighted overall score in [0, 1] (:data:`WEIGHTS`)."""
    return (WEIGHTS["timeliness"] * timeliness + WEIGHTS["relevance"] * relevance
            + WEIGHTS["completeness"] * completeness + WEIGHTS["policy"] * float(policy))


def missing(working_days: int, relevance: float, parts: dict[str, bool], policy: bool, forwarded: bool,
            substance_chars: int, redirected: bool = False) -> list[str]:
    """Return what a reply lacks, as short Chinese phrases, most serious first: 转办 or redirect without
    an answer, no substance, off topic (relevance < :data:`RELEVANCE_FLOOR`), late (over 7 or 15 working
    days), then each missing completeness part and a missing policy citation."""
    why: list[str] = []
    if forwarded:
        why.append("仅告知转办，未答复实质内容")
    elif redirected:
        why.append("仅让诉求人另找他处，未实质答复")
    elif substance_chars < 8:
        why.append("仅有客套话，无实质内容")
    elif relevance < RELEVANCE_FLOOR:
        why.append("答复未针对所提问题")
    if working_days > COMPLEX_DAYS:
        why.append(f"答复超过{COMPLEX_DAYS}个工作日")
    elif working_days > GENERAL_DAYS:
        why.append(f"答复超过{GENERAL_DAYS}个工作日")
    labels = {"facts": "未说明调查核实情况", "measures": "未说明处理措施", "contact": "未留联系方式",
              "date": "未给出具体时间或期限"}
    why.extend(labels[p] for p in COMPLETENESS_PARTS if not parts[p])
    if not policy:
        why.append("未引用政策依据")
    return why


# --- the table -------------------------------------------------------------------------------------

SCHEMA = pa.schema([
    ("id", pa.int64()), ("lead_unit", pa.string()), ("district", pa.string()), ("category1", pa.string()),
    ("created_at", pa.timestamp("us")), ("replied_at", pa.timestamp("us")),
    ("working_days", pa.int32()), ("timeliness", pa.float64()),
    ("relevance", pa.float64()), ("cosine", pa.float64()), ("coverage", pa.float64()), ("place_named", pa.bool_()),
    ("substance_chars", pa.int32()), ("forwarded", pa.bool_()), ("redirected", pa.bool_()),
    ("facts", pa.bool_()), ("measures", pa.bool_()), ("contact", pa.bool_()), ("date", pa.bool_()),
    ("completeness", pa.float64()), ("cites_policy", pa.bool_()), ("overall", pa.float64()),
    ("why", pa.list_(pa.string())),
])
"""Columns of :func:`score_replies`' table (one row per replied request)."""


def score_replies(conn: duckdb.DuckDBPyConnection, *, calendar: WorkCalendar | None = None,
                  since: datetime | None = None, until: datetime | None = None) -> pa.Table:
    """Score every replied request of the view/table ``reqs`` on ``conn``.

    Takes requests with a non-empty ``reply_text`` and a ``replied_at`` no earlier than ``created_at``,
    filed in [``since``, ``until``) (local naive times, as ``reqs`` stores them; ``None``: no bound).
    Returns a ``pyarrow.Table`` with :data:`SCHEMA`, ordered by id: ``lead_unit`` (``NULL`` →
    :data:`UNSIGNED`), ``working_days`` (working days, :func:`working_days_taken`), ``timeliness``
    (:func:`timeliness_score`), ``relevance`` (:func:`relevance_score`, with its signals ``cosine``,
    ``coverage`` of the title's key words — ``NULL`` when the title has none — and ``place_named`` —
    ``NULL`` when the request names no place), ``substance_chars`` and ``forwarded``
    (:func:`substance`), the four completeness parts and ``completeness`` (their mean),
    ``cites_policy``, ``overall`` (:func:`overall_score`) and ``why`` (:func:`missing`). All scores are
    in [0, 1]. Raises ``duckdb.Error`` when ``reqs`` is missing."""
    calendar = calendar or WorkCalendar()
    where = ["reply_text IS NOT NULL", "trim(reply_text) <> ''", "replied_at IS NOT NULL", "replied_at >= created_at"]
    params: list[Any] = []
    if since is not None:
        where.append("created_at >= ?")
        params.append(since)
    if until is not None:
        where.append("created_at < ?")
        params.append(until)
    rows = conn.execute(
        f"""SELECT id, coalesce(title, ''), coalesce(description, ''), created_at, replied_at, reply_text,
                   lead_unit, district, street, place, category1
            FROM reqs WHERE {' AND '.join(where)} ORDER BY id""",
        params,
    ).fetchall()
    if not rows:
        return SCHEMA.empty_table()
    index = _DayIndex(calendar, min(r[3] for r in rows).date(), max(r[4] for r in rows).date())
    subs = [substance(r[5], r[1]) for r in rows]
    cosines = _cosines([f"{r[1]}\n{r[2]}" for r in rows], [s for s, _ in subs])
    out: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
    for row, (body, forwarded), cosine in zip(rows, subs, cosines, strict=True):
        rid, title, _, created, replied, reply, unit, district, street, place, category1 = row
        days = index.between(created.date(), replied.date())
        timely = timeliness_score(days)
        words = key_words(title)
        coverage = sum(w in body for w in words) / len(words) if words else None
        places = [p for p in {place, street} if p]
        named = any(p in body for p in places) if places else None
        chars = len(re.sub(r"[\W_]", "", body))
        redirected = bool(chars < REDIRECT_MAX_CHARS and REDIRECT.search(body))
        relevance = relevance_score(float(cosine), coverage, named, chars, redirected)
        parts = completeness_parts(reply)
        complete = sum(parts.values()) / len(parts)
        policy = cites_policy(reply)
        values = {
            "id": rid, "lead_unit": unit or UNSIGNED, "district": district, "category1": category1,
            "created_at": created, "replied_at": replied, "working_days": days, "timeliness": timely,
            "relevance": relevance, "cosine": float(cosine), "coverage": coverage, "place_named": named,
            "substance_chars": chars, "forwarded": forwarded, "redirected": redirected, **parts,
            "completeness": complete,
            "cites_policy": policy, "overall": overall_score(timely, relevance, complete, policy),
            "why": missing(days, relevance, parts, policy, forwarded, chars, redirected),
        }
        for name in SCHEMA.names:
            out[name].append(values[name])
    return pa.table(out, schema=SCHEMA)


UNIT_SCHEMA = pa.schema([
    ("rank", pa.int32()), ("unit", pa.string()), ("replies", pa.int32()), ("median_working_days", pa.float64()),
    ("within_7_share", pa.float64()), ("relevance", pa.float64()), ("completeness", pa.float64()),
    ("policy_share", pa.float64()), ("forwarded_share", pa.float64()), ("overall", pa.float64()),
    ("small_n", pa.bool_()),
])
"""Columns of :func:`unit_table`."""


def unit_table(scores: pa.Table, *, by: str = "lead_unit") -> pa.Table:
    """Aggregate :func:`score_replies`' rows per unit (or per another column ``by``, e.g. ``district``).

    Returns a ``pyarrow.Table`` with :data:`UNIT_SCHEMA`, one row per value of ``by`` (``NULL`` →
    :data:`UNSIGNED`, or :data:`UNKNOWN` for another column): ``replies``, ``median_working_days``
    (working days), ``within_7_share`` (share answered within the general tier of 7 working days), mean
    ``relevance``, mean ``completeness``,
    ``policy_share``, ``forwarded_share`` (转办-only replies), mean ``overall``, and ``rank`` (1 = best).
    Units with fewer than :data:`SMALL_N` replies are kept and flagged ``small_n`` but ranked after every
    unit with enough replies (a unit with one good reply must not top the table); within each group the
    order is mean overall, then more replies, then name. Rows come in rank order. Raises ``KeyError``
    when ``by`` is not a column of ``scores``."""
    if by not in scores.column_names:
        raise KeyError(by)
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in scores.to_pylist():
        groups.setdefault(row[by] or (UNSIGNED if by == "lead_unit" else UNKNOWN), []).append(row)
    rows = []
    for unit, items in groups.items():
        n = len(items)

        def mean(key: str, items: Iterable[dict[str, Any]] = items, n: int = n) -> float:
            return sum(float(r[key]) for r in items) / n

        rows.append({
            "unit": unit, "replies": n, "median_working_days": float(median(r["working_days"] for r in items)),
            "within_7_share": sum(r["working_days"] <= GENERAL_DAYS for r in items) / n,
            "relevance": mean("relevance"), "completeness": mean("completeness"),
            "policy_share": mean("cites_policy"), "forwarded_share": mean("forwarded"), "overall": mean("overall"),
            "small_n": n < SMALL_N,
        })
    rows.sort(key=lambda r: (r["small_n"], -r["overall"], -r["replies"], r["unit"]))
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
    return pa.Table.from_pylist(rows, schema=UNIT_SCHEMA)
