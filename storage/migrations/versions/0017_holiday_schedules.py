"""holiday_schedules: next year's holidays and make-up working days, imported from the notice

The calendar package knows no year after its release; finance imports the State Council's
annual notice (arbot calendar import, /calendar) into one row a year. A new table only.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 08:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

from storage.types import UTCDateTime

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('holiday_schedules',
    sa.Column('year', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('schedule', sa.JSON(), nullable=False),
    sa.Column('notice', sa.Text(), nullable=False),
    sa.Column('imported_by', sa.String(length=64), nullable=False),
    sa.Column('imported_at', UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('year')
    )


def downgrade() -> None:
    op.drop_table('holiday_schedules')
