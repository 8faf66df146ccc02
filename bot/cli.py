"""The ``arbot`` command: serve, migrate, import, demo-data, jobs, parse-reply, report, outbox, export,
calendar, audit."""
from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Callable

from bot.config import ConfigError, load_config
from domain.export_cells import csv_cell, csv_row
from bot.render import render


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arbot", description="Accounts-receivable collection bot")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version and exit")
    p.add_argument("--config", help="TOML config file (or ARBOT_CONFIG)")
    sub = p.add_subparsers(dest="cmd", required=True, help="what to do")
    s = sub.add_parser("serve", help="run the bot (webhooks, local chat, scheduler, outbox)")
    s.add_argument("--host", help="listen address (default: [server] host)")
    s.add_argument("--port", type=int, help="listen port (default: [server] port)")
    s.add_argument("--demo", action="store_true", help="local web chat on, demo data into an empty database")
    s.add_argument("--at", help="rehearsal: start the clock at this ISO datetime (company timezone if none given)"
                                " and let it run on; the day's missed jobs catch up as of then")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    i = sub.add_parser("import", help="import people|customers|receivables|payments from CSV, XLSX or XLS; "
                                      "bank: a bank statement (CSV, XLSX, XLS, MT940), matched and applied")
    i.add_argument("kind", choices=["people", "customers", "receivables", "payments", "bank"], help="what the file holds")
    i.add_argument("file", help="a .csv (UTF-8 or GBK), .xlsx or .xls file (bank: also MT940); docs/user-guide.md"
                                " lists the columns")
    i.add_argument("--format", choices=["text", "json"], default="text", help="the import report as text or JSON")
    i.add_argument("--date-order", choices=["ymd", "mdy", "dmy"],
                   help="how to read 3/5/2026 or 26-3-5 in this file (default: [import] date_order)")
    i.add_argument("--allow-customer-change", action="store_true",
                   help="let rows move invoices already in the ledger to another customer (refused otherwise)")
    i.add_argument("--account", default="", help="bank: our account the statement is of (a name or number)")
    i.add_argument("--operator", help="who runs the import, recorded in the audit log (default: the OS user)")
    d = sub.add_parser("demo-data", help="generate a believable demo company into an empty database")
    d.add_argument("--seed", type=int, default=7, help="random seed: the same seed makes the same company")
    j = sub.add_parser("jobs", help="list or run scheduled jobs")
    jsub = j.add_subparsers(dest="jobs_cmd", required=True, help="list or run")
    jsub.add_parser("list", help="every job with its trigger")
    jr = jsub.add_parser("run", help="run one job now")
    jr.add_argument("name", help="the job's name, as `arbot jobs list` shows it")
    jr.add_argument("--at", help="run as if the clock read this ISO datetime (company timezone if none given)")
    pr = sub.add_parser("parse-reply", help="show how the bot reads a rep's reply")
    pr.add_argument("text", help="the reply as the rep wrote it")
    pr.add_argument("--today", required=True, help="YYYY-MM-DD")
    pr.add_argument("--items", type=int, default=None, help="how many items the push had")
    pr.add_argument("--split", action="store_true",
                    help="split a whole message into per-item segments; prints a JSON list")
    r = sub.add_parser("report", help="reports for finance's spreadsheets")
    rsub = r.add_subparsers(dest="report", required=True, help="which report")
    ra = rsub.add_parser("aging", help="open receivables by days overdue")
    ra.add_argument("--as-of", help="YYYY-MM-DD (default: today)")
    ra.add_argument("--by", choices=["rep", "team", "customer", "region"], help="one row per rep, team, customer or region")
    ra.add_argument("--format", choices=["json", "csv", "text"], default="text", help="output format (CSV for Excel)")
    rf = rsub.add_parser("forecast", help="weekly cash-in forecast of the open invoices (回款预测)")
    rf.add_argument("--as-of", help="YYYY-MM-DD (default: today)")
    rf.add_argument("--weeks", type=int, default=12, help="how many weeks (1..52)")
    rf.add_argument("--format", choices=["json", "csv", "text"], default="text", help="output format (CSV for Excel)")
    rf.add_argument("--backtest", action="store_true",
                    help="replay the company's own history: weekly error (WAPE) of the forecast and of \"paid on the due date\"")
    ri = rsub.add_parser("invoices", help="every invoice open on a date, as of that date (the reports' 明细)")
    ri.add_argument("--as-of", help="YYYY-MM-DD (default: today)")
    ri.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (CSV for Excel)")
    o = sub.add_parser("outbox", help="show the outbox; retry dead letters")
    o.add_argument("--status", choices=["pending", "sent", "dead", "split"], default=None,
                   help="show only messages in this state")
    o.add_argument("--retry", type=int, nargs="*", help="move these dead messages back to pending")
    b = sub.add_parser("backup", help="copy the SQLite database safely while the bot runs (online backup API)")
    b.add_argument("path", nargs="?", help="file or directory (default ./var/backups/arbot-<time>.db)")
    a = sub.add_parser("audit", help="read the audit log: who changed what, when, from where (newest first)")
    a.add_argument("--entity", help="what changed: receivable, customer, payment, person, import ...")
    a.add_argument("--id", help="its key: an invoice number, a customer code ...")
    a.add_argument("--customer", help="a customer code: the customer's entries and its invoices'")
    a.add_argument("--person", help="who did it: a person id, bot, or an import's operator")
    a.add_argument("--action", help="an action or its prefix: writeoff, payment.record ...")
    a.add_argument("--since", help="from this day (YYYY-MM-DD, company time)")
    a.add_argument("--until", help="up to and including this day (YYYY-MM-DD)")
    a.add_argument("--limit", type=int, default=200, help="at most this many entries (0: all)")
    a.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    e = sub.add_parser("export", help="export the follow-up log or the write-off register")
    esub = e.add_subparsers(dest="export", required=True, help="what to export")
    ef = esub.add_parser("followups", help="every follow-up logged, oldest first")
    ef.add_argument("--since", help="YYYY-MM-DD: only follow-ups from this day on")
    ef.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (CSV for Excel)")
    ew = esub.add_parser("writeoffs", help="the write-off register (坏账核销台账) with approvals and recoveries")
    ew.add_argument("--since", help="YYYY-MM-DD: only those requested or booked from this day on")
    ew.add_argument("--format", choices=["csv", "json"], default="csv", help="output format (CSV for Excel)")
    c = sub.add_parser("calendar", help="next year's holidays from the State Council's notice")
    csub = c.add_subparsers(dest="calendar_cmd", required=True, help="import")
    ci = csub.add_parser("import", help="read the notice (国务院办公厅关于XXXX年部分节假日安排的通知), show it, store it")
    ci.add_argument("file", help="the notice as published, a UTF-8 text file")
    ci.add_argument("--year", type=int, help="the year, when the file lacks the notice's title")
    ci.add_argument("--yes", action="store_true", help="store without asking (scripts); otherwise asked on a terminal")
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("arbot")
    except PackageNotFoundError:          # run from a checkout that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "parse-reply":          # needs no config or database
        return _parse_reply(args)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"arbot: configuration error: {e}", file=sys.stderr)
        return 2
    from bot import logs
    logs.setup(config.log.level.upper(), json_lines=args.cmd == "serve")
    if args.cmd == "serve":
        return _serve(config, args)
    if args.cmd == "backup":               # before anything migrates: a backup is taken *before* an upgrade
        return _backup(config, args)
    try:
        return asyncio.run(_run(config, args))
    except KeyboardInterrupt:          # Ctrl-C: whatever was under way has been taken back (see _import)
        return 130
    except asyncio.CancelledError:     # SIGTERM (see _stop_on_sigterm)
        return 143


