"""The morning push as messages: one rep's overdue items, numbered and grouped by customer,
rendered and packed into as few messages as fit the size limit (each customer whole where it
fits; the disputed list and the totals in the last one)."""
from __future__ import annotations

from decimal import Decimal
from itertools import groupby

from bot.render import environment, render
from storage import collection as coll
from storage.models import Person


def _by_currency(items: list[coll.OverdueItem]) -> dict[str, Decimal]:
    """Totals per currency: a push never adds yuan to dollars."""
    out: dict[str, Decimal] = {}
    for it in items:
        out[it.receivable.currency] = out.get(it.receivable.currency, Decimal("0.00")) + it.receivable.open_amount
    return _sorted_currencies(out)


def _sorted_currencies(amounts: dict[str, Decimal]) -> dict[str, Decimal]:
    """Yuan first, then the other currencies alphabetically."""
    return dict(sorted(amounts.items(), key=lambda kv: (kv[0] != "CNY", kv[0])))


def _customer_groups(items: list[tuple[int, coll.OverdueItem]]) -> list[tuple[str, dict, list]]:
    """Numbered items grouped by customer, in the order of the list: (name, totals, items)."""
    groups = []
    for (cid, name), its in groupby(items, key=lambda i: (i[1].customer.id, i[1].customer.name)):
        its = list(its)
        groups.append((name, _by_currency([it for _, it in its]), its))
    return groups


LIST = "push/overdue_list.md.j2"
GROUP = "push/_overdue_group.j2"


SEP = "\x00"                  # what the group macro puts after each piece (see _blocks)


def _blocks(groups: list[tuple[str, dict, list]]) -> list[tuple[str, list[str]]]:
    """Each customer's head and item lines, from one template call per customer: the macro puts
    ``SEP`` after each piece (a Jinja call per item line cost more than the line itself). Should the
    data hold ``SEP`` itself, the count of pieces tells, and that customer is rendered a piece at a time."""
    macros = environment().get_template(GROUP).module
    blocks = []
    for name, totals, items in groups:
        pieces = macros.group(name, totals, items, SEP).split(SEP)
        if len(pieces) != len(items) + 2:                # head, the lines, "" after the last SEP
            head = macros.group(name, totals, [], "")
            pieces = [head, *(macros.group(name, totals, [e], "")[len(head):] for e in items), ""]
        blocks.append((pieces[0], pieces[1:-1]))
    return blocks


def split_parts(render_part, blocks: list[tuple[str, list[str]]], limit: int) -> list[str]:
    """Pack customer blocks (head, item lines) into messages of at most ``limit`` bytes.
    ``render_part(body, part, parts)`` renders one message around ``body``, a run of blocks.

    A block goes whole into one message when it fits one on its own; a bigger one is split
    between lines, with its head at the top of each message that holds some of them. Sizes are
    summed, not re-rendered: a message is its frame (what ``render_part`` adds around a body)
    plus its pieces. Only the last message carries the disputed list and the totals, so the others
    are packed against their own short frame (header and part numbers) and the last one against
    the long frame; part numbers are taken one digit wide, then two... until the parts they
    make are fewer than that width allows."""
    sizes = [(len(head.encode()), [len(line.encode()) for line in lines]) for head, lines in blocks]
    total = sum(h + sum(ls) for h, ls in sizes)

    def frame(part, parts):            # around a body that starts and ends with text, which strip() keeps
        return len(render_part("x", part, parts).encode()) - 1

    if total < limit and frame(1, 1) + total <= limit:
        return [render_part("".join(head + "".join(lines) for head, lines in blocks), 1, 1)]
    width = 1
    while True:
        parts = _pack(sizes, limit, frame(10 ** width - 2, 10 ** width - 1),
                      frame(10 ** width - 1, 10 ** width - 1))
        if len(parts) < 10 ** width:
            break
        width += 1
    return [render_part(_body(blocks, p), i, len(parts)) for i, p in enumerate(parts, start=1)]


def _pack(sizes: list[tuple[int, list[int]]], limit: int, mid: int, last: int) -> list[list[tuple[int, int]]]:
    """Greedy packing against the short frame ``mid``, then the last part cut to fit the long
    frame ``last``. A part is a list of units (block index, line index; line -1: the whole block);
    a line costs its block's head too when it is the first of its block in the part."""
    units: list[tuple[int, int, int]] = []              # (block, line, bytes)
    for b, (head_size, line_sizes) in enumerate(sizes):
        if mid + head_size + sum(line_sizes) <= limit:
            units.append((b, -1, head_size + sum(line_sizes)))
        else:
            units.extend((b, i, n) for i, n in enumerate(line_sizes))
    parts: list[list[tuple[int, int, int]]] = [[]]
    size = 0
    for u in units:
        b, line, n = u
        if line >= 0 and not (parts[-1] and parts[-1][-1][0] == b):
            n += sizes[b][0]                             # opens its block in this part: the head too
        if parts[-1] and size + n > limit - mid:
            parts.append([])
            size, n = 0, u[2] + (sizes[b][0] if line >= 0 else 0)
        parts[-1].append(u)
        size += n
    if size + last > limit:
        # the last part holds the long frame (disputed list, totals): it keeps the longest tail
        # of units that fits with it, possibly none; the rest stays a part of its own
        tail, keep, n = parts[-1], len(parts[-1]), 0
        for j in range(len(tail) - 1, -1, -1):
            b, line, unit_size = tail[j]
            first_seen = j + 1 == len(tail) or tail[j + 1][0] != b      # walking back: count a head once
            n += unit_size + (sizes[b][0] if line >= 0 and first_seen else 0)
            if n + last > limit:
                break
            keep = j
        parts[-1:] = [tail[:keep], tail[keep:]]
    return [[(b, line) for b, line, _ in p] for p in parts]


def _body(blocks: list[tuple[str, list[str]]], units: list[tuple[int, int]]) -> str:
    out: list[str] = []
    prev = -1
    for b, line in units:
        head, lines = blocks[b]
        if line < 0:
            out.append(head)
            out.extend(lines)
        else:
            if prev != b:
                out.append(head)
            out.append(lines[line])
        prev = b
    return "".join(out)


def push_texts(rep: Person, today, to_answer: list[coll.OverdueItem], disputed: list[coll.OverdueItem],
                closes_at, limit: int, rest: tuple[int, dict[str, Decimal]] = (0, {}),
                focus: list[tuple[int, coll.OverdueItem]] = ()) -> tuple[list[str], list]:
    """The push's messages for one rep, and its numbered items. ``rest``: how many overdue
    items are not pushed today and their amounts per currency (one line in the last message);
    ``focus``: (number, item) to chase first."""
    numbered = list(enumerate(to_answer, start=1))
    totals = {"count": len(to_answer), "amounts": _by_currency(to_answer),
              "disputed_count": len(disputed), "disputed_amounts": _by_currency(disputed),
              "rest_count": rest[0], "rest_amounts": _sorted_currencies(rest[1])}

    def render_part(body, part, parts):
        return render(LIST, rep=rep, today=today, body=body, part=part, parts=parts,
                      disputed=disputed if part == parts else [], totals=totals, closes_at=closes_at,
                      single=len(to_answer) == 1, focus=focus if part == parts else [])

    if not numbered:
        return [render_part("", 1, 1)], numbered
    return split_parts(render_part, _blocks(_customer_groups(numbered)), limit), numbered
