"""bill_watch: acceptance bills (承兑汇票) held to maturity — finance hears a week before a bill
matures, and again on the day if it is still held (present it for collection, 托收), in one
digest per run (bot/digests.py). Each stage once per bill: the bill records when it was reminded."""
from __future__ import annotations

from bot import digests
from bot.jobs.context import JobContext
from bot.render import render
from storage import bills
from storage import digests as digest_store
from storage import people

REMIND_DAYS = 7


async def bill_watch(ctx: JobContext) -> str:
    s = ctx.session
    finance = await people.by_role(s, "finance")
    rows = await bills.to_remind(s, ctx.today, REMIND_DAYS)
    for bill, customer, stage in rows:
        line = render("digest/item_bill.md.j2", bill=bill, customer=customer, stage=stage, today=ctx.today)
        await digest_store.record(s, digests.items(
            ctx, finance, key=f"bill:{bill.id}:{stage}", kind="bill", rank=0,
            label=render("digest/label_bill.j2", stage=stage).strip(), customer=customer, subject=bill.bill_no,
            amount=bill.amount, currency=bill.currency, line=line, job="bill_watch", not_before=ctx.at))
        bill.reminded_on = ctx.today
        await ctx.checkpoint()
    await digests.send(ctx, "bill_watch")
    return f"{len(rows)} bill reminder(s)"