def _parse_reply(args) -> int:
    from bot.replies import parse_message, parse_reply
    try:
        today = date.fromisoformat(args.today)
    except ValueError:
        print("arbot: --today must be YYYY-MM-DD", file=sys.stderr)
        return 2
    if args.split:                         # the interface the reply benchmark and other tools use
        out = [p.to_json() for p in parse_message(args.text, today, item_count=args.items)]
    else:
        out = parse_reply(args.text, today, item_count=args.items).to_json()
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def _serve(config, args) -> int:
    import dataclasses

    from aiohttp import web

    from bot.app import create_app
    if args.demo:
        config = dataclasses.replace(config, demo=True, local=dataclasses.replace(config.local, enabled=True))
    host = args.host or config.server.host
    port = args.port or config.server.port
    services = None
    if args.at:
        at = _parse_at(args.at, config)
        if at is None:
            return 2
        from bot.clock import ShiftedClock
        from bot.services import Services
        services = Services.build(config, clock=ShiftedClock(at, config.tz))
    app = create_app(config, services, settle_heap=True)
    from bot.app import STATE
    app[STATE].cli = _cli_prefix(args)
    if config.demo:
        app.on_startup.append(_tour_hint)        # runs after create_app's start-up (demo data, push)
    print(render("cli/serving.txt.j2", host=host, port=port, local=config.local.enabled, demo=config.demo), flush=True)
    # open HTTP requests get 1 s to finish: the whole stop stays inside Docker's 10 s grace
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=1)
    return 0


