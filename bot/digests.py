"""Digests instead of floods (issue #15): what the jobs tell one person in one run goes out as one
message, grouped by customer and kind (ladder step, reminder, warning), with totals per currency.

A job that used to queue a message per invoice per person now records a *digest item* per
invoice per person (:func:`items`), in the same write step as the ladder step and the audit entry
it belongs to (those stay per invoice: only the message is consolidated). At the end of the run
:func:`send` composes each person's digest from the job's items not sent yet and queues it, and
marks those items with the digest's outbox key, in one transaction. So:

* a re-run of the fire finds no unsent items and sends nothing (and its steps are recorded, so
  it decides no new ones);
* a run stopped half-way left its items unsent; the resumed run adds the rest and sends *one*
  digest with all of them — never a second digest for items already sent;
* items a failed fire left behind ride along with the job's next digest to that person.

The digest's key is ``digest:{job}:{fire}:{person}:{first item id}:{part}``: derived from the fire
and the person, and distinct when a later run of the same fire finds new items (an import between
two hand runs), which then do deserve a message.

A person's digests list at most ``[collection] digest_max_items`` items a day (the morning's jobs
together); the rest are counted in one line that points to ``/通知``, which lists them. A digest
is sized for the person's platform (``Capabilities.max_bytes``) and split between customers.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from bot import notify, outbox
from bot.core.messages import OutgoingMessage
from bot.render import render
from storage import digests as store
from storage.models import Customer, DigestItem, Person

# job → the title key of its digest (the words: fmt.title in _fmt.j2)
TITLES = {"escalations": "escalation", "customer_reminders": "due", "credit_watch": "credit",
          "bank_statement": "bank", "bank_anomalies": "bank_anomaly", "bill_watch": "bill",
          "statute_watch": "statute", "promise_watch": "promise", "statement_answers": "statement",
          "month_end_reminders": "month_end"}


def items(ctx, persons: list[Person], *, key: str, kind: str, rank: int, label: str, customer: Customer,
          subject: str, amount: Decimal | None, currency: str | None, line: str, job: str,
          not_before: datetime) -> list[dict]:
    """Digest item rows (``storage.digests.item_row``) of one notification to each of ``persons``;
    ``key`` is the notification's identity (the person is added), as the per-invoice message's
    outbox key was. A person reachable on no platform gets none, as before."""
    platforms = ctx.services.platforms
    return [store.item_row(item_key=f"{key}:{p.id}", job=job, fire=ctx.fire_key, person_id=p.id, kind=kind,
                           rank=rank, label=label, customer_key=customer.code, customer_name=customer.name,
                           subject=subject, currency=currency, amount=amount, line=line, now=ctx.at,
                           not_before=not_before, day=ctx.today)
            for p in persons if notify.address(p, platforms) is not None]


@dataclass
class _Block:
    """One customer's lines in a digest: (the kind's short name, line), in rank order."""
    name: str
    lines: list[tuple[str, str]] = field(default_factory=list)
    totals: dict[str, Decimal] = field(default_factory=dict)
    count: int = 0


def _short(label: str) -> str:
    """A kind's name before its explanation: "逾期第60天（法务）" → "逾期第60天" (the header says the rest once)."""
    return label.split("（", 1)[0]


def _totals(rows: list[DigestItem]) -> dict[str, Decimal]:
    """Per currency, each invoice once (one invoice can be in two items: two held steps firing
    together); never a CNY amount added to a USD one."""
    seen: dict[tuple[str, str], tuple[str, Decimal]] = {}
    for r in rows:
        if r.amount is not None and r.currency:
            seen[(r.customer_key, r.subject)] = (r.currency, r.amount)
    out: dict[str, Decimal] = {}
    for cur, amt in seen.values():
        out[cur] = out.get(cur, Decimal("0.00")) + amt
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "CNY", kv[0])))


def _blocks(rows: list[DigestItem]) -> list[_Block]:
    by_customer: dict[str, list[DigestItem]] = defaultdict(list)
    for r in rows:                      # already in customer, rank, id order (storage.digests.unsent)
        by_customer[r.customer_key].append(r)
    return [_Block(rs[0].customer_name, [(_short(r.label), r.line) for r in rs], _totals(rs), len(rs))
            for rs in by_customer.values()]


