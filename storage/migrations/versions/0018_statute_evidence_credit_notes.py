"""statute_evidence, and payments.kind and ix_payments_on_account (issue #19: the statute as the law has it; credit notes)

statute_evidence keeps what bears on an invoice's statute of limitations with its proof;
payments.kind tells a receipt from a credit note (红字发票) allocated like one. Only adds.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('statute_evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('receivable_id', sa.Integer(), nullable=False),
    sa.Column('happened_on', sa.Date(), nullable=False),
    sa.Column('evidence', sa.String(length=30), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['receivable_id'], ['receivables.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_statute_evidence_receivable_id'), 'statute_evidence', ['receivable_id'], unique=False)
    op.add_column('payments', sa.Column('kind', sa.String(length=12), server_default='receipt', nullable=False))
    # unapplied cash (storage/unapplied.py): the few payments with money on account, by index alone
    op.create_index('ix_payments_on_account', 'payments', ['customer_id', 'currency', 'paid_on', 'unallocated'],
                    unique=False, sqlite_where=sa.text('unallocated > 0'), postgresql_where=sa.text('unallocated > 0'))


def downgrade() -> None:
    op.drop_index('ix_payments_on_account', table_name='payments')
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of payments would trip allocations' foreign key
    op.drop_column('payments', 'kind')
    op.drop_index(op.f('ix_statute_evidence_receivable_id'), table_name='statute_evidence')
    op.drop_table('statute_evidence')