async def _tour_hint(app) -> None:
    """Demo mode: README step 5's command with the ``--at`` that closes this push's reply window
    (it depends on the day ``make run`` starts, so it is printed, not written in the README)."""
    from bot.app import STATE
    state = app[STATE]
    if state.tour is not None:
        print(render("cli/tour.txt.j2", tour=state.tour, cli=state.cli), flush=True)


def _cli_prefix(args) -> str:
    """How this operator runs arbot: `.venv/bin/arbot --config config.demo.toml` under `make run`."""
    import os
    import shlex
    prog = sys.argv[0] if Path(sys.argv[0]).name == "arbot" else "arbot"
    config = args.config or os.environ.get("ARBOT_CONFIG")
    return shlex.join([prog, "--config", config] if config else [prog])


async def _run(config, args) -> int:
    from bot.services import Services
    services = Services.build(config)
    try:
        await services.db.migrate()
        # links a job makes here (the monthly report's Excel) must open in the server
        from bot.web.signing import load_secret
        await load_secret(services.db, config, services.clock.now())
        await _recover_imports(services)
        await services.load_calendar()
        return await COMMANDS[args.cmd](services, args)
    finally:
        await services.db.close()


async def _recover_imports(services) -> None:
    """Every command starts by taking back an import that a killed process left half-written
    (storage/import_runs.py): the ledger a command reads or changes is never half an import."""
    from storage.import_runs import recover_imports
    undone = await recover_imports(services.db)
    if undone:
        print(render("cli/imports_recovered.txt.j2", runs=undone), file=sys.stderr)


def _stop_on_sigterm() -> Callable[[], None]:
    """SIGTERM (``kill``, ``docker stop``, systemd) cancels the command like Ctrl-C does, so an
    import under way is undone before the process exits; returns the function that stops that."""
    import signal
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError, ValueError):     # not the main thread, or no signals here
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGTERM)


async def _migrate(services, args) -> int:
    print(render("cli/migrated.txt.j2", url=services.db.url.split("://")[0]))
    return 0


async def _import(services, args) -> int:
    from storage.imports import import_file
    path = Path(args.file)
    if not path.exists():
        print(render("cli/no_file.txt.j2", path=str(path)), file=sys.stderr)
        return 2
    if args.kind == "bank":
        return await _import_bank(services, args, path)
    from bot.progress import import_progress
    progress = import_progress()             # a bar on a terminal; None when stdout is not one
    unhook = _stop_on_sigterm()
    try:
        report = await import_file(services.db, args.kind, path, actor=_operator(args), now=services.clock.now(),
                                   today=services.clock.today(), progress=progress,
                                   date_order=args.date_order or services.config.imports.date_order,
                                   allow_customer_change=args.allow_customer_change)
    except asyncio.CancelledError:
        # Ctrl-C or SIGTERM: import_file has taken back what it wrote (or the next start will)
        if progress:
            progress.close()
        print(render("cli/import_interrupted.txt.j2"), file=sys.stderr)
        raise
    finally:
        unhook()
        if progress:
            progress.close()
    binding = None
    if report.ok and args.kind == "people":
        # people given by mobile: their chat accounts, from the platforms (bot/identities.py);
        # who could not be bound is listed, the import stands
        from bot.identities import bind_by_mobile
        binding = await bind_by_mobile(services.db, services.config)
    if args.format == "json":
        print(json.dumps({**report.to_dict(), **({"accounts": binding.to_dict()} if binding else {})},
                         ensure_ascii=False, indent=2))
    else:
        print(render("cli/import_report.txt.j2", r=report))
        if binding and (binding.bound or binding.unbound):
            print(render("cli/import_bindings.txt.j2", b=binding))
    return 0 if report.ok else 1


