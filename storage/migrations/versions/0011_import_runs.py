"""import_runs and import_run_chunks: a streamed import writes in short chunks and records what
each chunk changed, so a run that fails or is stopped half-way is undone (storage/import_runs.py)

Two new tables; no existing table is touched (0004's triggers on receivables stay as they are).
``import_runs.active`` is TRUE while a run is under way or being undone and NULL otherwise: a
unique column that NULLs do not collide in, so at most one run is active on SQLite and on
PostgreSQL alike, without a partial index.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 20:30:00.000000
"""
from alembic import op
import sqlalchemy as sa
import storage.types


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('import_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('file_name', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=True),
    sa.Column('owner', sa.String(length=200), nullable=False),
    sa.Column('started_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('created', sa.Integer(), nullable=False),
    sa.Column('updated', sa.Integer(), nullable=False),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('active')
    )
    op.create_index('ix_import_runs_status', 'import_runs', ['status'], unique=False)
    op.create_table('import_run_chunks',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['import_runs.id'], ),
    sa.PrimaryKeyConstraint('run_id', 'seq')
    )


def downgrade() -> None:
    op.drop_table('import_run_chunks')
    op.drop_index('ix_import_runs_status', table_name='import_runs')
    op.drop_table('import_runs')
