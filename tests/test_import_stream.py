"""The streamed receivables import (storage/import_stream.py, storage/import_runs.py) as finance
and the reps notice it, on a real SQLite file: a large file lands exactly as the one-transaction
import landed it; a file with one bad line changes nothing and names the line; an import that is
killed, stopped (SIGTERM, Ctrl-C) or fails half-way leaves the ledger as it was — at once, or after
the next start; chat keeps answering while an import runs and what it wrote stays; the progress
bar is drawn on a terminal only.

The processes are real (``python -c`` running ``bot.cli.main`` with a hook that waits after a given
chunk): a kill or a chat message lands between two committed chunks by construction, not by timing.
"""
from __future__ import annotations

import asyncio
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from domain.import_files import read_table, validate
from bot.render import render
from storage import import_stream
from storage.imports import import_file, import_rows
from storage.models import AuditEntry, FollowUp, ImportRun, Receivable
from tests.harness import Bot
from tests.multiproc import ROOT, env
from tests.test_import import NOW, TODAY, counts, load_all
from tests.test_import_bulk import bulk_csv

# enough rows for several chunks once the first chunk is small (the test sets FIRST_CHUNK): the
# point is a file written in several transactions, not its size (bench/ has the large ones)
LARGE = 6_000


def rows_of(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


RECEIVABLES = ("SELECT invoice_no, contract_no, customer_id, rep_id, issue_date, due_date, amount, open_amount,"
               " currency, terms, status, disputed, created_at FROM receivables ORDER BY invoice_no")
AGING = "SELECT due_date, currency, open_cents, open_count FROM aging_totals ORDER BY due_date, currency"


def ledger(path: Path) -> dict:
    """What anyone could see of the ledger: every invoice, the aging totals, the audit log."""
    return {"receivables": rows_of(path, RECEIVABLES), "aging": rows_of(path, AGING),
            "audit": rows_of(path, "SELECT id, action, entity_id, detail FROM audit_log ORDER BY id"),
            "followups": rows_of(path, "SELECT receivable_id, person_id, text FROM followups ORDER BY id")}


def last_run(path: Path) -> tuple:
    """The newest import run's status and active flag (the fixtures' own imports are runs too)."""
    return rows_of(path, "SELECT status, active FROM import_runs ORDER BY id DESC LIMIT 1")[0]


def created_values(path: Path) -> dict[str, dict]:
    """invoice number → the values its creation entry records (create and create_many alike)."""
    out = {}
    for action, entity_id, detail in rows_of(path, "SELECT action, entity_id, detail FROM audit_log"
                                                   " WHERE action LIKE 'receivable.create%'"):
        d = json.loads(detail)
        if action == "receivable.create_many":
            for row in d["rows"]:
                out[row[0]] = dict(zip(d["columns"][1:], row[1:]))
        else:
            out[entity_id] = {k: v for k, v in d.items()}
    return out


def updates(path: Path) -> set[tuple]:
    return set(rows_of(path, "SELECT entity_id, detail FROM audit_log WHERE action = 'receivable.update'"))


async def one_transaction(db, path) -> tuple[int, int, int]:
    """The import as it was before it streamed: the whole file read, checked and written in one
    transaction (validate + import_rows, what import_file did)."""
    headers, table = read_table(path, "receivables")
    parsed = validate("receivables", headers, table, today=TODAY)
    assert not parsed.errors
    async with db.session() as s, s.begin():
        r = await import_rows(s, "receivables", parsed.records, actor="import", channel="import", now=NOW,
                              today=TODAY)
    assert r.ok, r.to_dict()
    return r.created, r.updated, r.unchanged


def edited(tmp_path: Path, src: str, name: str) -> Path:
    """The same file a month later: every 60th amount changed, 50 new invoices at the end."""
    lines = Path(src).read_text(encoding="utf-8").splitlines()
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        if i % 60 == 7:
            cells = line.split(",")
            cells[4] = '"99999.99"'
            line = ",".join(cells)
        out.append(line)
    extra = Path(bulk_csv(tmp_path, 50, prefix="NEW")).read_text(encoding="utf-8").splitlines()[1:]
    p = tmp_path / name
    p.write_text("\n".join(out + extra) + "\n", encoding="utf-8")
    return p


async def test_a_large_import_lands_as_the_one_transaction_import_did(db, tmp_path, monkeypatch):
    from storage.db import Database
    # chunks of at least 500, 1,000, 2,000 rows (a chunk at most doubles): 6,000 rows take 4 or more
    monkeypatch.setattr(import_stream, "FIRST_CHUNK", 500)
    await load_all(db, upto="receivables")
    old = Database(f"sqlite:///{tmp_path}/old.db")
    await old.migrate()
    await load_all(old, upto="receivables")
    src = bulk_csv(tmp_path, LARGE)
    report = await import_file(db, "receivables", src, now=NOW, today=TODAY)
    assert report.ok and (report.rows, report.created, report.updated, report.unchanged) == (LARGE, LARGE, 0, 0)
    assert report.chunks > 3                    # it really was written in several transactions
    assert await one_transaction(old, src) == (LARGE, 0, 0)

    later = edited(tmp_path, src, "later.csv")
    again = await import_file(db, "receivables", later, now=NOW, today=TODAY)
    assert again.ok and (again.created, again.updated, again.unchanged) == (50, 100, LARGE - 100)
    assert await one_transaction(old, later) == (50, 100, LARGE - 100)
    await old.close()

    new_db, old_db = tmp_path / "t.db", tmp_path / "old.db"
    assert rows_of(new_db, RECEIVABLES) == rows_of(old_db, RECEIVABLES)
    assert rows_of(new_db, AGING) == rows_of(old_db, AGING)
    assert created_values(new_db) == created_values(old_db)
    assert updates(new_db) == updates(old_db) and len(updates(new_db)) == 100
    # who loaded which file, once per import that changed something; no journal left behind
    assert [json.loads(d)["created"] for (d,) in rows_of(new_db, "SELECT detail FROM audit_log"
                                                                 " WHERE action = 'import.file' ORDER BY id")][-2:] \
        == [LARGE, 50]
    assert set(rows_of(new_db, "SELECT status, active FROM import_runs")) == {("done", None)}
    assert rows_of(new_db, "SELECT count(*) FROM import_run_chunks") == [(0,)]
    # and a third time: nothing to do, nothing written
    before = await counts(db)
    same = await import_file(db, "receivables", later, now=NOW, today=TODAY)
    assert same.ok and (same.created, same.updated, same.unchanged) == (0, 0, LARGE + 50)
    assert await counts(db) == before


@pytest.mark.parametrize("last,column,code", [
    ('ZZ-1,C001,2026-10-01,2026-10-31,"abc",CNY,,,', "amount", "bad_amount"),          # a cell
    ("ZZ-1,C999,2026-10-01,2026-10-31,100,CNY,,,", "customer", "unknown_customer"),    # the ledger
])
async def test_an_error_on_the_last_line_changes_nothing_and_names_the_line(db, tmp_path, last, column, code):
    await load_all(db, upto="receivables")
    n = 20_000
    path = Path(bulk_csv(tmp_path, n))
    path.write_text(path.read_text(encoding="utf-8") + last + "\n", encoding="utf-8")
    before, runs = ledger(tmp_path / "t.db"), rows_of(tmp_path / "t.db", "SELECT * FROM import_runs")
    report = await import_file(db, "receivables", path, now=NOW, today=TODAY)
    assert not report.ok
    assert [(e.line, e.column, e.code) for e in report.errors] == [(n + 2, column, code)]
    assert (report.created, report.updated, report.unchanged) == (0, 0, 0)
    text = render("cli/import_report.txt.j2", r=report)
    assert "没有写入任何数据" in text and f"第{n + 2}行" in text
    assert ledger(tmp_path / "t.db") == before
    assert rows_of(tmp_path / "t.db", "SELECT * FROM import_runs") == runs          # nothing was started


async def test_many_bad_lines_list_the_first_thousand_and_count_the_rest(db, tmp_path):
    await load_all(db, upto="customers")
    lines = [f"Q-{i},{'C999' if i % 2 else 'C001'},2026-10-01,2026-10-31,{'x' if i % 2 == 0 else '5'}"
             for i in range(3_000)]
    path = tmp_path / "bad.csv"
    path.write_text("invoice_no,customer,issue_date,due_date,amount\n" + "\n".join(lines) + "\n", encoding="utf-8")
    report = await import_file(db, "receivables", path, now=NOW, today=TODAY)
    assert [e.line for e in report.errors] == list(range(2, 1002))     # the first 1,000 lines, in order
    assert {e.code for e in report.errors} == {"bad_amount", "unknown_customer"}
    assert report.more_errors == 2_000 and not report.ok
    assert "另有2000处问题未列出" in render("cli/import_report.txt.j2", r=report)
    assert report.to_dict()["more_errors"] == 2_000


# ---- chat while an import runs ------------------------------------------------------------------
def small_chunks(monkeypatch, size: int = 1_000) -> None:
    for name in ("FIRST_CHUNK", "MIN_CHUNK", "MAX_CHUNK"):
        monkeypatch.setattr(import_stream, name, size)


async def followups_on(db, invoice_no: str) -> list[str]:
    async with db.session() as s:
        return list((await s.execute(select(FollowUp.text).join(Receivable, FollowUp.receivable_id == Receivable.id)
                                     .where(Receivable.invoice_no == invoice_no))).scalars())


async def test_chat_answers_between_chunks_and_its_write_stays(aiohttp_client, db, tmp_path, monkeypatch):
    """In the bot's own process: a follow-up logged in the local chat while the import is half
    written (after its second chunk) is answered, and is still there once the import is done."""
    await load_all(db, upto="receivables")
    bot = await Bot.start(aiohttp_client, db, NOW)
    small_chunks(monkeypatch)
    answers = []

    async def chat(seq):
        if seq == 2:     # an invoice this import created in its first chunk, and one from before
            answers.append(await asyncio.wait_for(bot.say("E004", "/followup BK-00001 已电话联系财务，月底付"), 60))
            answers.append(await asyncio.wait_for(bot.say("E004", "/followup HX-2026-001 已发对账单"), 60))
    monkeypatch.setattr(import_stream, "after_chunk", chat)
    report = await import_file(db, "receivables", bulk_csv(tmp_path, 5_000), now=NOW, today=TODAY)
    assert report.ok and report.created == 5_000 and report.chunks == 5
    assert len(answers) == 2 and all(a for a in answers)
    assert await followups_on(db, "BK-00001") == ["已电话联系财务，月底付"]
    assert await followups_on(db, "HX-2026-001") == ["已发对账单"]


CHILD = r"""
import asyncio, os, sys
from pathlib import Path
import storage.import_stream as st
pause_at, marker, go = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
st.FIRST_CHUNK = st.MIN_CHUNK = st.MAX_CHUNK = 1000

async def hold(seq):
    # after the chunk `pause_at` committed: say so, then wait for the test (a kill, a signal, a go)
    if seq == pause_at:
        marker.write_text(str(os.getpid()))
        while not go.exists():
            await asyncio.sleep(0.02)
st.after_chunk = hold
from bot.cli import main
sys.exit(main(sys.argv[4:]))
"""


class CliImport:
    """``arbot import receivables FILE`` in a child process that holds after chunk ``pause_at``."""

    def __init__(self, tmp_path: Path, db_path: Path, csv: str, pause_at: int = 3):
        self.marker, self.go = tmp_path / "held", tmp_path / "go"
        self.marker.unlink(missing_ok=True)
        self.go.unlink(missing_ok=True)
        e = env()
        e["ARBOT_DATABASE_URL"] = f"sqlite:///{db_path}"
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, str(pause_at), str(self.marker), str(self.go),
                                      "import", "receivables", csv], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def wait_held(self) -> None:
        deadline = time.monotonic() + 90           # a guard against a hung child, not a measurement
        while not self.marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"import ended before it was held: {self.proc.returncode}\n"
                                     f"{self.proc.stdout.read()}\n{self.proc.stderr.read()}")
            assert time.monotonic() < deadline, "the import never reached the chunk it holds after"
            time.sleep(0.02)

    def release(self) -> None:
        self.go.write_text("go")

    def finish(self, timeout: float = 120) -> subprocess.CompletedProcess:
        out, err = self.proc.communicate(timeout=timeout)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def arbot(db_path: Path, *args: str) -> subprocess.CompletedProcess:
    e = env()
    e["ARBOT_DATABASE_URL"] = f"sqlite:///{db_path}"
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=e, capture_output=True, text=True,
                          timeout=120)


