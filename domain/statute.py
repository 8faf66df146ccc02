"""Statute of limitations (诉讼时效) dates.

The period runs from the day after the due date (民法典 第一百八十八条, 第二百零一条: the first day
is not counted) for ``years`` years (3; 4 for cross-border contracts); its last day is the date
corresponding to the anchor in the final year (the month's last day when there is none, e.g.
29 February). A last day on a statutory rest day moves to the next working day (第二百零三条).
A written notice the customer received, a partial payment or a signed confirmation interrupts
the period, which then runs afresh from that day (第一百九十五条).
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date


def add_years(d: date, years: int) -> date:
    y = d.year + years
    return date(y, d.month, min(d.day, calendar.monthrange(y, d.month)[1]))


def last_day(anchor: date, years: int, work_calendar=None) -> date:
    """The last day a claim anchored on ``anchor`` (the due date, or the day of an interruption)
    can still be brought. ``work_calendar`` (a WorkCalendar) moves a rest day to the next working day."""
    end = add_years(anchor, years)
    if work_calendar is not None:
        end = work_calendar.next_workday(end)
    return end


def anchor(due_date: date, interruptions: list[date]) -> date:
    """The day the current period is counted from: the latest interruption on or after the due date."""
    later = [d for d in interruptions if d and d >= due_date]
    return max(later, default=due_date)


# -- reckoning one invoice's period from what happened to it ---------------------------------
#
# What interrupts (第一百九十五条) comes in two kinds, kept apart because the law treats them apart:
# * the debtor's own acts (义务人同意履行义务): a payment, a balance confirmation the customer
#   signed, another written acknowledgement. They always interrupt a running period.
# * the creditor's demands (权利人提出履行请求): they interrupt only when the demand is proven to
#   have reached the debtor, and which proof a company relies on is its choice ([statute]
#   notice_evidence): the customer's reply, a registered letter signed for, a lawsuit filed. An
#   e-mail the SMTP server accepted ("250") proves nothing reached anyone, so it is not in the
#   default list.
# A period that has run out is not revived by anything the creditor does. After expiry the debtor
# may still act (第一百九十二条; 诉讼时效规定 第十九条): a written acknowledgement is a
# re-confirmation of the debt and a new period runs from it; a payment is voluntary performance
# of the part paid (not to be claimed back) and leaves the rest time-barred. Both are recorded as
# what they are, never as a restart of the lapsed period.

DEBTOR_ACTS = ("payment", "signed_confirmation", "acknowledgement")
DEMAND_EVIDENCE = ("customer_reply", "registered_letter", "lawsuit", "email_accepted", "message_sent")
EVIDENCE = DEBTOR_ACTS + DEMAND_EVIDENCE
DEFAULT_NOTICE_EVIDENCE = ("customer_reply", "registered_letter", "lawsuit")


@dataclass(frozen=True)
class Event:
    """Something that happened to a claim on ``on``: ``evidence`` is one of ``EVIDENCE``."""
    on: date
    evidence: str
    reference: str = ""          # tracking number, document, payment id… as recorded


@dataclass
class Reckoning:
    due_date: date
    anchor: date                 # the period runs from the day after this day
    reason: str                  # "due" or the evidence of the event it runs from
    last_day: date               # the last day a claim can be brought (of the current period)
    lapsed_on: date | None = None          # the last day of a period that ran out (None: never lapsed)
    after_expiry: list[Event] = field(default_factory=list)    # the debtor's acts after a lapse
    ignored: list[tuple[Event, str]] = field(default_factory=list)   # (event, not_evidence | after_expiry)

    def expired(self, today: date) -> bool:
        return today > self.last_day

    @property
    def reacknowledged(self) -> bool:
        """A lapsed claim the debtor acknowledged again in writing (a new period runs)."""
        return self.lapsed_on is not None and self.reason in ("signed_confirmation", "acknowledgement")


def reckon(due_date: date, events: list[Event], years: int, *, today: date, work_calendar=None,
           notice_evidence=DEFAULT_NOTICE_EVIDENCE) -> Reckoning:
    """The period of one invoice as of ``today``, from its due date and the events up to today,
    taken in date order (see the rules above). Events before the due date do not interrupt a
    period that has not begun."""
    rk = Reckoning(due_date, due_date, "due", last_day(due_date, years, work_calendar))
    for ev in sorted(events, key=lambda e: (e.on, e.evidence)):
        if ev.on > today or ev.on < due_date:
            continue
        debtor = ev.evidence in DEBTOR_ACTS
        if ev.on > rk.last_day:                   # the period ran out before this event
            if not debtor:
                rk.ignored.append((ev, "after_expiry"))
                continue
            rk.lapsed_on = rk.last_day
            rk.after_expiry.append(ev)
            if ev.evidence != "payment":          # a written re-confirmation: a new period
                rk.anchor, rk.reason = ev.on, ev.evidence
                rk.last_day = last_day(ev.on, years, work_calendar)
            continue
        if debtor or ev.evidence in notice_evidence:
            if ev.on >= rk.anchor:
                rk.anchor, rk.reason = ev.on, ev.evidence
                rk.last_day = last_day(ev.on, years, work_calendar)
        else:
            rk.ignored.append((ev, "not_evidence"))
    return rk
