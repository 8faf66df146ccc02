"""Every scheduled job, its trigger and whether it runs on working days only: one list.

Triggers are in the company timezone. ``workdays_only`` follows the Chinese calendar with its
make-up working days; the job still decides per item what "working day" means for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable

from bot.config import Config
from bot.jobs import bills, calendar, collection, housekeeping, month_end_reminders, reminders, reports, statements


@dataclass(frozen=True)
class Job:
    name: str
    fn: Callable[..., Awaitable[str]]
    trigger: Callable[[Config], dict]     # APScheduler cron fields from config
    workdays_only: bool = False
    per_minute: bool = False              # fire key by minute (frequent jobs) instead of by day
    catch_up: bool = True                 # run at start-up when today's fire was missed
    description: str = ""


def _at(hhmm_attr: str):
    def trigger(cfg: Config) -> dict:
        hh, mm = getattr(cfg.collection, hhmm_attr).split(":")
        return {"hour": int(hh), "minute": int(mm)}
    return trigger


JOBS: dict[str, Job] = {j.name: j for j in [
    Job("overdue_push", collection.overdue_push, _at("push_time"), workdays_only=True,
        description="each rep's overdue list, every working morning; opens the reply window"),
    Job("reply_window_close", collection.reply_window_close, lambda cfg: {"minute": "*/10"}, per_minute=True,
        description="closes reply windows that have run out; escalates unanswered items to supervisors"),
    Job("promise_watch", collection.promise_watch, lambda cfg: {"hour": 8, "minute": 30},
        description="marks promises kept or broken and tells the rep and supervisor"),
    Job("customer_reminders", reminders.customer_reminders, reminders.at_config("policy", "reminder_time"),
        workdays_only=True, description="before the due date: statement to the customer, reminders by grade"),
    Job("month_end_reminders", month_end_reminders.month_end_reminders, reminders.at_config("policy", "reminder_time"),
        workdays_only=True, description="month-end payers: reminded a few working days before the month's last working day"),
    Job("escalations", reminders.escalations, reminders.at_config("policy", "escalation_time"),
        description="the escalation ladder: each step once per invoice; messages wait for working hours"),
    Job("credit_watch", reminders.credit_watch, reminders.at_config("credit", "check_time"),
        description="credit usage crossing yellow/red (red freezes), key accounts"),
    Job("statute_watch", reminders.statute_watch, reminders.at_config("statute", "check_time"),
        description="warns legal before the statute of limitations runs out"),
    Job("bill_watch", bills.bill_watch, lambda cfg: {"hour": 9, "minute": 0},
        description="acceptance bills (承兑汇票) held: a week before maturity and on the day, to finance"),
    Job("weekly_aging_report", reports.weekly_aging_report, lambda cfg: {"day_of_week": "mon", "hour": 9, "minute": 0},
        description="Monday: aging with the week's change, chart and XLSX to [reports] manager_groups"),
    Job("monthly_aging_report", reports.monthly_aging_report,
        lambda cfg: {"day": cfg.reports.monthly_day, "hour": 9, "minute": 0},
        description="last month's aging, collection rate, DSO, per rep, XLSX to sales, finance and legal"),
    Job("calendar_watch", calendar.calendar_watch, lambda cfg: {"hour": 9, "minute": 0},
        description="from December 1: tells finance (once) while next year's holiday schedule is not imported"),
    Job("monthly_statements", statements.monthly_statements, lambda cfg: {
        "day": cfg.letters.statement_day, **reminders.at_config("letters", "statement_time")(cfg)},
        description="each customer contact's monthly statement (PDF) with a link to confirm or dispute it online"),
    Job("statement_answers", statements.statement_answers, lambda cfg: {"minute": "*/10"}, per_minute=True,
        description="tells the reps what their customers disputed on the statement page (a digest)"),
    # a night missed (the bot was down) waits for the next one: a start-up is when people wait
    Job("housekeeping", housekeeping.housekeeping, reminders.at_config("retention", "time"), catch_up=False,
        description="nightly: forgets delivered messages and handled events past [retention]"),
]}
