"""settings: values made once and shared by every process on the database

The first holds the secret that signs dashboard and report links when ``[web] secret`` is not
configured: each process used to make its own, so a monthly report's Excel link made by
``arbot jobs run`` answered 403 in the server. A new table only; nothing else is touched.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-04 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import storage.types


revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )


def downgrade() -> None:
    op.drop_table('settings')
