"""The collection loop's jobs: the morning overdue push, closing reply windows, watching promises.

Each is idempotent for its fire: a push is unique per rep and day, a window closes once, a
promise is judged once, and every message carries an outbox key, so a re-run sends nothing twice.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import groupby

from bot import notify, outbox
from bot.jobs.context import JobContext
from bot.render import environment, render
from storage import collection as coll
from storage import ledger
from storage import people
from storage.models import Customer, Person, Receivable


def _by_currency(items: list[coll.OverdueItem]) -> dict[str, Decimal]:
    """Totals per currency: a push never adds yuan to dollars."""
    out: dict[str, Decimal] = {}
    for it in items:
        out[it.receivable.currency] = out.get(it.receivable.currency, Decimal("0.00")) + it.receivable.open_amount
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "CNY", kv[0])))


def _customer_groups(items: list[coll.OverdueItem]) -> list[dict]:
    """Numbered items grouped by customer, in the order of the list."""
    groups = []
    for (cid, name), its in groupby(items, key=lambda i: (i[1].customer.id, i[1].customer.name)):
        its = list(its)
        groups.append({"customer": name, "items": [{"seq": seq, "item": it} for seq, it in its],
                       "totals": _by_currency([it for _, it in its])})
    return groups


LIST = "push/overdue_list.md.j2"
GROUP = "push/_overdue_group.j2"
REPS_PER_QUERY = 50           # reps whose overdue items are fetched (and pushed) together: memory ∝ this


def split_parts(render_part, groups: list[dict], limit: int) -> list[str]:
    """Pack whole customer groups into messages of at most ``limit`` bytes (a group that is too
    big on its own is split by items). ``render_part(body, part, parts)`` renders one message
    around ``body``, the concatenated customer blocks.

    Each group (and, for a group too big alone, each item line) is rendered once; a message's
    size is then the size of its frame (header, disputed items and totals, which ``render_part``
    gives for an empty body) plus the sum of its blocks' sizes: the frame starts and ends with
    text, so ``render``'s strip never reaches a block. Trial sizes are taken with the last part's
    frame (part 99 of 99: the longest header, the disputed list and the totals), as before."""
    macros = environment().get_template(GROUP).module
    alone = len(render_part("", 1, 1).encode())        # a one-message push's frame
    frame = len(render_part("", 99, 99).encode())      # the biggest frame of a many-part push
    parts: list[list[str]] = [[]]
    size = 0                                           # bytes of the blocks in parts[-1]
    for g in groups:
        head = macros.group_head(g)
        lines = [macros.item(e) for e in g["items"]]
        block = head + "".join(lines)
        candidates = [block] if alone + len(block.encode()) <= limit else [head + line for line in lines]
        for c in candidates:
            n = len(c.encode())
            if parts[-1] and frame + size + n > limit:
                parts.append([c])
                size = n
            else:
                parts[-1].append(c)
                size += n
    n = len(parts)
    return [render_part("".join(p), i, n) for i, p in enumerate(parts, start=1)]


def _push_texts(rep: Person, today, to_answer: list[coll.OverdueItem], disputed: list[coll.OverdueItem],
                closes_at, limit: int) -> tuple[list[str], list]:
    """The push's messages for one rep, and its numbered items."""
    numbered = list(enumerate(to_answer, start=1))
    groups = _customer_groups(numbered)
    totals = {"count": len(to_answer), "amounts": _by_currency(to_answer),
              "disputed_count": len(disputed), "disputed_amounts": _by_currency(disputed)}

    def render_part(body, part, parts):
        return render(LIST, rep=rep, today=today, body=body, part=part, parts=parts,
                      disputed=disputed if part == parts else [], totals=totals, closes_at=closes_at,
                      single=len(to_answer) == 1)

    return (split_parts(render_part, groups, limit) if groups else [render_part("", 1, 1)]), numbered


