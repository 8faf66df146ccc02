"""digest_items, and outbox.priority (issue #15: digests instead of floods; a question first)

digest_items holds each notification a job decided for a person until it goes out as a line of
that person's digest; outbox.priority (1: an answer to the person's own message, 0: the rest)
orders the sender's claim, with an index for it. Only adds.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-10 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from storage.types import Money, UTCDateTime

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('digest_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_key', sa.String(length=200), nullable=False),
    sa.Column('job', sa.String(length=40), nullable=False),
    sa.Column('fire', sa.String(length=20), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('customer_key', sa.String(length=100), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('subject', sa.String(length=100), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('amount', Money(), nullable=True),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('created_at', UTCDateTime(timezone=True), nullable=False),
    sa.Column('not_before', UTCDateTime(timezone=True), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('digest_key', sa.String(length=200), nullable=True),
    sa.Column('listed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_key')
    )
    op.create_index('ix_digest_items_person_day', 'digest_items', ['person_id', 'day'], unique=False)
    op.create_index('ix_digest_items_open', 'digest_items', ['job', 'digest_key'], unique=False)
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
    op.create_index('ix_outbox_claim', 'outbox', ['status', 'priority', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_outbox_claim', table_name='outbox')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('priority')
    op.drop_index('ix_digest_items_open', table_name='digest_items')
    op.drop_index('ix_digest_items_person_day', table_name='digest_items')
    op.drop_table('digest_items')
