"""accounts: system accounts, password resets, revocation checklists

Revision ID: 0008
Revises: 0004
Create Date: 2026-11-23 10:00:00.000000
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import storage.models


revision = '0008'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('system', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('username', sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('locked_reason', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('locked_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('locked_by', sa.Integer(), nullable=True),
    sa.Column('revoked_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.Integer(), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['locked_by'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['revoked_by'], ['person.id'], ),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('school_id', 'system', 'username', name='uq_account_school_system_user')
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_status'), ['status'], unique=False)

    op.create_table('account_reset',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('approval_id', sa.Integer(), nullable=True),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('handled_by', sa.Integer(), nullable=True),
    sa.Column('handled_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['approval_id'], ['approval.id'], ),
    sa.ForeignKeyConstraint(['handled_by'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('account_reset', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_reset_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_reset_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_reset_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_reset_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_reset_status'), ['status'], unique=False)

    op.create_table('account_revocation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('new_status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('opened_by', sa.Integer(), nullable=True),
    sa.Column('opened_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closed_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['opened_by'], ['person.id'], ),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('account_revocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_revocation_closed_at'), ['closed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_revocation_person_id'), ['person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_revocation_school_id'), ['school_id'], unique=False)

    op.create_table('account_revocation_item',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('revocation_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('done_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_by', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['done_by'], ['person.id'], ),
    sa.ForeignKeyConstraint(['revocation_id'], ['account_revocation.id'], ),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('revocation_id', 'account_id', name='uq_revocation_item')
    )
    with op.batch_alter_table('account_revocation_item', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_revocation_item_revocation_id'), ['revocation_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_account_revocation_item_school_id'), ['school_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('account_revocation_item', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_revocation_item_school_id'))
        batch_op.drop_index(batch_op.f('ix_account_revocation_item_revocation_id'))
    op.drop_table('account_revocation_item')
    with op.batch_alter_table('account_revocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_revocation_school_id'))
        batch_op.drop_index(batch_op.f('ix_account_revocation_person_id'))
        batch_op.drop_index(batch_op.f('ix_account_revocation_closed_at'))
    op.drop_table('account_revocation')
    with op.batch_alter_table('account_reset', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_reset_status'))
        batch_op.drop_index(batch_op.f('ix_account_reset_school_id'))
        batch_op.drop_index(batch_op.f('ix_account_reset_person_id'))
        batch_op.drop_index(batch_op.f('ix_account_reset_created_at'))
        batch_op.drop_index(batch_op.f('ix_account_reset_account_id'))
    op.drop_table('account_reset')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_status'))
        batch_op.drop_index(batch_op.f('ix_account_school_id'))
        batch_op.drop_index(batch_op.f('ix_account_person_id'))
    op.drop_table('account')
