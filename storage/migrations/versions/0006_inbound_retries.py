"""inbound_events: attempts and next_attempt_at, so an event whose handling fails is put back
and tried again later (then dead-lettered for an operator), never silently marked failed

An index on (status, next_attempt_at) serves the resume loop's "what is due again" query; the
statuses are received | retry | handled | dead (the old "failed" rows become "dead": they were
never handled and an operator should look at them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 08:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

import storage.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # add_column, not batch_alter_table: no table rebuild (inbound_events has no triggers, but
    # a rebuild of a big event table would hold the write lock for nothing)
    op.add_column("inbound_events", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("inbound_events", sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE inbound_events SET status = 'dead' WHERE status = 'failed'")
    op.create_index("ix_inbound_events_status_next", "inbound_events", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_inbound_events_status_next", table_name="inbound_events")
    op.execute("UPDATE inbound_events SET status = 'failed' WHERE status IN ('dead', 'retry')")
    with op.batch_alter_table("inbound_events") as b:
        b.drop_column("next_attempt_at")
        b.drop_column("attempts")
