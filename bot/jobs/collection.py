"""The collection loop's jobs: the morning overdue push, closing reply windows, watching promises.

Each is idempotent for its fire: a push is unique per rep and day, a window closes once, a
promise is judged once, and every message carries an outbox key, so a re-run sends nothing twice.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from itertools import groupby

from bot import notify
from bot.jobs.context import JobContext
from bot.render import render
from storage import collection as coll
from storage import ledger
from storage import people
from storage.models import Customer, Person, Receivable
from storage.scope import Scope


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


def split_parts(render_part, groups: list[dict], limit: int) -> list[str]:
    """Pack whole customer groups into messages of at most ``limit`` bytes (a group that is too
    big on its own is split by items). ``render_part(groups, part, parts)`` renders one message."""
    parts: list[list[dict]] = [[]]
    for g in groups:
        candidates = [g]
        if len(render_part([g], 1, 1).encode()) > limit:
            candidates = [{**g, "items": [it]} for it in g["items"]]
        for c in candidates:
            trial = parts[-1] + [c]
            if parts[-1] and len(render_part(trial, 99, 99).encode()) > limit:
                parts.append([c])
            else:
                parts[-1] = trial
    n = len(parts)
    return [render_part(p, i, n) for i, p in enumerate(parts, start=1)]


async def overdue_push(ctx: JobContext) -> str:
    """Each rep's overdue list, numbered; the push opens the reply window."""
    s, today, now = ctx.session, ctx.today, ctx.at
    cfg = ctx.config.collection
    reps = await people.by_role(s, "rep")
    pushed = messages = 0
    for rep in reps:
        if await coll.push_for(s, rep.id, today) is not None:
            continue
        items = await coll.overdue_items(s, today, Scope(rep_ids=frozenset({rep.id})))
        if not items:
            continue
        to_answer = [it for it in items if not it.disputed]
        disputed = [it for it in items if it.disputed]
        push = await coll.create_push(s, rep_id=rep.id, for_date=today, now=now,
                                      window_hours=cfg.reply_window_hours, items=to_answer)
        numbered = list(enumerate(to_answer, start=1))
        groups = _customer_groups(numbered)
        totals = {"count": len(to_answer), "amounts": _by_currency(to_answer),
                  "disputed_count": len(disputed), "disputed_amounts": _by_currency(disputed)}

        def render_part(gs, part, parts):
            return render("push/overdue_list.md.j2", rep=rep, today=today, groups=gs, part=part, parts=parts,
                          disputed=disputed if part == parts else [], totals=totals,
                          closes_at=push.window_closes_at.astimezone(ctx.config.tz),
                          single=len(to_answer) == 1)

        texts = split_parts(render_part, groups, cfg.max_message_bytes) if groups else [render_part([], 1, 1)]
        for i, text in enumerate(texts, start=1):
            await notify.to_person(s, rep, text, key=f"push:{today}:{i}", now=now,
                                   platforms=ctx.services.platforms, title="overdue")
            messages += 1
        messages += await _item_cards(ctx, rep, push, numbered)
        pushed += 1
    return f"pushed {pushed} rep(s), {messages} message(s)"


CARD_OUTCOMES = ("contacted", "promised", "dispute")


async def _item_cards(ctx: JobContext, rep: Person, push, numbered) -> int:
    """On WeCom, optional button cards (已联系 / 承诺付款 / 有异议) for the oldest items: a click is
    logged like a reply. Few, because WeCom allows 30 messages a minute to one member."""
    cfg = ctx.config.wecom
    addr = notify.address(rep, ctx.services.platforms)
    if not cfg.card_buttons or addr is None or addr[0] != "wecom":
        return 0
    items = {it.seq: it for it, _, _ in await coll.push_items(ctx.session, push.id)}
    oldest = sorted(numbered, key=lambda p: -p[1].days_overdue)[:cfg.card_items]
    for seq, it in oldest:
        item = items[seq]
        card = {"card_type": "button_interaction", "task_id": f"push{push.id}-{seq}",
                "main_title": {"title": render("push/card_title.j2", seq=seq, item=it),
                               "desc": render("push/card_desc.j2", item=it)},
                "button_list": [{"text": render("push/card_button.j2", outcome=o), "style": 1,
                                 "key": f"fu:{item.id}:{o}"} for o in CARD_OUTCOMES]}
        await notify.to_person(ctx.session, rep, render("push/card_title.j2", seq=seq, item=it),
                               key=f"card:{push.id}:{seq}", now=ctx.at, platforms=ctx.services.platforms,
                               title="overdue", extra={"template_card": card})
    return len(oldest)


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
