"""receivables: a partial covering index for the top overdue customers of /aging

Ranking the customers by overdue balance read every open invoice through the table (0.5 s at
200k invoices, on every /aging); with (customer_id, currency, due_date, open_amount, status) over
the open invoices it is read from the index alone. An index only; no data changes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 02:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_receivables_open_customer", "receivables",
                    ["customer_id", "currency", "due_date", "open_amount", "status"],
                    sqlite_where=sa.text("open_amount > 0"), postgresql_where=sa.text("open_amount > 0"))


def downgrade() -> None:
    op.drop_index("ix_receivables_open_customer", table_name="receivables")