async def overdue_push(ctx: JobContext) -> str:
    """Each rep's overdue list, numbered; the push opens the reply window.

    Reps are taken ``REPS_PER_QUERY`` at a time: one query for their overdue items (with their
    follow-ups and promises), one bulk INSERT for their pushes and one for the push items, one
    for the outbox rows. Memory grows with a batch of reps, not with the ledger."""
    s, today, now = ctx.session, ctx.today, ctx.at
    cfg = ctx.config.collection
    platforms = ctx.services.platforms
    done = await coll.pushed_reps(s, today)
    reps = [r for r in await people.by_role(s, "rep") if r.id not in done]
    pushed = messages = 0
    for b in range(0, len(reps), REPS_PER_QUERY):
        batch = reps[b:b + REPS_PER_QUERY]
        by_rep = await coll.overdue_items_by_rep(s, today, [r.id for r in batch])
        batch = [r for r in batch if by_rep.get(r.id)]
        if not batch:
            continue
        split = {r.id: ([it for it in by_rep[r.id] if not it.disputed], [it for it in by_rep[r.id] if it.disputed])
                 for r in batch}
        del by_rep
        pushes = await coll.create_pushes(s, for_date=today, now=now, window_hours=cfg.reply_window_hours,
                                          items={rep_id: to_answer for rep_id, (to_answer, _) in split.items()})
        queue: list = []
        for rep in batch:
            to_answer, disputed = split.pop(rep.id)
            push = pushes[rep.id]
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
    return f"pushed {pushed} rep(s), {messages} message(s)"


CARD_OUTCOMES = ("contacted", "promised", "dispute")


async def _item_cards(ctx: JobContext, rep: Person, push, numbered) -> list:
    """On WeCom, optional button cards (已联系 / 承诺付款 / 有异议) for the oldest items: a click is
    logged like a reply. Few, because WeCom allows 30 messages a minute to one member.
    Returns the (message, outbox key) pairs to queue."""
    cfg = ctx.config.wecom
    addr = notify.address(rep, ctx.services.platforms)
    if not cfg.card_buttons or addr is None or addr[0] != "wecom":
        return []
    items = {it.seq: it for it, _, _ in await coll.push_items(ctx.session, push.id)}
    oldest = sorted(numbered, key=lambda p: -p[1].days_overdue)[:cfg.card_items]
    out = []
    for seq, it in oldest:
        item = items[seq]
        card = {"card_type": "button_interaction", "task_id": f"push{push.id}-{seq}",
                "main_title": {"title": render("push/card_title.j2", seq=seq, item=it),
                               "desc": render("push/card_desc.j2", item=it)},
                "button_list": [{"text": render("push/card_button.j2", outcome=o), "style": 1,
                                 "key": f"fu:{item.id}:{o}"} for o in CARD_OUTCOMES]}
        m = notify.for_person(rep, render("push/card_title.j2", seq=seq, item=it), key=f"card:{push.id}:{seq}",
                              platforms=ctx.services.platforms, title="overdue", extra={"template_card": card})
        if m is not None:
            out.append(m)
    return out


async def reply_window_close(ctx: JobContext) -> str:
    """Windows that ran out: unanswered items go to the rep's supervisor, and the rep is nudged."""
    s, now = ctx.session, ctx.at
    pushes = await coll.expiring_windows(s, now)
    by_supervisor: dict[str, list[dict]] = defaultdict(list)
    reps: dict[str, Person] = {}
    escalated = 0
    for push in pushes:
        push.closed = True
        missing = await coll.unanswered_items(s, push.id)
        if not missing:
            continue
        rep = await s.get(Person, push.rep_id)
        reps[rep.id] = rep
        for item, _, _ in missing:
            item.escalated = True
        escalated += len(missing)
        await notify.to_person(s, rep, render("push/nudge.md.j2", rep=rep, push=push, missing=missing),
                               key=f"nudge:{push.id}", now=now, platforms=ctx.services.platforms)
        sup = await people.supervisor_of(s, rep)
        if sup is not None:
            by_supervisor[sup.id].append({"rep": rep, "push": push, "missing": missing})
    for sup_id, entries in by_supervisor.items():
        sup = await s.get(Person, sup_id)
        key = "window:" + ",".join(str(e["push"].id) for e in entries)
        await notify.to_person(s, sup, render("push/window_escalation.md.j2", supervisor=sup, entries=entries),
                               key=key, now=now, platforms=ctx.services.platforms)
    return f"closed {len(pushes)} window(s), escalated {escalated} item(s) to {len(by_supervisor)} supervisor(s)"


async def promise_watch(ctx: JobContext) -> str:
    """A promise whose date (plus grace days) has passed: kept if the money came, else broken."""
    s, now, today = ctx.session, ctx.at, ctx.today
    grace = ctx.config.collection.promise_grace_days
    kept = broken = 0
    for p in await coll.due_promises(s, today - timedelta(days=grace + 1)):
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
