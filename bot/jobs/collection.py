"""The collection loop's jobs: the morning overdue push, closing reply windows, watching promises.

Each is idempotent for its fire: a push is unique per rep and day, a window closes once, a
promise is judged once, and every message carries an outbox key, so a re-run sends nothing twice.
"""
from __future__ import annotations

import asyncio
import gc
from collections import defaultdict
from contextlib import aclosing, contextmanager
from datetime import timedelta
from decimal import Decimal
from itertools import groupby

from bot import notify, outbox
from bot.core.messages import Button, Card
from bot.jobs.context import JobContext
from bot.render import environment, render
from storage import collection as coll
from storage import ledger
from storage import people
from storage import reminders as rem
from storage.models import Customer, Person, Receivable


def _by_currency(items: list[coll.OverdueItem]) -> dict[str, Decimal]:
    """Totals per currency: a push never adds yuan to dollars."""
    out: dict[str, Decimal] = {}
    for it in items:
        out[it.receivable.currency] = out.get(it.receivable.currency, Decimal("0.00")) + it.receivable.open_amount
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "CNY", kv[0])))


def _customer_groups(items: list[tuple[int, coll.OverdueItem]]) -> list[tuple[str, dict, list]]:
    """Numbered items grouped by customer, in the order of the list: (name, totals, items)."""
    groups = []
    for (cid, name), its in groupby(items, key=lambda i: (i[1].customer.id, i[1].customer.name)):
        its = list(its)
        groups.append((name, _by_currency([it for _, it in its]), its))
    return groups


LIST = "push/overdue_list.md.j2"
GROUP = "push/_overdue_group.j2"
REPS_PER_BATCH = 50           # reps whose overdue items are held (and pushed) together: memory ∝ this


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


def _push_texts(rep: Person, today, to_answer: list[coll.OverdueItem], disputed: list[coll.OverdueItem],
                closes_at, limit: int) -> tuple[list[str], list]:
    """The push's messages for one rep, and its numbered items."""
    numbered = list(enumerate(to_answer, start=1))
    totals = {"count": len(to_answer), "amounts": _by_currency(to_answer),
              "disputed_count": len(disputed), "disputed_amounts": _by_currency(disputed)}

    def render_part(body, part, parts):
        return render(LIST, rep=rep, today=today, body=body, part=part, parts=parts,
                      disputed=disputed if part == parts else [], totals=totals, closes_at=closes_at,
                      single=len(to_answer) == 1)

    if not numbered:
        return [render_part("", 1, 1)], numbered
    return split_parts(render_part, _blocks(_customer_groups(numbered)), limit), numbered


async def overdue_push(ctx: JobContext) -> str:
    """Each rep's overdue list, numbered; the push opens the reply window.

    One streamed query reads every overdue item in rep order (``coll.overdue_batches``); per
    ``REPS_PER_BATCH`` reps: their follow-ups and promises, one bulk INSERT for their pushes and
    one for the push items, one for the outbox rows. Memory grows with a batch of reps, not with
    the ledger."""
    done = await coll.pushed_reps(ctx.session, ctx.today)
    reps = {r.id: r for r in await people.by_role(ctx.session, "rep") if r.id not in done}
    pushed = messages = 0
    if reps:
        with _collector_paused():
            pushed, messages = await _push_all(ctx, reps)
    return f"pushed {pushed} rep(s), {messages} message(s)"


