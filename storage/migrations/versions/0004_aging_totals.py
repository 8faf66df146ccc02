"""aging totals: open cents and count per due date and currency, kept by triggers on receivables
so that company-wide /aging reads a few hundred rows instead of scanning the ledger
(storage/aging.py)

Every writer of receivables (the ledger's ORM updates, the importer's Core executemany, raw SQL
such as bench/common.py's bulk loader) goes through the triggers, so the totals stay exact in the
same transaction as each change. A receivable counts while open_amount > 0; a total that reaches
0/0 is deleted.

SQLite: row triggers upsert aging_totals directly. SQLite has one writer at a time, so the shared
per-day rows add no contention and no lock-order problem.

PostgreSQL: a row trigger upserting aging_totals directly would make every transaction lock the
per-day rows it touches until it commits, in the order it happens to change receivables (the ORM
flushes updates in primary-key order, the importer in file order). Two transactions touching the
same two days in opposite orders — an import and a payment, two imports — would deadlock, and a
long import would hold a payment on any of its days until it commits. So the row triggers only
append to aging_deltas under the transaction's own id (no other transaction ever touches those
rows: no waits), and a deferred constraint trigger moves them into aging_totals at commit, in
(due_date, currency) order: every transaction locks the shared rows in the same order, for the
few statements before its commit. Readers add their own transaction's pending deltas
(storage/aging.py); other transactions' uncommitted deltas are invisible to them anyway.

CAUTION for later migrations: on SQLite ``op.batch_alter_table('receivables')`` recreates the
table and silently drops these triggers. A migration that does so must create them again (call
``create_sqlite_triggers`` below); tests/test_aging_totals.py fails if they are missing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

TRIGGERS = ("aging_totals_ins", "aging_totals_upd", "aging_totals_del")

# one side of a change, as an upsert of (cents, count) into a total; {row} is OLD or NEW
_SQLITE_ADD = """
    INSERT INTO aging_totals (due_date, currency, open_cents, open_count)
    SELECT {row}.due_date, {row}.currency, {sign}{row}.open_amount, {sign}1 WHERE {row}.open_amount > 0
    ON CONFLICT (due_date, currency) DO UPDATE
        SET open_cents = open_cents + excluded.open_cents, open_count = open_count + excluded.open_count;"""
_SQLITE_DROP_EMPTY = """
    DELETE FROM aging_totals WHERE due_date = OLD.due_date AND currency = OLD.currency AND open_count = 0;"""

_UPDATE_CHANGES = ("(OLD.open_amount > 0 OR NEW.open_amount > 0) AND (OLD.open_amount IS NOT NEW.open_amount"
                   " OR OLD.due_date IS NOT NEW.due_date OR OLD.currency IS NOT NEW.currency)")


def create_sqlite_triggers() -> None:
    op.execute("CREATE TRIGGER aging_totals_ins AFTER INSERT ON receivables WHEN NEW.open_amount > 0 BEGIN"
               + _SQLITE_ADD.format(row="NEW", sign="") + "\nEND")
    op.execute("CREATE TRIGGER aging_totals_upd AFTER UPDATE OF open_amount, due_date, currency ON receivables"
               f" WHEN {_UPDATE_CHANGES} BEGIN"
               + _SQLITE_ADD.format(row="OLD", sign="-") + _SQLITE_ADD.format(row="NEW", sign="")
               + _SQLITE_DROP_EMPTY + "\nEND")
    op.execute("CREATE TRIGGER aging_totals_del AFTER DELETE ON receivables WHEN OLD.open_amount > 0 BEGIN"
               + _SQLITE_ADD.format(row="OLD", sign="-") + _SQLITE_DROP_EMPTY + "\nEND")


_PG_NOTE = """
CREATE FUNCTION aging_totals_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- this transaction's own rows: no other transaction inserts or waits on them
    IF TG_OP <> 'INSERT' AND OLD.open_amount > 0 THEN
        INSERT INTO aging_deltas AS d (txid, due_date, currency, open_cents, open_count)
        VALUES (txid_current(), OLD.due_date, OLD.currency, -OLD.open_amount, -1)
        ON CONFLICT (txid, due_date, currency) DO UPDATE
            SET open_cents = d.open_cents + excluded.open_cents, open_count = d.open_count + excluded.open_count;
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.open_amount > 0 THEN
        INSERT INTO aging_deltas AS d (txid, due_date, currency, open_cents, open_count)
        VALUES (txid_current(), NEW.due_date, NEW.currency, NEW.open_amount, 1)
        ON CONFLICT (txid, due_date, currency) DO UPDATE
            SET open_cents = d.open_cents + excluded.open_cents, open_count = d.open_count + excluded.open_count;
    END IF;
    -- tells the deferred flush there is something to apply (transaction-local, undone by a rollback)
    PERFORM set_config('arbot.aging_pending', 'on', true);
    RETURN NULL;