async def _import_bank(services, args, path: Path) -> int:
    """A bank statement: read whole, matched on a read session (no lock held), then stored and
    applied in short write transactions (all of it or none of it: a long statement's chunks
    are taken back if it is stopped, Ctrl-C or SIGTERM); the digests it calls for are queued after."""
    from bot import cash
    from domain.bank_statement import read_statement
    from domain.import_files import ImportFileError, RowError
    from storage.bank import import_bank_statement
    from storage.import_runs import ImportBusy
    now = services.clock.now()

    def refused(errors) -> int:
        if args.format == "json":
            print(json.dumps({"lines": [], "errors": [e.to_dict() for e in errors], "summary": {"lines": 0}},
                             ensure_ascii=False, indent=2))
        else:
            print(render("cli/bank_report.txt.j2", errors=errors), file=sys.stderr)
        return 1
    try:
        st = read_statement(path, services.clock.today())
        errors = st.errors
    except ImportFileError as e:
        errors = [e.error]
    if errors:
        return refused(errors)
    unhook = _stop_on_sigterm()
    try:
        result = await import_bank_statement(services.db, st, file_name=path.name, account=args.account,
                                             actor=_operator(args), now=now)
    except ImportBusy as busy:
        return refused([RowError(0, "", "", "import_running", {"run": busy.run_id})])
    except asyncio.CancelledError:
        # Ctrl-C or SIGTERM: the chunks written have been taken back (or the next start will)
        print(render("cli/import_interrupted.txt.j2"), file=sys.stderr)
        raise
    finally:
        unhook()
    await cash.notify_statement(services, result, now=now)
    if args.format == "json":
        print(json.dumps(cash.report_json(result), ensure_ascii=False, indent=2))
    else:
        print(render("cli/bank_report.txt.j2", errors=[], summary=result.summary(), lines=result.lines,
                     reason=lambda r: cash.reason_text(r.reasons)))
    return 0


def _operator(args) -> str:
    """Who runs an import, for the audit log: ``--operator``, else the OS user (else "cli")."""
    given = getattr(args, "operator", None)
    if given and given.strip():
        return given.strip()[:64]
    try:
        import getpass
        return getpass.getuser()[:64] or "cli"
    except Exception:           # no user name in the environment nor the password database
        return "cli"


async def _audit(services, args) -> int:
    from storage import audit_trail
    from storage.models import Customer
    try:
        since = date.fromisoformat(args.since) if args.since else None
        until = date.fromisoformat(args.until) if args.until else None
    except ValueError:
        print("arbot: --since and --until must be dates such as 2026-11-01 (YYYY-MM-DD)", file=sys.stderr)
        return 2
    if args.limit < 0:
        print("arbot: --limit must be 0 (all) or more", file=sys.stderr)
        return 2
    tz = services.config.tz
    async with services.db.session() as s:
        customer = None
        if args.customer:
            from sqlalchemy import select
            customer = (await s.execute(select(Customer).where(Customer.code == args.customer))).scalar_one_or_none()
            if customer is None:
                print(f"arbot: no customer with the code {args.customer!r}", file=sys.stderr)
                return 2
        q = audit_trail.AuditQuery(entity=args.entity, entity_id=args.id, customer=customer, actor=args.person,
                                   since=since, until=until, action=args.action)
        page = await audit_trail.entries(s, q, tz, per_page=args.limit or None)
    if args.format == "json":
        print(json.dumps([audit_trail.as_row(e, page.names, tz) for e in page.entries], ensure_ascii=False, indent=2))
    else:
        print(render("cli/audit.txt.j2", page=page, tz=tz, brief=audit_trail.brief))
    return 0


async def _demo_data(services, args) -> int:
    from storage.demo import database_is_empty, load_demo
    async with services.db.session() as s, s.begin():
        if not await database_is_empty(s):
            print(render("cli/demo_not_empty.txt.j2"), file=sys.stderr)
            return 1
        summary = await load_demo(s, today=services.clock.today(), now=services.clock.now(), seed=args.seed,
                                  platforms=services.account_platforms)
    print(render("cli/demo_loaded.txt.j2", s=summary))
    return 0