def compose(title: str, day, listed: list[DigestItem], rest: list[DigestItem], limit: int | None) -> list[str]:
    """The digest's parts: a header (counts and totals of everything, listed or not, and each
    kind's explanation once), the listed items by customer, and the "另有 N 条" line. A part ends
    at a customer boundary when the next customer would not fit in ``limit`` bytes; only a
    customer too big for a part on its own is cut between its lines (its name repeated, 续)."""
    everything = listed + rest
    by_kind: dict[str, int] = {}
    for r in everything:
        by_kind[r.label] = by_kind.get(r.label, 0) + 1
    head = dict(title=title, day=day, count=len(everything), by_kind=by_kind, totals=_totals(everything))
    more = render("digest/more.md.j2", more=len(rest)) if rest else ""
    # the room a customer's piece has in a part of its own (with the header, "续 i/n" and the last line)
    room = None if limit is None else limit - _size(_part(head, [], more, 10, 10)) - 2
    pieces: list[str] = []
    for b in _blocks(listed):
        whole = _render_block(b, b.lines, cont=False)
        if room is None or _size(whole) <= room:
            pieces.append(whole)
            continue
        lines: list[tuple[str, str]] = []
        cont = False
        for line in b.lines:
            if lines and _size(_render_block(b, lines + [line], cont)) > room:
                pieces.append(_render_block(b, lines, cont))
                lines, cont = [], True
            lines.append(line)
        pieces.append(_render_block(b, lines, cont))
    parts: list[list[str]] = [[]]
    for piece in pieces:
        if parts[-1] and limit is not None and _size(_part(head, parts[-1] + [piece], more, 10, 10)) > limit:
            parts.append([])
        parts[-1].append(piece)
    n = len(parts)
    return [_part(head, p, more if i == n else "", i, n) for i, p in enumerate(parts, start=1)]


def blocks(rows: list[DigestItem]) -> list[_Block]:
    """Items by customer, as a digest shows them (for /通知)."""
    return _blocks(rows)


def render_block(b: _Block) -> str:
    return _render_block(b, b.lines, cont=False)


def _render_block(b: _Block, lines, cont: bool) -> str:
    return render("digest/customer.md.j2", name=b.name, count=b.count, totals=b.totals, lines=lines, cont=cont)


def _part(head: dict, pieces: list[str], more: str, i: int, n: int) -> str:
    return render("digest/digest.md.j2", **head, blocks=pieces, more=more, part=i, parts=n)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


async def send(ctx, job: str) -> int:
    """Queue each person's digest of ``job``'s unsent items and mark them sent, a person per
    short write step (the items are read on a reader: a first run over a big ledger has thousands).
    An item another run marked meanwhile is not marked again (``storage.digests.mark_sent``).
    Returns how many digests were queued."""
    s, cfg = ctx.session, ctx.config
    await ctx.checkpoint(force=True)        # the items written so far are committed: read them without the lock
    async with ctx.reader() as r:
        rows = await store.unsent(r, job)
        people = {p.id: p for p in (await r.execute(
            select(Person).where(Person.id.in_({x.person_id for x in rows})))).scalars()}
    by_person: dict[str, list[DigestItem]] = defaultdict(list)
    for r in rows:
        by_person[r.person_id].append(r)
    title_key = TITLES.get(job, job)
    title = notify.title_of(title_key)
    sent = 0
    for pid, its in by_person.items():
        person = people.get(pid)
        addr = notify.address(person, ctx.services.platforms) if person is not None else None
        if addr is None:
            # unreachable now (left the company, account removed): recorded as not sent, visible
            # in /通知 for whoever looks, never retried into a flood
            await store.mark_sent(s, [(r.id, f"none:{job}:{ctx.fire_key}", False) for r in its])
            continue
        budget = max(0, cfg.collection.digest_max_items - await store.listed_on(s, pid, ctx.today))
        listed, rest = its[:budget], its[budget:]
        parts = compose(title, ctx.today, listed, rest, _size_limit(ctx, addr[0]))
        key = f"digest:{job}:{ctx.fire_key}:{pid}:{its[0].id}"
        not_before = max(r.not_before for r in its)
        queue = [(OutgoingMessage(platform=addr[0], target_kind="user", target=addr[1], text=text, title=title),
                  f"{key}:{i}") for i, text in enumerate(parts, start=1)]
        await outbox.enqueue_many(s, queue, ctx.at, not_before=not_before)
        await store.mark_sent(s, [(r.id, key, r in listed) for r in its])
        sent += 1
        await ctx.checkpoint(force=True)
    return sent


def _size_limit(ctx, platform: str) -> int | None:
    """Bytes per digest part: ``[collection] max_message_bytes``, and never more than the
    platform takes in one markdown message to a person."""
    limit = ctx.config.collection.max_message_bytes
    platform_limit = ctx.services.capabilities(platform).max_bytes("user", "markdown")
    return min(limit, platform_limit) if platform_limit else limit
