"""Reply understanding: how many of the fields reps mean does the bot read right?

The corpus (bench/data/replies.txt) is replies as reps write them — multi-line, dates after
item numbers, English, typos, voice input without punctuation — each with what it means,
written by hand from how reps talk, never from the parser's output. Each reply goes through
``arbot parse-reply --split``'s code path (``bot.replies.parse_message``), and per expected
segment ten fields are compared:

  items, outcome, promised_date, approximate, promised_amount, promised_share, paid_amount,
  first_amount, conditional, ask

Segments are matched by position when the counts agree, else by their items; an expected
segment the parser missed counts all ten fields wrong, and a segment the parser invented
counts one wrong field (a phantom entry on some item). Printed: the share of fields right,
the share of the fields that carry something (not empty/false in the expectation: the
harder number, since most fields are empty), and the share of replies read entirely right,
overall and per category. ``approximate`` is compared only where a date is expected.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

from bench.common import Result

CORPUS = Path(__file__).parent / "data" / "replies.txt"
# written after the parser was tuned on CORPUS and never used to change it: the honest figure
HOLDOUT = Path(__file__).parent / "data" / "replies_holdout.txt"
FIELDS = ("items", "outcome", "promised_date", "approximate", "promised_amount", "promised_share",
          "paid_amount", "first_amount", "conditional", "ask")


@dataclass
class Case:
    text: str
    today: date
    items: int
    category: str
    expected: list[dict] = field(default_factory=list)
    line: int = 0


def _money(v: str) -> str:
    return f"{Decimal(v):.2f}"


def _segment(spec: str) -> dict:
    """``1,3 promised d=2026-11-30~ a=50000 s=0.5 p=20000 f=5000 cond ask=no_date`` → expected fields."""
    words = spec.split()
    items_word, outcome, rest = words[0], words[1], words[2:]
    seg = {"items": None if items_word == "-" else "all" if items_word == "all" else
           [int(x) for x in items_word.split(",")], "outcome": outcome, "promised_date": None,
           "approximate": None, "promised_amount": None, "promised_share": None, "paid_amount": None,
           "first_amount": None, "conditional": False, "ask": None}
    for w in rest:
        key, _, value = w.partition("=")
        if key == "d":
            seg["promised_date"], seg["approximate"] = value.rstrip("~"), value.endswith("~")
        elif key == "a":
            seg["promised_amount"] = _money(value)
        elif key == "s":
            seg["promised_share"] = format(Decimal(value).normalize(), "f")
        elif key == "p":
            seg["paid_amount"] = _money(value)
        elif key == "f":
            seg["first_amount"] = _money(value)
        elif key == "cond":
            seg["conditional"] = True
        elif key == "ask":
            seg["ask"] = value
        else:
            raise ValueError(f"unknown field {w!r} in {spec!r}")
    return seg


def load(path: Path = CORPUS) -> list[Case]:
    cases, today, items, category = [], date(2026, 11, 23), 30, "simple"
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            opts = dict(w.split("=", 1) for w in line[1:].split())
            today = date.fromisoformat(opts.get("today", today.isoformat()))
            items = int(opts.get("items", items))
            category = opts.get("cat", category)
            continue
        text, _, spec = line.partition(" => ")
        if not spec:
            raise ValueError(f"{path.name}:{n}: no ' => ' in {line!r}")
        cases.append(Case(text.replace("⏎", "\n"), today, items, category,
                          [_segment(s.strip()) for s in spec.split(" | ")], n))
    return cases


def _got(parsed) -> dict:
    j = parsed.to_json()
    return {k: j[k] for k in FIELDS}


def score(case: Case, got: list[dict]) -> tuple[int, int, int, int, list[str]]:
    """(fields right, fields compared, non-empty fields right, non-empty compared, differences)."""
    right = total = full_right = full_total = 0
    diffs: list[str] = []
    if len(got) == len(case.expected):
        pairs = list(zip(case.expected, got))
        extra = 0
    else:
        pool = list(got)
        pairs = []
        for exp in case.expected:
            match = next((g for g in pool if g["items"] == exp["items"]), None)
            if match is not None:
                pool.remove(match)
            pairs.append((exp, match))
        extra = len(pool)
    for exp, g in pairs:
        for f in FIELDS:
            if f == "approximate" and exp["promised_date"] is None:
                continue
            total += 1
            carries = exp[f] not in (None, False)
            full_total += carries
            if g is not None and g[f] == exp[f]:
                right += 1
                full_right += carries
            else:
                diffs.append(f"{exp['items']}.{f}: expected {exp[f]!r} got {None if g is None else g[f]!r}")
    total += extra
    if extra:
        diffs.append(f"{extra} segment(s) the reply does not have")
    return right, total, full_right, full_total, diffs


def run(paths: tuple[Path, ...] = (CORPUS, HOLDOUT), verbose: bool = False) -> Result:
    from bot.replies import parse_message
    cases = [c for path in paths for c in load(path)]
    totals = {id(c): ("all held-out" if c.category.startswith("holdout") else "all tuning") for c in cases}
    by_cat: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0])
    misses: list[str] = []
    started = time.perf_counter()
    for case in cases:
        got = [_got(p) for p in parse_message(case.text, case.today, case.items)]
        r, t, fr, ft, diffs = score(case, got)
        for key in (case.category, totals[id(case)], "all"):
            acc = by_cat[key]
            acc[0] += r
            acc[1] += t
            acc[2] += fr
            acc[3] += ft
            acc[4] += not diffs
            acc[5] += 1
        if diffs:
            misses.append(f"{case.category} line {case.line} {case.text!r}: " + "; ".join(diffs))
    elapsed = time.perf_counter() - started
    result = Result("replies")
    summary = ("all tuning", "all held-out", "all")
    for cat in [c for c in by_cat if c not in summary] + [c for c in summary if c in by_cat]:
        r, t, fr, ft, whole, n = by_cat[cat]
        result.add(category=cat, replies=n, fields=t, fields_right=round(r / t, 4),
                   nonempty_fields=ft, nonempty_right=round(fr / ft, 4) if ft else None,
                   replies_fully_right=round(whole / n, 4))
    result.notes.append(f"{len(cases)} replies from {', '.join(p.name for p in paths)}, parsed in {elapsed * 1000:.0f} ms "
                        f"({elapsed / len(cases) * 1e6:.0f} µs a reply)")
    result.notes.append(f"{len(misses)} replies with at least one field wrong")
    for m in misses if verbose else misses[:15]:
        result.notes.append(m)
    if not verbose and len(misses) > 15:
        result.notes.append(f"... and {len(misses) - 15} more (python -m bench.replies --verbose)")
    return result


if __name__ == "__main__":
    import sys
    res = run(verbose="--verbose" in sys.argv)
    res.print()
    print(f"  saved {res.save()}")