def _parse_at(value: str, config) -> datetime | None:
    """``--at``: an ISO datetime, in the company's timezone unless it names one; None (said) if not."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        print("arbot: --at must be an ISO datetime such as 2026-12-01T09:00", file=sys.stderr)
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=config.tz)


async def _jobs(services, args) -> int:
    from bot.jobs.registry import JOBS
    from bot.jobs.scheduler import run_job
    if args.jobs_cmd == "list":
        for job in JOBS.values():
            trig = job.trigger(services.config)
            print(f"{job.name:20} {json.dumps(trig)}{' (working days)' if job.workdays_only else ''}  {job.description}")
        return 0
    if args.name not in JOBS:
        print(f"arbot: unknown job {args.name!r}; see `arbot jobs list`", file=sys.stderr)
        return 2
    at = None
    if args.at:
        at = _parse_at(args.at, services.config)
        if at is None:
            return 2
        from bot.clock import FixedClock
        services.clock = FixedClock(at, services.config.tz)
    print(await run_job(services, args.name, at, claim_fire=False))
    return 0


async def _report(services, args) -> int:
    from storage.aging import aging
    from storage.report_detail import group_names
    try:
        as_of = date.fromisoformat(args.as_of) if args.as_of else services.clock.today()
    except ValueError:
        print("arbot: --as-of must be YYYY-MM-DD", file=sys.stderr)
        return 2
    if args.report == "forecast":
        return await _forecast(services, args, as_of)
    cfg = services.config
    if args.report == "invoices":
        return await _report_invoices(services, as_of, args.format)
    async with services.db.session() as s:
        rep = await aging(s, as_of, cfg.aging.buckets, by=args.by, fx_rates=cfg.company.fx_rates,
                          base_currency=cfg.company.currency)
        names = await group_names(s, args.by, rep.groups) if args.by else {}
    data = {"as_of": as_of.isoformat(), "total": str(rep.total), "currency": cfg.company.currency,
            "buckets": [{"label": b.label, "amount": str(b.amount), "count": b.count} for b in rep.buckets]}
    # a customer group is shown by its code and name (the internal id means nothing to finance)
    shown = {k: names.get(k, (k, ""))[0] if args.by == "customer" else k for k in rep.groups}
    if args.by:
        data["by"] = args.by
        data["groups"] = {shown[k]: [{"label": b.label, "amount": str(b.amount), "count": b.count} for b in v]
                          for k, v in sorted(rep.groups.items(), key=lambda kv: shown[kv[0]])}
        if args.by in ("customer", "rep"):
            data["names"] = {shown[k]: names.get(k, (k, ""))[1] for k in sorted(rep.groups, key=shown.get)}
    if rep.unconverted:
        data["unconverted"] = {k: str(v) for k, v in rep.unconverted.items()}
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        w = _SafeWriter(csv.writer(buf))
        labels = [b["label"] for b in data["buckets"]]
        named = args.by == "customer"
        w.writerow([*(["customer_code", "customer_name"] if named else [args.by or "scope"]), *labels, "total"])
        rows = data.get("groups") or {"all": data["buckets"]}
        for key, buckets in rows.items():
            w.writerow([key, *([data["names"][key]] if named else []), *[b["amount"] for b in buckets],
                        str(sum((Decimal(b["amount"]) for b in buckets), Decimal("0.00")))])
        _print_csv(buf.getvalue())
    else:
        # "C1 上海恒信机电有限公司", "rep1 张伟"; teams and regions are names already
        groups = sorted((" ".join(names[k]) if k in names and args.by in ("customer", "rep") else k, v)
                        for k, v in rep.groups.items())
        print(render("cli/aging.txt.j2", r=rep, by=args.by, groups=groups))
    return 0


async def _calendar(services, args) -> int:
    from domain.holiday_notice import NoticeError, read_notice
    from domain.workdays import package_disagreements
    from storage.holiday_schedules import store
    path = Path(args.file)
    if not path.is_file():
        print(render("cli/no_file.txt.j2", path=str(path)), file=sys.stderr)
        return 2
    try:
        notice = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        print(render("cli/calendar.txt.j2", step="not_utf8", path=str(path)), file=sys.stderr)
        return 2
    try:
        schedule = read_notice(notice, args.year)
    except NoticeError as e:
        print(render("cli/calendar.txt.j2", step="error", reason=e.code, data=e.data), file=sys.stderr)
        return 1
    print(render("cli/calendar.txt.j2", step="read", s=schedule, disagreements=package_disagreements(schedule),
                 replaces=schedule.year in services.calendar.imported_years))
    if not args.yes:
        if not sys.stdin.isatty():
            print(render("cli/calendar.txt.j2", step="not_asked"), file=sys.stderr)
            return 1
        if input(render("cli/calendar.txt.j2", step="ask").strip() + " ").strip().lower() not in ("y", "yes", "是"):
            print(render("cli/calendar.txt.j2", step="not_stored"))
            return 1
    await services.db.write(lambda s: store(s, schedule, notice=notice, actor=_operator(args), channel="cli",
                                            now=services.clock.now()))
    await services.load_calendar()
    print(render("cli/calendar.txt.j2", step="stored", s=schedule))
    return 0


async def _report_invoices(services, as_of: date, fmt: str = "csv") -> int:
    from storage.report_detail import open_invoices
    cfg = services.config
    async with services.db.session() as s:
        lines = await open_invoices(s, as_of, fx_rates=cfg.company.fx_rates, base_currency=cfg.company.currency)
    rows = [{"customer_code": x.customer_code, "customer_name": x.customer_name, "invoice_no": x.invoice_no,
             "contract_no": x.contract_no, "rep": x.rep, "issue_date": x.issue_date.isoformat(),
             "due_date": x.due_date.isoformat(), "currency": x.currency, "open_amount": str(x.open_amount),
             "open_amount_" + cfg.company.currency.lower(): "" if x.base_amount is None else str(x.base_amount),
             "days_overdue": x.days_overdue} for x in lines]
    if fmt == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["invoice_no"])
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    _print_csv(buf.getvalue())
    return 0


async def _forecast(services, args, as_of: date) -> int:
    from storage import forecast as fc
    from storage.scope import Scope
    if not 1 <= args.weeks <= 52:
        print("arbot: --weeks must be 1..52", file=sys.stderr)
        return 2
    cfg = services.config
    async with services.db.session() as s:
        if args.backtest:
            bt = await fc.backtest(s, as_of, args.weeks, Scope.everything(), cfg.company.fx_rates, cfg.company.currency)
        else:
            weeks, unconverted = await fc.forecast(s, as_of, args.weeks, Scope.everything(), cfg.company.fx_rates,
                                                   cfg.company.currency)
    if args.backtest:
        if bt is None:
            print(render("cli/forecast_no_history.txt.j2", weeks=args.weeks), file=sys.stderr)
            return 1
        data = {"as_of": as_of.isoformat(), "weeks": bt.weeks, "origins": [o.isoformat() for o in bt.origins],
                "actual": str(bt.actual), "wape": round(bt.wape, 4), "naive_wape": round(bt.naive_wape, 4),
                "by_origin": [{"origin": o.isoformat(), "actual": str(a), "wape": round(w, 4), "naive_wape": round(n, 4)}
                              for o, a, w, n in bt.by_origin]}
        if args.format == "json":
            print(json.dumps(data, ensure_ascii=False, indent=2))
        elif args.format == "csv":
            buf = io.StringIO()
            w = _SafeWriter(csv.writer(buf))
            w.writerow(["origin", "actual", "wape", "naive_wape"])
            for row in data["by_origin"]:
                w.writerow([row["origin"], row["actual"], row["wape"], row["naive_wape"]])
            w.writerow(["all", data["actual"], data["wape"], data["naive_wape"]])
            _print_csv(buf.getvalue())
        else:
            print(render("cli/forecast_backtest.txt.j2", bt=bt, as_of=as_of))
        return 0
    data = {"as_of": as_of.isoformat(), "currency": cfg.company.currency,
            "weeks": [{"start": w.start.isoformat(), "amount": str(w.amount), "low": str(w.low), "high": str(w.high)}
                      for w in weeks]}
    if unconverted:
        data["unconverted"] = {k: str(v) for k, v in unconverted.items()}
    if args.format == "json":
        print(json.dumps(data, ensure_ascii=False, indent=2))
    elif args.format == "csv":
        buf = io.StringIO()
        w = _SafeWriter(csv.writer(buf))
        w.writerow(["start", "amount", "low", "high"])
        for wk in data["weeks"]:
            w.writerow([wk["start"], wk["amount"], wk["low"], wk["high"]])
        _print_csv(buf.getvalue())
    else:
        print(render("cli/forecast.txt.j2", weeks=weeks, as_of=as_of, unconverted=unconverted))
    return 0


async def _outbox(services, args) -> int:
    from sqlalchemy import select, update

    from storage.models import OutboxMessage
    async with services.db.session() as s, s.begin():
        if args.retry:
            await s.execute(update(OutboxMessage).where(OutboxMessage.id.in_(args.retry), OutboxMessage.status == "dead")
                            .values(status="pending", attempts=0, next_attempt_at=services.clock.now(), last_error=""))
        stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(100)
        if args.status:
            stmt = stmt.where(OutboxMessage.status == args.status)
        rows = (await s.execute(stmt)).scalars().all()
        from bot.outbox import backlog
        counts = await backlog(s)
    print(render("cli/outbox.txt.j2", rows=rows, counts=counts))
    return 0


async def _export(services, args) -> int:
    from storage.exports import followup_rows
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        print(f"arbot: --since must be a date such as 2026-11-01 (YYYY-MM-DD), not {args.since!r}", file=sys.stderr)
        return 2
    if args.export == "writeoffs":
        return await _export_writeoffs(services, args, since)
    async with services.db.session() as s:
        rows = await followup_rows(s, since, services.config.tz)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        buf = io.StringIO()
        fields = list(rows[0].keys()) if rows else ["at"]
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        # a rep's note or a customer's name could be a formula (=HYPERLINK(...)): written as text
        w.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
        _print_csv(buf.getvalue())
    return 0


class _SafeWriter:
    """A csv writer whose text cells never run as formulas in Excel (domain/export_cells.py)."""

    def __init__(self, writer):
        self._w = writer

    def writerow(self, row) -> None:
        self._w.writerow(csv_row(row))


async def _export_writeoffs(services, args, since) -> int:
    from storage import writeoffs
    async with services.db.session() as s:
        rows = writeoffs.as_rows(await writeoffs.register(s, since=since), services.config.tz)
    if args.format == "json":
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["id"])
    w.writeheader()
    # a reason typed in chat ("=HYPERLINK(...)") must not become a formula in Excel
    w.writerows({k: csv_cell(v) for k, v in row.items()} for row in rows)
    _print_csv(buf.getvalue())
    return 0


def _print_csv(text: str) -> None:
    """CSV as Excel wants it: UTF-8 with a BOM (utf-8-sig), whatever the terminal's encoding.
    Without the BOM, Excel on Chinese Windows reads the file as GBK and garbles every name."""
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    if out is None:                       # a stream without bytes (captured output): the same characters
        sys.stdout.write("\ufeff" + text)
        return
    out.write(text.encode("utf-8-sig"))
    out.flush()


def _backup(config, args) -> int:
    """SQLite online backup (sqlite3 ``Connection.backup``): a consistent copy even while the bot
    writes, taken in steps so writers are never blocked for long. PostgreSQL: use pg_dump."""
    import os
    import sqlite3

    from sqlalchemy.engine import make_url

    from bot.clock import Clock
    from storage.db import normalize_url
    url = make_url(normalize_url(config.database.url))
    if url.get_backend_name() != "sqlite":
        print(render("cli/backup_error.txt.j2", code="not_sqlite"), file=sys.stderr)
        return 2
    source = Path(url.database or "")
    if not url.database or url.database == ":memory:" or not source.is_file():
        print(render("cli/backup_error.txt.j2", code="no_database", path=str(source)), file=sys.stderr)
        return 2
    name = f"arbot-{Clock(config.company.timezone).now():%Y%m%d-%H%M%S}.db"
    dest = Path(args.path) if args.path else Path("var/backups") / name
    if dest.is_dir():
        dest = dest / name
    if dest.exists():
        print(render("cli/backup_error.txt.j2", code="exists", path=str(dest)), file=sys.stderr)
        return 2
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    src, dst = sqlite3.connect(source), sqlite3.connect(partial)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.backup(dst, pages=1024, sleep=0.01)
        dst.execute("PRAGMA journal_mode=DELETE")     # one self-contained file, no -wal beside it
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        counts = [(t, dst.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        partial.unlink(missing_ok=True)
        print(render("cli/backup_error.txt.j2", code="integrity", path=str(dest), detail=check), file=sys.stderr)
        return 1
    os.replace(partial, dest)
    print(render("cli/backup_done.txt.j2", path=str(dest), size=dest.stat().st_size, check=check, counts=counts))
    return 0


COMMANDS = {"migrate": _migrate, "import": _import, "demo-data": _demo_data, "jobs": _jobs, "report": _report,
            "outbox": _outbox, "export": _export, "calendar": _calendar, "audit": _audit}

if __name__ == "__main__":
    sys.exit(main())