END $$
"""

# One deferred event is queued per changed row; the first one at commit applies everything and
# clears the flag, the others return at once (probing aging_deltas instead would walk the index
# entries of the rows just deleted, once per event).
_PG_FLUSH = """
CREATE FUNCTION aging_totals_flush() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    IF coalesce(current_setting('arbot.aging_pending', true), '') <> 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('arbot.aging_pending', 'off', true);
    FOR k IN
        WITH moved AS (DELETE FROM aging_deltas WHERE txid = txid_current()
                       RETURNING due_date, currency, open_cents, open_count)
        INSERT INTO aging_totals AS t (due_date, currency, open_cents, open_count)
        SELECT due_date, currency, sum(open_cents), sum(open_count) FROM moved
        GROUP BY due_date, currency HAVING sum(open_cents) <> 0 OR sum(open_count) <> 0
        ORDER BY due_date, currency                 -- the one lock order every transaction uses
        ON CONFLICT (due_date, currency) DO UPDATE
            SET open_cents = t.open_cents + excluded.open_cents, open_count = t.open_count + excluded.open_count
        RETURNING t.due_date, t.currency, t.open_count
    LOOP
        IF k.open_count = 0 THEN
            DELETE FROM aging_totals WHERE due_date = k.due_date AND currency = k.currency;
        END IF;
    END LOOP;
    RETURN NULL;
END $$
"""

_PG_WHEN = {"ins": ("INSERT", "NEW.open_amount > 0"),
            "upd": ("UPDATE OF open_amount, due_date, currency",
                    _UPDATE_CHANGES.replace(" IS NOT ", " IS DISTINCT FROM ")),
            "del": ("DELETE", "OLD.open_amount > 0")}


def create_postgresql_triggers() -> None:
    op.execute(_PG_NOTE)
    op.execute(_PG_FLUSH)
    for suffix, (event, when) in _PG_WHEN.items():
        op.execute(f"CREATE TRIGGER aging_totals_{suffix} AFTER {event} ON receivables FOR EACH ROW"
                   f" WHEN ({when}) EXECUTE FUNCTION aging_totals_note()")
        # WHEN of a constraint trigger is evaluated at the change, so only relevant rows queue an event
        op.execute(f"CREATE CONSTRAINT TRIGGER aging_totals_flush_{suffix} AFTER {event} ON receivables"
                   f" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({when}) EXECUTE FUNCTION aging_totals_flush()")


def upgrade() -> None:
    op.create_table('aging_totals',
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('open_cents', sa.BigInteger(), nullable=False),
    sa.Column('open_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('due_date', 'currency'),
    sqlite_with_rowid=False
    )
    op.create_table('aging_deltas',
    sa.Column('txid', sa.BigInteger(), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('open_cents', sa.BigInteger(), nullable=False),
    sa.Column('open_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('txid', 'due_date', 'currency')
    )
    # triggers first: on PostgreSQL creating them locks receivables against writes until this
    # migration commits, so no change can slip in between the backfill and the triggers
    if op.get_bind().dialect.name == "postgresql":
        create_postgresql_triggers()
    else:
        create_sqlite_triggers()
    op.execute("INSERT INTO aging_totals (due_date, currency, open_cents, open_count)"
               " SELECT due_date, currency, sum(open_amount), count(*) FROM receivables"
               " WHERE open_amount > 0 GROUP BY due_date, currency")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for suffix in _PG_WHEN:
            op.execute(f"DROP TRIGGER aging_totals_{suffix} ON receivables")
            op.execute(f"DROP TRIGGER aging_totals_flush_{suffix} ON receivables")
        op.execute("DROP FUNCTION aging_totals_note()")
        op.execute("DROP FUNCTION aging_totals_flush()")
    else:
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER {name}")
    op.drop_table('aging_deltas')
    op.drop_table('aging_totals')