@contextmanager
def _collector_paused():
    """The push builds millions of small objects that live for a batch; the cyclic collector
    took them for long-lived and walked the whole heap (~370k objects in the bot) twenty times,
    ~5 s at 1M receivables. Reference counting frees all of them (the push makes no cycles, and
    the peak memory did not move); the collector is back when the job ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


async def _push_all(ctx: JobContext, reps: dict[str, Person]) -> tuple[int, int]:
    s, today, now = ctx.session, ctx.today, ctx.at
    cfg = ctx.config.collection
    platforms = ctx.services.platforms
    # the window counts working days only: a Friday push is answered by Monday, not Saturday
    closes_at = ctx.services.calendar.add_working_hours(now.astimezone(ctx.config.tz), cfg.reply_window_hours)
    pushed = messages = 0
    # the scan reads from its own snapshot (no write lock); each batch of reps is written and
    # committed on its own, and a rep whose push committed is skipped if the fire runs again
    async with ctx.reader() as rd, aclosing(coll.overdue_batches(rd, today, set(reps), REPS_PER_BATCH)) as batches:
        async for by_rep in batches:
            split = {rep_id: ([it for it in its if not it.disputed], [it for it in its if it.disputed])
                     for rep_id, its in by_rep.items()}
            del by_rep
            pushes = await coll.create_pushes(s, for_date=today, now=now, closes_at=closes_at,
                                              items={rep_id: to_answer for rep_id, (to_answer, _) in split.items()})
            queue: list = []
            for rep_id, (to_answer, disputed) in split.items():
                await asyncio.sleep(0)            # chat gets the loop between two reps' renders
                rep, push = reps[rep_id], pushes[rep_id]
                texts, numbered = _push_texts(rep, today, to_answer, disputed,
                                              push.window_closes_at.astimezone(ctx.config.tz), cfg.max_message_bytes)
                for i, text in enumerate(texts, start=1):
                    m = notify.for_person(rep, text, key=f"push:{today}:{i}", platforms=platforms, title="overdue")
                    if m is not None:
                        queue.append(m)
                    messages += 1
                cards = await _item_cards(ctx, rep, push, numbered)
                queue.extend(cards)
                messages += len(cards)
                pushed += 1
            await outbox.enqueue_many(s, queue, now)
            await ctx.checkpoint(force=True)
    return pushed, messages


CARD_OUTCOMES = ("contacted", "promised", "dispute")


async def _item_cards(ctx: JobContext, rep: Person, push, numbered) -> list:
    """Button cards (已联系 / 承诺付款 / 有异议) for the rep's oldest items, where the rep's platform
    shows cards and the configuration asks for some (``Capabilities.cards_per_push``): a click is
    logged like a reply. Few, since each is one more message against the per-member limit.
    Returns the (message, outbox key) pairs to queue."""
    addr = notify.address(rep, ctx.services.platforms)
    caps = ctx.services.capabilities(addr[0]) if addr is not None else None
    if caps is None or not caps.cards or caps.cards_per_push <= 0:
        return []
    items = {it.seq: it for it, _, _ in await coll.push_items(ctx.session, push.id)}
    oldest = sorted(numbered, key=lambda p: -p[1].days_overdue)[:caps.cards_per_push]
    out = []
    for seq, it in oldest:
        item = items[seq]
        title = render("push/card_title.j2", seq=seq, item=it)
        card = Card(id=f"push{push.id}-{seq}", title=title, description=render("push/card_desc.j2", item=it),
                    buttons=tuple(Button(render("push/card_button.j2", outcome=o), f"fu:{item.id}:{o}")
                                  for o in CARD_OUTCOMES))
        m = notify.for_person(rep, title, key=f"card:{push.id}:{seq}", platforms=ctx.services.platforms,
                              title="overdue", card=card)
        if m is not None:
            out.append(m)
    return out


async def reply_window_close(ctx: JobContext) -> str:
    """Windows that ran out: unanswered items go to the rep's supervisor, and the rep is nudged.

    A window closes on a working day (``overdue_push`` counts its hours on working days only);
    one whose close fell on a day off (a push made before this rule, a push run by hand) waits
    for the next working day, so that no nudge or escalation arrives at the weekend or on a
    holiday. What counts as an answer: see ``storage.collection.unanswered_at_close``."""
    s, now, today = ctx.session, ctx.at, ctx.today
    cal = ctx.services.calendar
    if not cal.is_workday(today):
        return "not a working day: windows close on the next working day"
    live_from = rem.earliest_live_promise(today, ctx.config.collection.promise_grace_days, cal)
    slot = rem.next_slot(now, ctx.config.conduct, cal) if ctx.config.conduct.staff_hours else now
    pushes = await coll.expiring_windows(s, now)
    by_supervisor: dict[str, list[dict]] = defaultdict(list)
    queue: list = []
    escalated = 0
    for push in pushes:
        await ctx.checkpoint()
        push.closed = True
        missing = await coll.unanswered_at_close(s, push, live_from=live_from)
        if not missing:
            continue
        rep = await s.get(Person, push.rep_id)
        for item, _, _ in missing:
            item.escalated = True
        escalated += len(missing)
        queue.append(notify.for_person(rep, render("push/nudge.md.j2", rep=rep, push=push, missing=missing),
                                       key=f"nudge:{push.id}", platforms=ctx.services.platforms))
        sup = await people.supervisor_of(s, rep)
        if sup is not None:
            by_supervisor[sup.id].append({"rep": rep, "push": push, "missing": missing})
    for sup_id, entries in by_supervisor.items():
        sup = await s.get(Person, sup_id)
        key = "window:" + ",".join(str(e["push"].id) for e in entries)
        queue.append(notify.for_person(sup, render("push/window_escalation.md.j2", supervisor=sup, entries=entries),
                                       key=key, platforms=ctx.services.platforms))
    for m in queue:
        if m is not None:
            await outbox.enqueue(s, m[0], m[1], now, not_before=slot)
    return f"closed {len(pushes)} window(s), escalated {escalated} item(s) to {len(by_supervisor)} supervisor(s)"


async def promise_watch(ctx: JobContext) -> str:
    """A promise whose date (plus the grace working days) has passed: kept if the money came, else
    broken."""
    s, now, today = ctx.session, ctx.at, ctx.today
    grace = ctx.config.collection.promise_grace_days
    live_from = rem.earliest_live_promise(today, grace, ctx.services.calendar)
    kept = broken = 0
    for p in await coll.due_promises(s, live_from - timedelta(days=1)):
        await ctx.checkpoint()
        r = await s.get(Receivable, p.receivable_id)
        paid_since = await ledger.paid_since(s, r.id, p.made_at.astimezone(ctx.config.tz).date())
        if r.open_amount <= 0 or (p.amount is not None and paid_since >= p.amount) or (p.amount is None and paid_since > 0):
            p.status, p.closed_at = "kept", now
            kept += 1
            continue
        p.status, p.closed_at = "broken", now
        broken += 1
        customer = await s.get(Customer, r.customer_id)
        customer.broken_promises += 1        # counts against the customer's standing
        rep = await s.get(Person, r.rep_id) if r.rep_id else None
        recipients = [x for x in (rep, rep and await people.supervisor_of(s, rep)) if x]
        text = render("promise/broken.md.j2", promise=p, receivable=r, customer=customer, rep=rep,
                      paid_since=paid_since)
        for person in recipients:
            await notify.to_person(s, person, text, key=f"promise-broken:{p.id}", now=now,
                                   platforms=ctx.services.platforms)
    return f"{kept} promise(s) kept, {broken} broken"
