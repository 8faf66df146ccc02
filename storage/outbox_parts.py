"""The parts of an outbox row too big for its platform: the sender writes each as a row of its own
(bot/outbox/sizes.py) and marks the original ``split``. Their keys are derived here, so that
whatever reads or cancels an outbox row by its key (customer messages, storage/reminders.py) finds
its parts too."""
from __future__ import annotations

import hashlib

MAX_PARTS = 8          # more than this and the message is a report, not a chat message: summarise
MAX_KEY = 200          # outbox.idem_key width


def part_key(key: str, n: int) -> str:
    """The idempotency key of part ``n`` (1-based) of the row keyed ``key``."""
    derived = f"{key}:{n}"
    if len(derived) <= MAX_KEY:
        return derived
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}:{n}"


def part_keys(key: str) -> list[str]:
    """Every key a part of ``key`` may have."""
    return [part_key(key, n) for n in range(1, MAX_PARTS + 1)]
