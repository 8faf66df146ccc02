"""The durable outbox: every message that leaves the bot is first a row here.

``queue``        enqueue (in the caller's transaction, idempotent by key), the backlog
``sender``       the loop that claims due rows, delivers them and records the outcome
``rate_limits``  per-destination windows the sender keeps (which destinations: the channels say)

The names callers use are importable from ``bot.outbox`` itself.
"""
from bot.outbox.queue import NOTICE, REPLY, backlog, enqueue, enqueue_many, enqueue_rows, pending_row, to_outgoing
from bot.outbox.rate_limits import RateLimiter
from bot.outbox.sender import CLAIM_SECONDS, Sender

__all__ = ["CLAIM_SECONDS", "NOTICE", "REPLY", "RateLimiter", "Sender", "backlog", "enqueue", "enqueue_many", "enqueue_rows",
           "pending_row", "to_outgoing"]
