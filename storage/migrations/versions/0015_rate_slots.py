"""rate_slots: the platforms' per-minute limits counted in the database (issue #15: limits shared
by all instances)

One row per message sent (or being sent) to a destination that counts against a limit, stamped
with when the platform counts it (wall-clock epoch seconds); rows older than the window are
deleted as new ones are taken. Only adds.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-12 09:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rate_slots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('limit_key', sa.String(length=300), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_rate_slots_key_at', 'rate_slots', ['limit_key', 'at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_rate_slots_key_at', table_name='rate_slots')
    op.drop_table('rate_slots')