async def test_chat_in_the_bot_while_the_cli_imports(aiohttp_client, db, tmp_path):
    """The usual set-up: the bot serves chat while finance imports from the command line. A
    follow-up sent while the import is half written is answered, and stays."""
    await load_all(db, upto="receivables")
    before = await counts(db)
    cli = CliImport(tmp_path, tmp_path / "t.db", bulk_csv(tmp_path, 6_000))
    try:
        await asyncio.to_thread(cli.wait_held)
        bot = await Bot.start(aiohttp_client, db, NOW)        # its start-up leaves a live import alone
        assert (await counts(db))["receivables"] == before["receivables"] + 3_000
        [answer] = await asyncio.wait_for(bot.say("E004", "/followup BK-00002 客户说下周付"), 60)
        assert answer
        cli.release()
        done = await asyncio.to_thread(cli.finish)
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
            cli.proc.wait()
    assert done.returncode == 0, done.stderr
    assert "导入应收账款成功：共6000行，新增6000" in done.stdout
    assert (await counts(db))["receivables"] == before["receivables"] + 6_000
    assert await followups_on(db, "BK-00002") == ["客户说下周付"]


# ---- killed, stopped, failed -----------------------------------------------------------------------
@pytest.mark.parametrize("recovered_by", ["cli", "server"])
async def test_an_import_killed_half_way_is_undone_by_the_next_start(aiohttp_client, db, tmp_path, recovered_by):
    await load_all(db, upto="receivables")
    path = tmp_path / "t.db"
    before = ledger(path)
    csv = bulk_csv(tmp_path, 8_000)
    cli = CliImport(tmp_path, path, csv)
    try:
        await asyncio.to_thread(cli.wait_held)
        # three chunks are committed, and visible, when the process dies
        assert len(ledger(path)["receivables"]) == len(before["receivables"]) + 3_000
        cli.proc.send_signal(signal.SIGKILL)
        cli.proc.wait(30)
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
            cli.proc.wait()
    assert cli.proc.returncode == -signal.SIGKILL
    assert last_run(path) == ("running", 1)
    if recovered_by == "cli":           # any command: here the one a clerk would run next
        out = arbot(path, "report", "aging", "--format", "json")
        assert out.returncode == 0, out.stderr
        assert "发现1次未完成的导入" in out.stderr and "已自动撤销" in out.stderr
    else:
        await Bot.start(aiohttp_client, db, NOW)
    assert ledger(path) == before
    assert last_run(path) == ("undone", None)
    assert rows_of(path, "SELECT count(*) FROM import_run_chunks") == [(0,)]
    # the same file again, now whole
    again = arbot(path, "import", "receivables", csv)
    assert again.returncode == 0 and "新增8000" in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_stopped_import_is_undone_before_the_process_exits(db, tmp_path, sig, code):
    await load_all(db, upto="receivables")
    path = tmp_path / "t.db"
    before = ledger(path)
    cli = CliImport(tmp_path, path, bulk_csv(tmp_path, 8_000))
    try:
        await asyncio.to_thread(cli.wait_held)
        assert len(ledger(path)["receivables"]) == len(before["receivables"]) + 3_000
        cli.proc.send_signal(sig)
        done = await asyncio.to_thread(cli.finish, 60)
    finally:
        if cli.proc.poll() is None:
            cli.proc.kill()
            cli.proc.wait()
    assert done.returncode == code, done.stderr
    assert "导入被中断" in done.stderr and "已撤销" in done.stderr
    assert "导入应收账款成功" not in done.stdout
    # no other process started: the stopped one took its chunks back itself
    assert ledger(path) == before
    assert last_run(path) == ("undone", None)


