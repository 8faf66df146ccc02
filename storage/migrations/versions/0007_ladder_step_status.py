"""ladder_steps.status: a step is fired, skipped or held

The first escalations run after an import (or a restart, or a ladder change) used to fire every
step an old invoice had passed, all at once. Now only the invoice's current step fires; the
earlier ones are kept as rows with status "skipped", so the record shows they were passed over
(and they never fire later). A step that came due while a promise to pay deferred it is "held"
and fires when the promise is broken. Existing rows were all fired.

ladder_steps is not receivables: a plain ADD COLUMN, no table rebuild (0004's triggers untouched).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 08:30:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('ladder_steps', sa.Column('status', sa.String(length=12), nullable=False,
                                            server_default='fired'))


def downgrade() -> None:
    with op.batch_alter_table('ladder_steps', schema=None) as batch_op:
        batch_op.drop_column('status')
