"""The collection loop's jobs: the morning overdue push, closing reply windows, watching promises.

Each is idempotent for its fire: a push is unique per rep and day, a window closes once, a
promise is judged once, and every message carries an outbox key, so a re-run sends nothing twice.
"""
from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from datetime import timedelta

from bot import digests, notify, outbox
from bot.core.messages import Button, Card
from bot.jobs.context import JobContext
from bot.jobs.push_messages import push_texts
from bot.jobs.push_ranking import Ranker
from bot.render import render
from domain import payment_plan
from storage import collection as coll
from storage import digests as digest_store
from storage import ledger
from storage import payment_history
from storage import people
from storage import plans
from storage import reminders as rem
from storage.models import Customer, Person, Receivable


REPS_PER_BATCH = 50           # reps whose pushes are read in full, rendered and written together: one write step
ITEMS_PER_BATCH = 5_000       # ... fewer reps when they push more items (a cap raised far): a step stays short


async def overdue_push(ctx: JobContext) -> str:
    """Each rep's overdue list, ranked and capped, numbered; the push opens the reply window.

    One unordered scan of the overdue items (``coll.overdue_keys``) is scored as it streams
    (``Ranker.select``): per rep only the ``push_max_items`` best are kept, the rest counted.
    Then per ``REPS_PER_BATCH`` reps: their kept items read in full, the messages rendered, and
    one short write for their pushes, push items and outbox rows. Memory grows with the reps'
    kept items, not with the ledger."""
    # read on a snapshot: on the job's write session these took the write gate and held it
    # through the ranking's first reads (1.8 s of people's writes waiting at 1M); the fire is
    # claimed, so no rep is pushed meanwhile, and a rerun skips the reps already committed
    async with ctx.reader() as r:
        done = await coll.pushed_reps(r, ctx.today)
        reps = {p.id: p for p in await people.by_role(r, "rep") if p.id not in done}
    pushed = messages = 0
    if reps:
        with _collector_paused():
            pushed, messages = await _push_all(ctx, reps)
    return f"pushed {pushed} rep(s), {messages} message(s)"


@contextmanager
def _collector_paused():
    """The push builds many small objects that live for a while; the cyclic collector took
    them for long-lived and walked the whole heap again and again (~5 s at 1M receivables
    when the push held its lists whole). Reference counting frees all of them (the push makes
    no cycles); the collector is back when the job ends."""
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
    # the reads come from their own snapshot (no write lock); each batch of reps is written and
    # committed on its own, and a rep whose push committed is skipped if the fire runs again
    async with ctx.reader() as rd:
        ranker = Ranker(ctx.config, await payment_history.grade_pools(rd))
        await ranker.prepare(rd, today)
        selected: dict = {}
        wanted = set(reps)
        async with aclosing(coll.overdue_keys(rd, today)) as scan:
            async for rows in scan:
                ranker.select(today, rows, wanted, selected)
                await ctx.checkpoint()            # people waiting get the loop between two chunks
        for batch in _batches(selected):
            # the [collection] push_max_items items of highest priority are numbered; the rest is one line
            ranked = await ranker.rank(rd, today, batch)
            # the messages are rendered before the write transaction, so the write gate is held
            # for the inserts only (rendering 50 reps' lists inside it held it ~0.35 s at 200k)
            queue: list = []
            numbered_by_rep = {}
            for rep_id, push in ranked.items():
                await ctx.checkpoint()            # people waiting get the loop between two reps' renders
                rep = reps[rep_id]
                texts, numbered_by_rep[rep_id] = push_texts(
                    rep, today, push.to_answer, push.disputed, closes_at.astimezone(ctx.config.tz),
                    _size_limit(ctx, rep), rest=(push.rest_count, push.rest_amounts), focus=push.focus)
                for n, text in enumerate(texts, start=1):
                    m = notify.for_person(rep, text, key=f"push:{today}:{n}", platforms=platforms, title="overdue")
                    if m is not None:
                        queue.append(m)
                    messages += 1
            pushes = await coll.create_pushes(s, for_date=today, now=now, closes_at=closes_at,
                                              items={rep_id: push.to_answer for rep_id, push in ranked.items()})
            for rep_id in ranked:
                cards = await _item_cards(ctx, reps[rep_id], pushes[rep_id], numbered_by_rep[rep_id])
                queue.extend(cards)
                messages += len(cards)
                pushed += 1
            await outbox.enqueue_many(s, queue, now)
            await ctx.checkpoint(force=True)
    return pushed, messages


def _batches(selected: dict) -> Iterator[dict]:
    """The reps' selections in rep id order, ``REPS_PER_BATCH`` reps at a time, fewer when the
    items they show (pushed and disputed, each read in full and rendered) reach
    ``ITEMS_PER_BATCH`` (whole reps): one batch is one write step."""
    batch: dict = {}
    items = 0
    for rep_id in sorted(selected):
        if len(batch) == REPS_PER_BATCH or items >= ITEMS_PER_BATCH:
            yield batch
            batch, items = {}, 0
        batch[rep_id] = selected.pop(rep_id)
        items += len(batch[rep_id].top) + len(batch[rep_id].disputed)
    if batch:
        yield batch


