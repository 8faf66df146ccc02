"""person_accounts: a person's user id per chat platform, in one table instead of a column per
platform on people (issue #14: adding a platform must not touch the people table)

Upgrade creates person_accounts (platform, user_id) → person_id, unique per (platform, user_id)
and per (person_id, platform), moves every non-empty people.wecom_userid / dingtalk_userid into
it, and drops those two columns. It also drops contacts.wecom_userid / dingtalk_userid: the bot
never wrote or read them (no import column, no command; customer contacts are reached by e-mail,
SMS or a group robot), so they hold nothing to move.

SQLite cannot drop a UNIQUE column in place, so people is rebuilt (batch mode). A table others
reference can only be rebuilt with foreign keys off, which Database.migrate arranges for every
SQLite migration (and checks the keys before the commit). Downgrade needs no rebuild: the columns
come back with unique indexes (SQLite cannot ADD a UNIQUE column) and are filled from the accounts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# the columns as they were, and the platform each one names (history: platform names stay here)
COLUMNS = (("wecom", "wecom_userid"), ("dingtalk", "dingtalk_userid"))


def upgrade() -> None:
    op.create_table('person_accounts',
    sa.Column('platform', sa.String(length=20), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('person_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('platform', 'user_id'),
    sa.UniqueConstraint('person_id', 'platform', name='uq_person_accounts_person_platform')
    )
    op.create_index('ix_person_accounts_person_id', 'person_accounts', ['person_id'], unique=False)
    for platform, column in COLUMNS:
        op.execute(sa.text(f"INSERT INTO person_accounts (platform, user_id, person_id) "
                           f"SELECT :platform, {column}, id FROM people "
                           f"WHERE {column} IS NOT NULL AND {column} <> ''").bindparams(platform=platform))
    # a database downgraded from here once has unique indexes on the columns, not constraints
    indexes = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes('people')}
    with op.batch_alter_table('people', schema=None) as batch_op:
        for _, column in COLUMNS:
            if f"uq_people_{column}" in indexes:
                batch_op.drop_index(f"uq_people_{column}")
            batch_op.drop_column(column)
    with op.batch_alter_table('contacts', schema=None) as batch_op:
        batch_op.drop_column('wecom_userid')
        batch_op.drop_column('dingtalk_userid')


def downgrade() -> None:
    for _, column in COLUMNS:
        op.add_column('contacts', sa.Column(column, sa.String(length=64), nullable=False, server_default=''))
    for platform, column in COLUMNS:
        op.add_column('people', sa.Column(column, sa.String(length=64), nullable=True))
        op.execute(sa.text(f"UPDATE people SET {column} = (SELECT a.user_id FROM person_accounts a "
                           f"WHERE a.platform = :platform AND a.person_id = people.id)").bindparams(platform=platform))
        op.create_index(f"uq_people_{column}", 'people', [column], unique=True)
    # accounts on platforms the old columns cannot hold are lost with the table
    op.drop_index('ix_person_accounts_person_id', table_name='person_accounts')
    op.drop_table('person_accounts')
