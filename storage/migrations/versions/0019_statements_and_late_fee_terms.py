"""statements (monthly 对账单 and their online confirmation) and customers.late_fee_rate (the
contract's late-fee clause). Only adds.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 08:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customers') as b:
        b.add_column(sa.Column('late_fee_rate', sa.String(length=20), nullable=False, server_default=''))
    op.create_table('statements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('balances', sa.JSON(), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('answered_at', UTCDateTime(), nullable=True),
    sa.Column('answered_by', sa.String(length=100), nullable=False),
    sa.Column('answered_ip', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=300), nullable=False),
    sa.Column('answer', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], ),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_id', 'contact_id', 'period')
    )
    op.create_index(op.f('ix_statements_customer_id'), 'statements', ['customer_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_statements_customer_id'), table_name='statements')
    op.drop_table('statements')
    # plain DROP COLUMN (SQLite 3.35+): a batch rebuild of customers would trip the foreign keys
    # of every table that points at it
    op.drop_column('customers', 'late_fee_rate')
