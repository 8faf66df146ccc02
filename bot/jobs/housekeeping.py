"""Nightly housekeeping: forget what ``[retention]`` allows (storage/retention.py), in short steps."""
from __future__ import annotations

from datetime import timedelta

from bot.jobs.context import JobContext
from storage import retention


async def housekeeping(ctx: JobContext) -> str:
    """Delete delivered messages, handled events and sent digest lines past their retention."""
    keep = ctx.config.retention
    s, at = ctx.session, ctx.at
    messages_before = at - timedelta(days=keep.outbox_days)
    events_before = at - timedelta(days=keep.events_days)

    waiting = await retention.waiting_keys(s)
    messages, after = 0, 0
    while after is not None:
        n, after = await retention.forget_messages(s, messages_before, after_id=after, keep=waiting)
        messages += n
        await ctx.checkpoint(force=True)
    digest_lines = events = 0
    while (n := await retention.forget_digest_lines(s, messages_before)):
        digest_lines += n
        await ctx.checkpoint(force=True)
    while (n := await retention.forget_events(s, events_before)):
        events += n
        await ctx.checkpoint(force=True)
    await ctx.checkpoint(force=True)
    return (f"forgot {messages} message(s) and {digest_lines} digest line(s) older than {keep.outbox_days} days, "
            f"{events} event(s) older than {keep.events_days} days")
