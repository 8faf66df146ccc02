"""How the morning push is cut into messages under the platform's byte limit, as the rep reads
it: every item once and in order, each message within the limit, a split customer's head on top
of each message that continues it, the totals and the disputed list only in the last one."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace

from bot.jobs.push_messages import SEP, push_texts
from storage.collection import OverdueCustomer, OverdueItem, OverdueReceivable

TODAY = date(2026, 11, 23)
CLOSES = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
REP = SimpleNamespace(name="张伟")


def _items(spec: list[tuple[str, int]], disputed: bool = False, invoice=lambda c, k: f"INV-{c}-{k:03d}"):
    out = []
    for c, (name, n) in enumerate(spec, start=1):
        cust = OverdueCustomer(c, name)
        for k in range(n):
            rec = OverdueReceivable(c * 1000 + k, invoice(c, k), c, "rep1", date(2026, 1, 1),
                                    Decimal(100_000 + k * 37).scaleb(-2), "USD" if k % 7 == 0 else "CNY", disputed)
            out.append(OverdueItem(rec, cust, 100 + k, None, None))
    return out


def _check(texts: list[str], n_items: int, limit: int) -> list[tuple[str, str]]:
    """The (head, item line) pairs in reading order, after checking the frame of every message."""
    assert all(len(t.encode()) <= limit for t in texts), [len(t.encode()) for t in texts]
    if len(texts) > 1:
        assert all(t.splitlines()[0].endswith(f"（第{i}/{len(texts)}部分）**") for i, t in enumerate(texts, start=1))
    assert all("合计：" not in t and "异议中" not in t for t in texts[:-1])
    assert "合计：" in texts[-1]
    pairs = []
    for t in texts:
        head = None
        for line in t.splitlines():
            if line.startswith("**") and "（合计 " in line:
                head = line
            elif re.match(r"\d+\. ", line):
                assert head is not None, t          # a continued customer starts with its head
                pairs.append((head, line))
    assert [int(line.split(".")[0]) for _, line in pairs] == list(range(1, n_items + 1))
    return pairs


def test_a_short_list_is_one_message():
    items = _items([("上海恒信机电有限公司", 3)])
    texts, numbered = push_texts(REP, TODAY, items, [], CLOSES, 2000)
    assert len(texts) == 1 and "部分" not in texts[0].splitlines()[0]
    assert len(numbered) == 3
    _check(texts, 3, 2000)


def test_parts_fit_the_limit_and_only_the_last_carries_totals_and_disputes():
    items = _items([("上海恒信机电有限公司", 4), ("苏州明达电子科技有限公司", 45), ("广州某某贸易有限公司", 6)])
    disputed = _items([("杭州异议客户有限公司", 3)], disputed=True)
    texts, _ = push_texts(REP, TODAY, items, disputed, CLOSES, 700)
    pairs = _check(texts, len(items), 700)
    assert len(texts) > 3
    assert "**异议中（暂停催收，无需回复）**" in texts[-1]
    # the big customer is split across messages; each piece sits under its own head
    big = [t for t in texts if "**苏州明达电子科技有限公司**" in t]
    assert len(big) > 1
    assert sum(1 for h, _ in pairs if "苏州明达" in h) == 45
    # a message holds a customer's head once, however many of its lines it carries
    assert all(t.count("**苏州明达电子科技有限公司**") == 1 for t in big)
    # packed against the short frame: the messages before the last are reasonably full
    assert all(len(t.encode()) > 700 // 2 for t in texts[:-2])


def test_more_than_nine_parts_still_fit():
    items = _items([(f"客户{i:02d}有限公司", 12) for i in range(20)])
    texts, _ = push_texts(REP, TODAY, items, [], CLOSES, 400)
    assert len(texts) >= 10
    _check(texts, len(items), 400)


def test_data_holding_the_separator_is_rendered_line_by_line():
    def invoice(c, k):
        return f"INV{SEP}{c}-{k}" if k == 2 else f"INV-{c}-{k:03d}"
    items = _items([("上海恒信机电有限公司", 5), ("苏州明达电子科技有限公司", 30)], invoice=invoice)
    texts, _ = push_texts(REP, TODAY, items, [], CLOSES, 600)
    pairs = _check(texts, len(items), 600)
    assert sum(f"INV{SEP}" in line for _, line in pairs) == 2