async def test_a_failure_after_some_chunks_undoes_them_but_keeps_what_chat_built_on(aiohttp_client, db, tmp_path,
                                                                                      monkeypatch):
    """A write that fails in the fourth chunk: the three committed chunks are taken back, except
    an invoice a rep has logged a follow-up on in the meantime — the follow-up and its invoice
    stay, and the audit log says so."""
    await load_all(db, upto="receivables")
    path = tmp_path / "t.db"
    before = ledger(path)
    bot = await Bot.start(aiohttp_client, db, NOW)
    small_chunks(monkeypatch)

    async def meanwhile(seq):
        if seq == 2:
            await bot.say("E004", "/followup BK-00003 已上门拜访")
        if seq == 3:
            raise OSError("disk full")
    monkeypatch.setattr(import_stream, "after_chunk", meanwhile)
    with pytest.raises(OSError):
        await import_file(db, "receivables", bulk_csv(tmp_path, 6_000), now=NOW, today=TODAY)
    after = ledger(path)
    assert [r[0] for r in after["receivables"] if r not in before["receivables"]] == ["BK-00003"]
    assert await followups_on(db, "BK-00003") == ["已上门拜访"]
    assert after["aging"] != before["aging"]            # BK-00003's open amount, and nothing else
    async with db.session() as s:
        run = (await s.execute(select(ImportRun).order_by(ImportRun.id.desc()).limit(1))).scalar_one()
        entry = (await s.execute(select(AuditEntry).where(AuditEntry.action == "import.partly_undone"))).scalar_one()
    assert (run.status, run.active, run.detail["kept"]) == ("undone", None, ["BK-00003"])
    assert entry.detail["kept"] == ["BK-00003"]


