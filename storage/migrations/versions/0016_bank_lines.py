"""bank_statements, bank_lines, bank_aliases, acceptance_bills (issue #16: cash application, 回款认领)

Statements read by ``arbot import bank``, each line once (identity), its match and claim; the
payer names and account numbers confirmed for customers; acceptance bills (承兑汇票) received as
payment and watched to maturity. Only adds.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 08:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from storage.types import Money, UTCDateTime

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bank_statements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=100), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('layout', sa.String(length=10), nullable=False),
    sa.Column('imported_by', sa.String(length=64), nullable=False),
    sa.Column('imported_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('bank_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('identity', sa.String(length=120), nullable=False),
    sa.Column('statement_id', sa.Integer(), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('account', sa.String(length=100), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('direction', sa.String(length=6), nullable=False),
    sa.Column('amount', Money(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('payer', sa.String(length=200), nullable=False),
    sa.Column('payer_account', sa.String(length=64), nullable=False),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('bank_ref', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('confidence', sa.String(length=6), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('suggestions', sa.JSON(), nullable=False),
    sa.Column('anomalies', sa.JSON(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_at', UTCDateTime(timezone=True), nullable=True),
    sa.Column('claim_customer_id', sa.Integer(), nullable=True),
    sa.Column('claim_invoices', sa.JSON(), nullable=False),
    sa.Column('confirmed_by', sa.String(length=64), nullable=True),
    sa.Column('confirmed_at', UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['statement_id'], ['bank_statements.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['claim_customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('identity')
    )
    op.create_index('ix_bank_lines_statement_id', 'bank_lines', ['statement_id'], unique=False)
    op.create_index('ix_bank_lines_booked_on', 'bank_lines', ['booked_on'], unique=False)
    op.create_index('ix_bank_lines_status', 'bank_lines', ['status'], unique=False)
    op.create_index('ix_bank_lines_customer_id', 'bank_lines', ['customer_id'], unique=False)
    op.create_table('bank_aliases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('learned_from', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['learned_from'], ['bank_lines.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('kind', 'value')
    )
    op.create_index('ix_bank_aliases_customer_id', 'bank_aliases', ['customer_id'], unique=False)
    op.create_table('acceptance_bills',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bill_no', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('acceptor', sa.String(length=200), nullable=False),
    sa.Column('amount', Money(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('received_on', sa.Date(), nullable=False),
    sa.Column('maturity', sa.Date(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('endorsed_to', sa.String(length=200), nullable=False),
    sa.Column('disposed_on', sa.Date(), nullable=True),
    sa.Column('discount_interest', Money(), nullable=True),
    sa.Column('reminded_on', sa.Date(), nullable=True),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bill_no')
    )
    op.create_index('ix_acceptance_bills_maturity', 'acceptance_bills', ['maturity'], unique=False)
    op.create_index('ix_acceptance_bills_customer_id', 'acceptance_bills', ['customer_id'], unique=False)
    op.create_index('ix_acceptance_bills_status', 'acceptance_bills', ['status'], unique=False)


def downgrade() -> None:
    for ix in ('status', 'customer_id', 'maturity'):
        op.drop_index(f'ix_acceptance_bills_{ix}', table_name='acceptance_bills')
    op.drop_table('acceptance_bills')
    op.drop_index('ix_bank_aliases_customer_id', table_name='bank_aliases')
    op.drop_table('bank_aliases')
    for ix in ('customer_id', 'status', 'booked_on', 'statement_id'):
        op.drop_index(f'ix_bank_lines_{ix}', table_name='bank_lines')
    op.drop_table('bank_lines')
    op.drop_table('bank_statements')
