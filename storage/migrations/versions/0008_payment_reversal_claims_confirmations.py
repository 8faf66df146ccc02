"""payments: reversal and foreign-receipt columns; confirmations; payment claims

* ``payments``: ``received_amount``/``received_currency``/``fx_rate`` (a CNY receipt booked on a
  USD invoice keeps what came in and the rate used), ``reversed_at``/``reversed_by``/
  ``reversal_reason`` (a reversed payment stays, marked, with its allocations removed).
* ``confirmations``: an action the bot asked about before booking it (/paid above the open
  balance, a likely duplicate), until its person confirms it or it expires.
* ``payment_claims``: "the customer paid" from a rep, open until finance books or dismisses it.

Plain add_column (nullable or with a server default) and new tables: receivables untouched, so
0004's triggers stay as they are.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:10:00.000000
"""
from alembic import op
import sqlalchemy as sa
import storage.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('payments', sa.Column('received_amount', storage.types.Money(), nullable=True))
    op.add_column('payments', sa.Column('received_currency', sa.String(length=3), nullable=True))
    op.add_column('payments', sa.Column('fx_rate', sa.String(length=20), nullable=True))
    op.add_column('payments', sa.Column('reversed_at', storage.types.UTCDateTime(timezone=True), nullable=True))
    op.add_column('payments', sa.Column('reversed_by', sa.String(length=64), nullable=True))
    op.add_column('payments', sa.Column('reversal_reason', sa.Text(), nullable=False, server_default=''))
    op.create_table('confirmations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('asked_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('done_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_confirmations_person_id', 'confirmations', ['person_id'], unique=False)
    op.create_table('payment_claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receivable_id', sa.Integer(), nullable=False),
    sa.Column('followup_id', sa.Integer(), nullable=True),
    sa.Column('amount', storage.types.Money(), nullable=True),
    sa.Column('open_then', storage.types.Money(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=False),
    sa.Column('claimed_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('closed_by', sa.String(length=64), nullable=True),
    sa.Column('closed_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['receivable_id'], ['receivables.id'], ),
    sa.ForeignKeyConstraint(['followup_id'], ['followups.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_payment_claims_receivable_id', 'payment_claims', ['receivable_id'], unique=False)
    op.create_index('ix_payment_claims_status', 'payment_claims', ['status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_payment_claims_status', table_name='payment_claims')
    op.drop_index('ix_payment_claims_receivable_id', table_name='payment_claims')
    op.drop_table('payment_claims')
    op.drop_index('ix_confirmations_person_id', table_name='confirmations')
    op.drop_table('confirmations')
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of payments would trip allocations' foreign key
    for col in ('reversal_reason', 'reversed_by', 'reversed_at', 'fx_rate', 'received_currency', 'received_amount'):
        op.drop_column('payments', col)