# ---- the progress bar ---------------------------------------------------------------------------
class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_is_drawn_only_on_a_terminal():
    from bot.progress import ImportProgress, import_progress, wants_bar
    assert import_progress(io.StringIO(), io.StringIO()) is None         # a pipe, a file, cron
    assert import_progress(io.StringIO(), Terminal()) is None            # stdout redirected: quiet
    assert not wants_bar(Terminal(), io.StringIO())
    closed = io.StringIO()
    closed.close()
    assert not wants_bar(closed, closed)
    err = Terminal()
    bar = import_progress(Terminal(), err)
    assert isinstance(bar, ImportProgress)
    bar("check", 0, 1_000_000)
    bar("check", 1_000_000, 1_000_000)
    bar("write", 500, 1_000)
    bar("write", 1_000, 1_000)
    bar.close()
    drawn = err.getvalue()
    assert "检查文件" in drawn and "写入账本" in drawn and "/1000" in drawn     # rows to write: the total


def test_the_cli_import_draws_no_bar_when_stdout_is_not_a_terminal(tmp_path):
    data = Path(__file__).parent / "data"
    db_path = tmp_path / "c.db"
    for kind, name in (("people", "people.csv"), ("customers", "customers_gbk.csv")):
        assert arbot(db_path, "import", kind, str(data / name)).returncode == 0
    out = arbot(db_path, "import", "receivables", bulk_csv(tmp_path, 3_000))      # stdout is a pipe
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "导入应收账款成功：共3000行，新增3000，更新0，无变化0。"
    assert "检查文件" not in out.stderr and "写入账本" not in out.stderr and "%|" not in out.stderr