def _size_limit(ctx: JobContext, rep: Person) -> int:
    """Bytes per push message: ``[collection] max_message_bytes``, and never more than the rep's
    platform takes in one markdown message to a person."""
    limit = ctx.config.collection.max_message_bytes
    addr = notify.address(rep, ctx.services.platforms)
    platform_limit = ctx.services.capabilities(addr[0]).max_bytes("user", "markdown") if addr else None
    return min(limit, platform_limit) if platform_limit else limit


# a card's buttons: a promise is a click with its date (the rep commits without typing one);
# the date is worked out when the button is clicked, not when the card was sent
CARD_OUTCOMES = ("contacted", "promised:fri", "promised:nextfri", "promised:monthend", "dispute")


async def _item_cards(ctx: JobContext, rep: Person, push, numbered) -> list:
    """Button cards (已联系 / 承诺付款 / 有异议) for the rep's items of highest priority, where the
    rep's platform shows cards and the configuration asks for some (``Capabilities.cards_per_push``): a click is
    logged like a reply. Few, since each is one more message against the per-member limit.
    Returns the (message, outbox key) pairs to queue."""
    addr = notify.address(rep, ctx.services.platforms)
    caps = ctx.services.capabilities(addr[0]) if addr is not None else None
    if caps is None or not caps.cards or caps.cards_per_push <= 0:
        return []
    items = {it.seq: it for it, _, _ in await coll.push_items(ctx.session, push.id)}
    first = sorted(numbered, key=lambda p: (-p[1].priority, -p[1].days_overdue))[:caps.cards_per_push]
    out = []
    for seq, it in first:
        item = items[seq]
        title = render("push/card_title.j2", seq=seq, item=it)
        card = Card(id=f"push{push.id}-{seq}", title=title, description=render("push/card_desc.j2", item=it),
                    buttons=tuple(Button(render("push/card_button.j2", outcome=o.partition(":")[0],
                                                when=o.partition(":")[2]), f"fu:{item.id}:{o}")
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
    broken.

    A payment plan's instalment (storage/plans.py) is kept when what was paid on the invoice since
    the plan was made covers every instalment due by its date; when one is broken, the plan's
    later instalments close with it (superseded, never judged: the customer broke the plan once),
    so the ladder steps they held fire on the next run, as after any broken promise."""
    s, now, today = ctx.session, ctx.at, ctx.today
    grace = ctx.config.collection.promise_grace_days
    live_from = rem.earliest_live_promise(today, grace, ctx.services.calendar)
    kept = broken = 0
    for p in await coll.due_promises(s, live_from - timedelta(days=1)):
        await ctx.checkpoint()
        if p.status != "open":             # a later instalment of a plan broken earlier in this run
            continue
        r = await s.get(Receivable, p.receivable_id)
        paid_since = await ledger.paid_since(s, r.id, p.made_at.astimezone(ctx.config.tz).date())
        plan = await plans.instalments(s, p)
        owed = p.amount if len(plan) == 1 else payment_plan.due_by(
            [(i.promised_date, i.amount) for i in plan], p.promised_date)
        if r.open_amount <= 0 or (owed is not None and paid_since >= owed) or (owed is None and paid_since > 0):
            p.status, p.closed_at = "kept", now
            kept += 1
            continue
        p.status, p.closed_at = "broken", now
        broken += 1
        later = [i for i in plan if i.status == "open" and i is not p]
        for i in later:
            i.status, i.closed_at = "superseded", now
        customer = await s.get(Customer, r.customer_id)
        customer.broken_promises += 1        # counts against the customer's standing
        rep = await s.get(Person, r.rep_id) if r.rep_id else None
        recipients = [x for x in (rep, rep and await people.supervisor_of(s, rep)) if x]
        line = render("digest/item_promise.md.j2", promise=p, receivable=r, customer=customer, rep=rep,
                      paid_since=paid_since, plan={"seq": plan.index(p) + 1, "count": len(plan), "owed": owed,
                                                   "dropped": len(later)} if len(plan) > 1 else None)
        # a line of the rep's (and the supervisor's) digest of this run, written with the promise's
        # new status: a run stopped here and resumed neither loses it nor sends it twice
        await digest_store.record(s, digests.items(
            ctx, recipients, key=f"promise-broken:{p.id}", kind="promise", rank=0,
            label=render("digest/label_promise.j2"), customer=customer, subject=r.invoice_no, line=line,
            amount=r.open_amount, currency=r.currency, job="promise_watch", not_before=now))
    await digests.send(ctx, "promise_watch")
    return f"{kept} promise(s) kept, {broken} broken"
