"""push_items: drop the two single-column indexes that only slow the morning push down

The overdue push inserts one push item per overdue invoice (750,000 rows at 1M receivables), and
each index costs a B-tree insert per row: the two dropped here were ~2.5 s of the 8.5 s insert.

* ``ix_push_items_push_id``: its column leads the unique (push_id, seq) index, which serves every
  look-up by push (storage/collection.py ``push_items``: replies, /followup, card clicks, the
  reply window close; storage/kpi.py's timeliness join) as well.
* ``ix_push_items_receivable_id``: no query looks push items up by receivable. They are read by
  push, or by their own id (a card click); follow-ups point at a push item, not the other way.
  storage/kpi.py joins receivables *from* push items (by the receivables' primary key).
  The index would only serve the foreign-key check when a receivable is deleted (SQLite with
  ``PRAGMA foreign_keys=ON``, and PostgreSQL): without it, each such delete scans push_items.
  The bot never deletes a receivable (nor a customer, whose delete cascades to them): the ledger
  closes, writes off or corrects them, and imports update in place. Only tests delete a few rows
  of a small ledger (tests/test_aging_totals.py). Should a bulk delete of receivables ever be
  added, recreate this index first (the downgrade below does).

push_items is not receivables: plain op.drop_index, no table rebuild (0004's triggers untouched).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 18:00:00.000000
"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_push_items_receivable_id', table_name='push_items')
    op.drop_index('ix_push_items_push_id', table_name='push_items')


def downgrade() -> None:
    op.create_index('ix_push_items_push_id', 'push_items', ['push_id'], unique=False)
    op.create_index('ix_push_items_receivable_id', 'push_items', ['receivable_id'], unique=False)
